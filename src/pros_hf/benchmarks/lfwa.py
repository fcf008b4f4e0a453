"""LFWA (Liu et al. 2015) as distributed: the 40 CelebA attributes annotated on LFW's 13,143 images.

Which LFWA: two attribute sets on LFW circulate. Kumar et al.'s `lfw_attributes.txt` (Columbia) gives 73 attributes
as real-valued classifier scores, with no train/test split. The attribute literature since Liu et al. 2015 (the
CelebA paper, and the face-attribute papers that compare with it) reports LFWA: 40 binary attributes, 6,263 train /
6,880 test images, released with CelebA's annotations as two MATLAB files. That is the one read here:
- `lfw_att_40.mat`: `name` (13,143 paths `Person_Name\\Person_Name_0001.jpg`), `label` (13,143 x 40, 0/1 or -1/1)
  and `AttrName` (the 40 names; CelebA's names in CelebA's order when the field is absent);
- `indices_train_test.mat`: `indices_img_train` (6,263) and `indices_img_test` (6,880), 1-based rows of the above;
- the LFW images, under `lfw/` (or `lfw-deepfunneled/`, `lfw_funneled/`, or the folder `image_dir` names), in
  LFW's `Person_Name/Person_Name_0001.jpg` layout.

The files circulate both as MATLAB v5 and v7.3 (HDF5) files; v7.3 needs h5py. A folder with only Kumar et al.'s
`lfw_attributes.txt` is refused with a message saying so.
"""

import logging
from pathlib import Path

import numpy as np

from .errors import BenchmarkFormatError
from .files import BenchmarkReport, ImageIndex, SplitCount, build_split, find_file, shown
from .matfiles import read_mat
from .protocols import CELEBA_ATTRIBUTE_NAMES, PROTOCOLS

logger = logging.getLogger("pros_hf.benchmarks")

ATTRIBUTES_FILE = "lfw_att_40.mat"
SPLIT_FILE = "indices_train_test.mat"
IMAGE_FOLDERS = ("lfw", "lfw-deepfunneled", "lfw_funneled")


def _image_dir(root: Path, image_dir: str | None, first: str, title: str) -> Path:
    if image_dir is not None:
        folder = Path(image_dir) if Path(image_dir).is_absolute() else root / image_dir
        if not folder.is_dir():
            raise BenchmarkFormatError(f"{title}: image_dir {folder} is not a folder.")
        return folder
    for candidate in IMAGE_FOLDERS:
        if (root / candidate).is_dir():
            return root / candidate
    if (root / first.split("/", 1)[0]).is_dir():  # the person folders directly in the data folder
        return root
    raise BenchmarkFormatError(
        f"{title}: no LFW image folder in {root} (looked for "
        f"{', '.join(f'{c}/' for c in IMAGE_FOLDERS)}; pass image_dir)."
    )


def _labels(label: np.ndarray, names: list[str], name: str) -> list[list[int]]:
    n = len(names)
    if label.shape == (40, n) and n != 40:
        label = label.T
    if label.shape != (n, 40):
        raise BenchmarkFormatError(
            f"{name}: label is {' x '.join(map(str, label.shape))}, expected {n} x 40 (one row per name)."
        )
    values = set(np.unique(label).tolist())
    if not values <= {0, 1} and not values <= {-1, 1}:
        raise BenchmarkFormatError(f"{name}: label holds {sorted(values)[:5]}; expected 0/1 or -1/1 values.")
    return [np.flatnonzero(row > 0).tolist() for row in label]


def _indices(value: np.ndarray, field: str, n: int, name: str) -> np.ndarray:
    indices = np.asarray(value).ravel()
    if indices.size == 0 or not np.array_equal(indices, np.round(indices)) or indices.min() < 1 or indices.max() > n:
        raise BenchmarkFormatError(f"{name}: {field} must hold 1-based row numbers in 1..{n}.")
    return indices.astype(np.int64) - 1


def load(root: Path, report: BenchmarkReport, image_dir: str | None = None) -> dict:
    import datasets

    protocol = PROTOCOLS["lfwa"]
    title = protocol.title
    if not (root / ATTRIBUTES_FILE).is_file() and (root / "lfw_attributes.txt").is_file():
        raise BenchmarkFormatError(
            f"{title}: {root} holds lfw_attributes.txt (Kumar et al.'s 73 real-valued "
            f"attributes); LFWA is Liu et al.'s 40-attribute {ATTRIBUTES_FILE} with "
            f"{SPLIT_FILE}."
        )
    attributes_path = find_file(root, ATTRIBUTES_FILE, ("",), title)
    split_path = find_file(root, SPLIT_FILE, ("",), title)
    attributes_name = shown(root, attributes_path)
    mat = read_mat(
        attributes_path, strings=("name", "AttrName"), arrays=("label",), optional=("AttrName",), shown=attributes_name
    )
    names = [s.replace("\\", "/") for s in mat["name"]]
    attribute_names = mat["AttrName"]
    if attribute_names is None:
        attribute_names = list(CELEBA_ATTRIBUTE_NAMES)
        logger.info("%s: %s has no AttrName; using CelebA's 40 names in CelebA's order.", title, attributes_name)
    if len(attribute_names) != 40:
        raise BenchmarkFormatError(f"{attributes_name}: AttrName holds {len(attribute_names)} names, expected 40.")
    present = _labels(mat["label"], names, attributes_name)
    split_name = shown(root, split_path)
    splits = read_mat(split_path, arrays=("indices_img_train", "indices_img_test"), shown=split_name)
    images = ImageIndex(_image_dir(root, image_dir, names[0], title))
    feature = {"attributes": datasets.List(datasets.ClassLabel(names=[str(a).strip() for a in attribute_names]))}
    out = {}
    for split in ("train", "test"):
        rows = _indices(splits[f"indices_img_{split}"], f"indices_img_{split}", len(names), split_name)
        columns = {"file_name": [names[i] for i in rows], "attributes": [present[i] for i in rows]}
        count = SplitCount(
            split, protocol.splits[split], f"{split_name} (indices_img_{split})", shown(root, images.root) + "/"
        )
        out[split] = build_split(title, report.add(count), columns, feature, images)
    return out
