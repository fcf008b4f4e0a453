"""AFLW-19 (Zhu et al. 2016's re-annotation of AFLW) as distributed: `AFLWinfo_release.mat` and AFLW's images.

Files: `AFLWinfo_release.mat` at the data folder's root, and AFLW's images under `data/flickr/` (`0/`, `2/`, `3/`),
which the file's `nameList` is relative to. Its fields: `bbox` (N x 4: x1 x2 y1 y2, i.e. left, right, top,
bottom, as FaRL's and SAN's AFLW readers unpack it), `data` (N x 38: x1..x19 then y1..y19), `mask_new` (N x 19,
1 where a point is visible), `nameList` (N file names) and `ra` (a 1-based permutation of the N faces). Splits:
`train` = the faces ra[:20000], `test_full` = the rest (4,386), `test_frontal` = the test faces with all 19 points
visible (1,314).

Columns: `landmarks` (19, 2) as in the file, `face_box` (x1, y1, x2, y2) from `bbox` (the protocol normalises by
this annotated box, not by the points' extent), `visible` (19 booleans from `mask_new`).
"""

from pathlib import Path

import numpy as np

from .errors import BenchmarkFormatError
from .files import BenchmarkReport, ImageIndex, SplitCount, build_split, find_dir, find_file, shown
from .matfiles import read_mat
from .protocols import PROTOCOLS

POINTS = 19
MAT_FILE = "AFLWinfo_release.mat"


def read_info(path: Path, name: str) -> dict:
    """The fields of `AFLWinfo_release.mat`, shape-checked: names, boxes (N, 4) as (x0, y0, x1, y1), landmarks
    (N, 19, 2), visible (N, 19) bool, order (N,) 0-based."""
    mat = read_mat(path, strings=("nameList",), arrays=("bbox", "data", "mask_new", "ra"), shown=name)
    names = mat["nameList"]
    n = len(names)
    expected = {"bbox": (n, 4), "data": (n, 2 * POINTS), "mask_new": (n, POINTS)}
    for field, shape in expected.items():
        if mat[field].shape != shape:
            raise BenchmarkFormatError(
                f"{name}: {field} is {' x '.join(map(str, mat[field].shape))}, expected "
                f"{' x '.join(map(str, shape))} (nameList has {n} names)."
            )
    order = np.asarray(mat["ra"]).ravel()
    if order.size != n or not np.array_equal(np.sort(order), np.arange(1, n + 1)):
        raise BenchmarkFormatError(f"{name}: ra is not a permutation of 1..{n} (the faces' split order).")
    bbox = mat["bbox"].astype(np.float64)
    data = mat["data"].astype(np.float64)
    return {
        "names": [s.replace("\\", "/") for s in names],
        "boxes": np.stack([bbox[:, 0], bbox[:, 2], bbox[:, 1], bbox[:, 3]], axis=1),
        "landmarks": np.stack([data[:, :POINTS], data[:, POINTS:]], axis=2).astype(np.float32),
        "visible": mat["mask_new"].astype(bool),
        "order": order.astype(np.int64) - 1,
    }


def load(root: Path, report: BenchmarkReport) -> dict:
    import datasets

    protocol = PROTOCOLS["aflw19"]
    title = protocol.title
    path = find_file(root, MAT_FILE, ("",), title)
    images = ImageIndex(find_dir(root, ("data/flickr",), title, "image (data/flickr)"))
    info = read_info(path, shown(root, path))
    train_size = protocol.splits["train"]
    if len(info["order"]) <= train_size:
        raise BenchmarkFormatError(
            f"{title}: {MAT_FILE} holds {len(info['order'])} faces; the protocol trains on "
            f"the first {train_size:,} of ra and tests on the rest."
        )
    train, test = info["order"][:train_size], info["order"][train_size:]
    frontal = test[info["visible"][test].all(axis=1)]
    features = {
        "landmarks": datasets.Array2D(shape=(POINTS, 2), dtype="float32"),
        "face_box": datasets.List(datasets.Value("float32"), length=4),
        "visible": datasets.List(datasets.Value("bool"), length=POINTS),
    }
    image_dir = shown(root, images.root) + "/"
    out = {}
    for split, rows, source in (
        ("train", train, "ra[:20000]"),
        ("test_full", test, "ra[20000:]"),
        ("test_frontal", frontal, "ra[20000:], all 19 points visible"),
    ):
        columns = {
            "file_name": [info["names"][i] for i in rows],
            "landmarks": list(info["landmarks"][rows]),
            "face_box": info["boxes"][rows].tolist(),
            "visible": info["visible"][rows].tolist(),
        }
        count = SplitCount(split, protocol.splits[split], f"{MAT_FILE} ({source})", image_dir)
        out[split] = build_split(title, report.add(count), columns, features, images)
    return out
