"""Task heads: classification (single-label, multi-label, regression) and landmarks (heatmap, regression); losses
against torch's references, soft-argmax, an overfit check, backbone loading, save/load and trust_remote_code."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import install_in_hub_cache, run_without_pros_hf
from torch.nn import functional as F
from transformers import AutoModelForImageClassification, AutoModelForPoseEstimation

from pros_hf import (
    ProSConfig,
    ProSForImageClassification,
    ProSForLandmarkDetection,
    ProSForPreTraining,
    ProSModel,
    denormalize_landmarks,
    normalize_landmarks,
    soft_argmax,
)
from pros_hf.modeling_pros_landmarks import gaussian_log_heatmaps


def config(**overrides) -> ProSConfig:
    return ProSConfig.from_preset("micro", landmark_decoder_hidden_size=32, **overrides)


def classifier(**overrides) -> ProSForImageClassification:
    torch.manual_seed(0)
    return ProSForImageClassification(config(**overrides)).eval()


def landmark_head(**overrides) -> ProSForLandmarkDetection:
    torch.manual_seed(0)
    return ProSForLandmarkDetection(config(**overrides)).eval()


def assert_same_weights(module, reference_state):
    state = module.state_dict()
    assert set(state) == set(reference_state)
    for name, tensor in reference_state.items():
        assert torch.equal(state[name], tensor), name


# ---------------------------------------------------------------------------------------------------------------- #
# configuration
# ---------------------------------------------------------------------------------------------------------------- #
def test_new_config_fields_default_and_round_trip(tmp_path):
    default = ProSConfig()
    assert default.classifier_pooling == "cls" and default.num_landmarks == 68
    assert default.landmark_decoder == "heatmap" and default.landmark_heatmap_scale_factor == 4
    assert default.landmark_hidden_state_indices() == [4, 6, 8, 12]  # FaRL's blocks 3/5/7/11 of a ViT-B
    assert config().landmark_hidden_state_indices() == [1, 2, 3, 4]
    assert config(landmark_feature_layers=[-1, 2]).landmark_hidden_state_indices() == [2, 4]
    saved = config(
        classifier_pooling="cls_mean",
        landmark_decoder="regression",
        num_landmarks=19,
        id2label={0: "a", 1: "b", 2: "c"},
        problem_type="single_label_classification",
    )
    saved.save_pretrained(tmp_path)
    loaded = ProSConfig.from_pretrained(tmp_path)
    for key, value in saved.to_dict().items():
        if key not in ("transformers_version", "_name_or_path"):
            assert loaded.to_dict()[key] == value, key


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(classifier_pooling="mean"), "classifier_pooling"),
        (dict(landmark_decoder="fpn"), "landmark_decoder"),
        (dict(landmark_feature_layers=[]), "landmark_feature_layers"),
        (dict(landmark_feature_layers=[1.5]), "landmark_feature_layers"),
        (dict(num_landmarks=0), "num_landmarks"),
        (dict(landmark_heatmap_sigma=0.0), "landmark_heatmap_sigma"),
        (dict(landmark_heatmap_loss_weight=-1.0), "landmark_heatmap_loss_weight"),
        (dict(problem_type="ordinal"), "problem_type"),
        (dict(num_labels=3, id2label={0: "a", 1: "b"}), "num_labels"),
        (dict(id2label={0: "a", 1: "a"}), "id2label"),
    ],
)
def test_invalid_head_fields_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        ProSConfig.from_preset("micro", **overrides)


def test_landmark_layers_are_checked_against_the_depth_when_the_model_is_built():
    with pytest.raises(ValueError, match=r"landmark_feature_layers has index 11, but a 4-block model"):
        ProSForLandmarkDetection(config(landmark_feature_layers=[3, 11]))


@pytest.mark.parametrize(
    "labels, expected",
    [
        (dict(num_labels=3), {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}),
        (dict(id2label={0: "neutral", 1: "happy"}), {"neutral": 0, "happy": 1}),
        (dict(label2id={"neutral": 0, "happy": 1}), {"neutral": 0, "happy": 1}),
    ],
)
def test_id2label_and_label2id_are_both_set(labels, expected):
    model = ProSForImageClassification(config(**labels))
    assert model.config.label2id == expected
    assert model.config.id2label == {index: name for name, index in expected.items()}
    assert model.classifier.out_features == len(expected)


# ---------------------------------------------------------------------------------------------------------------- #
# classification
# ---------------------------------------------------------------------------------------------------------------- #
def test_single_label_loss_is_cross_entropy_and_problem_type_is_inferred():
    model = classifier(num_labels=7).train()
    pixel_values, labels = torch.randn(3, 3, 32, 40), torch.tensor([0, 6, 3])
    output = model(pixel_values, labels=labels)
    assert output.logits.shape == (3, 7)
    torch.testing.assert_close(output.loss, F.cross_entropy(output.logits, labels))
    assert model.config.problem_type == "single_label_classification"
    output.loss.backward()
    assert model.classifier.weight.grad.abs().sum() > 0 and model.pros.embeddings.cls_token.grad.abs().sum() > 0
    # -100 is ignored, as in torch and transformers
    masked = model(pixel_values, labels=torch.tensor([0, -100, 3])).loss
    torch.testing.assert_close(masked, F.cross_entropy(model(pixel_values).logits[[0, 2]], torch.tensor([0, 3])))


def test_multi_label_loss_is_bce_with_logits():
    model = classifier(num_labels=12, problem_type="multi_label_classification")
    pixel_values = torch.randn(4, 3, 32, 32)
    labels = torch.randint(0, 2, (4, 12))
    output = model(pixel_values, labels=labels)  # integer multi-hot labels are accepted
    torch.testing.assert_close(output.loss, F.binary_cross_entropy_with_logits(output.logits, labels.float()))
    inferred = classifier(num_labels=12)
    loss = inferred(pixel_values, labels=labels.float()).loss  # float labels imply multi-label
    assert inferred.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(inferred(pixel_values).logits, labels.float()))


def test_regression_loss_is_mse():
    model = classifier(num_labels=1)
    pixel_values, labels = torch.randn(3, 3, 32, 32), torch.randn(3)
    output = model(pixel_values, labels=labels)
    assert model.config.problem_type == "regression"
    torch.testing.assert_close(output.loss, F.mse_loss(output.logits.squeeze(-1), labels))


def test_cls_mean_pooling_concatenates_cls_and_mean_patch_token():
    model = classifier(num_labels=5, classifier_pooling="cls_mean")
    assert model.classifier.in_features == 2 * 64
    pixel_values = torch.randn(2, 3, 32, 32)
    output = model(pixel_values, output_hidden_states=True, output_attentions=True)
    tokens = model.pros(pixel_values).last_hidden_state
    expected = model.classifier(torch.cat((tokens[:, 0], tokens[:, 1:].mean(1)), dim=-1))
    torch.testing.assert_close(output.logits, expected)
    assert len(output.hidden_states) == 5 and len(output.attentions) == 4
    logits, hidden_states, attentions = model(
        pixel_values, output_hidden_states=True, output_attentions=True, return_dict=False
    )
    torch.testing.assert_close(logits, output.logits)


@pytest.mark.parametrize(
    "overrides, labels, message",
    [
        (dict(num_labels=7), torch.tensor([0, 7]), r"class indices in \[0, 6\].*\[7\] in batch rows \[1\]"),
        (dict(num_labels=7), torch.tensor([-2, 1]), r"class indices in \[0, 6\]"),
        (
            dict(num_labels=7, problem_type="single_label_classification"),
            torch.tensor([0.0, 1.0]),
            "integer class indices",
        ),
        (dict(num_labels=7), torch.tensor([0, 1, 2]), r"shape \(2,\)"),
        (
            dict(num_labels=12, problem_type="multi_label_classification"),
            torch.ones(2, 11),
            r"\(batch=2, num_labels=12\), got \(2, 11\)",
        ),
        (dict(num_labels=12, problem_type="multi_label_classification"), torch.full((2, 12), 2.0), r"\[0, 1\]"),
        (dict(num_labels=1), torch.tensor([float("nan"), 1.0]), "NaN"),
    ],
)
def test_bad_labels_give_clear_errors(overrides, labels, message):
    with pytest.raises(ValueError, match=message):
        classifier(**overrides)(torch.randn(2, 3, 32, 32), labels=labels)


# ---------------------------------------------------------------------------------------------------------------- #
# landmarks
# ---------------------------------------------------------------------------------------------------------------- #
def test_coordinate_conversions_follow_the_pixel_centre_convention():
    points = torch.tensor([[[0.0, 0.0], [63.0, 31.0], [-0.5, 31.5]]])  # pixel centres at integers
    normalised = normalize_landmarks(points, (32, 64))
    torch.testing.assert_close(normalised, torch.tensor([[[0.5 / 64, 0.5 / 32], [63.5 / 64, 31.5 / 32], [0.0, 1.0]]]))
    torch.testing.assert_close(denormalize_landmarks(normalised, (32, 64)), points)


def test_soft_argmax_returns_the_exact_peak_of_a_sharp_heatmap():
    heatmaps = torch.zeros(2, 3, 12, 20)
    peaks = [(0, 0), (5, 13), (11, 19), (3, 2), (7, 7), (10, 0)]  # (row, column)
    for index, (row, column) in enumerate(peaks):
        heatmaps[index // 3, index % 3, row, column] = 100.0
    expected = torch.tensor([[(column + 0.5) / 20, (row + 0.5) / 12] for row, column in peaks]).view(2, 3, 2)
    torch.testing.assert_close(soft_argmax(heatmaps), expected, rtol=0, atol=1e-6)
    # and the mean of a symmetric blob inside the map is its centre, between cells too
    points = torch.tensor([[[0.31, 0.62], [0.5, 0.5]]])
    torch.testing.assert_close(soft_argmax(gaussian_log_heatmaps(points, 40, 40, sigma=1.5)), points, atol=1e-5, rtol=0)


def test_heatmap_head_shapes_and_loss_for_non_square_inputs_of_any_size():
    model = landmark_head().train()
    pixel_values = torch.randn(2, 3, 48, 32)  # not the config's 32x32, not square
    targets = torch.rand(2, 68, 2)
    output = model(pixel_values, landmarks=targets)
    assert output.landmarks.shape == (2, 68, 2) and output.heatmaps.shape == (2, 68, 24, 16)
    assert output.hidden_states is None and output.attentions is None
    torch.testing.assert_close(output.landmarks, soft_argmax(output.heatmaps))
    l1 = F.l1_loss(output.landmarks, targets)
    kl = (
        F.kl_div(
            output.heatmaps.flatten(2).log_softmax(-1),
            gaussian_log_heatmaps(targets, 24, 16, 2.0).flatten(2),
            log_target=True,
            reduction="none",
        )
        .sum(-1)
        .mean()
    )
    torch.testing.assert_close(output.loss, l1 + 0.1 * kl)
    output.loss.backward()
    assert model.decoder.fuse.weight.grad.abs().sum() > 0 and model.pros.embeddings.cls_token.grad.abs().sum() > 0
    as_tuple = model(pixel_values, output_hidden_states=True, return_dict=False)
    assert len(as_tuple) == 3 and len(as_tuple[2]) == 5  # landmarks, heatmaps, hidden_states


def test_regression_head_shapes_and_loss():
    model = landmark_head(landmark_decoder="regression", num_landmarks=19)
    pixel_values, targets = torch.randn(3, 3, 32, 40), torch.rand(3, 19, 2)
    output = model(pixel_values, labels=targets)  # `labels` is an alias of `landmarks`
    assert output.landmarks.shape == (3, 19, 2) and output.heatmaps is None
    torch.testing.assert_close(output.loss, F.l1_loss(output.landmarks, targets))


@pytest.mark.parametrize("decoder, max_ratio", [("heatmap", 0.3), ("regression", 0.5)])
def test_a_few_dozen_steps_overfit_a_tiny_batch(decoder, max_ratio):
    from pros_hf.data.synthetic import synthetic_faces_arrays

    faces = synthetic_faces_arrays(6, image_size=32, seed=0)
    pixel_values = (torch.from_numpy(faces["images"]).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    targets = normalize_landmarks(torch.from_numpy(faces["landmarks"]), (32, 32))
    model = landmark_head(landmark_decoder=decoder).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with torch.no_grad():
        before = F.l1_loss(model(pixel_values).landmarks, targets)
    for _ in range(40):
        loss = model(pixel_values, landmarks=targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = F.l1_loss(model(pixel_values).landmarks, targets)
    assert after < max_ratio * before, (float(before), float(after))


@pytest.mark.parametrize(
    "landmarks, message",
    [
        (torch.rand(2, 98, 2), r"\(batch=2, num_landmarks=68, 2\), got \(2, 98, 2\)"),
        (torch.rand(2, 68), r"got \(2, 68\)"),
        (torch.rand(3, 68, 2), r"\(batch=2, num_landmarks=68, 2\), got \(3, 68, 2\)"),
        (torch.rand(2, 68, 2).index_put_((torch.tensor([1]),), torch.tensor(float("nan"))), r"NaN.*rows \[1\]"),
        (torch.rand(2, 68, 2) * 32, "normalize_landmarks"),
    ],
)
def test_bad_landmarks_give_clear_errors(landmarks, message):
    with pytest.raises(ValueError, match=message):
        landmark_head()(torch.randn(2, 3, 32, 32), landmarks=landmarks)


def test_landmarks_and_labels_together_are_refused():
    targets = torch.rand(1, 68, 2)
    with pytest.raises(ValueError, match="not both"):
        landmark_head()(torch.randn(1, 3, 32, 32), landmarks=targets, labels=targets)


# ---------------------------------------------------------------------------------------------------------------- #
# layer ids, backbones, save/load
# ---------------------------------------------------------------------------------------------------------------- #
def test_layer_ids_and_backbone_parameter_names():
    model = landmark_head()
    backbone = set(model.backbone_parameter_names())
    assert backbone == {name for name, _ in model.named_parameters() if name.startswith("pros.")}
    depth = model.config.num_hidden_layers
    for name, _ in model.named_parameters():
        layer = model.get_layer_id(name)
        if name.startswith("pros.embeddings."):
            assert layer == 0, name
        elif name.startswith("pros.encoder.layer."):
            assert layer == int(name.split(".")[3]) + 1, name
        else:
            assert layer == depth + 1, name  # final norm and the decoder
    assert model.get_layer_id("base_model.model.pros.encoder.layer.2.attention.qkv.weight") == 3  # PEFT's prefix
    backbone_only = ProSModel(model.config)
    assert set(backbone_only.backbone_parameter_names()) == {name for name, _ in backbone_only.named_parameters()}


@pytest.fixture(scope="module")
def saved_backbone(tmp_path_factory):
    torch.manual_seed(1)
    model = ProSModel(config()).eval()
    folder = tmp_path_factory.mktemp("backbone")
    model.save_pretrained(folder)
    return model, folder


def test_from_backbone_and_from_pretrained_load_a_prosmodel_folder(saved_backbone):
    backbone, folder = saved_backbone
    reference = backbone.state_dict()
    head = ProSForImageClassification.from_backbone(folder, num_labels=7)
    assert_same_weights(head.pros, reference)
    assert head.config.num_labels == 7 and not head.training and head.config.architectures is None
    assert_same_weights(ProSForLandmarkDetection.from_backbone(backbone, num_landmarks=19).pros, reference)
    # transformers' own route: the backbone checkpoint loads into `pros` (base_model_prefix), the head is new
    loaded = ProSForImageClassification.from_pretrained(folder, num_labels=5)
    assert_same_weights(loaded.pros, reference)
    assert loaded.classifier.out_features == 5 and loaded.config.label2id == {f"LABEL_{i}": i for i in range(5)}
    named = ProSForImageClassification.from_pretrained(folder, id2label={0: "no", 1: "yes", 2: "maybe"})
    assert named.config.label2id == {"no": 0, "yes": 1, "maybe": 2}
    assert_same_weights(ProSForLandmarkDetection.from_pretrained(folder).pros, reference)


def test_from_backbone_takes_the_ema_teacher_of_a_pretraining_export(tmp_path):
    torch.manual_seed(0)
    pretraining = ProSForPreTraining(ProSConfig.from_preset("micro"))
    with torch.no_grad():  # the student moves on; the teacher is an EMA of it
        for parameter in pretraining.student.parameters():
            parameter.add_(torch.randn_like(parameter))
    pretraining.update_teacher(0.5)
    teacher, student = pretraining.teacher.state_dict(), pretraining.student.state_dict()
    assert not torch.equal(teacher["encoder.layer.0.mlp.fc1.weight"], student["encoder.layer.0.mlp.fc1.weight"])
    pretraining.save_pretrained(tmp_path / "pretraining")
    for head_class in (ProSForImageClassification, ProSForLandmarkDetection):
        head = head_class.from_backbone(tmp_path / "pretraining", landmark_decoder_hidden_size=32)
        assert type(head) is head_class
        assert_same_weights(head.pros, teacher)
    assert_same_weights(ProSForImageClassification.from_backbone(pretraining).pros, teacher)
    with pytest.raises(TypeError, match="ProSForPreTraining"):
        ProSForImageClassification.from_backbone(42)


@pytest.fixture(scope="module")
def saved_heads(tmp_path_factory):
    torch.manual_seed(2)
    expression = ProSForImageClassification(
        config(id2label=dict(enumerate(["neutral", "happiness", "sadness"])), classifier_pooling="cls_mean")
    ).eval()
    landmarks = ProSForLandmarkDetection(config(num_landmarks=19)).eval()
    folders = {}
    for name, model in (("expression", expression), ("landmarks", landmarks)):
        folders[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(folders[name])
    return expression, landmarks, folders


def test_heads_round_trip_through_the_auto_classes(saved_heads):
    expression, landmarks, folders = saved_heads
    pixel_values = torch.randn(2, 3, 40, 32)
    loaded_expression = AutoModelForImageClassification.from_pretrained(folders["expression"])
    loaded_landmarks = AutoModelForPoseEstimation.from_pretrained(folders["landmarks"])
    assert type(loaded_expression) is ProSForImageClassification and type(loaded_landmarks) is ProSForLandmarkDetection
    assert_same_weights(loaded_expression, expression.state_dict())
    assert_same_weights(loaded_landmarks, landmarks.state_dict())
    assert loaded_expression.config.label2id == {"neutral": 0, "happiness": 1, "sadness": 2}
    torch.testing.assert_close(loaded_expression(pixel_values).logits, expression(pixel_values).logits, rtol=0, atol=0)
    torch.testing.assert_close(
        loaded_landmarks(pixel_values).landmarks, landmarks(pixel_values).landmarks, rtol=0, atol=0
    )
    for name, auto_class, reference in (
        ("expression", "AutoModelForImageClassification", "modeling_pros_classification.ProSForImageClassification"),
        ("landmarks", "AutoModelForPoseEstimation", "modeling_pros_landmarks.ProSForLandmarkDetection"),
    ):
        saved = json.loads((folders[name] / "config.json").read_text())
        assert saved["auto_map"][auto_class] == reference
        file = reference.split(".")[0]
        assert {f"{file}.py", "modeling_pros.py", "configuration_pros.py"} <= set(os.listdir(folders[name]))


REMOTE_HEADS_SCRIPT = r"""
import numpy as np, torch
from transformers import AutoModelForImageClassification, AutoModelForPoseEstimation
pixel_values = torch.from_numpy(np.load(sys.argv[1]))
expression = AutoModelForImageClassification.from_pretrained("org/pros-expression", trust_remote_code=True)
landmarks = AutoModelForPoseEstimation.from_pretrained("org/pros-landmarks", trust_remote_code=True)
for model in (expression, landmarks):
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert expression.config.label2id == {"neutral": 0, "happiness": 1, "sadness": 2}, expression.config.label2id
np.save(sys.argv[2], expression(pixel_values).logits.detach().numpy())
np.save(sys.argv[3], landmarks(pixel_values).landmarks.detach().numpy())
"""


@pytest.mark.slow
def test_heads_load_with_trust_remote_code_in_a_process_without_the_package(saved_heads, tmp_path):
    expression, landmarks, folders = saved_heads
    install_in_hub_cache(folders["expression"], "org/pros-expression")
    install_in_hub_cache(folders["landmarks"], "org/pros-landmarks")
    pixel_values = torch.randn(2, 3, 32, 48)
    np.save(tmp_path / "pixels.npy", pixel_values.numpy())
    run_without_pros_hf(
        REMOTE_HEADS_SCRIPT, tmp_path / "pixels.npy", tmp_path / "logits.npy", tmp_path / "landmarks.npy", cwd=tmp_path
    )
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"), expression(pixel_values).logits.detach().numpy())
    # the heatmap decoder's convolutions may pick another oneDNN kernel in another process (memory alignment): one
    # clean-clone CI run differed by one float32 ulp (9e-8) in 1 of 76 coordinates
    np.testing.assert_allclose(
        np.load(tmp_path / "landmarks.npy"), landmarks(pixel_values).landmarks.detach().numpy(), rtol=0, atol=1e-6
    )


PRETRAINING_CODE = ("modeling_pros_pretraining.py", "losses.py")

REMOTE_FROM_BACKBONE_SCRIPT = r"""
import numpy as np, torch
from transformers import AutoModel, AutoModelForImageClassification, AutoModelForPoseEstimation
pixel_values = torch.from_numpy(np.load(sys.argv[1]))
backbone = AutoModel.from_pretrained("org/pros-exported", trust_remote_code=True)
classifier = AutoModelForImageClassification.from_pretrained("org/pros-classifier", trust_remote_code=True)
landmarks = AutoModelForPoseEstimation.from_pretrained("org/pros-landmark-head", trust_remote_code=True)
for model in (backbone, classifier, landmarks):
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
np.save(sys.argv[2], backbone(pixel_values).pooler_output.detach().numpy())
np.save(sys.argv[3], classifier(pixel_values).logits.detach().numpy())
np.save(sys.argv[4], landmarks(pixel_values).landmarks.detach().numpy())
# from_backbone without the package: an exported backbone loads, a pre-training checkpoint is refused with the way out
head = type(classifier).from_backbone("org/pros-exported", num_labels=4)
assert head.classifier.out_features == 4
for name, tensor in backbone.state_dict().items():
    assert torch.equal(head.pros.state_dict()[name], tensor), name
