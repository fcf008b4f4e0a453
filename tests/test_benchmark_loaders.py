"""Benchmark loaders on small folders written here in each data set's native format, quirks included: split counts,
label mappings, coordinate conventions, the warning on missing files and the one-line errors on wrong folders."""

import logging

import numpy as np
import pytest
from PIL import Image

from pros_hf.benchmarks import CELEBA_ATTRIBUTE_NAMES, BenchmarkFormatError, load_benchmark
from pros_hf.data.face_params import EXPRESSION_NAMES


def _image(path, size=(24, 20), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "pros_hf.benchmarks"]


# ---------------------------------------------------------------------------------------------------------------------
# CelebA

CELEBA_FILES = [f"{i:06d}.jpg" for i in range(1, 7)]
CELEBA_PARTITION = [0, 0, 0, 1, 2, 2]


def _celeba(root, values, layout="release"):
    """list_attr_celeba.txt with CelebA's spacing (two spaces before a 1, one before a -1), the partition, and the
    images of the first five files (the sixth is missing)."""
    anno, evaluation = ("Anno", "Eval") if layout == "release" else ("", "")
    rows = [name + "".join(f" {v:2d}" for v in row) for name, row in zip(CELEBA_FILES, values)]
    _write(
        root / anno / "list_attr_celeba.txt",
        "\n".join([str(len(rows)), " ".join(CELEBA_ATTRIBUTE_NAMES) + " ", *rows]) + "\n",
    )
    _write(
        root / evaluation / "list_eval_partition.txt",
        "".join(f"{name} {split}\n" for name, split in zip(CELEBA_FILES, CELEBA_PARTITION)),
    )
    for name in CELEBA_FILES[:5]:
        _image(root / "img_align_celeba" / name, (178, 218))


@pytest.mark.parametrize("layout", ["release", "flat"])
def test_celeba(tmp_path, caplog, layout):
    values = np.random.default_rng(0).choice([-1, 1], (6, 40))
    _celeba(tmp_path, values, layout)
    assert "  1" in (tmp_path / ("Anno" if layout == "release" else "") / "list_attr_celeba.txt").read_text()
    splits, report = load_benchmark("celeba", tmp_path, return_report=True)
    assert {name: len(split) for name, split in splits.items()} == {"train": 3, "validation": 1, "test": 1}
    train = splits["train"]
    assert train.features["attributes"].feature.names == list(CELEBA_ATTRIBUTE_NAMES)
    for row, expected in zip(train, values[:3]):
        assert row["attributes"] == np.flatnonzero(expected == 1).tolist()
    assert train[0]["image"].size == (178, 218) and train[0]["file_name"] == "000001.jpg"
    assert splits["test"]["file_name"] == ["000005.jpg"]
    assert report.splits["test"].missing == 1 and report.splits["test"].listed == 2
    partition = "Eval/list_eval_partition.txt" if layout == "release" else "list_eval_partition.txt"
    assert (
        f"CelebA test: found 1 of the 19,962 published images; skipped 1 image(s) listed in {partition} but "
        f"missing under img_align_celeba/ (000006.jpg); {partition} lists 2."
    ) in _warnings(caplog)
    assert f"CelebA train: found 3 of the 162,770 published images; {partition} lists 3." in _warnings(caplog)


def test_celeba_errors(tmp_path):
    values = np.ones((6, 40), int)
    values[1, 4] = 0  # Bald of 000002.jpg, line 4
    _celeba(tmp_path, values)
    with pytest.raises(
        BenchmarkFormatError,
        match=r"^Anno/list_attr_celeba.txt line 4: Bald is '0'; values are 1 "
        r"or -1\.$",
    ):
        load_benchmark("celeba", tmp_path)
    (tmp_path / "Eval" / "list_eval_partition.txt").unlink()
    with pytest.raises(
        BenchmarkFormatError,
        match=r"CelebA: list_eval_partition.txt not found in .* \(looked for "
        r"list_eval_partition.txt, Eval/list_eval_partition.txt\)",
    ):
        load_benchmark("celeba", tmp_path)
    _write(tmp_path / "Eval" / "list_eval_partition.txt", "000001.jpg 0\n000002.jpg 3\n")
    _celeba(tmp_path, np.ones((6, 40), int))
    _write(tmp_path / "Eval" / "list_eval_partition.txt", "000001.jpg 0\n000002.jpg 3\n")
    with pytest.raises(BenchmarkFormatError, match=r"Eval/list_eval_partition.txt line 2: '000002.jpg 3'; expected"):
        load_benchmark("celeba", tmp_path)


