"""AffectNet (Mollahosseini et al. 2017) as distributed: the manually annotated images and their two CSV files.

Files (at the data folder's root or in `Manually_Annotated_file_lists/`):
- `training.csv` and `validation.csv`, header `subDirectory_filePath,face_x,face_y,face_width,face_height,
  facial_landmarks,expression,valence,arousal` (a file without the header row is read in that column order);
  `facial_landmarks` is `x1;y1;x2;y2;...` (68 points); `expression` is 0-10 = neutral, happy, sad, surprise, fear,
  disgust, anger, contempt, none, uncertain, no-face;
- `Manually_Annotated_Images/` (or `Manually_Annotated/Manually_Annotated_Images/`), which `subDirectory_filePath`
  is relative to.

The published validation set is the literature's test set (500 images per class). `affectnet7` keeps the seven
basic expressions (3,500 test images), `affectnet8` adds contempt as an eighth class (4,000); rows with the other
codes are dropped and counted per code in the report and the log. Columns: `expression`, `face_box` (face_x, face_y,
face_x + face_width, face_y + face_height), `valence`, `arousal`, and with `include_landmarks=True` the 68
`landmarks` (off by default: parsing 136 numbers a row for 400,000 rows costs time the expression task does not need).
"""

import csv
import logging
from pathlib import Path

from .errors import BenchmarkFormatError, at
from .files import BenchmarkReport, ImageIndex, SplitCount, build_split, find_dir, find_file, shown
from .protocols import PROTOCOLS

logger = logging.getLogger("pros_hf.benchmarks")

COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
CODE_NAMES = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
    "none",
    "uncertain",
    "no-face",
)
# AffectNet's codes 0-6 are already the project's order (neutral, happiness, sadness, surprise, fear, disgust, anger)
CSV_FOLDERS = ("", "Manually_Annotated_file_lists")
IMAGE_FOLDERS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")


def _number(text: str, where: str, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BenchmarkFormatError(f"{where}: {column} {text[:30]!r} is not a number.") from None


def read_csv(path: Path, name: str, classes: int, include_landmarks: bool) -> tuple[dict[str, list], dict[str, int]]:
    """(columns of the kept rows, dropped count per code name) of one AffectNet CSV file."""
    columns: dict[str, list] = {"file_name": [], "expression": [], "face_box": [], "valence": [], "arousal": []}
    if include_landmarks:
        columns["landmarks"] = []
    dropped: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not the header
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if number == 1 and row[0].strip() == COLUMNS[0]:
                if tuple(cell.strip() for cell in row) != COLUMNS:
                    raise BenchmarkFormatError(
                        f"{at(name, 1)}: header {','.join(row)[:120]!r}; expected {','.join(COLUMNS)}."
                    )
                continue
            where = at(name, number)
            if len(row) != len(COLUMNS):
                raise BenchmarkFormatError(
                    f"{where}: {len(row)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)})."
                )
            code = row[6].strip()
            if not code.isdigit() or int(code) >= len(CODE_NAMES):
                raise BenchmarkFormatError(
                    f"{where}: expression {code!r} is not a code 0-10 "
                    f"({', '.join(f'{i} {n}' for i, n in enumerate(CODE_NAMES))})."
                )
            code = int(code)
            if code >= classes:
                dropped[CODE_NAMES[code]] = dropped.get(CODE_NAMES[code], 0) + 1
                continue
            x, y, width, height = (_number(row[i], where, COLUMNS[i]) for i in range(1, 5))
            columns["file_name"].append(row[0].strip())
            columns["expression"].append(code)
            columns["face_box"].append([x, y, x + width, y + height])
            columns["valence"].append(_number(row[7], where, "valence"))
            columns["arousal"].append(_number(row[8], where, "arousal"))
            if include_landmarks:
                values = [v for v in row[5].split(";") if v.strip()]
                if len(values) != 136:
                    raise BenchmarkFormatError(
                        f"{where}: facial_landmarks holds {len(values)} numbers, expected 136 (x1;y1;...;x68;y68)."
                    )
                points = [_number(v, where, "facial_landmarks") for v in values]
                columns["landmarks"].append([points[i : i + 2] for i in range(0, 136, 2)])
    if not columns["file_name"] and not dropped:
        raise BenchmarkFormatError(f"{name}: no rows.")
    return columns, {name: dropped[name] for name in CODE_NAMES if name in dropped}


def load(root: Path, report: BenchmarkReport, classes: int, include_landmarks: bool = False) -> dict:
    import datasets

    protocol = PROTOCOLS[f"affectnet{classes}"]
    title = protocol.title
    images = ImageIndex(find_dir(root, IMAGE_FOLDERS, title, "image (Manually_Annotated_Images)"))
    features = {
        "expression": datasets.ClassLabel(names=list(protocol.label_names)),
        "face_box": datasets.List(datasets.Value("float32"), length=4),
        "valence": datasets.Value("float32"),
        "arousal": datasets.Value("float32"),
    }
    if include_landmarks:
        features["landmarks"] = datasets.Array2D(shape=(68, 2), dtype="float32")
    out = {}
    for split, file in (("train", "training.csv"), ("test", "validation.csv")):
        path = find_file(root, file, CSV_FOLDERS, title)
        name = shown(root, path)
        columns, dropped = read_csv(path, name, classes, include_landmarks)
        count = report.add(
            SplitCount(split, protocol.splits[split], name, shown(root, images.root) + "/", dropped=dropped)
        )
        out[split] = build_split(title, count, columns, features, images)
        if dropped:
            logger.info(
                "%s %s: dropped %s rows of %s by the %d-class protocol (%s).",
                title,
                split,
                f"{sum(dropped.values()):,}",
                name,
                classes,
                ", ".join(f"{code} {n:,}" for code, n in dropped.items()),
            )
    return out
