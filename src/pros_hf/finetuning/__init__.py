"""Fine-tuning ProS backbones for attributes, expressions and landmarks (full, linear probe, LoRA, few-shot).

- `data`: labelled face data from a folder + CSV/JSON, a saved or Hub dataset, or the synthetic faces; validation that
  names the bad row or file; few-shot splits; transforms and the collator.
- `optim`: parameter groups with a lower backbone learning rate and layer-wise decay; the linear-probe freeze.
- `lora`: LoRA through PEFT (attention projections adapted, the head in `modules_to_save`), save / reload / merge.
- `training`: the head for a task, a `Trainer` with those groups, the task metrics.
- `export`: folders ready for the Hub (head or adapter, image processor, card).
- `reporting`: the labels-only floor, per-seed summaries and the comparison table a few-shot run prints.
- `arguments`: `FinetuneArguments` (one field per flag of `examples/finetune.py`), its defaults and checks.
- `runs`: one head's `Trainer` (`head_trainer`) and its run (`train_head`), every seed and initialisation of a task (`run_task`), every task
  (`run_finetuning`), with the backbone and data loaded from the arguments.
- `outputs`: what a task leaves in its folder (figures, head or adapter with its card, `results.json`).

`examples/finetune.py` is `run_finetuning` on the command line.
"""

from .arguments import (
    FinetuneArguments,
    FinetuneError,
    check_finetune_arguments,
    finetune_parser,
    with_training_defaults,
)
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
from .runs import (
    HeadRun,
    head_trainer,
    load_finetune_backbone,
    load_finetune_data,
    run_finetuning,
    run_task,
    split_validation,
    train_head,
)
from .training import FinetuneTrainer, build_head, head_config_overrides, task_metrics

__all__ = [
    "TASKS",
    "FaceTaskCollator",
    "FinetuneArguments",
    "FinetuneError",
    "FinetuneTrainer",
    "HeadRun",
    "LabelError",
    "TaskData",
    "TaskLabels",
    "apply_lora",
    "build_head",
    "check_finetune_arguments",
    "count_trainable",
    "default_augmentation",
    "few_shot_indices",
    "finetune_parser",
    "freeze_backbone",
    "head_config_overrides",
    "head_trainer",
    "head_module_names",
    "label_array",
    "load_adapter",
    "load_adapter_folder",
    "load_finetune_backbone",
    "load_finetune_data",
    "load_task_data",
    "merge_adapter",
    "normalize_task_dataset",
    "parameter_groups",
    "read_label_file",
    "run_finetuning",
    "run_task",
    "save_adapter",
    "save_adapter_folder",
    "save_head_folder",
    "split_validation",
    "synthetic_face_crops",
    "task_metrics",
    "train_head",
    "validate_task_dataset",
    "with_training_defaults",
]
