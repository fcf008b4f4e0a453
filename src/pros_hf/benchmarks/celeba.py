"""CelebA (Liu et al. 2015) as distributed: 40 binary attributes per aligned face, and the official partition.

Files (at the data folder's root, or in `Anno/` and `Eval/` as the Google Drive release lays them out):
- `list_attr_celeba.txt`: line 1 the image count, line 2 the 40 attribute names, then one line per image:
  `000001.jpg -1  1  1 -1 ...` (values +1 / -1, separated by one or more spaces);
- `list_eval_partition.txt`: `000001.jpg 0` (0 train, 1 validation, 2 test);
- `img_align_celeba/` (or `Img/img_align_celeba/`): the aligned and cropped 178 x 218 JPEGs.

The `attributes` column lists the ids of the attributes that are +1 (the project's multi-label encoding), named by
the file's own second line.
"""

from pathlib import Path

from .errors import BenchmarkFormatError, at
from .files import BenchmarkReport, ImageIndex, SplitCount, build_split, find_dir, find_file, shown
from .protocols import PROTOCOLS

ATTRIBUTES_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
PARTITIONS = {"0": "train", "1": "validation", "2": "test"}


def _image_dir(root: Path, title: str) -> Path:
    folder = find_dir(root, ("img_align_celeba", "Img/img_align_celeba"), title, "aligned-image (img_align_celeba)")
    nested = folder / "img_align_celeba"  # an archive unpacked into a folder of its own name
    return nested if nested.is_dir() else folder


def read_attributes(path: Path, name: str) -> tuple[list[str], dict[str, list[int]]]:
    """(attribute names, file name -> ids of the attributes that are +1) from `list_attr_celeba.txt`."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    if len(lines) < 2:
        raise BenchmarkFormatError(
            f"{name}: {len(lines)} line(s); expected the count, the 40 names, then a line per image."
        )
    if not lines[0].strip().isdigit():
        raise BenchmarkFormatError(f"{at(name, 1)}: {lines[0][:40]!r} is not the image count.")
    names = lines[1].split()
    if len(names) != 40:
        raise BenchmarkFormatError(f"{at(name, 2)}: {len(names)} attribute names, expected 40.")
    present: dict[str, list[int]] = {}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 41:
            raise BenchmarkFormatError(f"{at(name, number)}: {len(fields)} fields, expected a file name and 40 values.")
        ids = []
        for index, value in enumerate(fields[1:]):
            if value == "1":
                ids.append(index)
            elif value != "-1":
                raise BenchmarkFormatError(f"{at(name, number)}: {names[index]} is {value!r}; values are 1 or -1.")
        present[fields[0]] = ids
    return names, present


def read_partition(path: Path, name: str) -> dict[str, list[str]]:
    """split name -> file names, from `list_eval_partition.txt`."""
    splits: dict[str, list[str]] = {split: [] for split in PARTITIONS.values()}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in PARTITIONS:
                raise BenchmarkFormatError(f"{at(name, number)}: {line.strip()[:60]!r}; expected 'name.jpg 0|1|2'.")
            splits[PARTITIONS[fields[1]]].append(fields[0])
    return splits


def load(root: Path, report: BenchmarkReport) -> dict:
    import datasets

    protocol = PROTOCOLS["celeba"]
    title = protocol.title
    subdirs_attr, subdirs_eval = ("", "Anno"), ("", "Eval")
    if not any((root / sub / ATTRIBUTES_FILE).is_file() for sub in subdirs_attr) and any(
        (root / sub / "list_attr_celeba.csv").is_file() for sub in subdirs_attr
    ):
        raise BenchmarkFormatError(
            f"{title}: found list_attr_celeba.csv (a CSV re-packaging) but not the original "
            f"{ATTRIBUTES_FILE} in {root}; this loader reads the files as the authors "
            "distribute them."
        )
    attributes_path = find_file(root, ATTRIBUTES_FILE, subdirs_attr, title)
    partition_path = find_file(root, PARTITION_FILE, subdirs_eval, title)
    images = ImageIndex(_image_dir(root, title))
    names, present = read_attributes(attributes_path, shown(root, attributes_path))
    partition_name = shown(root, partition_path)
    feature = {"attributes": datasets.List(datasets.ClassLabel(names=names))}
    out = {}
    for split, files in read_partition(partition_path, partition_name).items():
        unlabelled = next((f for f in files if f not in present), None)
        if unlabelled is not None:
            raise BenchmarkFormatError(
                f"{title}: {partition_name} lists {unlabelled} but {shown(root, attributes_path)} has no line for it."
            )
        count = report.add(SplitCount(split, protocol.splits[split], partition_name, shown(root, images.root) + "/"))
        columns = {"file_name": files, "attributes": [present[f] for f in files]}
        out[split] = build_split(title, count, columns, feature, images)
    return out
