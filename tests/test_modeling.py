"""ProSModel: a real ViT (equal to transformers' ViTModel given the same weights), any input size, clear errors."""

import pytest
import torch
from transformers import ViTConfig, ViTModel

from pros_hf import ProSConfig, ProSModel


def micro(**overrides):
    return ProSModel(ProSConfig.from_preset("micro", **overrides)).eval()


def vit_with_same_weights(model: ProSModel) -> ViTModel:
    """transformers' ViTModel carrying the ProSModel's weights (q/k/v split out of the fused projection)."""
    config = model.config
    vit = ViTModel(
        ViTConfig(
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            image_size=config.image_size,
            patch_size=config.patch_size,
            layer_norm_eps=config.layer_norm_eps,
            qkv_bias=config.qkv_bias,
            hidden_act=config.hidden_act,
        ),
        add_pooling_layer=False,
    ).eval()
    source = model.state_dict()
    target = {}
    for name in (
        "cls_token",
        "position_embeddings",
        "patch_embeddings.projection.weight",
        "patch_embeddings.projection.bias",
    ):
        target[f"embeddings.{name}"] = source[f"embeddings.{name}"]
    for index in range(config.num_hidden_layers):
        ours, theirs = f"encoder.layer.{index}.", f"layers.{index}."
        for kind in ("weight", "bias"):
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), source[f"{ours}attention.qkv.{kind}"].chunk(3)):
                target[f"{theirs}attention.{part}.{kind}"] = chunk
            target[f"{theirs}attention.o_proj.{kind}"] = source[f"{ours}attention.o_proj.{kind}"]
            target[f"{theirs}layernorm_before.{kind}"] = source[f"{ours}norm1.{kind}"]
            target[f"{theirs}layernorm_after.{kind}"] = source[f"{ours}norm2.{kind}"]
            target[f"{theirs}mlp.fc1.{kind}"] = source[f"{ours}mlp.fc1.{kind}"]
            target[f"{theirs}mlp.fc2.{kind}"] = source[f"{ours}mlp.fc2.{kind}"]
        target.update({f"layernorm.{kind}": source[f"layernorm.{kind}"] for kind in ("weight", "bias")})
    vit.load_state_dict(target, strict=True)
    return vit


def test_output_structure():
    model = micro()
    pixel_values = torch.randn(2, 3, 32, 32)
    outputs = model(pixel_values, output_hidden_states=True, output_attentions=True)
    assert outputs.last_hidden_state.shape == (2, 1 + 16, 64)
    assert torch.equal(outputs.pooler_output, outputs.last_hidden_state[:, 0])
    assert len(outputs.hidden_states) == 4 + 1 and len(outputs.attentions) == 4
    assert outputs.attentions[0].shape == (2, 4, 17, 17)
    torch.testing.assert_close(outputs.attentions[0].sum(-1), torch.ones(2, 4, 17))
    # the final norm is applied to the last hidden state, not to hidden_states[-1]
    torch.testing.assert_close(model.layernorm(outputs.hidden_states[-1]), outputs.last_hidden_state)
    as_tuple = model(pixel_values, return_dict=False)
    torch.testing.assert_close(as_tuple[1], outputs.pooler_output)


