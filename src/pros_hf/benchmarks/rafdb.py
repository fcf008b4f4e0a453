"""RAF-DB basic (Li et al. 2017) as distributed: seven basic expressions of aligned 100 x 100 faces.

Files (at the data folder's root or in its `basic/` folder, as the release names it):
- `EmoLabel/list_patition_label.txt` (sic): `train_00001.jpg 5`, one line per image; the prefix is the split
  (12,271 train / 3,068 test) and the label is 1-7 = surprise, fear, disgust, happiness, sadness, anger, neutral;
- `Image/aligned/train_00001_aligned.jpg`: the aligned faces (the protocol's images; `Image/original/` is not read).

Labels are mapped to the project's order (neutral, happiness, sadness, surprise, fear, disgust, anger).
"""

from pathlib import Path

from ..data.face_params import EXPRESSION_NAMES
from .errors import BenchmarkFormatError, at
from .files import BenchmarkReport, ImageIndex, SplitCount, build_split, find_dir, find_file, shown
from .protocols import PROTOCOLS

LABEL_FILE = "EmoLabel/list_patition_label.txt"
RAFDB_NAMES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")  # labels 1..7
# RAF-DB label (1-7) -> the project's class id
LABEL_TO_ID = {label: EXPRESSION_NAMES.index(name) for label, name in enumerate(RAFDB_NAMES, start=1)}


def read_labels(path: Path, name: str) -> dict[str, tuple[list[str], list[int]]]:
    """split -> (aligned image names, project class ids), from `list_patition_label.txt`."""
    splits: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise BenchmarkFormatError(f"{at(name, number)}: {line.strip()[:60]!r}; expected 'train_00001.jpg 5'.")
            file, label = fields
            split = file.split("_", 1)[0]
            if split not in splits or not file.lower().endswith(".jpg"):
                raise BenchmarkFormatError(f"{at(name, number)}: {file!r} is not a train_*.jpg or test_*.jpg name.")
            if label not in {str(k) for k in LABEL_TO_ID}:
                raise BenchmarkFormatError(
                    f"{at(name, number)}: label {label} is not in 1-7 "
                    f"({', '.join(f'{k} {n}' for k, n in enumerate(RAFDB_NAMES, 1))})."
                )
            files, ids = splits[split]
            files.append(f"{file[:-4]}_aligned.jpg")
            ids.append(LABEL_TO_ID[int(label)])
    return splits


def load(root: Path, report: BenchmarkReport) -> dict:
    import datasets

    protocol = PROTOCOLS["rafdb"]
    if not (root / LABEL_FILE).is_file() and (root / "basic" / LABEL_FILE).is_file():
        root_files = root / "basic"
    else:
        root_files = root
    label_path = find_file(root_files, LABEL_FILE, ("",), protocol.title)
    images = ImageIndex(find_dir(root_files, ("Image/aligned",), protocol.title, "aligned-image"))
    label_name = shown(root, label_path)
    feature = {"expression": datasets.ClassLabel(names=list(EXPRESSION_NAMES))}
    out = {}
    for split, (files, ids) in read_labels(label_path, label_name).items():
        count = report.add(SplitCount(split, protocol.splits[split], label_name, shown(root, images.root) + "/"))
        out[split] = build_split(protocol.title, count, {"file_name": files, "expression": ids}, feature, images)
    return out
