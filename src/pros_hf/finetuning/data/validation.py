"""Label checks: a bad label raises `LabelError` naming its row (and file), not a vague failure in training."""

import math
import re
from collections.abc import Sequence

import numpy as np

from ...validation import check_choice
from .tasks import TASKS, TaskLabels, default_label_names, task_features


class LabelError(ValueError):
    """A label a user supplied is missing or invalid; the message names the row (and file) at fault."""


def _is_missing(value) -> bool:
    return (
        value is None
        or (isinstance(value, str) and value.strip() == "")
        or (isinstance(value, float) and math.isnan(value))
    )


def _parse_int(value) -> int | None:
    """An int from 3, 3.0, "3" or "3.0"; None when it is not an integer."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _parse_expression(value, where: str, labels: TaskLabels) -> int:
    if _is_missing(value):
        raise LabelError(f"{where}: missing expression label.")
    text = str(value).strip()
    if text in labels.label2id:
        return labels.label2id[text]
    number = _parse_int(value)
    if number is None:
        raise LabelError(f"{where}: expression {value!r} is neither a class id nor one of {list(labels.label_names)}.")
    if not 0 <= number < len(labels.label_names):
        raise LabelError(
            f"{where}: expression label {number} is out of range [0, {len(labels.label_names)}) "
            f"(classes {list(labels.label_names)})."
        )
    return number


def _parse_attributes(record: dict, where: str, labels: TaskLabels) -> list[int]:
    present = []
    for index, name in enumerate(labels.label_names):
        value = record.get(name)
        if _is_missing(value):
            raise LabelError(f"{where}: missing value for attribute {name!r}.")
        number = _parse_int(value)
        if number not in (0, 1):
            raise LabelError(f"{where}: attribute {name!r} is {value!r}; attributes must be 0 or 1.")
        if number:
            present.append(index)
    return present


_NUMBER_SPLIT = re.compile(r"[\s,;]+")


def _parse_landmarks(value, where: str, num_landmarks: int | None) -> np.ndarray:
    if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
        raise LabelError(f"{where}: missing landmarks.")
    try:
        if isinstance(value, str):
            numbers = [float(v) for v in _NUMBER_SPLIT.split(value.strip().strip("[]()")) if v]
        else:
            numbers = np.asarray(value, dtype=np.float64).reshape(-1).tolist()
    except (TypeError, ValueError):
        raise LabelError(f"{where}: landmarks {str(value)[:80]!r} are not a list of numbers.") from None
    points = np.asarray(numbers, dtype=np.float32)
    if points.size % 2:
        raise LabelError(f"{where}: {points.size} landmark numbers; expected 2N (x and y of each point).")
    points = points.reshape(-1, 2)
    if num_landmarks is not None and len(points) != num_landmarks:
        raise LabelError(f"{where}: {len(points)} landmarks, expected {num_landmarks}.")
    if not np.isfinite(points).all():
        raise LabelError(f"{where}: landmarks contain NaN or infinite values.")
    return points


def _feature_names(feature) -> tuple[str, ...] | None:
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return tuple(feature.names)
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return tuple(inner.names)
    return None


def _row_label(dataset, index: int) -> str:
    """ "row 12" plus the file name when the dataset knows where the image came from."""
    text = f"row {index}"
    if "file_name" in dataset.column_names:
        return f"{text} (file_name {dataset[int(index)]['file_name']!r})"
    if "image" in dataset.column_names:
        try:
            raw = dataset.cast_column("image", type(dataset.features["image"])(decode=False))[int(index)]["image"]
            if isinstance(raw, dict) and raw.get("path"):
                return f"{text} (file {raw['path']!r})"
        except Exception:  # noqa: BLE001 - a file name is a courtesy, never a reason to fail
            pass
    return text


def normalize_task_dataset(
    dataset,
    task: str,
    label_names: Sequence[str] | None = None,
    num_landmarks: int | None = None,
    image_column: str = "image",
    label_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
):
    """Rename/convert `dataset` to the canonical layout (`image` + the task column) and validate every label.

    Returns `(dataset, TaskLabels)`. See the `pros_hf.finetuning.data` docstring for the accepted encodings.
    """
    import datasets

    check_choice("task", task, TASKS)
    label_column = label_column or task
    if image_column not in dataset.column_names:
        raise ValueError(
            f"No image column {image_column!r} in the dataset (columns {dataset.column_names}); pass --image_column."
        )
    if attribute_columns:
        absent = [c for c in attribute_columns if c not in dataset.column_names]
        if absent:
            raise ValueError(f"attribute columns {absent} are not in the dataset (columns {dataset.column_names}).")
        table = np.stack([np.asarray(dataset[c], dtype=object) for c in attribute_columns], axis=1)
        for index, row in enumerate(table):
            for name, value in zip(attribute_columns, row):
                if value is None:
                    raise LabelError(f"{_row_label(dataset, index)}: missing value for attribute {name!r}.")
                if value not in (0, 1, True, False):
                    raise LabelError(
                        f"{_row_label(dataset, index)}: attribute {name!r} is {value!r}; attributes must be 0 or 1."
                    )
        # the 0/1 columns become lists of attribute ids; the dataset itself is left as it is (adding a column to a
        # column selection of a dataset loaded from disk fails in datasets 5: an empty table is appended to)
        values = [np.flatnonzero(row.astype(int)).tolist() for row in table]
        label_names = tuple(attribute_columns)
        feature = None
    elif label_column not in dataset.column_names:
        raise ValueError(
            f"No {task} label column {label_column!r} in the dataset (columns {dataset.column_names}); "
            "pass --label_column" + (" or --attribute_columns." if task == "attributes" else ".")
        )
    else:
        feature = dataset.features.get(label_column)
        values = dataset[label_column]
    if task == "expression":
        names = tuple(label_names or _feature_names(feature) or default_label_names("expression"))
        labels = TaskLabels("expression", label_names=names)
        converted = []
        for index, value in enumerate(values):
            converted.append(_parse_expression(value, _row_label(dataset, index), labels))
    elif task == "attributes":
        names = label_names or _feature_names(feature)
        is_id_list = _feature_names(feature) is not None and not attribute_columns
        if names is None:
            raise ValueError(
                "Attribute names are unknown: the attributes column is not a list of ClassLabel; pass "
                "label_names (--class_names) for a 0/1 vector column, or attribute_columns."
            )
        labels = TaskLabels("attributes", label_names=tuple(names))
        converted = []
        for index, value in enumerate(values):
            where = _row_label(dataset, index)
            if value is None:
                raise LabelError(f"{where}: missing attributes.")
            value = list(value)
            if is_id_list or attribute_columns:
                bad = [v for v in value if v is None or not 0 <= int(v) < len(names)]
                if bad:
                    raise LabelError(f"{where}: attribute id(s) {bad} out of range [0, {len(names)}).")
                converted.append(sorted(int(v) for v in value))
            else:
                if len(value) != len(names):
                    raise LabelError(f"{where}: {len(value)} attribute values, expected {len(names)} ({list(names)}).")
                if any(v not in (0, 1, True, False) for v in value):
                    raise LabelError(f"{where}: attribute values {value} must be 0 or 1.")
                converted.append(np.flatnonzero(np.asarray(value, dtype=int)).tolist())
    else:
        first = values[0] if len(values) else None
        if num_landmarks is None:
            num_landmarks = len(_parse_landmarks(first, _row_label(dataset, 0), None))
        labels = TaskLabels("landmarks", num_landmarks=int(num_landmarks))
        converted = [
            _parse_landmarks(value, _row_label(dataset, index), labels.num_landmarks).tolist()
            for index, value in enumerate(values)
        ]

    base = dataset.select_columns([image_column])
    if image_column != "image":
        base = base.rename_column(image_column, "image")
    base = base.cast_column("image", datasets.Image())
    out = base.add_column(task, converted, feature=task_features(labels)[task])
    return out, labels


def validate_task_dataset(dataset, labels: TaskLabels) -> None:
    """Check a canonical dataset's labels (fast, vectorised); `LabelError` names the first bad row."""
    column = labels.task
    if column not in dataset.column_names or "image" not in dataset.column_names:
        raise ValueError(f"A {labels.task} dataset needs columns image and {column}; got {dataset.column_names}.")
    values = dataset[column]
    if labels.task == "expression":
        array = np.asarray([-1 if v is None else v for v in values], dtype=np.int64)
        bad = np.flatnonzero((array < 0) | (array >= labels.num_labels))
        if bad.size:
            raise LabelError(
                f"{_row_label(dataset, bad[0])}: expression label {values[bad[0]]!r} missing or out of "
                f"range [0, {labels.num_labels})."
            )
    elif labels.task == "attributes":
        for index, ids in enumerate(values):
            if ids is None or any(v is None or not 0 <= v < labels.num_labels for v in ids):
                raise LabelError(
                    f"{_row_label(dataset, index)}: attribute ids {ids!r} missing or out of range "
                    f"[0, {labels.num_labels})."
                )
    else:
        for index, points in enumerate(values):
            array = np.asarray(points, dtype=np.float32) if points is not None else np.zeros((0, 2))
            if array.shape != (labels.num_landmarks, 2) or not np.isfinite(array).all():
                raise LabelError(
                    f"{_row_label(dataset, index)}: landmarks of shape {array.shape}, expected "
                    f"({labels.num_landmarks}, 2) finite pixel coordinates."
                )
