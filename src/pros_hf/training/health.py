"""Whether a pre-training run is healthy: the metrics it logs, the stop on a non-finite loss, the collapse warning.

None of it makes a step wait for the device: the metrics are summed and the losses kept on the device, and read back
once per log or checkpoint. (The stock per-step filter `logging_nan_inf_filter` reads the loss after every step; it is
off in `ProSTrainingArguments` for that reason.)
"""

import logging
import math

import torch
from transformers import TrainerCallback

from .callbacks import unwrap

logger = logging.getLogger(__name__)

# The model outputs averaged into every training log.
HEALTH_METRICS = (
    "matching_loss",
    "me_max_loss",
    "koleo_loss",
    "patch_loss",
    "teacher_entropy",
    "student_mean_entropy",
    "active_prototypes",
    "teacher_temperature",
)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training stops; the last checkpoint on disk is the last good state."""


class HealthMetrics:
    """Sums each step's `HEALTH_METRICS` on the device; `pop_averages` reads them back once per log, each averaged over
    the steps that had it (KoLeo leaves out a batch of one image), and starts the next window. `last` holds the last
    step's values (on the device)."""

    def __init__(self):
        self.last: dict[str, torch.Tensor] = {}
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, outputs) -> None:
        self.last = {}
        for name in HEALTH_METRICS:
            value = getattr(outputs, name, None)
            if value is not None:
                value = value.detach().float()
                self.last[name] = value
                self._sums[name] = self._sums.get(name, 0.0) + value
                self._counts[name] = self._counts.get(name, 0) + 1

    def pop_averages(self) -> dict[str, float]:
        averages = {name: (total / self._counts[name]).item() for name, total in self._sums.items()}
        self._sums, self._counts = {}, {}
        return averages


class FiniteLossCallback(TrainerCallback):
    """Raises `NonFiniteLossError`, naming the first step whose loss was NaN or infinite, among the losses `record`ed
    since the last `check`: one host sync per check instead of one per step.

    The trainer checks at each log, each evaluation and the end of training; this callback checks at a step or epoch
    end that asks for a checkpoint, before the Trainer writes it, so that no checkpoint follows a bad step and the last
    one on disk is the last good state."""

    def __init__(self):
        self.unchecked: list[tuple[int, torch.Tensor]] = []  # (optimizer step, loss on the device)

    def record(self, step: int, loss: torch.Tensor) -> None:
        self.unchecked.append((step, loss.detach()))

    def check(self, args, state) -> None:
        if not self.unchecked:
            return
        steps, losses = zip(*self.unchecked)
        self.unchecked = []
        values = torch.stack([loss.float().reshape(()) for loss in losses]).cpu()
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            first = int(bad[0])
            raise NonFiniteLossError(
                f"The ProS loss is {values[first].item()} at optimizer step {steps[first]} (found at step "
                f"{state.global_step}). Training stops here; the last checkpoint in {args.output_dir} is the last "
                "good state. Usual causes: too high a learning rate, fp16 overflow (prefer bf16), or too low a "
                "teacher temperature."
            )

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            self.check(args, state)

    def on_epoch_end(self, args, state, control, **kwargs):
        if control.should_save:
            self.check(args, state)


class CollapseWarningCallback(TrainerCallback):
    """Warns once the logged matching loss has stayed within `--collapse_tolerance` (relative) of ln K for
    `--collapse_patience` logs in a row: the teacher's targets are then uniform over the K prototypes (collapse)."""

    def __init__(self):
        self.collapsed_logs = 0

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        matching_loss = (logs or {}).get("matching_loss")
        if matching_loss is None:
            return
        log_k = math.log(unwrap(model).config.num_prototypes)
        collapsed = abs(matching_loss - log_k) <= args.collapse_tolerance * log_k
        self.collapsed_logs = self.collapsed_logs + 1 if collapsed else 0
        if self.collapsed_logs == args.collapse_patience:
            logger.warning(
                "The matching loss has stayed at ln K = %.3f for %d logs (step %d): the teacher targets look uniform "
                "(collapse). Try a lower teacher temperature, a higher teacher momentum, fewer prototypes for small "
                "data, more --freeze_prototypes_epochs, or a lower learning rate.",
                log_k,
                self.collapsed_logs,
                state.global_step,
            )


__all__ = ["HEALTH_METRICS", "CollapseWarningCallback", "FiniteLossCallback", "HealthMetrics", "NonFiniteLossError"]
