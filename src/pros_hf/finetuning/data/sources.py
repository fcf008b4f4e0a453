"""Where labelled faces come from (label file, saved or Hub dataset, synthetic crops), all ending in one layout."""

import csv
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...hub import public_name
from ...validation import check_choice
from .splits import split_train_test
from .tasks import TASKS, TaskData, TaskLabels, default_label_names, task_features
from .validation import (
    LabelError,
    _is_missing,
    _parse_attributes,
    _parse_expression,
    _parse_landmarks,
    normalize_task_dataset,
    validate_task_dataset,
)

logger = logging.getLogger(__name__)

# Default synthetic data, also what examples/demo.py pre-trains on: render 128 px, YuNet face crop to 64 px, tight
# margin. Face crops with little context: with a wide margin the crops of one image share its random background,
# a shortcut that self-distillation learns instead of the face.
SYNTHETIC_RENDER_SIZE = 128
SYNTHETIC_CROP_SIZE = 64
SYNTHETIC_CROP_MARGIN = 0.05
SYNTHETIC_TRAIN_SEED = 0
SYNTHETIC_TEST_SEED = 1


# Columns of a label file that are never attributes (a multi-task file may hold all of them).
NON_ATTRIBUTE_COLUMNS = ("file_name", "expression", "landmarks", "identity")


# ----------------------------------------------------------------------------------------------------------------------
# (a) folder + label file


def _row_name(where: str, record: dict) -> str:
    name = record.get("file_name")
    return f"{where} (file_name {name!r})" if name not in (None, "") else where


