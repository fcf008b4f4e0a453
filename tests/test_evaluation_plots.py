"""The result figures: each writes a valid PNG of a sensible size and rejects mismatched input by name."""

import numpy as np
import pytest
from PIL import Image

from pros_hf.evaluation_plots import plot_attribute_accuracy, plot_ced_curves, plot_confusion_matrix, plot_landmarks


def _check_png(path, min_width=300, min_height=200):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes the whole file: a truncated PNG fails here
        assert image.width >= min_width and image.height >= min_height
        assert np.asarray(image.convert("L")).std() > 0  # something was drawn


def test_confusion_matrix(tmp_path):
    matrix = [[8, 1, 1], [2, 5, 0], [0, 0, 0]]  # a class without support must not divide by zero
    for normalize in (True, False):
        path = plot_confusion_matrix(
            matrix, ["happy", "sad", "fear"], tmp_path / f"cm_{normalize}.png", title="RAF-DB", normalize=normalize
        )
        assert path == str(tmp_path / f"cm_{normalize}.png")
        _check_png(path)
    _check_png(plot_confusion_matrix(np.eye(7, dtype=int) * 3, None, tmp_path / "sub" / "cm7.png"))


@pytest.mark.parametrize(
    "matrix, names, message",
    [
        ([[1, 2, 3], [4, 5, 6]], ["a", "b"], "square"),
        ([[1, 0], [0, 1]], ["a", "b", "c"], "label_names has 3 names but the matrix has 2 classes"),
        ([[1, -1], [0, 1]], ["a", "b"], "non-negative counts"),
    ],
)
def test_confusion_matrix_rejects_bad_input(tmp_path, matrix, names, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(matrix, names, tmp_path / "cm.png")


def test_confusion_matrix_wants_a_png_path(tmp_path):
    with pytest.raises(ValueError, match=r"path must end in \.png"):
        plot_confusion_matrix([[1]], ["a"], tmp_path / "cm.jpg")


def _faces(count, size=64):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size + 8 * i, 3), dtype=np.uint8) for i in range(count)]
    references = [rng.uniform(0, size - 1, (68, 2)) for _ in range(count)]
    predictions = [points + rng.normal(0, 1.5, points.shape) for points in references]
    return images, predictions, references


def test_landmarks(tmp_path):
    images, predictions, references = _faces(5)
    images[1] = Image.fromarray(images[1])  # PIL and arrays mix
    path = plot_landmarks(images, predictions, references, path=tmp_path / "landmarks.png", columns=3, title="300W")
    _check_png(path, min_width=500, min_height=350)  # 3 columns x 2 rows
    _check_png(plot_landmarks(images[:1], predictions[:1], path=tmp_path / "one.png"), min_width=150, min_height=150)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda i, p, r: (i, p[:2], r), "predictions has 2 entries but there are 3 images"),
        (lambda i, p, r: (i, p, r[:2]), "references has 2 entries but there are 3 images"),
        (
            lambda i, p, r: (i, p[:1] + [p[1][:60]] + p[2:], r),
            r"image 1: points must be \(N, 2\) arrays of the same shape",
        ),
        (lambda i, p, r: (i, p, r[:2] + [np.ones((68, 3))]), r"image 2: points must be \(N, 2\)"),
        (lambda i, p, r: ([i[0], i[1][..., 0], i[2]], p, r), r"image 1: must be HxWx3 \(RGB\)"),
    ],
)
def test_landmarks_reject_mismatched_input(tmp_path, change, message):
    images, predictions, references = change(*_faces(3))
    with pytest.raises(ValueError, match=message):
        plot_landmarks(images, predictions, references, path=tmp_path / "landmarks.png")


def test_ced_curves(tmp_path):
    rng = np.random.default_rng(1)
    errors = {"pre-trained": rng.gamma(4, 0.01, 200), "random init": rng.gamma(4, 0.02, 200).tolist()}
    path = plot_ced_curves(errors, tmp_path / "ced.png", threshold=0.07, title="AFLW-19")
    _check_png(path)


@pytest.mark.parametrize(
    "errors, kwargs, message",
    [
        ({}, {}, "non-empty dict"),
        ({"model": []}, {}, r"per_image_errors\['model'\] must be a non-empty list"),
        ({"ok": [0.1], "model": [0.1, np.nan]}, {}, r"per_image_errors\['model'\]"),
        ({"model": [0.1, -0.2]}, {}, "non-negative"),
        ({"model": [0.1]}, {"threshold": 0}, "threshold must be positive"),
    ],
)
def test_ced_curves_reject_bad_input(tmp_path, errors, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_ced_curves(errors, tmp_path / "ced.png", **kwargs)


def test_attribute_accuracy(tmp_path):
    rng = np.random.default_rng(2)
    names = [f"attribute_{i}" for i in range(40)]
    pretrained = dict(zip(names, rng.uniform(0.7, 1.0, 40)))
    random_init = {name: value - 0.1 for name, value in pretrained.items()}
    _check_png(plot_attribute_accuracy(pretrained, tmp_path / "one.png"), min_height=500)  # 40 readable rows
    path = plot_attribute_accuracy(
        {"pre-trained": pretrained, "random init": random_init}, tmp_path / "two.png", title="CelebA, 5% of the labels"
    )
    _check_png(path, min_height=500)


@pytest.mark.parametrize(
    "results, message",
    [
        ({}, "non-empty dict"),
        ({"a": {"Smiling": 0.9, "Male": 0.8}, "b": {"Smiling": 0.9}}, r"results\['b'\] names other attributes.*Male"),
        ({"a": {"Smiling": 0.9}, "Male": 0.8}, "every label to a dict"),
        ({"Smiling": 91.2}, r"fractions in \[0, 1\]"),
    ],
)
def test_attribute_accuracy_rejects_bad_input(tmp_path, results, message):
    with pytest.raises(ValueError, match=message):
        plot_attribute_accuracy(results, tmp_path / "attributes.png")


def _centre_grey(path):
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    return rgb[height // 2 - 5 : height // 2 + 5, width // 2 - 5 : width // 2 + 5].mean()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.fromarray(np.full((48, 48), 16448, np.uint16)),  # PIL mode I;16: 16448 / 257 = 64
        lambda: Image.fromarray(np.full((48, 48), 0.25, np.float32), mode="F"),  # float greyscale in [0, 1]
        lambda: np.full((48, 48, 3), 16448, np.uint16),
        lambda: np.full((48, 48, 3), 64.0, np.float32),  # floats in [0, 255], as ProSImageProcessor takes them
    ],
    ids=["I;16", "F", "uint16 array", "float 0-255 array"],
)
def test_landmarks_show_16_bit_and_float_images_as_the_processor_reads_them(tmp_path, make):
    """A dark grey 16-bit or float face is drawn dark grey: `convert("RGB")` clipped it to white (and imshow clips
    uint16 and floats above 1)."""
    points = [np.array([[0.0, 0.0], [2.0, 2.0]])]  # in a corner, away from the centre that is measured
    path = plot_landmarks([make()], points, path=tmp_path / "face.png")
    assert abs(_centre_grey(path) - 64) < 3
