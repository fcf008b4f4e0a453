"""ProSConfig's sections: a model saves only the fields it reads, every field still reads and writes flat, and
models saved with flat config.json files (every field at the top level, tests/fixtures/flat_configs) load with their
weights and compute what they computed."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForPoseEstimation

from pros_hf import (
    ProSConfig,
    ProSForImageClassification,
    ProSForLandmarkDetection,
    ProSForPreTraining,
    ProSLandmarkConfig,
    ProSModel,
    ProSPreTrainingConfig,
    load_backbone,
)

FLAT = Path(__file__).parent / "fixtures" / "flat_configs"
PRETRAINING_FIELDS = {"num_prototypes", "head_hidden_size", "target_mode", "patch_loss_weight", "teacher_temperature"}
LANDMARK_FIELDS = {"num_landmarks", "landmark_decoder", "landmark_feature_layers", "landmark_heatmap_sigma"}


def saved_config(folder) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


def every_key(config_dict: dict) -> set[str]:
    keys = set(config_dict)
    for value in config_dict.values():
        if isinstance(value, dict):
            keys |= set(value)
    return keys


def test_flat_keywords_fill_the_sections_and_read_back_flat():
    config = ProSConfig.from_preset("micro", target_mode="sinkhorn", num_landmarks=19)
    assert isinstance(config.pretraining_config, ProSPreTrainingConfig)
    assert (config.pretraining_config.num_prototypes, config.num_prototypes, config.target_mode) == (64, 64, "sinkhorn")
    assert isinstance(config.landmark_config, ProSLandmarkConfig) and config.num_landmarks == 19
    backbone_only = ProSConfig.from_preset("vit-s16")
    assert backbone_only.pretraining_config is None and backbone_only.landmark_config is None
    assert backbone_only.num_prototypes == 65536 and backbone_only.num_landmarks == 68  # absent: the defaults
    backbone_only.num_prototypes = 128  # writing a field creates its section
    assert backbone_only.pretraining_config.num_prototypes == 128 and backbone_only.landmark_config is None
    nested = ProSConfig(pretraining_config={"num_prototypes": 32, "target_mode": "sharpen"}, num_prototypes=16)
    assert nested.num_prototypes == 16 and nested.me_max_weight == 1.0  # flat wins; sharpen turns me-max on
    with pytest.raises(ValueError, match="ProSPreTrainingConfig has no field 'num_prototype'"):
        ProSConfig(pretraining_config={"num_prototype": 32})


def test_each_model_saves_the_sections_it_reads(tmp_path):
    torch.manual_seed(0)
    pretraining = ProSForPreTraining(ProSConfig.from_preset("micro", patch_loss_weight=0.5))
    pretraining.save_pretrained(tmp_path / "checkpoint")
    checkpoint = saved_config(tmp_path / "checkpoint")
    assert set(checkpoint["pretraining_config"]) == set(ProSPreTrainingConfig.__dataclass_fields__)
    assert "landmark_config" not in checkpoint and not PRETRAINING_FIELDS & set(checkpoint)

    pretraining.export_teacher().save_pretrained(tmp_path / "backbone")
    backbone = saved_config(tmp_path / "backbone")
    assert not (PRETRAINING_FIELDS | LANDMARK_FIELDS | {"pretraining_config", "landmark_config"}) & set(backbone)
    assert backbone["use_mask_token"] is True  # the teacher of a patch-loss run keeps its mask token

    for source in (tmp_path / "checkpoint", tmp_path / "backbone", pretraining):
        classifier = ProSForImageClassification.from_backbone(source, num_labels=3)
        classifier.save_pretrained(tmp_path / "classifier")
        assert not (PRETRAINING_FIELDS | LANDMARK_FIELDS) & every_key(saved_config(tmp_path / "classifier"))
        landmarks = ProSForLandmarkDetection.from_backbone(source, num_landmarks=5)
        landmarks.save_pretrained(tmp_path / "landmarks")
        saved = saved_config(tmp_path / "landmarks")
        assert not PRETRAINING_FIELDS & every_key(saved) and saved["landmark_config"]["num_landmarks"] == 5
        assert set(saved["landmark_config"]) == set(ProSLandmarkConfig.__dataclass_fields__)
        torch.testing.assert_close(landmarks.pros.embeddings.mask_token, pretraining.teacher.embeddings.mask_token)


def test_from_pretrained_keyword_overrides_reach_the_sections(tmp_path):
    ProSConfig.from_preset("micro").save_pretrained(tmp_path)
    assert ProSConfig.from_pretrained(tmp_path, num_prototypes=32).num_prototypes == 32
    assert ProSConfig.from_pretrained(tmp_path, num_landmarks=19).landmark_config.num_landmarks == 19
    with pytest.raises(ValueError, match="teacher_temperature"):
        ProSConfig.from_pretrained(tmp_path, teacher_temperature=-1.0)
    with pytest.raises(ValueError, match="landmark_heatmap_sigma"):
        ProSConfig.from_pretrained(tmp_path, landmark_heatmap_sigma=0.0)
    nested = ProSConfig.from_pretrained(tmp_path, pretraining_config={"num_prototypes": 16})
    assert (nested.num_prototypes, nested.head_hidden_size) == (16, 128)  # the other saved fields stay
    for folder in (tmp_path, FLAT / "pretraining_checkpoint"):  # with sections, and flat
        assert ProSConfig.from_pretrained(folder, pretraining_config={"num_prototypes": 16}).num_prototypes == 16
    with pytest.raises(ValueError, match="ProSPreTrainingConfig has no field 'num_prototype'"):
        ProSConfig.from_pretrained(tmp_path, pretraining_config={"num_prototype": 16})
    config = ProSConfig.from_preset("vit-s16")
    config.landmark_config = {"num_landmarks": 19}  # assigning a dict builds the section
    assert isinstance(config.landmark_config, ProSLandmarkConfig) and config.num_landmarks == 19


@pytest.mark.parametrize(
    "folder", ["backbone", "backbone_patch_loss", "pretraining_checkpoint", "classification_head", "landmark_head"]
)
def test_flat_configs_saved_before_the_sections_load(folder):
    flat = saved_config(FLAT / folder)
    assert "num_prototypes" in flat and "pretraining_config" not in flat  # written with every field at the top
    config = AutoConfig.from_pretrained(FLAT / folder)
    assert isinstance(config, ProSConfig)
    # every field was saved, so both sections hold what the file said
    assert config.pretraining_config is not None and config.landmark_config is not None
    for name, value in flat.items():
        if name in PRETRAINING_FIELDS | LANDMARK_FIELDS | {"hidden_size", "image_size", "classifier_pooling"}:
            assert getattr(config, name) == value, name


def test_models_saved_with_flat_configs_load_and_compute_what_they_computed():
    expected = load_file(FLAT / "expected_outputs.safetensors")
    pixel_values, masks = expected["pixel_values"], expected["bool_masked_pos"]
    with torch.no_grad():
        backbone = AutoModel.from_pretrained(FLAT / "backbone")
        torch.testing.assert_close(backbone(pixel_values).pooler_output, expected["backbone"], rtol=1e-5, atol=1e-6)
        # a backbone exported from a patch-loss run: its config says patch_loss_weight > 0, its weights a mask token
        patch_loss = AutoModel.from_pretrained(FLAT / "backbone_patch_loss")
        assert patch_loss.embeddings.mask_token is not None
        torch.testing.assert_close(
            patch_loss(pixel_values, bool_masked_pos=masks).pooler_output,
            expected["backbone_patch_loss"],
            rtol=1e-5,
            atol=1e-6,
        )
        teacher = load_backbone(str(FLAT / "pretraining_checkpoint"))
        torch.testing.assert_close(
            teacher(pixel_values).pooler_output, expected["pretraining_teacher"], rtol=1e-5, atol=1e-6
        )
        classifier = AutoModelForImageClassification.from_pretrained(FLAT / "classification_head")
        assert classifier.config.id2label == {0: "neutral", 1: "happy", 2: "sad"}
        assert classifier.config.classifier_pooling == "cls_mean"
        torch.testing.assert_close(
            classifier(pixel_values).logits, expected["classification_head"], rtol=1e-5, atol=1e-6
        )
        landmarks = AutoModelForPoseEstimation.from_pretrained(FLAT / "landmark_head")
        assert landmarks.config.landmark_feature_layers == [0.5, 1.0] and landmarks.config.num_landmarks == 5
        torch.testing.assert_close(landmarks(pixel_values).landmarks, expected["landmark_head"], rtol=1e-5, atol=1e-6)


def test_a_head_built_on_a_flat_export_drops_its_pretraining_fields(tmp_path):
    head = ProSForImageClassification.from_backbone(str(FLAT / "backbone_patch_loss"), num_labels=2)
    assert head.config.pretraining_config is None and head.config.use_mask_token is True
    head.save_pretrained(tmp_path)
    assert not PRETRAINING_FIELDS & every_key(saved_config(tmp_path))
    reloaded = ProSForImageClassification.from_pretrained(tmp_path)
    for name, tensor in head.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name


def test_a_flat_pretraining_checkpoint_resumes_with_its_fields():
    model = ProSForPreTraining.from_pretrained(FLAT / "pretraining_checkpoint")
    config = model.config
    assert (config.target_mode, config.koleo_weight, config.patch_loss_weight, config.mask_ratio) == (
        "sinkhorn",
        0.1,
        0.5,
        [0.2, 0.4],
    )
    assert model.student.embeddings.mask_token is not None and hasattr(model, "patch_center")
    assert isinstance(ProSModel.from_pretrained(FLAT / "backbone").config, ProSConfig)
