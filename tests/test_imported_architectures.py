"""The ProSConfig fields imported weights need (pre-norm, layer scale, register tokens, antialiased position
resampling): off by default, so every saved config computes what it did; when on, every code path (stochastic depth
on the kept samples, pooled_only, attention maps, learning-rate decay, weight decay) handles them."""

import json

import pytest
import torch

from pros_hf import ProSConfig, ProSModel
from pros_hf.finetuning.optim import applies_weight_decay
from pros_hf.training.callbacks import decay_parameter_names
from pros_hf.visualization import cls_attention_maps

IMPORTED = dict(use_pre_layernorm=True, layerscale_value=0.5, num_register_tokens=3, interpolate_antialias=True)
NEW_FIELDS = tuple(IMPORTED)


def imported(**overrides):
    torch.manual_seed(0)
    model = ProSModel(ProSConfig.from_preset("micro", **{**IMPORTED, **overrides}))
    with torch.no_grad():  # layer scales and norms away from their constant initialisation
        for _name, parameter in model.named_parameters():
            if parameter.ndim == 1:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    return model


def test_the_defaults_build_the_plain_vit_and_old_configs_load_unchanged(tmp_path):
    config = ProSConfig()
    assert (
        config.use_pre_layernorm,
        config.layerscale_value,
        config.num_register_tokens,
        config.interpolate_antialias,
    ) == (False, None, 0, False)
    torch.manual_seed(0)
    model = ProSModel(ProSConfig.from_preset("micro")).eval()
    assert model.pre_layernorm is None and model.embeddings.register_tokens is None
    assert not any("layer_scale" in name or "register" in name for name in model.state_dict())
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for name in NEW_FIELDS:  # a config.json written without these fields
        saved.pop(name)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded, info = ProSModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    pixel_values = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(pixel_values).last_hidden_state, model(pixel_values).last_hidden_state)


@pytest.mark.parametrize(
    "field, value",
    [
        ("use_pre_layernorm", "yes"),
        ("layerscale_value", 0.0),
        ("layerscale_value", "1e-5"),
        ("num_register_tokens", -1),
        ("num_register_tokens", 1.5),
        ("interpolate_antialias", 1),
    ],
)
def test_bad_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ProSConfig.from_preset("micro", **{field: value})


def test_registers_are_attended_to_but_not_returned():
    model = imported().eval()
    pixel_values = torch.randn(2, 3, 32, 48)
    output = model(pixel_values, output_hidden_states=True, output_attentions=True)
    assert output.last_hidden_state.shape == (2, 1 + 4 * 6, 64)
    assert all(states.shape == (2, 1 + 4 * 6, 64) for states in output.hidden_states)
    assert output.attentions[0].shape == (2, 4, 1 + 3 + 24, 1 + 3 + 24)
    assert cls_attention_maps(model, pixel_values).shape == (2, 4, 4, 6)
    with torch.no_grad():  # the registers take part: changing them changes every output (a random change: the
        # pre-norm would remove a constant shift)
        model.embeddings.register_tokens.add_(torch.randn_like(model.embeddings.register_tokens))
    assert not torch.allclose(model(pixel_values).pooler_output, output.pooler_output)


def test_antialiased_resampling_differs_only_off_the_native_grid():
    model = imported().eval()
    plain = imported(interpolate_antialias=False).eval()
    assert torch.equal(
        model.embeddings.interpolate_pos_encoding(4, 4, torch.float32),
        plain.embeddings.interpolate_pos_encoding(4, 4, torch.float32),
    )
    resized = model.embeddings.interpolate_pos_encoding(3, 6, torch.float32)
    assert resized.shape == (1, 1 + 18, 64)
    assert not torch.allclose(resized, plain.embeddings.interpolate_pos_encoding(3, 6, torch.float32))


