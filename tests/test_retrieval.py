"""Face-aware retrieval on real faces (scikit-image's LFW subset), pure geometry, dedup, IVF, resume, report, CLI."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage")
pytest.importorskip("faiss")
pytest.importorskip("yuface")

import datasets  # noqa: E402
import torch  # noqa: E402

from pros_hf.retrieval import (  # noqa: E402
    CurationConfig,
    Detection,
    FaceThresholds,
    ImageEmbedder,
    IndexSettings,
    add_embedding_index,
    crop_square_face,
    curate,
    face_dominance,
    find_near_duplicates,
    get_face_detector,
    push_curated_dataset,
    search_neighbors,
    select_face,
    square_crop_box,
    write_lfw_subset,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(show_progress=False)


def _is_face(source):
    return "lfw_face_" in source


def _is_non_face(source):
    return "lfw_nonface_" in source


@pytest.fixture(scope="module")
def lfw_folder(tmp_path_factory):
    """The 200 LFW crops as PNGs, plus a text file named .png and a zero-byte .png (and one non-image file)."""
    folder = str(tmp_path_factory.mktemp("lfw"))
    write_lfw_subset(folder)
    with open(os.path.join(folder, "not_really.png"), "w") as file:
        file.write("this is text, not a PNG")
    open(os.path.join(folder, "empty.png"), "wb").close()
    with open(os.path.join(folder, "notes.txt"), "w") as file:
        file.write("skipped for its extension, and counted")
    return folder


@pytest.fixture(scope="module")
def curated(lfw_folder, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("curated"))
    return curate(lfw_folder, output, CurationConfig(shard_size=64, **FAST))


# ---- acceptance on real faces -------------------------------------------------------------------------------------


def test_default_pipeline_keeps_faces_and_rejects_non_faces(curated):
    sources = curated.dataset["source"]
    kept_faces = sum(map(_is_face, sources))
    kept_non_faces = sum(map(_is_non_face, sources))
    assert kept_faces >= 95, kept_faces  # measured: 100 with yunet
    assert kept_non_faces <= 5, kept_non_faces  # measured: 1
    assert curated.complete


def test_haar_detector_also_meets_the_lfw_criterion(lfw_folder):
    """Detection + thresholds alone (yunet is checked through the whole pipeline above): measured 98 faces kept, 0
    non-faces (yunet: 100 / 1)."""
    name = "haar"
    detector = get_face_detector(name)
    thresholds = FaceThresholds()
    kept = {"face": 0, "nonface": 0}
    for kind in kept:
        for number in range(100):
            image = np.asarray(Image.open(os.path.join(lfw_folder, f"lfw_{kind}_{number:03d}.png")).convert("RGB"))
            kept[kind] += select_face(detector.detect(image), 25, 25, thresholds).kept
    assert kept["face"] >= 95 and kept["nonface"] <= 5, (name, kept)


def test_report_counts_add_up_and_files_exist(curated):
    report = curated.report
    detection = report.detection
    assert detection.files_seen == 202
    assert detection.unreadable == 2
    assert detection.unreadable_by_reason == {"not an image": 1, "empty file": 1}
    assert report.source["non_image_files_skipped"] == 1
    rejected = detection.no_face + detection.below_score + detection.below_face_size + detection.below_dominance
    assert detection.unreadable + rejected + detection.kept_after_detection == detection.files_seen
    assert report.duplicates_removed + report.kept_after_dedup == detection.kept_after_detection
    assert report.kept_final == len(curated.dataset) == report.retrieved
    assert report.consistency_errors() == []

    with open(report.outputs["report"]) as file:
        saved = json.load(file)
    assert saved["consistent"] is True
    assert saved["detection"]["kept_after_detection"] == detection.kept_after_detection
    assert saved["kept_final"] == len(curated.dataset)
    for key in ("montage", "dominance_histogram"):
        with Image.open(report.outputs[key]) as image:
            assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 100


def test_curated_dataset_columns_and_provenance(curated):
    reloaded = datasets.load_from_disk(curated.report.outputs["dataset"])
    assert {"image", "source", "box", "detector_score", "dominance"} <= set(reloaded.column_names)
    assert "embedding" not in reloaded.column_names  # keep_embeddings=False
    row = reloaded[0]
    assert row["image"].size == (112, 112)
    assert len(row["box"]) == 4 and row["box"][2] > row["box"][0]
    assert np.all(np.asarray(reloaded["detector_score"]) >= 0.5)
    assert np.all(np.asarray(reloaded["dominance"]) >= 0.2) and np.all(np.asarray(reloaded["dominance"]) <= 1.0)
    assert row["source"].startswith("lfw_")


# ---- pure geometry ------------------------------------------------------------------------------------------------


def test_face_dominance_on_synthetic_boxes():
    assert face_dominance((0, 0, 50, 50), 100, 100) == pytest.approx(0.25)
    assert face_dominance((-50, 0, 50, 100), 100, 100) == pytest.approx(0.5)  # half outside: only the inside counts
    assert face_dominance((200, 200, 300, 300), 100, 100) == 0.0
    assert face_dominance((-10, -10, 110, 110), 100, 100) == pytest.approx(1.0)


def test_select_face_thresholds_in_order():
    thresholds = FaceThresholds(min_score=0.5, min_face_size=20, min_dominance=0.2)
    assert select_face([], 100, 100, thresholds).status == "no_face"
    weak = Detection((0, 0, 80, 80), 0.3)
    assert select_face([weak], 100, 100, thresholds).status == "below_score"
    tiny = Detection((0, 0, 10, 10), 0.9)
    assert select_face([tiny], 100, 100, thresholds).status == "below_face_size"
    small = Detection((0, 0, 30, 30), 0.9)  # 0.09 of the image
    assert select_face([small], 100, 100, thresholds).status == "below_dominance"
    big = Detection((10, 10, 70, 70), 0.6)
    decision = select_face([small, big, Detection((0, 0, 95, 95), 0.2)], 100, 100, thresholds)
    assert decision.kept and decision.face == big  # the largest *confident* face
    assert decision.dominance == pytest.approx(0.36)


def test_square_crop_box_geometry():
    # centred, side = longer face side * (1 + 2 * margin)
    assert square_crop_box((40, 30, 60, 70), 200, 200, margin=0.25) == (20, 20, 80, 80)  # centre (50, 50), side 60
    # crosses the left border but fits: shifted inside
    assert square_crop_box((0, 80, 40, 120), 200, 200, margin=0.5) == (0, 60, 80, 140)
    # without shifting it keeps its centre and crosses the border
    assert square_crop_box((0, 80, 40, 120), 200, 200, margin=0.5, shift_inside=False) == (-20, 60, 60, 140)
    # larger than the image: centre kept (padded by the crop)
    assert square_crop_box((0, 0, 100, 100), 100, 100, margin=0.25) == (-25, -25, 125, 125)
    with pytest.raises(ValueError, match="margin"):
        square_crop_box((0, 0, 10, 10), 100, 100, margin=-0.1)


def test_crop_square_face_pads_and_resizes():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_square_face(image, (0, 0, 100, 100), margin=0.25, size=30, pad_mode="constant")
    assert crop.shape == (30, 30, 3) and crop.dtype == np.uint8
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[15, 15].tolist() == [200, 200, 200]  # black pad, image centre
    edge = crop_square_face(image, (0, 0, 100, 100), margin=0.25, size=30, pad_mode="edge")
    assert edge[0, 0].tolist() == [200, 200, 200]
    with pytest.raises(ValueError, match="edge, constant, reflect"):
        crop_square_face(image, (0, 0, 10, 10), pad_mode="wrap")


# ---- detectors ----------------------------------------------------------------------------------------------------


def test_unknown_detector_names_the_valid_ones():
    with pytest.raises(ValueError, match="haar, yunet"):
        get_face_detector("mtcnn")


def test_missing_detector_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "yuface", None)
    with pytest.raises(ImportError, match=r'pip install "pros-hf\[faces\]"'):
        get_face_detector("yunet")


def test_upscaling_maps_boxes_back(lfw_folder):
    """A 25x25 face and its 4x enlargement give the same box up to the scale (upscaling is internal)."""
    small = np.asarray(Image.open(os.path.join(lfw_folder, "lfw_face_000.png")).convert("RGB"))
    large = np.asarray(Image.fromarray(small).resize((100, 100), Image.Resampling.BICUBIC))
    detector = get_face_detector("yunet", min_side=100)
    small_box = np.asarray(detector.detect(small)[0].box)
    large_box = np.asarray(detector.detect(large)[0].box)
    assert np.allclose(small_box * 4, large_box, atol=2.0)
    assert -5 < small_box[0] < small_box[2] < 30 and len(detector.detect(small)[0].landmarks) == 5


# ---- embeddings, dedup, index -------------------------------------------------------------------------------------


class _StandIn(torch.nn.Module):
    """Any callable with `.pooler_output`: mean colour per channel plus a constant."""

    def forward(self, pixel_values):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        pooled = torch.cat([pixel_values.mean(dim=(2, 3)), torch.ones(len(pixel_values), 1)], dim=1)
        return BaseModelOutputWithPooling(
            last_hidden_state=pixel_values.flatten(2).transpose(1, 2), pooler_output=pooled
        )


def test_embedder_generic_model_is_normalised_and_batched():
    images = [np.full((20, 20, 3), value, np.uint8) for value in (0, 100, 255)]
    embedder = ImageEmbedder(_StandIn(), image_size=16, batch_size=2, show_progress=False)
    vectors = embedder.embed(images)
    assert vectors.shape == (3, 4) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    mean = np.asarray([0.485, 0.456, 0.406])
    std = np.asarray([0.229, 0.224, 0.225])
    expected = np.append((0.0 - mean) / std, 1.0)
    assert np.allclose(vectors[0], expected / np.linalg.norm(expected), atol=1e-4)
    with pytest.raises(ValueError, match="pooler, patch_tokens"):
        ImageEmbedder(_StandIn(), pooling="cls")


def test_dedup_removes_exact_and_noisy_copies(lfw_folder, tmp_path):
    """8 distinct faces (LFW, enlarged to 100 px like real photos), an exact copy of one and a noisy copy of another.

    Sources of 100+ px: at 25 px the detector's sub-pixel jitter moves the crop by ~5% and the random-init model
    scores such copies 0.8-0.95 (measured), below the threshold.
    """
    folder = tmp_path / "dups"
    folder.mkdir()
    rng = np.random.default_rng(0)
    enlarged = {}
    for number in range(8):
        image = Image.open(os.path.join(lfw_folder, f"lfw_face_{number:03d}.png"))
        enlarged[number] = image.resize((100, 100), Image.Resampling.BICUBIC)
        enlarged[number].save(folder / f"lfw_face_{number:03d}.png")
    enlarged[0].save(folder / "copy_exact.png")
    noisy = np.asarray(enlarged[1], dtype=np.float64) + rng.normal(0, 2.0, (100, 100))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / "copy_noisy.png")

    result = curate(str(folder), str(tmp_path / "out"), CurationConfig(**FAST))
    assert result.report.detection.kept_after_detection == 10
    assert result.report.duplicates_removed == 2
    kept = set(result.dataset["source"])
    assert len(kept) == 8 and ("copy_exact.png" in kept) != ("lfw_face_000.png" in kept)
    assert ("copy_noisy.png" in kept) != ("lfw_face_001.png" in kept)


def _unit_vectors(num, dim, seed):
    vectors = np.random.default_rng(seed).normal(size=(num, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_ivf_index_above_threshold_and_dedup_through_it():
    vectors = _unit_vectors(400, 16, seed=1)
    vectors[399] = vectors[5]  # a planted exact duplicate
    dataset = datasets.Dataset.from_dict({"embedding": vectors.tolist()})
    kind = add_embedding_index(dataset, IndexSettings(ivf_threshold=100, nlist=8, nprobe=8))
    assert kind == "IVF8,Flat"
    assert type(dataset.get_index("embedding").faiss_index).__name__ == "IndexIVFFlat"
    scores, indices = search_neighbors(dataset, vectors[:3], k=1)
    assert indices[:, 0].tolist() == [0, 1, 2] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    keep, duplicate_of = find_near_duplicates(dataset, threshold=0.95, num_neighbors=4)
    assert (~keep).sum() == 1 and not keep[399] and duplicate_of[399] == 5

    small = datasets.Dataset.from_dict({"embedding": vectors[:50].tolist()})
    assert add_embedding_index(small, IndexSettings(ivf_threshold=100)) == "Flat"


# ---- resume, seeds, dataset sources, hub ---------------------------------------------------------------------------


class _CountingDetector:
    def __init__(self):
        self.inner = get_face_detector("yunet")
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return self.inner.detect(image)

    def __repr__(self):
        return repr(self.inner)


def test_resume_does_not_recompute_finished_shards(lfw_folder, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    for number in range(20):
        for kind in ("face", "nonface"):
            name = f"lfw_{kind}_{number:03d}.png"
            shutil.copy(os.path.join(lfw_folder, name), folder / name)
    output = str(tmp_path / "out")
    config = CurationConfig(shard_size=10, ivf_threshold=10, **FAST)  # 4 shards; the IVF path end to end

    first = curate(str(folder), output, config, max_shards=2)
    assert not first.complete and first.dataset is None and first.shards_computed == 2
    markers = [os.path.join(output, "shards", f"shard-{i:05d}", "done") for i in range(4)]
    assert [os.path.exists(m) for m in markers] == [True, True, False, False]
    mtimes = [os.stat(m).st_mtime_ns for m in markers[:2]]

    def crash(number):
        raise KeyboardInterrupt(f"simulated kill after shard {number}")

    with pytest.raises(KeyboardInterrupt):
        curate(str(folder), output, config, on_shard_done=crash)
    assert os.path.exists(markers[2]) and not os.path.exists(markers[3])

    detector = _CountingDetector()
    final = curate(str(folder), output, config, detector=detector)
    assert final.complete and final.shards_computed == 1 and final.shards_reused == 3
    assert detector.calls == 10  # only the last shard's files were decoded and detected again
    assert [os.stat(m).st_mtime_ns for m in markers[:2]] == mtimes
    assert final.report.detection.files_seen == 40 and final.report.consistency_errors() == []
    assert final.report.index_type.startswith("IVF")
    assert sum(map(_is_face, final.dataset["source"])) >= 19

    with pytest.raises(ValueError, match="other settings.*min_dominance"):
        curate(str(folder), output, CurationConfig(shard_size=10, min_dominance=0.5, **FAST))


def test_seed_folder_bounds_retrieval_and_dataset_source(lfw_folder, tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for number in (0, 1):
        shutil.copy(os.path.join(lfw_folder, f"lfw_face_{number:03d}.png"), seeds / f"seed_{number}.png")
    (seeds / "broken.png").write_bytes(b"")
    paths = [os.path.join(lfw_folder, f"lfw_{kind}_{n:03d}.png") for n in range(10) for kind in ("face", "nonface")]
    saved = str(tmp_path / "saved")
    datasets.Dataset.from_dict({"picture": paths}).cast_column("picture", datasets.Image()).save_to_disk(saved)

    config = CurationConfig(image_column="picture", num_neighbors=3, **FAST)
    result = curate(saved, str(tmp_path / "out"), config, seeds=str(seeds))
    assert result.report.seeds["used"] == 2 and result.report.seeds["unreadable"] == 1
    assert result.report.detection.files_seen == 20
    assert 3 <= result.report.kept_final <= 6 and result.report.consistency_errors() == []
    assert all(source.endswith(".png") for source in result.dataset["source"])

    with pytest.raises(ValueError, match="no column 'image'"):
        curate(saved, str(tmp_path / "out2"), CurationConfig(**FAST))
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        push_curated_dataset(result.dataset, "someone/curated-faces")


# ---- the example script -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_example_script_runs_end_to_end(lfw_folder, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    for number in range(6):
        for kind in ("face", "nonface"):
            name = f"lfw_{kind}_{number:03d}.png"
            shutil.copy(os.path.join(lfw_folder, name), folder / name)
    output = tmp_path / "out"
    command = [
        sys.executable,
        os.path.join(REPO, "examples", "curate.py"),
        "--source",
        str(folder),
        "--output",
        str(output),
        "--shard_size",
        "5",
        "--detector",
        "haar",
        "--crop_size",
        "64",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180, env=dict(os.environ))
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(output / "report.json") as file:
        report = json.load(file)
    assert report["consistent"] and report["detection"]["files_seen"] == 12 and report["shards"]["total"] == 3
    curated = datasets.load_from_disk(str(output / "dataset"))
    assert len(curated) == report["kept_final"] >= 5 and curated[0]["image"].size == (64, 64)
    assert (output / "montage.png").exists() and (output / "dominance_histogram.png").exists()


# ---- an empty result, a failed run's rerun, refusals before detection -----------------------------------------------


def _non_face_folder(folder, count=3):
    """Flat grey and noise images: nothing a face detector finds."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for number in range(count):
        noise = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        pixels = noise if number % 2 else np.full((48, 48, 3), 128, np.uint8)
        Image.fromarray(pixels).save(folder / f"nonface_{number}.png")
    return str(folder)


