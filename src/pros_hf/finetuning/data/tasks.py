"""What a task's labels are (`TaskLabels`, `TaskData`) and how they are encoded: shared by every other module here."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...validation import check_choice

TASKS = ("attributes", "expression", "landmarks")


@dataclass
class TaskLabels:
    """What the labels of a task are: class or attribute names, or the number of landmarks."""

    task: str
    label_names: tuple[str, ...] | None = None
    num_landmarks: int | None = None

    def __post_init__(self):
        check_choice("task", self.task, TASKS)
        if self.task == "landmarks":
            if not self.num_landmarks or self.num_landmarks < 1:
                raise ValueError("landmarks need num_landmarks >= 1.")
        elif not self.label_names:
            raise ValueError(f"the {self.task} task needs label_names.")
        else:
            self.label_names = tuple(str(name) for name in self.label_names)
            if len(set(self.label_names)) != len(self.label_names):
                raise ValueError(f"label names must be unique, got {self.label_names}.")

    @property
    def num_labels(self) -> int:
        return self.num_landmarks if self.task == "landmarks" else len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return {i: name for i, name in enumerate(self.label_names or ())}

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names or ())}

    @property
    def problem_type(self) -> str | None:
        return {"expression": "single_label_classification", "attributes": "multi_label_classification"}.get(self.task)

    @property
    def label_key(self) -> str:
        """The model's keyword for the targets: `labels` for the classifiers, `landmarks` for the landmark head."""
        return "landmarks" if self.task == "landmarks" else "labels"


def default_label_names(task: str) -> tuple[str, ...] | None:
    """The synthetic faces' names: the seven basic expressions, the twelve attributes."""
    from ...data.synthetic import ATTRIBUTE_NAMES, EXPRESSION_NAMES

    return {"expression": EXPRESSION_NAMES, "attributes": ATTRIBUTE_NAMES}.get(task)


def task_features(labels: TaskLabels):
    """`datasets.Features` of the canonical fine-tuning layout: `image` plus the task's column."""
    import datasets

    if labels.task == "expression":
        label = datasets.ClassLabel(names=list(labels.label_names))
    elif labels.task == "attributes":
        label = datasets.List(datasets.ClassLabel(names=list(labels.label_names)))
    else:
        label = datasets.Array2D(shape=(labels.num_landmarks, 2), dtype="float32")
    return datasets.Features({"image": datasets.Image(), labels.task: label})


@dataclass
class TaskData:
    train: Any
    test: Any
    labels: TaskLabels
    dataset_name: str
    dataset_id: str | None = None  # Hub id when the data came from the Hub


def multi_hot(id_lists, num_labels: int) -> np.ndarray:
    out = np.zeros((len(id_lists), num_labels), dtype=np.float32)
    for row, ids in enumerate(id_lists):
        out[row, list(ids)] = 1.0
    return out