@pytest.mark.parametrize("size", [(32, 32), (96, 96), (224, 224), (48, 24)])
def test_equals_transformers_vit_at_any_size(size):
    """Same weights, same numbers as transformers' ViTModel, including interpolated position embeddings."""
    model = micro()
    vit = vit_with_same_weights(model)
    pixel_values = torch.randn(2, 3, *size)
    ours = model(pixel_values).last_hidden_state
    theirs = vit(pixel_values, interpolate_pos_encoding=size != (32, 32)).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    assert ours.shape[1] == 1 + (size[0] // 8) * (size[1] // 8)


def test_eager_and_sdpa_agree():
    config = ProSConfig.from_preset("micro")
    sdpa = ProSModel(config).eval()
    eager = ProSModel(ProSConfig.from_preset("micro")).eval()
    eager.load_state_dict(sdpa.state_dict())
    eager.config._attn_implementation = "eager"
    assert sdpa.config._attn_implementation == "sdpa"
    pixel_values = torch.randn(3, 3, 40, 32)
    torch.testing.assert_close(
        sdpa(pixel_values).last_hidden_state, eager(pixel_values).last_hidden_state, atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_pooled_only_gives_the_same_pooler_output_and_gradients(implementation):
    """Pre-training's shortcut (the last block on the CLS token alone) changes no number the loss sees."""
    torch.manual_seed(0)
    model = micro().train()
    model.config._attn_implementation = implementation
    pixel_values = torch.randn(3, 3, 40, 32)
    full = model(pixel_values).pooler_output
    full.square().sum().backward()
    full_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    short = model(pixel_values, pooled_only=True)
    assert short.last_hidden_state.shape == (3, 1, 64)
    torch.testing.assert_close(short.pooler_output, full, atol=1e-5, rtol=1e-4)
    short.pooler_output.square().sum().backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, full_grads[name], atol=1e-4, rtol=1e-3, msg=name)
    with pytest.raises(ValueError, match="pooled_only"):
        model(pixel_values, pooled_only=True, output_hidden_states=True)


def test_position_embeddings_interpolate_in_fp32_to_the_exact_grid():
    model = micro()
    embeddings = model.embeddings
    same = embeddings.interpolate_pos_encoding(4, 4, torch.float32)
    assert same is embeddings.position_embeddings or torch.equal(same, embeddings.position_embeddings)
    resized = embeddings.interpolate_pos_encoding(12, 3, torch.bfloat16)
    assert resized.shape == (1, 1 + 36, 64) and resized.dtype == torch.bfloat16
    reference = (
        torch.nn.functional.interpolate(
            embeddings.position_embeddings[:, 1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2).float(),
            size=(12, 3),
            mode="bicubic",
            align_corners=False,
        )
        .permute(0, 2, 3, 1)
        .reshape(1, 36, 64)
    )
    torch.testing.assert_close(resized[:, 1:].float(), reference.bfloat16().float())


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = ProSModel(ProSConfig.from_preset("micro")).train()
    checkpointed = ProSModel(ProSConfig.from_preset("micro")).train()
    checkpointed.load_state_dict(plain.state_dict())
    if hasattr(checkpointed, "activation_checkpointing_enable"):  # the name since transformers 5.2x
        checkpointed.activation_checkpointing_enable({"use_reentrant": False})
    else:
        checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert checkpointed.encoder.layer[0].gradient_checkpointing
    pixel_values = torch.randn(2, 3, 32, 32)
    for model in (plain, checkpointed):
        model(pixel_values).pooler_output.square().sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def _masked_block(layer, hidden_states, num_queries):
    """DINO's stochastic depth written out: every sample runs both branches, times a 0/1 mask drawn as
    `kept_samples` draws it (on the CPU, attention branch first)."""
    keep = 1.0 - layer.drop_path_rate
    mask = (torch.rand(hidden_states.shape[0]) >= layer.drop_path_rate).float().view(-1, 1, 1) / keep
    attention = layer.attention(layer.norm1(hidden_states), num_queries=num_queries)[0]
    residual = hidden_states if num_queries is None else hidden_states[:, :num_queries]
    hidden_states = residual + attention * mask
    mask = (torch.rand(hidden_states.shape[0]) >= layer.drop_path_rate).float().view(-1, 1, 1) / keep
    return hidden_states + layer.mlp(layer.norm2(hidden_states)) * mask


@pytest.mark.parametrize("num_queries", [None, 1])
@pytest.mark.parametrize("drop_path_rate, seed", [(0.5, 0), (0.999, 0), (0.001, 0)])
def test_stochastic_depth_skips_the_dropped_samples_with_the_masks_results(drop_path_rate, seed, num_queries):
    """Each branch runs on the samples that keep it only; outputs and gradients equal the 0/1-mask computation's
    (rates near 1 and 0 give the none-kept and all-kept cases)."""
    from pros_hf.modeling_pros import ProSLayer

    config = ProSConfig.from_preset("micro", drop_path_rate=drop_path_rate)
    torch.manual_seed(0)
    layer = ProSLayer(config, layer_index=config.num_hidden_layers - 1).train()  # the last block: the full rate
    hidden_states = torch.randn(6, 17, config.hidden_size, requires_grad=True)
    results = []
    for compute in (lambda x: layer(x, num_queries=num_queries)[0], lambda x: _masked_block(layer, x, num_queries)):
        torch.manual_seed(seed)
        output = compute(hidden_states)
        gradients = torch.autograd.grad(output.square().sum(), [hidden_states, *layer.parameters()])
        results.append((output, gradients))
    (output, gradients), (expected, expected_gradients) = results
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        torch.testing.assert_close(gradient, expected_gradient, atol=1e-5, rtol=1e-5)


def test_stochastic_depth_only_in_training():
    model = ProSModel(ProSConfig.from_preset("micro", drop_path_rate=0.5))
    rates = [layer.drop_path_rate for layer in model.encoder.layer]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5) and rates == sorted(rates)
    pixel_values = torch.randn(8, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(pixel_values).pooler_output, model(pixel_values).pooler_output)
    model.train()
    torch.manual_seed(1)
    first = model(pixel_values).pooler_output
    torch.manual_seed(2)
    second = model(pixel_values).pooler_output
    assert not torch.allclose(first, second)


