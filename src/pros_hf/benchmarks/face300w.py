"""300W (Sagonas et al. 2013) in its two distributed forms: the iBUG `.pts` files, or HRNet's CSV files.

`.pts` layout (`layout="pts"`): the folders `afw/`, `helen/trainset/`, `helen/testset/`, `lfpw/trainset/`,
`lfpw/testset/` and `ibug/` of the iBUG release, each with one `.pts` file beside each image (`.jpg` or `.png`, same
name). A `.pts` file is `version: 1`, `n_points:  68`, `{`, 68 lines `x y`, `}`. Splits: `train` = AFW + HELEN and
LFPW training sets (3,148), `test_common` = HELEN + LFPW test sets (554), `test_challenging` = iBUG (135),
`test_full` = both (689). iBUG has a file name with a space (`image_092 _01.jpg`): names are used as they are.
`face_box` is the tight box of the 68 points (the official detector boxes of bounding_boxes.zip are not read).

CSV layout (`layout="csv"`): HRNet-Facial-Landmark-Detection's `face_landmarks_300w_train.csv`,
`face_landmarks_300w_valid_common.csv`, `..._valid_challenge.csv`, `..._valid.csv` (full) and `..._test.csv` (the
300-W challenge's private test set, 600 images, split `test_private`), at the data folder's root; each row is
`image_name,scale,center_w,center_h,x0,y0,...,x67,y67`, the image path relative to the data folder (or its `images/`
folder, HRNet's layout). `face_box` is HRNet's square: the centre +- 100 * scale (side scale * 200). HRNet lists the
iBUG image with a space without it (`ibug/image_092_01.jpg`); that name is resolved to the file. The default
(`layout="auto"`) reads the CSV files when `face_landmarks_300w_train.csv` is there, the `.pts` folders otherwise.

Coordinates: the `.pts` files are 1-based (MATLAB: the first pixel's centre is 1); they are converted to the
package's 0-based convention (the first pixel's centre is 0) by subtracting 1. HRNet's CSV holds the same numbers as
the `.pts` files (its rows repeat them to the sixth decimal), so its points and centre get the same conversion.
(FaRL's reader subtracts 2.0 instead; a constant shift of the reference frame does not change an NME computed with
predictions in the same frame.)
"""

import csv
import logging
from pathlib import Path

import numpy as np

from .errors import BenchmarkFormatError, at
from .files import BenchmarkReport, ImageIndex, SplitCount, build_split, first_non_number, shown
from .protocols import PROTOCOLS

logger = logging.getLogger("pros_hf.benchmarks")

POINTS = 68
PTS_FOLDERS = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "test_common": ("helen/testset", "lfpw/testset"),
    "test_challenging": ("ibug",),
}
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG")
CSV_FILES = {
    "train": "face_landmarks_300w_train.csv",
    "test_common": "face_landmarks_300w_valid_common.csv",
    "test_challenging": "face_landmarks_300w_valid_challenge.csv",
    "test_full": "face_landmarks_300w_valid.csv",
    "test_private": "face_landmarks_300w_test.csv",
}
PRIVATE_TEST_SIZE = 600
# names in HRNet's CSV files that differ from the distributed file names
CSV_RENAMES = {"ibug/image_092_01.jpg": "ibug/image_092 _01.jpg"}