def test_no_face_kept_gives_an_empty_dataset_and_the_whole_report(tmp_path):
    """datasets cannot reload an empty dataset saved with its default sharding: the run used to end in an IndexError
    after the shards, without report, montage or histogram."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for source in (_non_face_folder(tmp_path / "nonfaces"), str(empty)):
        output = tmp_path / f"out_{os.path.basename(source)}"
        result = curate(source, str(output), CurationConfig(**FAST))
        assert result.complete and len(result.dataset) == 0 and result.report.kept_final == 0
        assert len(datasets.load_from_disk(str(output / "dataset"))) == 0
        for name in ("report.json", "montage.png", "dominance_histogram.png"):
            assert (output / name).is_file(), name
        assert json.loads((output / "report.json").read_text())["consistent"]
        assert "No face was kept" in result.report.summary()


def test_settings_are_checked_before_any_file_is_written():
    """A margin < 0 used to fail at the first crop, a dedup threshold > 1 only after every shard was embedded."""
    cases = {"margin": -1, "dedup_threshold": 5, "min_similarity": 2, "pad_mode": "wrap", "max_pixels": 0,
             "montage_samples": -1}  # fmt: skip
    for name, value in cases.items():
        with pytest.raises(ValueError, match=name):
            CurationConfig(**{name: value})


class _FailingDetector:
    def detect(self, image):
        raise RuntimeError("simulated failure in the first shard")

    def __repr__(self):
        return "FailingDetector()"


def test_a_failed_run_does_not_block_its_corrected_rerun(lfw_folder, tmp_path):
    """Settings are only compared with those of finished shards: a run that finished none blocks nothing, and
    deleting shards/ (as the refusal says) starts over."""
    folder = tmp_path / "src"
    folder.mkdir()
    for name in ("lfw_face_000.png", "lfw_face_001.png", "lfw_nonface_000.png"):
        shutil.copy(os.path.join(lfw_folder, name), folder / name)
    output = str(tmp_path / "out")
    with pytest.raises(RuntimeError, match="simulated"):
        curate(str(folder), output, CurationConfig(margin=0.5, **FAST), detector=_FailingDetector())
    assert os.path.isfile(os.path.join(output, "curation_config.json"))
    first = curate(str(folder), output, CurationConfig(shard_size=2, **FAST))  # other settings, nothing finished
    assert first.complete and first.report.detection.kept_after_detection == 2

    with pytest.raises(ValueError, match="2 finished shards .*changed: margin.*curation_config.json.*delete") as info:
        curate(str(folder), output, CurationConfig(shard_size=2, margin=0.1, **FAST))
    assert os.path.join(output, "shards") in str(info.value)
    shutil.rmtree(os.path.join(output, "shards"))
    again = curate(str(folder), output, CurationConfig(shard_size=2, margin=0.1, **FAST))
    assert again.complete and again.shards_computed == 2


def test_a_seed_folder_without_images_or_faces_fails_before_detection(lfw_folder, tmp_path):
    source = _non_face_folder(tmp_path / "source")
    empty = tmp_path / "no_seeds"
    empty.mkdir()
    no_face = _non_face_folder(tmp_path / "no_face_seeds", count=1)
    for seeds, message in [(str(empty), "holds no image files"), (no_face, "None of the 1 seed images")]:
        detector = _CountingDetector()
        with pytest.raises(ValueError, match=message):
            curate(source, str(tmp_path / "out"), CurationConfig(**FAST), seeds=seeds, detector=detector)
        assert detector.calls <= 1  # the seed image only: the source was not processed
        assert not os.listdir(tmp_path / "out" / "shards")


def _curate_script(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("curate_example", os.path.join(REPO, "examples", "curate.py"))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "curate_example", module)  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_example_script_refuses_bad_input_in_one_line_before_detection(tmp_path, monkeypatch):
    script = _curate_script(monkeypatch)

    def forbidden(*args, **kwargs):
        raise AssertionError("curation started before the bad input was refused")

    source = _non_face_folder(tmp_path / "source", count=1)
    output = str(tmp_path / "out")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--model", str(tmp_path / "nope")], "--model: No model folder"),
        (["--model", "org/none"], "--model: Cannot load 'org/none'.*HF_HUB_OFFLINE"),
        (["--min_score", "2"], "min_score must be in"),
        (["--crop_size", "0"], "crop_size must be >= 1"),
        (["--dedup_threshold", "5"], "dedup_threshold is a cosine"),
        (["--margin", "-1"], "margin must be >= 0"),
        (["--seeds", str(tmp_path / "missing")], "--seeds .* is not a folder"),
    ]
    monkeypatch.setattr(script, "curate", forbidden)
    for argv, message in cases:
        with pytest.raises(SystemExit, match=message):
            script.main(["--source", source, "--output", output, *argv])
    with pytest.raises(SystemExit, match="--output .* is a file"):
        script.main(["--source", source, "--output", str(a_file)])
    monkeypatch.setattr(script, "curate", curate)  # an empty seed folder is found by curate(), before detection
    with pytest.raises(SystemExit, match="holds no image files"):
        script.main(["--source", source, "--output", output, "--seeds", str(empty)])


def test_example_script_reports_an_empty_result(tmp_path, monkeypatch, capsys):
    script = _curate_script(monkeypatch)
    output = tmp_path / "out"
    assert script.main(["--source", _non_face_folder(tmp_path / "source"), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "3 files" in printed and "No face was kept" in printed and "(0 crops)" in printed
    assert (output / "report.json").is_file()


def test_curation_config_takes_no_pixel_limit():
    from pros_hf.retrieval.curation import CurationConfig

    assert CurationConfig(max_pixels=None).max_pixels is None


def test_an_output_folder_holding_its_source_resumes_after_a_move(lfw_folder, tmp_path):
    """The demo curates a source inside its output folder: copied elsewhere, the folder still resumes (the source is
    recorded relative to it) instead of being refused for a changed source path."""
    output = tmp_path / "first"
    source = output / "source"
    source.mkdir(parents=True)
    for number in range(4):
        name = f"lfw_face_{number:03d}.png"
        shutil.copy(os.path.join(lfw_folder, name), source / name)
    config = CurationConfig(shard_size=2, **FAST)
    curate(str(source), str(output), config)
    moved = tmp_path / "moved"
    shutil.copytree(output, moved)
    detector = _CountingDetector()
    again = curate(str(moved / "source"), str(moved), config, detector=detector)
    assert again.complete and again.shards_reused == 2 and detector.calls == 0
