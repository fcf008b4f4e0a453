"""What transformers' common model tests check of its own vision models (tests/models/vit/test_modeling_vit.py), for
ProSModel, ProSForImageClassification and ProSForLandmarkDetection: attention switched at run time, a mask token on
request, the standard label keywords, exact save/load, gradient checkpointing and batch consistency."""

from collections import Counter

import pytest
import torch
from transformers import PreTrainedModel
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from pros_hf import ProSConfig, ProSForImageClassification, ProSForLandmarkDetection, ProSModel, modeling_pros

MODEL_CLASSES = (ProSModel, ProSForImageClassification, ProSForLandmarkDetection)
DEPTH = 4  # blocks of the micro preset


def micro_config(**overrides) -> ProSConfig:
    return ProSConfig.from_preset("micro", landmark_decoder_hidden_size=16, num_landmarks=5, **overrides)


def build(model_class, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return model_class(micro_config(**overrides)).eval()


def pixels(batch_size: int = 2, height: int = 32, width: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch_size, 3, height, width, generator=torch.Generator().manual_seed(seed))


def main_outputs(model, pixel_values, **kwargs) -> dict[str, torch.Tensor]:
    """The tensors each model exists to produce."""
    output = model(pixel_values, **kwargs)
    if isinstance(model, ProSForLandmarkDetection):
        return {"landmarks": output.landmarks, "heatmaps": output.heatmaps}
    if isinstance(model, ProSForImageClassification):
        return {"logits": output.logits}
    return {"last_hidden_state": output.last_hidden_state, "pooler_output": output.pooler_output}


def training_loss(model, pixel_values) -> torch.Tensor:
    if isinstance(model, ProSForLandmarkDetection):
        targets = torch.rand(pixel_values.shape[0], 5, 2, generator=torch.Generator().manual_seed(2))
        return model(pixel_values, landmarks=targets).loss
    if isinstance(model, ProSForImageClassification):
        return model(pixel_values, labels=torch.arange(pixel_values.shape[0]) % 2).loss
    return model(pixel_values).pooler_output.square().mean()


def assert_outputs_close(actual: dict, expected: dict, atol: float) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_attention_implementation_switches_at_run_time(model_class, monkeypatch):
    """`set_attn_implementation` changes the kernel a built model calls (transformers allows the switch because
    attention is looked up through `ALL_ATTENTION_FUNCTIONS.get_interface`); eager and SDPA agree, and eager returns
    the attention probabilities."""
    calls = Counter()
    eager, sdpa = modeling_pros.eager_attention_forward, ALL_ATTENTION_FUNCTIONS["sdpa"]

    def counting_eager(*args, **kwargs):
        calls["eager"] += 1
        return eager(*args, **kwargs)

    def counting_sdpa(*args, **kwargs):
        calls["sdpa"] += 1
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(modeling_pros, "eager_attention_forward", counting_eager)
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._local_mapping, "sdpa", counting_sdpa)
    model = build(model_class)
    assert model._can_set_attn_implementation()
    pixel_values = pixels()
    with torch.no_grad():
        assert model.config._attn_implementation == "sdpa"
        reference = main_outputs(model, pixel_values)
        assert calls == {"sdpa": DEPTH}

        model.set_attn_implementation("eager")
        assert all(
            module.config._attn_implementation == "eager"
            for module in model.modules()
            if isinstance(module, PreTrainedModel)
        )
        calls.clear()
        assert_outputs_close(main_outputs(model, pixel_values), reference, atol=1e-5)
        assert calls == {"eager": DEPTH}

        attentions = model(pixel_values, output_attentions=True).attentions
        assert len(attentions) == DEPTH
        for probabilities in attentions:
            assert probabilities.shape == (2, 4, 17, 17)  # (batch, heads, tokens, tokens): CLS + 4 x 4 patches
            torch.testing.assert_close(probabilities.sum(dim=-1), torch.ones(2, 4, 17))

        model.set_attn_implementation("sdpa")
        calls.clear()
        main_outputs(model, pixel_values)
        assert calls == {"sdpa": DEPTH}


