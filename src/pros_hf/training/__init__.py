"""Pre-training ProS with transformers' Trainer.

- `arguments`: `ProSTrainingArguments` (DINO's recipe as defaults, the schedules, the crops) and the checks that hold
  them against a model and a dataset.
- `trainer`: `ProSTrainer`, the Trainer with the multi-crop, the teacher temperature and the callbacks below.
- `callbacks`: the teacher's EMA, the prototype freeze and the weight-decay schedule around the optimizer step.
- `health`: the logged health metrics, the stop on a non-finite loss, the collapse warning.
- `skips`: unreadable images counted over the processes and kept with each checkpoint.
- `export`: the teacher backbone folder written at the end of training.
- `resume`: resuming a run from its output folder, rerunning a finished one.
- `initialization`: the model a run starts from (a preset, or a backbone's weights at the crop size).
- `command_line`: what `examples/pretrain.py` adds on its command line (the no-data defaults, the k-NN tracking).
"""

from .arguments import ProSTrainingArguments, arguments_for_trainer
from .callbacks import PrototypeFreezeCallback, TeacherEMACallback, WeightDecayScheduleCallback, decay_parameter_names
from .export import write_backbone_folder
from .health import HEALTH_METRICS, CollapseWarningCallback, FiniteLossCallback, HealthMetrics, NonFiniteLossError
from .initialization import apply_config_overrides, pretraining_model
from .resume import (
    CheckpointMismatchError,
    FinishedRunCallback,
    check_checkpoint_matches,
    last_complete_checkpoint,
    resume_checkpoint,
    save_train_results,
    written_at,
)
from .skips import SKIP_REPORT_NAME, NoImagesReadError, SkipReportCallback
from .trainer import ProSTrainer

__all__ = [
    "HEALTH_METRICS",
    "SKIP_REPORT_NAME",
    "CheckpointMismatchError",
    "CollapseWarningCallback",
    "FiniteLossCallback",
    "FinishedRunCallback",
    "HealthMetrics",
    "NoImagesReadError",
    "NonFiniteLossError",
    "ProSTrainer",
    "ProSTrainingArguments",
    "PrototypeFreezeCallback",
    "SkipReportCallback",
    "TeacherEMACallback",
    "WeightDecayScheduleCallback",
    "apply_config_overrides",
    "arguments_for_trainer",
    "check_checkpoint_matches",
    "decay_parameter_names",
    "last_complete_checkpoint",
    "pretraining_model",
    "resume_checkpoint",
    "save_train_results",
    "write_backbone_folder",
    "written_at",
]
