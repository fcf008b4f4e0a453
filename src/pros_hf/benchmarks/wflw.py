"""WFLW (Wu et al. 2018) as distributed: 98 landmarks, a face rectangle and six attribute flags per face.

Files: `WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt` (7,500 / 2,500
faces) and `WFLW_images/`. Each line holds 196 coordinates `x0 y0 x1 y1 ... x97 y97`, the rectangle `x_min y_min
x_max y_max`, six 0/1 flags (pose, expression, illumination, make-up, occlusion, blur) and the image path relative to
`WFLW_images/`. The flags make the six test subsets `test_pose`, `test_expression`, `test_illumination`,
`test_makeup`, `test_occlusion` and `test_blur`, and are kept in the `wflw_attributes` column (ids of the flags set).

Coordinates and rectangle are used as distributed (0-based pixels; HRNet and FaRL read them unchanged).
"""

from pathlib import Path

import numpy as np

from .errors import BenchmarkFormatError, at
from .files import BenchmarkReport, ImageIndex, SplitCount, build_split, find_dir, find_file, first_non_number, shown
from .protocols import PROTOCOLS

POINTS = 98
FLAG_NAMES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
LIST_FOLDERS = ("WFLW_annotations/list_98pt_rect_attr_train_test", "list_98pt_rect_attr_train_test", "")
NUMBERS = 2 * POINTS + 4  # the coordinates and the rectangle


def read_list(path: Path, name: str) -> dict[str, list]:
    """The columns of one `list_98pt_rect_attr_*.txt` file."""
    columns: dict[str, list] = {"file_name": [], "landmarks": [], "face_box": [], "wflw_attributes": []}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            where = at(name, number)
            if len(fields) < NUMBERS + len(FLAG_NAMES) + 1:
                raise BenchmarkFormatError(
                    f"{where}: {len(fields)} fields, expected {NUMBERS + len(FLAG_NAMES) + 1} "
                    f"({2 * POINTS} coordinates, the rectangle, {len(FLAG_NAMES)} flags, the "
                    "image path)."
                )
            try:
                numbers = np.asarray(fields[:NUMBERS], dtype=np.float64)
            except ValueError:
                bad = first_non_number(fields[:NUMBERS])
                raise BenchmarkFormatError(f"{where}: {bad[:30]!r} is not a number.") from None
            flags = fields[NUMBERS : NUMBERS + len(FLAG_NAMES)]
            if any(flag not in ("0", "1") for flag in flags):
                raise BenchmarkFormatError(
                    f"{where}: attribute flags {' '.join(flags)!r} must be 0 or 1 ({', '.join(FLAG_NAMES)})."
                )
            columns["file_name"].append(" ".join(fields[NUMBERS + len(FLAG_NAMES) :]))
            columns["landmarks"].append(numbers[: 2 * POINTS].reshape(POINTS, 2).astype(np.float32))
            columns["face_box"].append(numbers[2 * POINTS :].tolist())
            columns["wflw_attributes"].append([i for i, flag in enumerate(flags) if flag == "1"])
    return columns


def load(root: Path, report: BenchmarkReport) -> dict:
    import datasets

    protocol = PROTOCOLS["wflw"]
    title = protocol.title
    images = ImageIndex(find_dir(root, ("WFLW_images",), title, "image (WFLW_images)"))
    features = {
        "landmarks": datasets.Array2D(shape=(POINTS, 2), dtype="float32"),
        "face_box": datasets.List(datasets.Value("float32"), length=4),
        "wflw_attributes": datasets.List(datasets.ClassLabel(names=list(FLAG_NAMES))),
    }
    image_dir = shown(root, images.root) + "/"
    out = {}
    for split in ("train", "test"):
        path = find_file(root, f"list_98pt_rect_attr_{split}.txt", LIST_FOLDERS, title)
        name = shown(root, path)
        columns = read_list(path, name)
        out[split] = build_split(
            title, report.add(SplitCount(split, protocol.splits[split], name, image_dir)), columns, features, images
        )
        if split != "test":
            continue
        for flag, flag_name in enumerate(FLAG_NAMES):
            rows = [i for i, ids in enumerate(columns["wflw_attributes"]) if flag in ids]
            subset = {key: [values[i] for i in rows] for key, values in columns.items()}
            count = SplitCount(
                f"test_{flag_name}", protocol.splits[f"test_{flag_name}"], f"{name} (flag {flag_name})", image_dir
            )
            out[count.split] = build_split(title, report.add(count), subset, features, images)
    return out
