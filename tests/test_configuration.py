"""ProSConfig: presets, validation that names the field, and a lossless save/load."""

import pytest

from pros_hf import PRESETS, ProSConfig


def test_defaults_are_vit_b16_with_dino_recipe():
    config = ProSConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert (config.image_size, config.patch_size, config.grid_size) == (224, 16, (14, 14))
    # Sinkhorn targets: the loss ablation's best (examples/ablate_targets.py); the others stay a flag away
    assert config.target_mode == "sinkhorn" and config.share_prototypes is True
    assert config.me_max_weight == 0.0  # only "sharpen" turns me-max on by default


@pytest.mark.parametrize(
    "name, width, depth, heads",
    [("micro", 64, 4, 4), ("vit-s16", 384, 12, 6), ("vit-b16", 768, 12, 12), ("vit-l16", 1024, 24, 16)],
)
def test_presets(name, width, depth, heads):
    config = ProSConfig.from_preset(name)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (width, depth, heads)
    assert set(PRESETS) >= {"micro", "vit-s16", "vit-b16", "vit-l16"}


def test_preset_overrides_and_unknown_preset():
    assert ProSConfig.from_preset("micro", image_size=64).grid_size == (8, 8)
    with pytest.raises(ValueError, match="vit-b16"):
        ProSConfig.from_preset("vit-huge")


def test_sharpen_turns_me_max_on_unless_set():
    assert ProSConfig(target_mode="sharpen").me_max_weight == 1.0
    assert ProSConfig(target_mode="sharpen", me_max_weight=0.5).me_max_weight == 0.5


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(hidden_size=100, num_attention_heads=12), "num_attention_heads"),
        (dict(image_size=230, patch_size=16), "patch_size"),
        (dict(student_temperature=0.0), "student_temperature"),
        (dict(teacher_temperature=-0.1), "teacher_temperature"),
        (dict(num_prototypes=0), "num_prototypes"),
        (dict(target_mode="kmeans"), "target_mode"),
        (dict(drop_path_rate=1.5), "drop_path_rate"),
        (dict(center_momentum=1.0), "center_momentum"),
        (dict(warmup_teacher_temperature=0.2), "warmup_teacher_temperature"),
        (dict(koleo_weight=-1.0), "koleo_weight"),
        (dict(num_hidden_layers=2.5), "num_hidden_layers"),
    ],
)
def test_invalid_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        ProSConfig(**overrides)


def test_save_load_round_trip(tmp_path):
    config = ProSConfig.from_preset("micro", target_mode="sinkhorn", koleo_weight=0.1, share_prototypes=False)
    config.save_pretrained(tmp_path)
    loaded = ProSConfig.from_pretrained(tmp_path)
    for key, value in config.to_dict().items():
        if key not in ("transformers_version", "_name_or_path"):
            assert loaded.to_dict()[key] == value, key
    assert loaded.model_type == "pros"


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(hidden_dropout_prob="0.1"), "hidden_dropout_prob"),
        (dict(teacher_temperature=None), "teacher_temperature"),
        (dict(hidden_act="gelux"), "hidden_act"),
        (dict(qkv_bias="false"), "qkv_bias"),
        (dict(num_labels=-1), "num_labels"),
        (dict(label2id={"smile": 0, "frown": 5}), "label ids must be 0 .. 1"),
        (dict(hidden_sise=32), "did you mean 'hidden_size'"),
    ],
)
def test_wrong_types_labels_and_misspelt_fields_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        ProSConfig.from_preset("micro", **overrides)


def test_from_pretrained_overrides_are_validated(tmp_path):
    """transformers sets from_pretrained's keyword fields after construction: they are checked all the same."""
    ProSConfig.from_preset("micro").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_attention_heads"):
        ProSConfig.from_pretrained(tmp_path, num_attention_heads=5)
    with pytest.raises(ValueError, match="drop_path_rate"):
        ProSConfig.from_pretrained(tmp_path, drop_path_rate=2.0)
    assert ProSConfig.from_pretrained(tmp_path, drop_path_rate=0.2).drop_path_rate == 0.2


def test_from_pretrained_label_arguments_replace_the_saved_labels(tmp_path):
    """As for transformers' own classifiers: a new count gives fresh labels, new names replace the saved ones, and
    the saved count keeps the saved names."""
    ProSConfig.from_preset("micro", id2label={0: "angry", 1: "happy", 2: "sad"}).save_pretrained(tmp_path)
    assert ProSConfig.from_pretrained(tmp_path).id2label == {0: "angry", 1: "happy", 2: "sad"}
    assert ProSConfig.from_pretrained(tmp_path, num_labels=3).id2label == {0: "angry", 1: "happy", 2: "sad"}
    five = ProSConfig.from_pretrained(tmp_path, num_labels=5)
    assert five.num_labels == 5 and five.label2id == {f"LABEL_{i}": i for i in range(5)}
    renamed = ProSConfig.from_pretrained(tmp_path, id2label={0: "a", 1: "b"})
    assert renamed.label2id == {"a": 0, "b": 1}


def test_fields_assigned_after_construction_are_checked_when_a_model_is_built():
    from pros_hf import ProSModel

    config = ProSConfig.from_preset("micro")
    config.num_attention_heads = 5
    with pytest.raises(ValueError, match="num_attention_heads"):
        ProSModel(config)


def test_zero_labels_give_a_classifier_without_a_classification_layer():
    """transformers' way to a feature extractor with a head class: the pooled features come back as logits."""
    import torch

    from pros_hf import ProSForImageClassification

    model = ProSForImageClassification(ProSConfig.from_preset("micro", num_labels=0)).eval()
    assert model(torch.randn(2, 3, 32, 32)).logits.shape == (2, 64)
