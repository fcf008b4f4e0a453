"""Pipelines: image-classification (single- and multi-label heads), image-feature-extraction (backbone) and the
registered face-landmarks pipeline, whose points come back in the input image's pixels."""

import builtins

import numpy as np
import pytest
import torch
from conftest import run_without_pros_hf
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from pros_hf import (
    FaceLandmarksPipeline,
    ProSConfig,
    ProSForImageClassification,
    ProSForLandmarkDetection,
    ProSImageProcessor,
    ProSModel,
    make_synthetic_faces,
)
from pros_hf.data.synthetic import ATTRIBUTE_NAMES, EXPRESSION_NAMES
from pros_hf.pipelines import processed_to_image_coordinates


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A backbone and three heads on it, each saved with its image processor (48 px inputs)."""
    torch.manual_seed(0)
    backbone = ProSModel(ProSConfig.from_preset("micro", image_size=48)).eval()
    models = {
        "backbone": backbone,
        "expression": ProSForImageClassification.from_backbone(backbone, id2label=dict(enumerate(EXPRESSION_NAMES))),
        "attributes": ProSForImageClassification.from_backbone(
            backbone, id2label=dict(enumerate(ATTRIBUTE_NAMES)), problem_type="multi_label_classification"
        ),
        "landmarks": ProSForLandmarkDetection.from_backbone(backbone, landmark_decoder_hidden_size=32),
    }
    processor = ProSImageProcessor.from_model_config(backbone.config)
    paths = {}
    for name, model in models.items():
        paths[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(paths[name])
        processor.save_pretrained(paths[name])
    return models, paths, processor


@pytest.fixture(scope="module")
def images():
    faces = make_synthetic_faces(3, image_size=64, seed=0)
    return [faces[0]["image"], faces[1]["image"].resize((90, 60)), faces[2]["image"].resize((40, 72))]


@pytest.fixture
def no_prompt(monkeypatch):
    """Fail if transformers asks on stdin whether to trust remote code (it would block an interactive user)."""
    prompts = []
    monkeypatch.setattr(builtins, "input", lambda *args, **kwargs: prompts.append(args) or "n")
    yield
    assert not prompts, prompts


def test_face_landmarks_is_registered():
    assert "face-landmarks" in PIPELINE_REGISTRY.get_supported_tasks()


def test_expression_classification_pipeline(folders, images, no_prompt):
    models, paths, processor = folders
    classify = pipeline("image-classification", model=str(paths["expression"]), trust_remote_code=False)
    assert type(classify.model) is ProSForImageClassification
    results = classify(images, top_k=len(EXPRESSION_NAMES))  # top_k=None means 5 in transformers 5.x
    assert len(results) == 3
    for image, result in zip(images, results):
        assert {entry["label"] for entry in result} == set(EXPRESSION_NAMES)
        logits = models["expression"](processor(image, return_tensors="pt").pixel_values).logits[0]
        expected = dict(zip(EXPRESSION_NAMES, logits.softmax(-1).tolist()))
        assert {entry["label"]: entry["score"] for entry in result} == pytest.approx(expected, abs=1e-6)
    assert len(classify(images[0])) == 5  # transformers' default top_k


def test_multi_label_pipeline_returns_per_attribute_probabilities(folders, images, no_prompt):
    models, paths, processor = folders
    classify = pipeline("image-classification", model=str(paths["attributes"]), trust_remote_code=False)
    result = classify(images[1], top_k=classify.model.config.num_labels)
    assert len(result) == len(ATTRIBUTE_NAMES)
    logits = models["attributes"](processor(images[1], return_tensors="pt").pixel_values).logits[0]
    expected = dict(zip(ATTRIBUTE_NAMES, logits.sigmoid().tolist()))  # independent sigmoids, not a softmax
    assert {entry["label"]: entry["score"] for entry in result} == pytest.approx(expected, abs=1e-6)


def test_image_feature_extraction_on_the_backbone(folders, images, no_prompt):
    models, paths, processor = folders
    extract = pipeline("image-feature-extraction", model=str(paths["backbone"]), trust_remote_code=False)
    tokens = torch.tensor(extract(images[2]))
    pooled = torch.tensor(extract(images[2], pool=True))
    expected = models["backbone"](processor(images[2], return_tensors="pt").pixel_values)
    assert tokens.shape == (1, 1 + 36, 64) and pooled.shape == (1, 64)
    torch.testing.assert_close(tokens, expected.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, expected.pooler_output, atol=1e-5, rtol=1e-5)


def test_face_landmarks_pipeline_returns_points_in_input_pixels(folders, images, no_prompt):
    models, paths, processor = folders
    detect = pipeline("face-landmarks", model=str(paths["landmarks"]))
    assert isinstance(detect, FaceLandmarksPipeline) and type(detect.model) is ProSForLandmarkDetection
    results = detect(images, batch_size=2)
    assert len(results) == 3
    for image, result in zip(images, results):
        points = np.asarray(result["landmarks"])
        assert points.shape == (68, 2)
        normalised = models["landmarks"](processor(image, return_tensors="pt").pixel_values).landmarks[0]
        expected = processed_to_image_coordinates(normalised.detach().numpy(), (image.height, image.width), processor)
        np.testing.assert_allclose(points, expected, atol=1e-4)
        # the processor's centre crop keeps the middle of the image: points land inside it
        assert (points >= -0.5).all() and (points[:, 0] <= image.width - 0.5).all()
        assert (points[:, 1] <= image.height - 0.5).all()
    np.testing.assert_allclose(detect(np.array(images[1]))["landmarks"], results[1]["landmarks"], atol=1e-4)


REMOTE_PIPELINE_SCRIPT = r"""
import numpy as np
from transformers import pipeline
detect = pipeline("face-landmarks", model=sys.argv[1], trust_remote_code=True)
assert type(detect).__module__.startswith("transformers_modules"), type(detect).__module__
np.save(sys.argv[3], np.asarray(detect(np.load(sys.argv[2]))["landmarks"]))
"""


@pytest.mark.slow
def test_face_landmarks_pipeline_travels_with_the_folder_it_saves(folders, images, tmp_path):
    """Saved through the pipeline, the folder carries the pipeline code: it runs where pros_hf is not installed."""
    _, paths, _ = folders
    detect = pipeline("face-landmarks", model=str(paths["landmarks"]))
    detect.save_pretrained(tmp_path / "saved")
    image = np.array(images[2])
    np.save(tmp_path / "image.npy", image)
    run_without_pros_hf(
        REMOTE_PIPELINE_SCRIPT, tmp_path / "saved", tmp_path / "image.npy", tmp_path / "points.npy", cwd=tmp_path
    )
    np.testing.assert_allclose(np.load(tmp_path / "points.npy"), detect(image)["landmarks"], atol=1e-5)


def _bright_spot_round_trip(image_size, spot, processor):
    """Put a 1-pixel spot at `spot` (x, y), run the processor, measure where the spot's mass lands (normalised, edge
    convention) and map that back with processed_to_image_coordinates."""
    height, width = image_size
    image = np.zeros((height, width, 3), np.uint8)
    image[spot[1], spot[0]] = 255
    processed = processor(image, return_tensors="pt").pixel_values[0, 0].double()
    mass = processed / processed.sum()
    out_height, out_width = mass.shape
    u = float((mass.sum(0) * (torch.arange(out_width, dtype=torch.float64) + 0.5)).sum()) / out_width
    v = float((mass.sum(1) * (torch.arange(out_height, dtype=torch.float64) + 0.5)).sum()) / out_height
    return processed_to_image_coordinates([u, v], image_size, processor)


@pytest.mark.parametrize(
    "image_size, spot, size, crop, resample, tolerance",
    [
        ((24, 40), (29, 7), 48, (48, 48), "nearest", 1e-9),  # x2 upscale, then a crop 16 px off the left
        ((40, 24), (5, 30), 48, (48, 32), "nearest", 1e-9),  # portrait, non-square crop
        ((20, 30), (9, 4), 20, (24, 24), "nearest", 1e-9),  # crop larger than the image: zero padding
        ((20, 30), (13, 7), 48, (48, 48), "nearest", 0.1),  # x2.4: centre-aligned sampling (torch's legacy
        # "nearest" put the spot 0.25 px off)
        ((60, 90), (52, 23), 24, (24, 24), "bilinear", 0.02),  # antialiased downscale: the spot's mean is kept
    ],
)
def test_processor_geometry_is_undone_exactly(image_size, spot, size, crop, resample, tolerance):
    processor = ProSImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": crop[0], "width": crop[1]},
        resample=resample,
        do_normalize=False,
    )
    mapped = _bright_spot_round_trip(image_size, spot, processor)
    np.testing.assert_allclose(mapped, spot, atol=tolerance)


def test_geometry_without_resize_or_crop_is_the_identity_convention():
    processor = ProSImageProcessor(do_resize=False, do_center_crop=False)
    # normalised (x + 0.5) / W maps back to x
    np.testing.assert_allclose(
        processed_to_image_coordinates([[0.5 / 40, 20.5 / 30]], (30, 40), processor), [[0.0, 20.0]]
    )


def test_face_landmarks_pipeline_refuses_unknown_arguments_and_takes_a_batched_single_image(folders, images):
    _, paths, _ = folders
    detect = pipeline("face-landmarks", model=str(paths["landmarks"]))
    with pytest.raises(TypeError, match="return_heatmaps"):
        detect(images[0], return_heatmaps=True)
    chw = torch.from_numpy(np.array(images[1])).permute(2, 0, 1)
    np.testing.assert_allclose(detect(chw[None])["landmarks"], detect(chw)["landmarks"], atol=1e-5)
    with pytest.raises(ValueError, match="list of images"):
        detect(torch.stack([chw, chw]))
