"""Real images that ship with scikit-image, written out as files: the default curation source (no download).

``lfw_subset()``: 200 grey 25x25 crops, the first 100 are LFW faces and the last 100 are non-faces; ``astronaut()``
(a portrait, face not dominant) and ``camera()`` (a photographer, small face). File names say which is which, so a
test can score the curation.
"""

import os

import numpy as np


def _skimage_data():
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError('The default demo images come from scikit-image: pip install "pros-hf[test]"') from error
    return data


def write_lfw_subset(folder: str) -> tuple[list[str], list[str]]:
    """Write scikit-image's ``lfw_subset`` as PNGs; returns (face paths, non-face paths)."""
    from PIL import Image

    images = _skimage_data().lfw_subset()  # float64 in [0, 1], (200, 25, 25)
    os.makedirs(folder, exist_ok=True)
    faces, non_faces = [], []
    for index, image in enumerate(images):
        kind, number = ("face", index) if index < 100 else ("nonface", index - 100)
        path = os.path.join(folder, f"lfw_{kind}_{number:03d}.png")
        Image.fromarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), mode="L").save(path)
        (faces if kind == "face" else non_faces).append(path)
    return faces, non_faces


def write_demo_images(folder: str) -> str:
    """``lfw_subset`` plus ``astronaut`` and ``camera`` as files under ``folder``; returns ``folder``."""
    from PIL import Image

    data = _skimage_data()
    write_lfw_subset(folder)
    Image.fromarray(data.astronaut()).save(os.path.join(folder, "astronaut.png"))
    Image.fromarray(data.camera()).save(os.path.join(folder, "camera.png"))
    return folder