def test_no_image_at_all_is_an_error(tmp_path):
    _celeba(tmp_path, np.ones((6, 40), int))
    for name in CELEBA_FILES[:5]:
        (tmp_path / "img_align_celeba" / name).unlink()
    with pytest.raises(
        BenchmarkFormatError,
        match=r"CelebA: not one listed image exists under img_align_celeba/ in "
        r".* \(Eval/list_eval_partition.txt lists 3 for train\)\.$",
    ):
        load_benchmark("celeba", tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# RAF-DB


def _rafdb(root, lines):
    _write(root / "EmoLabel" / "list_patition_label.txt", "".join(f"{name} {label}\n" for name, label in lines))
    for name, _ in lines:
        _image(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), (100, 100))


def test_rafdb_maps_its_labels_to_the_project_order(tmp_path, caplog):
    lines = [(f"train_{i:05d}.jpg", label) for i, label in enumerate(range(1, 8), start=1)] + [
        ("test_0001.jpg", 4),
        ("test_0002.jpg", 7),
    ]
    _rafdb(tmp_path / "basic", lines)  # the release's basic/ folder
    splits = load_benchmark("RAF-DB", tmp_path)
    assert len(splits["train"]) == 7 and len(splits["test"]) == 2
    names = splits["train"].features["expression"].names
    assert names == list(EXPRESSION_NAMES)
    # RAF-DB's 1..7 are surprise, fear, disgust, happiness, sadness, anger, neutral
    assert [names[i] for i in splits["train"]["expression"]] == [
        "surprise",
        "fear",
        "disgust",
        "happiness",
        "sadness",
        "anger",
        "neutral",
    ]
    assert [names[i] for i in splits["test"]["expression"]] == ["happiness", "neutral"]
    assert splits["test"]["file_name"] == ["test_0001_aligned.jpg", "test_0002_aligned.jpg"]
    assert "RAF-DB test: found 2 of the 3,068 published images" in _warnings(caplog)[1]


def test_rafdb_label_out_of_range(tmp_path):
    _rafdb(tmp_path, [("train_00001.jpg", 1), ("train_00002.jpg", 2), ("train_00003.jpg", 8)])
    with pytest.raises(
        BenchmarkFormatError,
        match=r"^EmoLabel/list_patition_label.txt line 3: label 8 is not in "
        r"1-7 \(1 surprise, 2 fear",
    ):
        load_benchmark("rafdb", tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# AffectNet

AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
)


def _affectnet_row(index, code, sub="101"):
    landmarks = ";".join(f"{10 + k * 0.5:.2f}" for k in range(136))
    return f"{sub}/img{index:03d}.jpg,{5 + index},6,80,90,{landmarks},{code},0.25,-0.5\n"


def _affectnet(root, train_codes, test_codes, header_on_validation=True):
    lists = root / "Manually_Annotated_file_lists"
    _write(lists / "training.csv", AFFECTNET_HEADER + "".join(_affectnet_row(i, c) for i, c in enumerate(train_codes)))
    rows = "".join(_affectnet_row(100 + i, c, "202") for i, c in enumerate(test_codes))
    _write(lists / "validation.csv", (AFFECTNET_HEADER if header_on_validation else "") + rows)
    for i, _ in enumerate(train_codes):
        _image(root / "Manually_Annotated_Images" / "101" / f"img{i:03d}.jpg")
    for i, _ in enumerate(test_codes):
        _image(root / "Manually_Annotated_Images" / "202" / f"img{100 + i:03d}.jpg")