def _read_records(labels_file: Path) -> list[tuple[str, dict]]:
    """(where, record) pairs: `where` says "line 7 of labels.csv" or "record 3 of labels.json"."""
    suffix = labels_file.suffix.lower()
    if suffix == ".csv":
        with open(labels_file, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise LabelError(f"{labels_file} is empty: a CSV label file needs a header row with file_name.")
            records = [(f"line {reader.line_num} of {labels_file.name}", dict(row)) for row in reader]
    elif suffix in (".json", ".jsonl"):
        text = labels_file.read_text(encoding="utf-8")
        if suffix == ".jsonl" or not text.lstrip().startswith("["):
            records = []
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        records.append((f"line {number} of {labels_file.name}", json.loads(line)))
                    except json.JSONDecodeError as error:
                        raise LabelError(f"line {number} of {labels_file.name} is not valid JSON: {error}") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise LabelError(f"{labels_file} is not valid JSON: {error}") from None
            records = [(f"record {i} of {labels_file.name}", record) for i, record in enumerate(data)]
        for where, record in records:
            if not isinstance(record, dict):
                raise LabelError(f"{where} must be an object with file_name and labels, got {type(record).__name__}.")
    else:
        raise ValueError(f"Label files must be .csv, .json or .jsonl, got {labels_file}.")
    if not records:
        raise LabelError(f"{labels_file} holds no rows.")
    return records


def _image_sizes(image_dir: Path, records) -> tuple[list[tuple[int, int] | None], list[tuple[str, str, str]]]:
    """The (width, height) of each row's image, and (where, file_name, why) of the rows whose file Pillow cannot
    identify as an image (a text file, an empty or garbled one): found here, before training, rather than as an
    `UnidentifiedImageError` in the middle of it.

    Only the header is read (`Image.open` is lazy): cheap enough for every file of a large label file. A file whose
    header is valid but whose pixel data is truncated still fails when it is decoded.
    """
    from PIL import Image

    from ...data.decoding import REASON_EMPTY, REASON_NOT_IMAGE

    sizes, bad = [], []
    for where, record in records:
        path = image_dir / str(record["file_name"])
        size = None
        try:
            with Image.open(path) as image:
                width, height = image.size
            if width < 1 or height < 1:
                raise ValueError(f"{width}x{height} pixels")
            size = (width, height)
        except Image.UnidentifiedImageError:
            reason = REASON_EMPTY if path.stat().st_size == 0 else REASON_NOT_IMAGE
            bad.append((where, str(record["file_name"]), reason))
        except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises for a malformed header
            bad.append((where, str(record["file_name"]), f"{type(error).__name__}: {error}"))
        sizes.append(size)
    return sizes, bad


def _drop_repeated_images(image_dir: Path, labels_file: Path, records: list, values: list) -> tuple[list, list]:
    """`records` and their parsed `values` with each image once. A row naming an image an earlier row named with the
    same label is dropped and counted (a warning says how many and where); with another label it is refused, naming
    both rows: one image cannot be two classes, and a repeated image could land in both the training and the test
    split of `split_train_test`."""
    first: dict[str, int] = {}
    kept, dropped = [], []
    for index, ((where, record), value) in enumerate(zip(records, values)):
        key = os.path.realpath(image_dir / str(record["file_name"]))
        if key not in first:
            first[key] = index
            kept.append(index)
            continue
        earlier_where, earlier = records[first[key]]
        if values[first[key]] != value:
            raise LabelError(
                f"{where} and {earlier_where} name the same image {str(record['file_name'])!r} with different labels "
                f"({value!r} and {values[first[key]]!r}); keep one row per image."
            )
        dropped.append(where)
    if dropped:
        logger.warning(
            "%s: dropped %d row(s) repeating an earlier row's image and label (%s%s)",
            labels_file,
            len(dropped),
            ", ".join(dropped[:5]),
            " ..." if len(dropped) > 5 else "",
        )
    return [records[i] for i in kept], [values[i] for i in kept]


# A landmark more than this fraction of the image's side outside it cannot be a pixel coordinate of the image (the
# landmark head accepts targets from -0.5 to 1.5 of the input's side).
LANDMARK_MARGIN = 0.5


def landmark_outside_image(points, width: int, height: int) -> int | None:
    """The index of the first of `points` ((N, 2) pixel x, y) lying more than `LANDMARK_MARGIN` of the image's side
    outside a `width` x `height` image, or None."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    low = -LANDMARK_MARGIN * np.array([width, height])
    high = (1 + LANDMARK_MARGIN) * np.array([width, height])
    outside = np.flatnonzero(((points < low) | (points > high)).any(axis=1))
    return int(outside[0]) if outside.size else None


def landmarks_outside_message(where: str, points, index: int, width: int, height: int) -> str:
    x, y = (float(v) for v in np.asarray(points, dtype=np.float64).reshape(-1, 2)[index])
    return (
        f"{where}: landmark {index} at ({x:g}, {y:g}) lies far outside its {width}x{height} image; landmarks are "
        f"pixel coordinates of the image (at most {LANDMARK_MARGIN:g} of its side outside it)."
    )


def read_label_file(
    image_dir: str | os.PathLike,
    labels_file: str | os.PathLike,
    task: str,
    label_names: Sequence[str] | None = None,
    num_landmarks: int | None = None,
):
    """A `datasets.Dataset` (`image`, task column) from a folder of images and a CSV/JSON label file.

    See the `pros_hf.finetuning.data` docstring for the columns. Raises `FileNotFoundError` naming the images that do
    not exist, `ValueError` naming those that are not images (header checked), and `LabelError` naming the first row
    whose label is missing or invalid. Returns `(dataset, TaskLabels)`.
    """
    import datasets

    check_choice("task", task, TASKS)
    image_dir, labels_file = Path(image_dir), Path(labels_file)
    if not labels_file.is_file():
        raise FileNotFoundError(f"Label file {labels_file} does not exist.")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Image folder {image_dir} does not exist.")
    records = _read_records(labels_file)

    for where, record in records:
        if _is_missing(record.get("file_name")):
            raise LabelError(f"{where}: no file_name (every row names its image, relative to {image_dir}).")
    missing = [
        (where, record["file_name"])
        for where, record in records
        if not (image_dir / str(record["file_name"])).is_file()
    ]
    if missing:
        listed = "; ".join(f"{name!r} ({where})" for where, name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{len(missing)} image(s) named in {labels_file} do not exist in {image_dir}: {listed}{more}."
        )
    sizes, undecodable = _image_sizes(image_dir, records)
    if undecodable:
        listed = "; ".join(f"{name!r} ({where}: {why})" for where, name, why in undecodable[:5])
        more = f" and {len(undecodable) - 5} more" if len(undecodable) > 5 else ""
        raise ValueError(
            f"{len(undecodable)} image(s) named in {labels_file} cannot be read as images: "
            f"{listed}{more}. Replace them or drop their rows."
        )

    if task == "attributes":
        if label_names is None:
            columns = list(records[0][1].keys())
            label_names = [c for c in columns if c not in NON_ATTRIBUTE_COLUMNS]
            if not label_names:
                raise LabelError(f"{labels_file} has no attribute columns (one 0/1 column per attribute).")
        for where, record in records:
            absent = [name for name in label_names if name not in record]
            if absent:
                raise LabelError(f"{_row_name(where, record)}: missing attribute column(s) {absent}.")
        labels = TaskLabels("attributes", label_names=tuple(label_names))
    elif task == "expression":
        labels = TaskLabels("expression", label_names=tuple(label_names or default_label_names("expression")))
    else:
        if num_landmarks is None:
            where, record = records[0]
            num_landmarks = len(_parse_landmarks(record.get("landmarks"), _row_name(where, record), None))
        labels = TaskLabels("landmarks", num_landmarks=int(num_landmarks))

    values = []
    for where, record in records:
        row = _row_name(where, record)
        if task == "expression":
            if "expression" not in record:
                raise LabelError(f"{row}: no expression column.")
            values.append(_parse_expression(record["expression"], row, labels))
        elif task == "attributes":
            values.append(_parse_attributes(record, row, labels))
        else:
            points = _parse_landmarks(record.get("landmarks"), row, labels.num_landmarks)
            outside = landmark_outside_image(points, *sizes[len(values)])
            if outside is not None:
                raise LabelError(landmarks_outside_message(row, points, outside, *sizes[len(values)]))
            values.append(points.tolist())
    records, values = _drop_repeated_images(image_dir, labels_file, records, values)
    paths = [str(image_dir / str(record["file_name"])) for _, record in records]
    dataset = datasets.Dataset.from_dict({"image": paths, task: values}, features=task_features(labels))
    return dataset, labels


# ----------------------------------------------------------------------------------------------------------------------
# (d) synthetic faces


def synthetic_face_crops(
    num_images: int,
    seed: int,
    cache_dir: str | os.PathLike | None = None,
    render_size: int = SYNTHETIC_RENDER_SIZE,
    crop_size: int = SYNTHETIC_CROP_SIZE,
    margin: float = SYNTHETIC_CROP_MARGIN,
    *,
    path: str | os.PathLike | None = None,
    return_counts: bool = False,
):
    """Synthetic faces rendered at `render_size` and face-cropped to `crop_size` (the demo's recipe), cached.

    The first call renders and runs the face detector (about 30 images/s on a CPU core) and saves the result under
    `cache_dir` (default: `<HF_DATASETS_CACHE>/pros_hf_face_crops`); later calls load it in a second. Rows where no
    face is detected (under 2%) are dropped, as in the demo. `path` saves to exactly that folder instead (as
    examples/demo.py does), with the recipe in `<path>.json`: it is reused only when made the same way, otherwise
    replaced. With `return_counts`, returns `(dataset, counts)`: the kept/dropped counts of `crop_faces_in_dataset`,
    or None when the crops were loaded from disk.
    """
    import datasets

    from ...data.synthetic import make_synthetic_faces
    from ...retrieval import crop_faces_in_dataset

    recipe = {
        "num_faces": num_images,
        "seed": seed,
        "image_size": render_size,
        "crop_size": crop_size,
        "margin": margin,
    }
    if path is not None:
        folder, stamp = Path(path), Path(f"{path}.json")
        cached = stamp.exists() and json.loads(stamp.read_text()) == recipe
    else:
        root = Path(cache_dir) if cache_dir else Path(datasets.config.HF_DATASETS_CACHE) / "pros_hf_face_crops"
        folder, stamp = root / f"faces-n{num_images}-seed{seed}-r{render_size}-c{crop_size}-m{margin:g}", None
        cached = True
    if cached and (folder / "dataset_info.json").exists():
        crops = datasets.load_from_disk(str(folder))
        return (crops, None) if return_counts else crops
    logger.info("Rendering %d synthetic faces (seed %d) and cropping them (cached in %s)", num_images, seed, folder)
    faces = make_synthetic_faces(num_images, image_size=render_size, seed=seed)
    crops, counts = crop_faces_in_dataset(faces, size=crop_size, margin=margin)
    logger.info("Face crops: %s", counts)
    crops = crops.select_columns(["image", "landmarks", "expression", "attributes", "identity"])
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    crops.save_to_disk(str(tmp))
    if stamp is not None and (folder / "dataset_info.json").exists():
        shutil.rmtree(folder)  # crops made another way
    if not folder.exists():  # another process may have finished first: keep its copy
        os.replace(tmp, folder)
    if stamp is not None:
        stamp.write_text(json.dumps(recipe))
    crops = datasets.load_from_disk(str(folder))
    return (crops, counts) if return_counts else crops


# ----------------------------------------------------------------------------------------------------------------------
# (b), (c) and the choice of source: train and test sets of one task


def _load_hub_dataset(name: str, config: str | None, split: str | None):
    import datasets

    from ...hub import is_offline

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as error:  # noqa: BLE001 - offline, any failure is the same story for the user
        offline = is_offline() or os.environ.get("HF_DATASETS_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
        if offline:
            raise RuntimeError(
                f"Cannot load the Hub dataset {name!r}: the Hub is switched off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) "
                "and it is not in the local cache. Download it once online, or save it with save_to_disk and pass "
                "--dataset FOLDER."
            ) from error
        raise


def _image_paths(dataset) -> list[str | None]:
    import datasets

    column = dataset.cast_column("image", datasets.Image(decode=False))["image"]
    return [os.path.realpath(item["path"]) if isinstance(item, dict) and item.get("path") else None for item in column]


def check_landmarks_in_images(dataset, name: str) -> None:
    """Refuse, naming the row, landmarks far outside their image (`landmark_outside_image`) in a canonical landmarks
    dataset; only the image headers are read."""
    import io

    import datasets
    from PIL import Image

    column = dataset.cast_column("image", datasets.Image(decode=False))["image"]
    for index, (item, points) in enumerate(zip(column, dataset["landmarks"])):
        source = io.BytesIO(item["bytes"]) if item.get("bytes") else item.get("path")
        try:
            with Image.open(source) as image:
                width, height = image.size
        except (OSError, SyntaxError, ValueError):
            continue  # an unreadable image is the decoder's to report
        outside = landmark_outside_image(points, width, height)
        if outside is not None:
            raise LabelError(landmarks_outside_message(f"row {index} of {name}", points, outside, width, height))


def check_no_shared_images(train, test, train_name, test_name) -> None:
    """Refuse a test set that holds an image of the training set (named by both files): its test figures would
    measure memorisation."""
    train_paths = {path for path in _image_paths(train) if path}
    shared = [path for path in _image_paths(test) if path in train_paths]
    if shared:
        raise LabelError(
            f"{len(shared)} image(s) are in both {train_name} and {test_name} (e.g. "
            f"{os.path.basename(shared[0])!r}): a test image must not be trained on; remove them from "
            "one of the files."
        )


def load_task_data(
    task: str,
    dataset: str | None = None,
    image_dir: str | None = None,
    labels_file: str | None = None,
    test_labels_file: str | None = None,
    test_dataset: str | None = None,
    hub_dataset: str | None = None,
    hub_config: str | None = None,
    train_split: str = "train",
    test_split: str | None = None,
    test_fraction: float = 0.2,
    image_column: str = "image",
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
    attribute_columns: Sequence[str] | None = None,
    num_landmarks: int | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
) -> TaskData:
    """Train and test sets of one task from whichever source is given (see the `pros_hf.finetuning.data` docstring).

    A source with a test split (or `test_labels_file`, or `test_dataset` next to `dataset`) uses it; otherwise a
    stratified `test_fraction` is held out with `seed`. `num_train` / `num_test` cap the sizes (for the synthetic
    default they are the rendered counts, defaulting to the demo's 2,000 and 1,000).
    """
    import datasets

    check_choice("task", task, TASKS)
    for name, count in (("num_train", num_train), ("num_test", num_test)):
        if count is not None and count < 1:  # 0 would train / test on nothing, a negative count slices from the end
            raise ValueError(f"{name} must be at least 1 (or None for all), got {count}.")
    given = [
        name
        for name, value in (("dataset", dataset), ("labels_file", labels_file), ("hub_dataset", hub_dataset))
        if value
    ]
    if len(given) > 1:
        raise ValueError(f"Pass one data source, got {given}.")
    if labels_file and not image_dir:
        raise ValueError("--labels_file needs --image_dir (file names are relative to it).")
    if test_dataset and not dataset:
        raise ValueError("--test_dataset goes with --dataset (a saved training set).")
    if image_dir and not labels_file:
        raise ValueError("--image_dir needs --labels_file (a CSV or JSON of labels; see the docs for the columns).")
    dataset_id = None
    if labels_file:
        train, labels = read_label_file(image_dir, labels_file, task, label_names, num_landmarks)
        if test_labels_file:
            test, _ = read_label_file(image_dir, test_labels_file, task, labels.label_names, labels.num_landmarks)
            check_no_shared_images(train, test, labels_file, test_labels_file)
        else:
            train, test = split_train_test(train, labels, test_fraction, seed)
        name = f"{public_name(image_dir)} ({Path(labels_file).name})"
    elif dataset or hub_dataset:
        for flag, folder in (("dataset", dataset), ("test_dataset", test_dataset)):
            if (
                folder
                and not (Path(folder) / "dataset_info.json").is_file()
                and not (Path(folder) / "dataset_dict.json").is_file()
            ):
                what = "no such folder" if not Path(folder).exists() else "not a folder written by save_to_disk"
                raise FileNotFoundError(f"{flag} {folder!r}: {what} (relative to {os.getcwd()}).")
        if dataset:
            loaded, name = datasets.load_from_disk(dataset), public_name(dataset)
        else:
            loaded, name = _load_hub_dataset(hub_dataset, hub_config, None), hub_dataset
            dataset_id = hub_dataset
        if isinstance(loaded, datasets.DatasetDict):
            if train_split not in loaded:
                raise ValueError(f"No split {train_split!r} in {name} (splits {list(loaded)}); pass --train_split.")
            test_name = test_split or next((s for s in ("test", "validation", "valid", "val") if s in loaded), None)
            if test_split and test_split not in loaded:
                raise ValueError(f"No split {test_split!r} in {name} (splits {list(loaded)}).")
            train_raw, test_raw = loaded[train_split], loaded[test_name] if test_name else None
        else:
            train_raw, test_raw = loaded, None
        if test_dataset:
            test_raw = datasets.load_from_disk(test_dataset)
            if isinstance(test_raw, datasets.DatasetDict):
                name_in = test_split or next((s for s in ("test", "validation", "valid", "val") if s in test_raw), None)
                if name_in is None:
                    raise ValueError(f"{test_dataset} has splits {list(test_raw)}; pass --test_split.")
                test_raw = test_raw[name_in]
            name = f"{public_name(dataset)} (test: {public_name(test_dataset)})"
        common = dict(
            task=task,
            label_names=label_names,
            num_landmarks=num_landmarks,
            image_column=image_column,
            label_column=label_column,
            attribute_columns=attribute_columns,
        )
        train, labels = normalize_task_dataset(train_raw, **common)
        if task == "landmarks":
            check_landmarks_in_images(train, dataset or hub_dataset)
        if test_raw is not None:
            test, _ = normalize_task_dataset(
                test_raw, **{**common, "label_names": labels.label_names, "num_landmarks": labels.num_landmarks}
            )
            if task == "landmarks":
                check_landmarks_in_images(test, test_dataset or f"{dataset or hub_dataset} ({test_name} split)")
        else:
            train, test = split_train_test(train, labels, test_fraction, seed)
    else:
        # `is None`, not `or`: an explicit count is never replaced by the default (0 is refused above)
        train_raw = synthetic_face_crops(2000 if num_train is None else num_train, SYNTHETIC_TRAIN_SEED, cache_dir)
        test_raw = synthetic_face_crops(1000 if num_test is None else num_test, SYNTHETIC_TEST_SEED, cache_dir)
        train, labels = normalize_task_dataset(train_raw, task)
        test, _ = normalize_task_dataset(test_raw, task)
        name = (
            f"synthetic faces ({len(train)} train / {len(test)} test face crops of "
            f"{SYNTHETIC_CROP_SIZE} px, seeds {SYNTHETIC_TRAIN_SEED}/{SYNTHETIC_TEST_SEED})"
        )
        num_train = num_test = None  # already the rendered counts
    if num_train is not None and num_train < len(train):
        train = train.shuffle(seed=seed).select(range(num_train))
    if num_test is not None and num_test < len(test):
        test = test.shuffle(seed=seed).select(range(num_test))
    validate_task_dataset(train, labels)
    validate_task_dataset(test, labels)
    return TaskData(train=train, test=test, labels=labels, dataset_name=name, dataset_id=dataset_id)
