"""Resuming a pre-training run from its output folder, exactly, and rerunning a finished one.

A run restarted with the same `output_dir` continues from its newest complete checkpoint (`resume_checkpoint`):
teacher, prototypes, center, optimizer, RNG, data position and skip counts are all in the checkpoint, and the
schedules are functions of the step. The rules:

- a checkpoint cut short by a kill while it was written (no `trainer_state.json`, which the Trainer writes last) is
  named in a warning and passed over for the newest complete one;
- a checkpoint of another model configuration is refused, naming the fields that differ, instead of failing on a
  size mismatch inside `load_state_dict`;
- a run resumed at its last step trains nothing (`FinishedRunCallback`), re-exports its teacher, and keeps its
  `train_results.json` when that file was written at the same step (`save_train_results`); a run killed between
  its last checkpoint and its figures gets a note instead of an earlier run's figures.
"""

import json
import logging
import os

from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..configuration_pros import ProSConfig

logger = logging.getLogger(__name__)

TRAIN_RESULTS_NAME = "train_results.json"
# The fields a checkpoint's weights depend on: another value gives tensors of other shapes or other parameters.
ARCHITECTURE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "image_size",
    "patch_size",
    "num_prototypes",
    "head_hidden_size",
    "head_bottleneck_size",
    "head_num_layers",
    "share_prototypes",
    "patch_loss_weight",
)


class CheckpointMismatchError(ValueError):
    """The checkpoint to resume from was trained with another model configuration."""


class RunAlreadyComplete(Exception):
    """Raised by `FinishedRunCallback` when training begins at the run's last step; `ProSTrainer.train` catches it."""


class FinishedRunCallback(TrainerCallback):
    """Stops a run resumed from the checkpoint of its last step before its first step: transformers' loop checks the
    step count after each step, so it would take one more and change a finished run's weights. Also records the step
    this call of `train()` began at (`start_step`)."""

    def __init__(self):
        self.start_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step
        if 0 < state.max_steps <= state.global_step:
            raise RunAlreadyComplete(state.global_step)

    def steps_taken(self, state) -> int:
        """Optimizer steps since training began (0 before)."""
        return 0 if self.start_step is None else state.global_step - self.start_step


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` of `output_dir` that was written to the end (the Trainer writes its
    `trainer_state.json` last); a newer one cut short by a kill is named and passed over."""
    if not os.path.isdir(output_dir):
        return None
    prefix = f"{PREFIX_CHECKPOINT_DIR}-"
    steps = [
        int(name[len(prefix) :])
        for name in os.listdir(output_dir)
        if name.startswith(prefix) and name[len(prefix) :].isdigit()
    ]
    for step in sorted(steps, reverse=True):
        path = os.path.join(output_dir, f"{prefix}{step}")
        if os.path.isfile(os.path.join(path, TRAINER_STATE_NAME)):
            return path
        logger.warning(
            "%s was not written to the end (no %s; the run was killed while saving it): resuming from an "
            "earlier checkpoint",
            path,
            TRAINER_STATE_NAME,
        )
    return None


def check_checkpoint_matches(checkpoint: str, config: ProSConfig) -> None:
    """Raise `CheckpointMismatchError`, naming the fields, when `checkpoint` holds a model of another configuration
    than `config` (torch would report a size mismatch from deep inside `load_state_dict`)."""
    path = os.path.join(checkpoint, "config.json")
    if not os.path.isfile(path):
        return
    saved = ProSConfig.from_json_file(path)  # flat or with sections: both layouts load
    differ = [
        f"{name} {getattr(saved, name)} -> {getattr(config, name)}"
        for name in ARCHITECTURE_FIELDS
        if getattr(saved, name) != getattr(config, name)
    ]
    if differ:
        raise CheckpointMismatchError(
            f"{checkpoint} was trained with another configuration ({'; '.join(differ)}). Resuming continues a run "
            "with the settings it was started with: use a new --output_dir for a new run, or remove the old "
            "checkpoints."
        )


def resume_checkpoint(output_dir: str, config: ProSConfig, resume_from_checkpoint: str | bool | None = None):
    """What `train(resume_from_checkpoint=...)` should get: `resume_from_checkpoint` when given, else the last complete
    checkpoint in `output_dir` (None when there is none); a checkpoint path is checked against `config`."""
    resume = resume_from_checkpoint
    if resume is None:
        resume = last_complete_checkpoint(output_dir)
    if isinstance(resume, (str, os.PathLike)):
        check_checkpoint_matches(str(resume), config)
    return resume


def written_at(results: str, step: int, epoch: float) -> bool:
    """Whether the `train_results.json` at `results` was written at this optimizer step (a file that records only
    the epoch must match it)."""
    try:
        with open(results) as handle:
            recorded = json.load(handle)
    except (OSError, ValueError):
        return False
    if "global_step" in recorded:
        return recorded["global_step"] == step
    return isinstance(recorded.get("epoch"), (int, float)) and abs(recorded["epoch"] - epoch) < 1e-9


def save_train_results(trainer, result) -> str:
    """Write `train_results.json` into the trainer's `output_dir` (call it on the main process) and return its path.

    It holds `result.metrics` (the return value of `trainer.train()`), the step and the number of skipped images.
    A rerun that trained nothing keeps the file written at this step by the run that trained it; when that run was
    stopped before it wrote the file, it writes the step and a note instead."""
    path = os.path.join(trainer.args.output_dir, TRAIN_RESULTS_NAME)
    step = trainer.state.global_step
    skipped = (trainer.skip_summary or {}).get("skipped", 0)
    if trainer.steps_this_run == 0:
        if written_at(path, step, trainer.state.epoch):
            return path
        content = {
            "global_step": step,
            "epoch": trainer.state.epoch,
            "skipped_images": skipped,
            "note": "resumed at its last step; the run that trained it was stopped before it recorded its figures",
        }
    else:
        content = {**result.metrics, "global_step": step, "skipped_images": skipped}
    with open(path, "w") as handle:
        json.dump(content, handle, indent=2)
    return path


__all__ = [
    "ARCHITECTURE_FIELDS",
    "CheckpointMismatchError",
    "FinishedRunCallback",
    "RunAlreadyComplete",
    "TRAIN_RESULTS_NAME",
    "check_checkpoint_matches",
    "last_complete_checkpoint",
    "resume_checkpoint",
    "save_train_results",
    "written_at",
]