def test_a_mask_token_on_request_and_bool_masked_pos_changes_the_output(tmp_path):
    pixel_values = pixels()
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, :6] = masks[1, 10:] = True
    plain = build(ProSModel)
    assert plain.embeddings.mask_token is None
    with pytest.raises(ValueError, match=r"needs a mask token: build the model with `use_mask_token=True`"):
        plain(pixel_values, bool_masked_pos=masks)
    plain.save_pretrained(tmp_path / "plain")

    torch.manual_seed(0)
    by_argument = ProSModel(micro_config(), use_mask_token=True).eval()
    for model in (
        by_argument,
        build(ProSModel, use_mask_token=True),
        ProSModel.from_pretrained(tmp_path / "plain", use_mask_token=True),
    ):
        assert model.embeddings.mask_token.shape == (1, 1, 64) and model.config.use_mask_token is True
        with torch.no_grad():
            unmasked = model(pixel_values).last_hidden_state
            masked = model(pixel_values, bool_masked_pos=masks).last_hidden_state
            none_masked = model(pixel_values, bool_masked_pos=torch.zeros_like(masks)).last_hidden_state
        assert not torch.allclose(masked, unmasked, atol=1e-3)
        torch.testing.assert_close(none_masked, unmasked, rtol=0, atol=0)

    # the argument is recorded in the config, so the saved model loads back with its mask token
    with torch.no_grad():
        by_argument.embeddings.mask_token.normal_()
    by_argument.save_pretrained(tmp_path / "masked")
    reloaded = ProSModel.from_pretrained(tmp_path / "masked")
    assert torch.equal(reloaded.embeddings.mask_token, by_argument.embeddings.mask_token)
    for head_class in (ProSForImageClassification, ProSForLandmarkDetection):
        assert build(head_class, use_mask_token=True).pros.embeddings.mask_token is not None


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_the_standard_label_keywords_load(model_class, tmp_path):
    """transformers' common configuration test gives string ids; ViTConfig accepts them, and so does ProSConfig."""
    labels = dict(label2id={"label": "0"}, id2label={0: "label"})
    config = ProSConfig(**labels)
    assert config.label2id == {"label": 0} and config.id2label == {0: "label"} and config.num_labels == 1
    model = build(model_class, **labels)
    model.save_pretrained(tmp_path)
    loaded = model_class.from_pretrained(tmp_path)
    assert loaded.config.label2id == {"label": 0} and loaded.config.id2label == {0: "label"}
    assert ProSConfig.from_pretrained(tmp_path, **labels).label2id == {"label": 0}


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_save_and_load_reproduce_every_tensor(model_class, tmp_path):
    model = build(model_class)
    model.save_pretrained(tmp_path)
    loaded = model_class.from_pretrained(tmp_path)
    assert type(loaded) is model_class and not loaded.training
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    for name, tensor in original.items():
        assert torch.equal(tensor, reloaded[name]), name
    pixel_values = pixels(height=40, width=24)
    with torch.no_grad():
        assert_outputs_close(main_outputs(loaded, pixel_values), main_outputs(model, pixel_values), atol=0)


def enable_checkpointing(model) -> None:
    """transformers 5.x renames `gradient_checkpointing_enable` to `activation_checkpointing_enable`."""
    enable = getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)
    enable()


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_gradient_checkpointing_trains(model_class):
    """With checkpointing the blocks run again in the backward pass, and the gradients are those without it."""
    pixel_values = pixels()
    gradients = []
    for checkpointing in (False, True):
        model = build(model_class).train()
        if checkpointing:
            enable_checkpointing(model)
        runs = Counter()
        for module in model.modules():
            if isinstance(module, modeling_pros.ProSAttention):
                module.register_forward_hook(lambda *_: runs.update(["attention"]))
        training_loss(model, pixel_values).backward()
        assert runs["attention"] == DEPTH * (2 if checkpointing else 1)  # recomputed in the backward pass
        gradients.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    plain, checkpointed = gradients
    assert plain.keys() == checkpointed.keys() and len(plain) > 0
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)

    model = build(model_class).train()
    enable_checkpointing(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = training_loss(model, pixel_values)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_a_batch_of_two_equals_two_batches_of_one(model_class):
    model = build(model_class)
    pixel_values = pixels(height=32, width=48)
    with torch.no_grad():
        together = main_outputs(model, pixel_values)
        apart = [main_outputs(model, pixel_values[i : i + 1]) for i in range(2)]
    for name, tensor in together.items():
        torch.testing.assert_close(tensor, torch.cat([one[name] for one in apart]), rtol=0, atol=1e-5, msg=name)
