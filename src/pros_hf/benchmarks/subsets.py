"""The data-ratio protocol: fine-tune on a seeded 1%, 10% or 100% of a benchmark's training split (FaRL's
`train_data_ratio`), so that label efficiency is measured on the same subsets by every model compared."""

from ..finetuning.data.splits import few_shot_indices, label_array
from ..finetuning.data.tasks import TASKS, TaskLabels


def _task_labels(dataset, task: str | None) -> TaskLabels:
    present = [name for name in TASKS if name in dataset.column_names]
    if task is None:
        if len(present) != 1:
            raise ValueError(f"pass task: the split has {present or 'none'} of the task columns {TASKS}.")
        task = present[0]
    elif task not in present:
        raise ValueError(f"task {task!r} has no column in the split (columns {dataset.column_names}).")
    feature = dataset.features[task]
    if task == "landmarks":
        return TaskLabels(task, num_landmarks=len(dataset[0][task]) if len(dataset) else 1)
    names = feature.names if task == "expression" else feature.feature.names
    return TaskLabels(task, label_names=tuple(names))


def train_subset(dataset, fraction: float, seed: int, task: str | None = None):
    """A seeded `fraction` (0 < fraction <= 1) of `dataset`, e.g. 0.01 and 0.1 of a benchmark's `train` split.

    The same seed always gives the same rows and different seeds different ones. Expression subsets are stratified
    (every class keeps `round(fraction * count)` examples, at least one); attribute subsets hold a positive and a
    negative example of every attribute before the rest is drawn at random; landmark subsets are drawn at random
    (`pros_hf.finetuning.few_shot_indices`). `task` is needed only when a split holds several task columns.
    """
    labels = _task_labels(dataset, task)
    return dataset.select(few_shot_indices(label_array(dataset, labels), fraction, seed))