def test_pooled_only_gives_the_same_pooler_output_and_gradients_with_every_field_on():
    model = imported().train()
    pixel_values = torch.randn(3, 3, 40, 32)
    full = model(pixel_values).pooler_output
    full.square().sum().backward()
    full_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    short = model(pixel_values, pooled_only=True).pooler_output
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-4)
    short.square().sum().backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, full_grads[name], atol=1e-4, rtol=1e-3, msg=name)
    assert model.embeddings.register_tokens.grad.abs().sum() > 0 and model.pre_layernorm.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("num_queries", [None, 1])
def test_stochastic_depth_on_the_kept_samples_applies_the_layer_scale(num_queries):
    """The training path that runs each branch on its kept samples scales them as the plain path does: with a
    rate near 0 every sample keeps both branches, and the two paths must agree."""
    from pros_hf.modeling_pros import ProSLayer

    config = ProSConfig.from_preset("micro", layerscale_value=0.5, drop_path_rate=1e-6)
    torch.manual_seed(0)
    layer = ProSLayer(config, layer_index=config.num_hidden_layers - 1).train()
    with torch.no_grad():
        layer.layer_scale1.lambda1.copy_(torch.rand(64))
        layer.layer_scale2.lambda1.copy_(torch.rand(64))
    hidden_states = torch.randn(4, 17, 64)
    kept = layer(hidden_states, num_queries=num_queries)[0]
    layer.drop_path_rate = 0.0  # the plain path, same parameters
    plain = layer(hidden_states, num_queries=num_queries)[0]
    torch.testing.assert_close(kept, plain, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        layer.layer_scale2.lambda1.zero_()
    attention_only = layer(hidden_states, num_queries=num_queries)[0]
    assert not torch.allclose(attention_only, plain)


def test_learning_rate_depth_and_weight_decay_of_the_new_parameters():
    model = imported()
    assert model.get_layer_id("pre_layernorm.weight") == 0
    assert model.get_layer_id("pros.embeddings.register_tokens") == 0
    assert model.get_layer_id("encoder.layer.2.layer_scale1.lambda1") == 3
    decayed = set(decay_parameter_names(model))
    assert "embeddings.register_tokens" not in decayed and "encoder.layer.0.layer_scale1.lambda1" not in decayed
    parameters = dict(model.named_parameters())
    assert not applies_weight_decay("pros.embeddings.register_tokens", parameters["embeddings.register_tokens"])
    assert applies_weight_decay("pros.encoder.layer.0.mlp.fc1.weight", parameters["encoder.layer.0.mlp.fc1.weight"])


def test_the_new_fields_survive_a_save_and_load(tmp_path):
    model = imported().eval()
    model.save_pretrained(tmp_path)
    loaded = ProSModel.from_pretrained(tmp_path).eval()
    for name, value in IMPORTED.items():
        assert getattr(loaded.config, name) == value
    pixel_values = torch.randn(1, 3, 48, 48)
    torch.testing.assert_close(loaded(pixel_values).pooler_output, model(pixel_values).pooler_output)


@pytest.mark.parametrize("patch_loss_weight", [0.0, 1.0])
def test_training_flops_count_the_register_tokens(patch_loss_weight):
    """The analytic count the Trainer logs includes the registers' tokens (and the patch loss reads past them)."""
    from pros_hf.flop_counting import flop_counter
    from pros_hf.modeling_pros_pretraining import ProSForPreTraining

    torch.manual_seed(0)
    config = ProSConfig.from_preset(
        "micro", **IMPORTED, patch_loss_weight=patch_loss_weight, mask_probability=1.0, mask_ratio=[0.25, 0.25]
    )
    model = ProSForPreTraining(config).train()
    with flop_counter() as counter:
        model(global_crops=torch.randn(2, 2, 3, 32, 32), local_crops=torch.randn(2, 2, 3, 16, 16)).loss.backward()
    assert 2 * model.training_flops_per_image(32, 2, 16, 2) == pytest.approx(counter.get_total_flops(), rel=2e-3)