def read_pts(path: Path, name: str, num_points: int = POINTS) -> np.ndarray:
    """The (num_points, 2) float32 points of a `.pts` file, as written (1-based)."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    declared, start = None, None
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if text.startswith("n_points"):
            value = text.split(":", 1)[-1].strip()
            if not value.isdigit():
                raise BenchmarkFormatError(f"{at(name, number)}: {text!r} does not give the number of points.")
            declared = int(value)
            if declared != num_points:
                raise BenchmarkFormatError(f"{at(name, number)}: n_points {declared}, expected {num_points}.")
        elif text == "{":
            start = number
            break
    if declared is None or start is None:
        raise BenchmarkFormatError(f"{name}: no 'n_points:' line followed by '{{' (not a .pts file).")
    points = []
    for number in range(start + 1, len(lines) + 1):
        text = lines[number - 1].strip()
        if text == "}":
            break
        fields = text.split()
        try:
            if len(fields) != 2:
                raise ValueError
            points.append((float(fields[0]), float(fields[1])))
        except ValueError:
            raise BenchmarkFormatError(f"{at(name, number)}: {text[:40]!r} is not two numbers 'x y'.") from None
    else:
        raise BenchmarkFormatError(f"{name}: no closing '}}' after the points.")
    if len(points) != num_points:
        raise BenchmarkFormatError(f"{name}: {len(points)} points between '{{' and '}}', expected {num_points}.")
    return np.asarray(points, dtype=np.float32)


def _tight_box(points: np.ndarray) -> list[float]:
    return [float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max())]


def _read_pts_folders(root: Path, folders) -> tuple[dict[str, list], str]:
    columns: dict[str, list] = {"file_name": [], "landmarks": [], "face_box": []}
    for folder in folders:
        for pts in sorted((root / folder).glob("*.pts")):
            name = shown(root, pts)
            image = next((pts.with_suffix(s) for s in IMAGE_SUFFIXES if pts.with_suffix(s).is_file()), None)
            # a .pts without its image is listed under the .jpg name, so that it is counted as missing
            image_name = shown(root, image) if image is not None else name[:-4] + ".jpg"
            points = read_pts(pts, name) - 1.0  # 1-based -> 0-based
            columns["file_name"].append(image_name)
            columns["landmarks"].append(points)
            columns["face_box"].append(_tight_box(points))
    return columns, " and ".join(f"{f}/*.pts" for f in folders)


def read_csv(path: Path, name: str, images: ImageIndex) -> dict[str, list]:
    """The columns of one of HRNet's 300W CSV files (0-based points, HRNet's square as `face_box`)."""
    columns: dict[str, list] = {"file_name": [], "landmarks": [], "face_box": []}
    width = 4 + 2 * POINTS
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if number == 1 or not row:  # the header row
                continue
            where = at(name, number)
            if len(row) != width:
                raise BenchmarkFormatError(
                    f"{where}: {len(row)} fields, expected {width} (image_name, scale, "
                    f"center_w, center_h and {POINTS} x, y pairs)."
                )
            try:
                numbers = np.asarray([float(v) for v in row[1:]], dtype=np.float64)
            except ValueError:
                bad = first_non_number(row[1:])
                raise BenchmarkFormatError(f"{where}: {bad[:30]!r} is not a number.") from None
            scale, centre = numbers[0], numbers[1:3] - 1.0
            if not scale > 0:
                raise BenchmarkFormatError(f"{where}: scale {row[1]!r} must be positive.")
            file = row[0].strip()
            if not images.exists(file) and file in CSV_RENAMES and images.exists(CSV_RENAMES[file]):
                file = CSV_RENAMES[file]
            half = 100.0 * scale
            columns["file_name"].append(file)
            columns["landmarks"].append((numbers[3:].reshape(POINTS, 2) - 1.0).astype(np.float32))
            columns["face_box"].append([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])
    return columns


def _concat(parts: list[dict[str, list]]) -> dict[str, list]:
    return {key: [value for part in parts for value in part[key]] for key in parts[0]}


def load(root: Path, report: BenchmarkReport, layout: str = "auto") -> dict:
    import datasets

    protocol = PROTOCOLS["300w"]
    title = protocol.title
    if layout not in ("auto", "pts", "csv"):
        raise ValueError(f"layout must be 'auto', 'pts' or 'csv', got {layout!r}.")
    if layout == "auto":
        layout = "csv" if (root / CSV_FILES["train"]).is_file() else "pts"
    features = {
        "landmarks": datasets.Array2D(shape=(POINTS, 2), dtype="float32"),
        "face_box": datasets.List(datasets.Value("float32"), length=4),
    }
    parts: dict[str, tuple[dict[str, list], str]] = {}
    if layout == "pts":
        absent = [f for folders in PTS_FOLDERS.values() for f in folders if not (root / f).is_dir()]
        if len(absent) == sum(len(f) for f in PTS_FOLDERS.values()):
            raise BenchmarkFormatError(
                f"{title}: none of the folders {', '.join(f'{f}/' for fs in PTS_FOLDERS.values() for f in fs)} is in "
                f"{root}, and there is no {CSV_FILES['train']} (HRNet's layout)."
            )
        images = ImageIndex(root)
        for split, folders in PTS_FOLDERS.items():
            parts[split] = _read_pts_folders(root, folders)
        parts["test_full"] = (
            _concat([parts["test_common"][0], parts["test_challenging"][0]]),
            f"{parts['test_common'][1]} and {parts['test_challenging'][1]}",
        )
    else:
        images = ImageIndex(root / "images" if (root / "images").is_dir() else root)
        for split, file in CSV_FILES.items():
            if (root / file).is_file():
                parts[split] = (read_csv(root / file, file, images), file)
        if "train" not in parts:
            raise BenchmarkFormatError(f"{title}: {CSV_FILES['train']} not found in {root}.")
        absent = [file for split, file in CSV_FILES.items() if split != "test_full" and split not in parts]
        if absent:
            logger.warning(
                "%s: %s not found in %s; the split(s) they hold are left out.", title, ", ".join(absent), root
            )
        if "test_full" not in parts and "test_common" in parts and "test_challenging" in parts:
            parts["test_full"] = (
                _concat([parts["test_common"][0], parts["test_challenging"][0]]),
                f"{CSV_FILES['test_common']} and {CSV_FILES['test_challenging']}",
            )
    expected = {**protocol.splits, "test_private": PRIVATE_TEST_SIZE}
    out = {}
    for split in ("train", "test_common", "test_challenging", "test_full", "test_private"):
        if split not in parts:
            continue
        columns, source = parts[split]
        image_dir = f"{shown(root, images.root)}/" if images.root != root else "the data folder"
        count = report.add(SplitCount(split, expected[split], source, image_dir))
        out[split] = build_split(title, count, columns, features, images)
    return out
