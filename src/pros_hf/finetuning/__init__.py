"""Fine-tuning ProS backbones for attributes, expressions and landmarks (full, linear probe, LoRA, few-shot).

- `data`: labelled face data from a folder + CSV/JSON, a saved or Hub dataset, or the synthetic faces; validation that
  names the bad row or file; few-shot splits; transforms and the collator.
- `optim`: parameter groups with a lower backbone learning rate and layer-wise decay; the linear-probe freeze.
- `lora`: LoRA through PEFT (attention projections adapted, the head in `modules_to_save`), save / reload / merge.
- `training`: the head for a task, a `Trainer` with those groups, the task metrics.
- `export`: folders ready for the Hub (head or adapter, image processor, card).
- `reporting`: the labels-only floor, per-seed summaries and the comparison table a few-shot run prints.

`examples/finetune.py` puts them together.
"""

from .data import (
    TASKS,
    FaceTaskCollator,
    LabelError,
    TaskData,
    TaskLabels,
    default_augmentation,
    few_shot_indices,
    label_array,
    load_task_data,
    normalize_task_dataset,
    read_label_file,
    synthetic_face_crops,
    validate_task_dataset,
)
from .export import load_adapter_folder, save_adapter_folder, save_head_folder
from .lora import apply_lora, count_trainable, head_module_names, load_adapter, merge_adapter, save_adapter
from .optim import freeze_backbone, parameter_groups
from .training import FinetuneTrainer, build_head, head_config_overrides, task_metrics


__all__ = [
    "TASKS",
    "FaceTaskCollator",
    "FinetuneTrainer",
    "LabelError",
    "TaskData",
    "TaskLabels",
    "apply_lora",
    "build_head",
    "count_trainable",
    "default_augmentation",
    "few_shot_indices",
    "freeze_backbone",
    "head_config_overrides",
    "head_module_names",
    "label_array",
    "load_adapter",
    "load_adapter_folder",
    "load_task_data",
    "merge_adapter",
    "normalize_task_dataset",
    "parameter_groups",
    "read_label_file",
    "save_adapter",
    "save_adapter_folder",
    "save_head_folder",
    "synthetic_face_crops",
    "task_metrics",
    "validate_task_dataset",
]