try:
    type(landmarks).from_backbone(sys.argv[5], num_landmarks=3)
except ValueError as error:
    assert "is a pre-training checkpoint: taking its EMA teacher needs the pros_hf package" in str(error), error
else:
    raise SystemExit("from_backbone took a pre-training checkpoint without the pre-training code")
"""


@pytest.mark.slow
def test_heads_built_from_a_pretraining_checkpoint_ship_no_pretraining_code(tmp_path):
    """A head's folder holds the backbone, configuration and head code only; it and the exported backbone load with
    trust_remote_code=True where pros_hf is not installed, and no pre-training code is fetched for them."""
    torch.manual_seed(3)
    pretraining = ProSForPreTraining(ProSConfig.from_preset("micro", patch_loss_weight=0.5))
    pretraining.save_pretrained(tmp_path / "checkpoint")
    assert set(PRETRAINING_CODE) <= set(os.listdir(tmp_path / "checkpoint"))
    backbone = pretraining.export_teacher()
    backbone.save_pretrained(tmp_path / "exported")
    classifier = ProSForImageClassification.from_backbone(tmp_path / "checkpoint", num_labels=3)
    landmarks = ProSForLandmarkDetection.from_backbone(
        tmp_path / "checkpoint", num_landmarks=7, landmark_decoder_hidden_size=16
    )
    for name, model in (("exported", backbone), ("classifier", classifier), ("landmark-head", landmarks)):
        model.save_pretrained(tmp_path / name)
        files = set(os.listdir(tmp_path / name))
        assert "modeling_pros.py" in files and not files & set(PRETRAINING_CODE), (name, sorted(files))
        install_in_hub_cache(tmp_path / name, f"org/pros-{name}")
    pixel_values = torch.randn(2, 3, 32, 32)
    np.save(tmp_path / "pixels.npy", pixel_values.numpy())
    outputs = [tmp_path / f"{name}.npy" for name in ("features", "logits", "landmarks")]
    run_without_pros_hf(
        REMOTE_FROM_BACKBONE_SCRIPT, tmp_path / "pixels.npy", *outputs, tmp_path / "checkpoint", cwd=tmp_path
    )
    fetched = {path.name for path in (tmp_path / "modules").rglob("*.py")}
    assert "modeling_pros_heads.py" in fetched and not fetched & set(PRETRAINING_CODE), sorted(fetched)
    with torch.no_grad():
        expected = (
            backbone(pixel_values).pooler_output,
            classifier(pixel_values).logits,
            landmarks(pixel_values).landmarks,
        )
    for path, tensor in zip(outputs, expected):
        np.testing.assert_allclose(np.load(path), tensor.numpy(), rtol=0, atol=1e-6)


def test_a_missing_model_folder_or_an_unreachable_hub_id_is_named(tmp_path, monkeypatch):
    """A typo in a local path, or a Hub id that is neither reachable (offline) nor cached, fails with its name
    before transformers reads it as a malformed repository id; a cached Hub id and an existing folder load."""
    from pros_hf import load_backbone
    from pros_hf.knn import load_backbone as knn_load_backbone

    ProSModel(ProSConfig.from_preset("micro", image_size=32)).save_pretrained(tmp_path / "backbone")
    monkeypatch.chdir(tmp_path)
    for loader in (load_backbone, knn_load_backbone):
        with pytest.raises(FileNotFoundError, match=r"No model folder 'outputs/demo/backbon' \(relative to "):
            loader("outputs/demo/backbon")
        with pytest.raises(FileNotFoundError, match=r"No model folder './backbon'"):
            loader("./backbon")
        with pytest.raises(
            OSError,
            match=r"Cannot load 'org/no-such-model': it is not a local folder, and "
            r"HF_HUB_OFFLINE is set",
        ):
            loader("org/no-such-model")
        assert isinstance(loader("backbone"), ProSModel)
    install_in_hub_cache(tmp_path / "backbone", "org/cached-backbone")
    assert isinstance(load_backbone("org/cached-backbone"), ProSModel)