def test_affectnet_drops_and_counts_the_non_face_codes(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pros_hf.benchmarks")
    _affectnet(tmp_path, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 1], [7, 3, 9], header_on_validation=False)
    seven, report = load_benchmark("affectnet7", tmp_path, return_report=True)
    assert len(seven["train"]) == 8 and len(seven["test"]) == 1
    assert seven["train"]["expression"] == [0, 1, 2, 3, 4, 5, 6, 1]  # AffectNet's 0-6 are the project's order
    assert report.splits["train"].dropped == {"contempt": 1, "none": 1, "uncertain": 1, "no-face": 2}
    assert report.splits["test"].dropped == {"contempt": 1, "uncertain": 1}
    assert any(
        "AffectNet-7 train: dropped 5 rows of Manually_Annotated_file_lists/training.csv by the 7-class "
        "protocol (contempt 1, none 1, uncertain 1, no-face 2)" in r.getMessage()
        for r in caplog.records
    )
    assert seven["train"][0]["face_box"] == [5.0, 6.0, 85.0, 96.0]  # face_x, face_y, + width, + height
    assert seven["train"][0]["valence"] == 0.25 and seven["train"][0]["arousal"] == -0.5
    assert "landmarks" not in seven["train"].column_names

    eight = load_benchmark("affectnet8", tmp_path, include_landmarks=True)
    assert len(eight["train"]) == 9 and len(eight["test"]) == 2
    assert eight["train"].features["expression"].names == [*EXPRESSION_NAMES, "contempt"]
    assert eight["test"]["expression"] == [7, 3]
    points = np.asarray(eight["train"][0]["landmarks"])
    assert points.shape == (68, 2) and points[1].tolist() == [11.0, 11.5]  # x2;y2 are the 3rd and 4th numbers