def test_bf16_autocast_runs_and_stays_close():
    model = micro()
    pixel_values = torch.randn(2, 3, 32, 32)
    reference = model(pixel_values).pooler_output
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(pixel_values).pooler_output
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), reference, atol=0.1, rtol=0.1)


@pytest.mark.parametrize(
    "pixel_values, error, message",
    [
        (torch.randn(2, 1, 32, 32), ValueError, "3 channels"),
        (torch.randn(2, 3, 30, 32), ValueError, "multiples of the patch size"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), TypeError, "uint8"),
        (torch.randn(3, 32, 32), ValueError, "batch, channels, height, width"),
        (None, ValueError, "pixel_values"),
        (torch.randn(0, 3, 32, 32), ValueError, "empty batch"),
    ],
)
def test_bad_inputs_give_clear_errors(pixel_values, error, message):
    with pytest.raises(error, match=message):
        micro()(pixel_values)


def test_init_is_truncated_normal_and_deterministic_per_seed():
    torch.manual_seed(0)
    first = ProSModel(ProSConfig.from_preset("micro"))
    torch.manual_seed(0)
    second = ProSModel(ProSConfig.from_preset("micro"))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    weight = first.encoder.layer[0].attention.qkv.weight
    assert 0.018 < weight.std() < 0.022 and abs(weight.mean()) < 0.002  # trunc_normal(std=0.02), DINO's init
    assert torch.all(first.encoder.layer[0].attention.qkv.bias == 0)
    assert first.embeddings.cls_token.abs().sum() > 0 and first.embeddings.position_embeddings.std() > 0.01


def test_a_branch_no_sample_keeps_adds_exact_zeros_in_half_precision():
    """The none-kept branch still runs on one sample (times 0) for its gradients; summed in fp16 first, a large
    branch overflowed to inf and inf * 0 made the whole batch NaN."""
    from pros_hf.modeling_pros import add_kept_branch

    residual = torch.zeros(4, 197, 384, dtype=torch.float16)
    out = add_kept_branch(residual, lambda x: x + 1.0, residual, torch.empty(0, dtype=torch.long), 2.0)
    assert out.dtype == torch.float16 and torch.equal(out, residual)