def test_affectnet_malformed_row(tmp_path):
    _affectnet(tmp_path, [0, 1], [2])
    path = tmp_path / "Manually_Annotated_file_lists" / "training.csv"
    _write(path, path.read_text() + "101/img009.jpg,5,6,80,90,1;2,3\n")
    with pytest.raises(
        BenchmarkFormatError,
        match=r"^Manually_Annotated_file_lists/training.csv line 4: 7 fields, "
        r"expected 9",
    ):
        load_benchmark("affectnet7", tmp_path)
    _write(path, AFFECTNET_HEADER + _affectnet_row(0, 11))
    with pytest.raises(BenchmarkFormatError, match=r"training.csv line 2: expression '11' is not a code 0-10"):
        load_benchmark("affectnet7", tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# 300W


def _pts(points, declared=None):
    lines = "\n".join(f"{x:.6f} {y:.6f}" for x, y in points)
    return f"version: 1\nn_points:  {declared or len(points)}\n{{\n{lines}\n}}\n"


def _face_points(seed, n=68):
    return np.random.default_rng(seed).uniform(20.5, 60.5, (n, 2))


FOLDERS_300W = {"afw": 2, "helen/trainset": 1, "lfpw/trainset": 1, "helen/testset": 1, "lfpw/testset": 1, "ibug": 1}


def _300w(root):
    """Each folder's .pts files beside their images; iBUG's with the space in its name; LFPW's images are PNG."""
    points = {}
    for folder, count in FOLDERS_300W.items():
        for k in range(count):
            stem = "image_092 _01" if folder == "ibug" else f"{folder.replace('/', '_')}_{k}"
            points[f"{folder}/{stem}"] = _face_points(len(points))
            _write(root / folder / f"{stem}.pts", _pts(points[f"{folder}/{stem}"]))
            _image(root / folder / f"{stem}{'.png' if folder.startswith('lfpw') else '.jpg'}", (80, 80))
    return points


def test_300w_pts(tmp_path, caplog):
    points = _300w(tmp_path)
    (tmp_path / "afw" / "afw_1.jpg").unlink()  # a .pts without its image
    splits, report = load_benchmark("300w", tmp_path, return_report=True)
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {"train": 3, "test_common": 2, "test_challenging": 1, "test_full": 3}
    assert report.splits["train"].missing == 1
    assert splits["test_challenging"]["file_name"] == ["ibug/image_092 _01.jpg"]
    assert splits["test_common"]["file_name"] == [
        "helen/testset/helen_testset_0.jpg",
        "lfpw/testset/lfpw_testset_0.png",
    ]
    row = splits["test_challenging"][0]
    written = points["ibug/image_092 _01"]
    assert np.allclose(np.asarray(row["landmarks"]), written - 1.0, atol=1e-4)  # 1-based .pts -> 0-based
    assert row["face_box"] == pytest.approx([*(written.min(0) - 1), *(written.max(0) - 1)], abs=1e-4)
    assert row["image"].size == (80, 80)
    assert (
        "300W train: found 3 of the 3,148 published images; skipped 1 image(s) listed in afw/*.pts and "
        "helen/trainset/*.pts and lfpw/trainset/*.pts but missing under the data folder (afw/afw_1.jpg); "
        "afw/*.pts and helen/trainset/*.pts and lfpw/trainset/*.pts lists 4."
    ) in _warnings(caplog)


def test_300w_pts_errors(tmp_path):
    _300w(tmp_path)
    _write(tmp_path / "helen" / "trainset" / "helen_trainset_0.pts", _pts(_face_points(0, 67), declared=68))
    with pytest.raises(
        BenchmarkFormatError,
        match=r"^helen/trainset/helen_trainset_0.pts: 67 points between '\{' "
        r"and '\}', expected 68\.$",
    ):
        load_benchmark("300w", tmp_path)
    _write(tmp_path / "helen" / "trainset" / "helen_trainset_0.pts", _pts(_face_points(0, 67)))
    with pytest.raises(BenchmarkFormatError, match=r"helen_trainset_0.pts line 2: n_points 67, expected 68"):
        load_benchmark("300w", tmp_path)
    with pytest.raises(BenchmarkFormatError, match=r"300W: none of the folders afw/, helen/trainset/"):
        load_benchmark("300w", tmp_path / "helen")


def _hrnet_row(name, scale, centre, points):
    return ",".join([name, f"{scale}", f"{centre[0]}", f"{centre[1]}", *(f"{v:.6f}" for v in points.ravel())]) + "\n"


def test_300w_hrnet_csv(tmp_path, caplog):
    header = "image_name,scale,center_w,center_h," + ",".join(f"original_{i}_x,original_{i}_y" for i in range(68))
    train_points = _face_points(1)
    _write(
        tmp_path / "face_landmarks_300w_train.csv",
        header + "\n" + _hrnet_row("afw/1_1.jpg", 0.2, (41.0, 40.5), train_points),
    )
    _write(
        tmp_path / "face_landmarks_300w_valid_common.csv",
        header + "\n" + _hrnet_row("helen/testset/2_1.jpg", 0.25, (40.0, 41.0), _face_points(2)),
    )
    # HRNet writes iBUG's image_092 _01.jpg without its space
    _write(
        tmp_path / "face_landmarks_300w_valid_challenge.csv",
        header + "\n" + _hrnet_row("ibug/image_092_01.jpg", 0.3, (42.0, 39.0), _face_points(3)),
    )
    for name in ("afw/1_1.jpg", "helen/testset/2_1.jpg", "ibug/image_092 _01.jpg"):
        _image(tmp_path / "images" / name, (80, 80))
    splits = load_benchmark("300w", tmp_path)
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 1,
        "test_common": 1,
        "test_challenging": 1,
        "test_full": 2,
    }
    assert splits["test_challenging"]["file_name"] == ["ibug/image_092 _01.jpg"]
    row = splits["train"][0]
    assert np.allclose(np.asarray(row["landmarks"]), train_points - 1.0, atol=1e-4)  # same numbers as the .pts
    # HRNet's square: centre (41, 40.5) - 1 +- 100 * 0.2
    assert row["face_box"] == pytest.approx([20.0, 19.5, 60.0, 59.5])
    assert any("face_landmarks_300w_test.csv not found" in m for m in _warnings(caplog))
    _write(tmp_path / "face_landmarks_300w_train.csv", header + "\nafw/1_1.jpg,0.2,41,40.5,1,2\n")
    with pytest.raises(BenchmarkFormatError, match=r"^face_landmarks_300w_train.csv line 2: 6 fields, expected 140"):
        load_benchmark("300w", tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# WFLW

WFLW_LISTS = "WFLW_annotations/list_98pt_rect_attr_train_test"


def _wflw_line(seed, flags, path):
    points = _face_points(seed, 98)
    numbers = [*points.ravel(), 10, 12, 70, 75]
    return " ".join(f"{v:.6f}" for v in numbers) + " " + " ".join(map(str, flags)) + f" {path}\n"


def _wflw(root, test_flags):
    _write(
        root / WFLW_LISTS / "list_98pt_rect_attr_train.txt",
        "".join(_wflw_line(i, [0] * 6, f"1--Handshaking/1_{i}.jpg") for i in range(3)),
    )
    _write(
        root / WFLW_LISTS / "list_98pt_rect_attr_test.txt",
        "".join(_wflw_line(10 + i, flags, f"2--Demonstration/2_{i}.jpg") for i, flags in enumerate(test_flags)),
    )
    for i in range(3):
        _image(root / "WFLW_images" / "1--Handshaking" / f"1_{i}.jpg")
    for i in range(len(test_flags)):
        _image(root / "WFLW_images" / "2--Demonstration" / f"2_{i}.jpg")


def test_wflw_attribute_subsets(tmp_path):
    flags = [[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]
    _wflw(tmp_path, flags)
    splits = load_benchmark("wflw", tmp_path)
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {
        "train": 3,
        "test": 4,
        "test_pose": 2,
        "test_expression": 2,
        "test_illumination": 1,
        "test_makeup": 1,
        "test_occlusion": 2,
        "test_blur": 2,
    }
    assert splits["test_pose"]["file_name"] == ["2--Demonstration/2_0.jpg", "2--Demonstration/2_3.jpg"]
    assert splits["test"]["wflw_attributes"] == [[0, 5], [1, 4], [], [0, 1, 2, 3, 4, 5]]
    row = splits["test"][0]
    assert np.allclose(np.asarray(row["landmarks"]), _face_points(10, 98), atol=1e-4)  # used as distributed
    assert row["face_box"] == [10.0, 12.0, 70.0, 75.0]


def test_wflw_bad_flag(tmp_path):
    _wflw(tmp_path, [[0, 0, 2, 0, 0, 0]])
    with pytest.raises(
        BenchmarkFormatError,
        match=rf"^{WFLW_LISTS}/list_98pt_rect_attr_test.txt line 1: attribute "
        r"flags '0 0 2 0 0 0' must be 0 or 1",
    ):
        load_benchmark("wflw", tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# AFLW-19


def _aflw(root, n=20_006, data_columns=38):
    """An AFLWinfo_release.mat with the protocol's 20,000 training faces plus 6 test faces; images exist for the
    first 3 training faces of `ra` and for every test face."""
    import scipy.io

    rng = np.random.default_rng(0)
    names = np.empty((n, 1), dtype=object)
    names[:, 0] = [f"{'023'[k % 3]}/image{k:05d}.jpg" for k in range(n)]  # AFLW's folders 0/, 2/, 3/
    data = rng.uniform(30, 90, (n, data_columns))
    bbox = np.tile([20.0, 100.0, 25.0, 110.0], (n, 1))  # x1 x2 y1 y2
    mask = np.ones((n, 19))
    ra = rng.permutation(n) + 1
    test = ra[20_000:] - 1
    mask[test[:2], 5] = 0  # two test faces with a hidden point: not frontal
    scipy.io.savemat(
        root / "AFLWinfo_release.mat",
        {"nameList": names, "data": data, "bbox": bbox, "mask_new": mask, "ra": ra[None, :]},
    )
    for k in [*(ra[:3] - 1), *test]:
        _image(root / "data" / "flickr" / names[k, 0], (120, 130))
    return data, ra


@pytest.fixture(scope="module")
def aflw_folder(tmp_path_factory):
    """Written once: a 20,006-name cell array takes seconds to save."""
    root = tmp_path_factory.mktemp("aflw19")
    return root, *_aflw(root)


def test_aflw19(aflw_folder, caplog):
    root, data, ra = aflw_folder
    splits, report = load_benchmark("aflw19", root, return_report=True)
    assert {name: len(split) for name, split in splits.items()} == {"train": 3, "test_full": 6, "test_frontal": 4}
    assert report.splits["train"].listed == 20_000 and report.splits["train"].missing == 19_997
    first = splits["test_full"][0]
    k = ra[20_000] - 1
    assert first["file_name"] == f"{'023'[k % 3]}/image{k:05d}.jpg"
    assert np.allclose(np.asarray(first["landmarks"]), np.stack([data[k, :19], data[k, 19:]], 1), atol=1e-4)
    assert first["face_box"] == [20.0, 25.0, 100.0, 110.0]  # (x1, y1, x2, y2) from bbox's x1 x2 y1 y2
    assert first["visible"][5] is False and splits["test_frontal"][0]["visible"] == [True] * 19
    assert any(
        m.startswith(
            "AFLW-19 train: found 3 of the 20,000 published images; skipped 19,997 image(s) listed "
            "in AFLWinfo_release.mat (ra[:20000]) but missing under data/flickr/"
        )
        for m in _warnings(caplog)
    )


def test_aflw19_wrong_files(tmp_path):
    _aflw(tmp_path, n=30, data_columns=36)
    with pytest.raises(
        BenchmarkFormatError,
        match=r"^AFLWinfo_release.mat: data is 30 x 36, expected 30 x 38 "
        r"\(nameList has 30 names\)\.$",
    ):
        load_benchmark("aflw19", tmp_path)
    _aflw(tmp_path, n=30)
    with pytest.raises(
        BenchmarkFormatError,
        match=r"^AFLW-19: AFLWinfo_release.mat holds 30 faces; the protocol "
        r"trains on the first 20,000 of ra",
    ):
        load_benchmark("aflw19", tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# LFWA


def _lfwa(root, labels_as=(0, 1)):
    import scipy.io

    people = ["Aaron_Eckhart", "Zico"]
    names = [f"{people[k % 2]}\\{people[k % 2]}_{k + 1:04d}.jpg" for k in range(5)]
    cell = np.empty((5, 1), dtype=object)
    cell[:, 0] = names
    attribute_names = np.empty((1, 40), dtype=object)
    attribute_names[0, :] = CELEBA_ATTRIBUTE_NAMES
    positive = np.random.default_rng(0).random((5, 40)) > 0.5
    label = np.where(positive, labels_as[1], labels_as[0]).astype(float)
    scipy.io.savemat(root / "lfw_att_40.mat", {"name": cell, "label": label, "AttrName": attribute_names})
    scipy.io.savemat(
        root / "indices_train_test.mat",
        {"indices_img_train": np.array([[1.0, 3.0, 5.0]]), "indices_img_test": np.array([[2.0, 4.0]])},
    )
    for name in names:
        _image(root / "lfw" / name.replace("\\", "/"), (250, 250))
    return names, positive


@pytest.mark.parametrize("labels_as", [(0, 1), (-1, 1)])
def test_lfwa(tmp_path, labels_as):
    names, positive = _lfwa(tmp_path, labels_as)
    splits = load_benchmark("lfwa", tmp_path)
    assert len(splits["train"]) == 3 and len(splits["test"]) == 2
    assert splits["train"]["file_name"] == [
        names[0].replace("\\", "/"),
        "Aaron_Eckhart/Aaron_Eckhart_0003.jpg",
        "Aaron_Eckhart/Aaron_Eckhart_0005.jpg",
    ]
    assert splits["test"]["attributes"] == [np.flatnonzero(positive[1]).tolist(), np.flatnonzero(positive[3]).tolist()]
    assert splits["test"].features["attributes"].feature.names == list(CELEBA_ATTRIBUTE_NAMES)


def test_lfwa_refuses_kumar_attributes(tmp_path):
    _write(tmp_path / "lfw_attributes.txt", "# Kumar et al.\n")
    with pytest.raises(
        BenchmarkFormatError,
        match=r"holds lfw_attributes.txt \(Kumar et al.'s 73 real-valued "
        r"attributes\); LFWA is Liu et al.'s 40-attribute lfw_att_40.mat",
    ):
        load_benchmark("lfwa", tmp_path)


def test_lfwa_matlab_v73(tmp_path):
    """The HDF5 form of the same files, laid out as MATLAB writes it (cell arrays of references to uint16 character
    arrays, every array transposed)."""
    h5py = pytest.importorskip("h5py")
    names, positive = _lfwa(tmp_path)
    for path in (tmp_path / "lfw_att_40.mat", tmp_path / "indices_train_test.mat"):
        path.unlink()
    # MATLAB's v7.3 files start with a 512-byte header (text, then version 0x0200 and the endian mark) before HDF5
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(124) + b"\x00\x02IM"
    with h5py.File(tmp_path / "lfw_att_40.mat", "w", userblock_size=512) as handle:
        refs = []
        for k, name in enumerate(names):
            refs.append(handle.create_dataset(f"#refs#/n{k}", data=np.array([[ord(c)] for c in name], np.uint16)).ref)
        handle.create_dataset("name", data=np.array([refs], dtype=h5py.ref_dtype))
        handle.create_dataset("label", data=positive.astype(float).T)
    with open(tmp_path / "lfw_att_40.mat", "r+b") as raw:
        raw.write(header)
    with h5py.File(tmp_path / "indices_train_test.mat", "w") as handle:
        handle.create_dataset("indices_img_train", data=np.array([[1.0], [3.0], [5.0]]))
        handle.create_dataset("indices_img_test", data=np.array([[2.0], [4.0]]))
    splits = load_benchmark("lfwa", tmp_path)  # no AttrName: CelebA's names
    assert splits["train"]["file_name"][1] == "Aaron_Eckhart/Aaron_Eckhart_0003.jpg"
    assert splits["test"]["attributes"][0] == np.flatnonzero(positive[1]).tolist()


def test_lfwa_v73_without_h5py_says_what_to_install(tmp_path, monkeypatch):
    import sys

    _lfwa(tmp_path)
    _write(tmp_path / "lfw_att_40.mat", "x" * 512).write_bytes(b"x" * 512 + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` fails, as where it is not installed
    with pytest.raises(ImportError, match=r"lfw_att_40.mat is a MATLAB v7.3 \(HDF5\) file; reading it needs h5py"):
        load_benchmark("lfwa", tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# The registry and the fine-tuning data path


def test_registry_errors(tmp_path):
    with pytest.raises(BenchmarkFormatError, match="RAF-DB: data folder .*missing does not exist"):
        load_benchmark("rafdb", tmp_path / "missing")
    with pytest.raises(
        TypeError,
        match=r"load_benchmark\('300w'\) got unknown option\(s\) \['classes'\]; its "
        r"options: layout",
    ):
        load_benchmark("300w", tmp_path, classes=7)
    with pytest.raises(ValueError, match="unknown benchmark 'fer2013'"):
        load_benchmark("fer2013", tmp_path)
    with pytest.raises(BenchmarkFormatError, match=r"RAF-DB: EmoLabel/list_patition_label.txt not found"):
        load_benchmark("rafdb", tmp_path)


def test_splits_feed_the_fine_tuning_data_path(tmp_path):
    from pros_hf.finetuning import load_task_data, normalize_task_dataset, validate_task_dataset

    _rafdb(tmp_path / "raf", [("train_00001.jpg", 4), ("train_00002.jpg", 7), ("test_0001.jpg", 1)])
    splits = load_benchmark("rafdb", tmp_path / "raf")
    train, labels = normalize_task_dataset(splits["train"], "expression")
    assert labels.label_names == EXPRESSION_NAMES and train["expression"] == [1, 0]
    splits.save_to_disk(str(tmp_path / "saved"))
    data = load_task_data("expression", dataset=str(tmp_path / "saved"))
    assert len(data.train) == 2 and len(data.test) == 1 and data.test[0]["image"].size == (100, 100)

    _300w(tmp_path / "300w")
    landmarks = load_benchmark("300w", tmp_path / "300w")
    test, labels = normalize_task_dataset(landmarks["test_full"], "landmarks")
    validate_task_dataset(test, labels)
    assert labels.num_landmarks == 68 and len(test) == 3
