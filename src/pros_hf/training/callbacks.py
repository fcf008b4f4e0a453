"""The self-distillation steps around the optimizer step, as `TrainerCallback`s.

Each reads the model and the optimizer from the event's keyword arguments (`model=`, `optimizer=`), as TRL's
callbacks do, and holds no reference to the trainer; the schedules are pure functions of the global step
(`pros_hf.schedules`), so a resumed run computes the values an uninterrupted one would have.

- `TeacherEMACallback` (`on_optimizer_step`): the EMA update of the teacher after each optimizer step.
- `PrototypeFreezeCallback` (`on_pre_optimizer_step`): prototype gradients cancelled during the first epoch(s).
- `WeightDecayScheduleCallback` (`on_pre_optimizer_step`): the weight decay of the decayed groups along a cosine.
"""

from collections.abc import Callable

from accelerate.utils import extract_model_from_parallel
from torch import nn
from transformers import TrainerCallback

from .. import schedules

# Parameters without weight decay beyond DINO's rule for 1-D tensors (biases, norms).
NO_DECAY_NAMES = ("prototypes", "cls_token", "position_embeddings", "mask_token", "register_tokens")


def decay_parameter_names(model: nn.Module) -> list[str]:
    """DINO's rule (no decay for 1-D tensors: biases, norms, layer scales) plus prototypes, CLS token, position
    embeddings, the mask and register tokens: decaying them would pull learnt positions and class vectors toward
    zero, not regularise features."""
    return [
        name
        for name, parameter in model.named_parameters()
        if parameter.ndim > 1 and not any(key in name for key in NO_DECAY_NAMES)
    ]


def schedule_steps(state, steps: int | None, epochs: float) -> int:
    """A schedule's length in optimizer steps: `steps` when given, else `epochs` of this run converted (the schedules
    are defined per epoch, like DINO's); at most the run."""
    if steps is not None:
        return min(steps, state.max_steps)
    steps_per_epoch = state.max_steps / max(float(state.num_train_epochs or 1), 1e-9)
    return min(int(round(epochs * steps_per_epoch)), state.max_steps)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside accelerate's, DDP's, FSDP's or DeepSpeed's wrapper (the one that holds `teacher`)."""
    return extract_model_from_parallel(model)


class TeacherEMACallback(TrainerCallback):
    """After every optimizer step, `teacher = m * teacher + (1 - m) * student` on every process, with `m` along a cosine
    from `--teacher_momentum` to `--teacher_momentum_end`.

    The update reads the unwrapped model, so DDP never sees the teacher (it holds no trainable parameter). A step that
    the optimizer skipped (an fp16 overflow) left the student where it was: the teacher then stays too.
    `last_momentum` is the momentum of the last update, for the logs."""

    def __init__(self):
        self.last_momentum: float | None = None

    def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        if getattr(optimizer, "step_was_skipped", False):
            return
        momentum = schedules.teacher_momentum(
            state.global_step, state.max_steps, args.teacher_momentum, args.teacher_momentum_end
        )
        unwrap(model).update_teacher(momentum)
        self.last_momentum = momentum


class PrototypeFreezeCallback(TrainerCallback):
    """Prototype gradients set to zero during the first `--freeze_prototypes_epochs` (or `--freeze_prototypes_steps`),
    DINO's `freeze_last_layer`: prototypes moved while the backbone is still random chase noise.

    Cancelled after clipping and before the optimizer step, as DINO does, so the clipping norm is the same with and
    without the freeze. `freeze_steps` is the freeze in optimizer steps, known once training begins."""

    def __init__(self):
        self.freeze_steps = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.freeze_steps = schedule_steps(state, args.freeze_prototypes_steps, args.freeze_prototypes_epochs)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        prototypes = unwrap(model).prototypes
        if schedules.prototypes_frozen(state.global_step, self.freeze_steps) and prototypes.grad is not None:
            prototypes.grad.zero_()


class WeightDecayScheduleCallback(TrainerCallback):
    """Before each optimizer step, the weight decay of the decayed parameter groups follows a cosine from
    `--weight_decay` to `--weight_decay_end` (DINO: light regularisation while learning fast, strong at the end).

    The decayed groups are found by parameter identity from `decay_parameter_names(model)` (the rule the Trainer
    built its groups with), once per optimizer: they are right whatever decay they start with, 0 included.
    `last_decay` is the decay set before the last step (None without decayed groups), for the logs."""

    def __init__(self, decay_parameter_names: Callable[[nn.Module], list[str]] = decay_parameter_names):
        self.decay_parameter_names = decay_parameter_names
        self.last_decay: float | None = None
        self._found: tuple[object, list[dict]] | None = None  # (optimizer, its decayed groups)

    def decay_groups(self, optimizer, model: nn.Module) -> list[dict]:
        """The parameter groups of `optimizer` that hold weight-decayed parameters of `model`."""
        if optimizer is None:
            return []
        if self._found is None or self._found[0] is not optimizer:
            model = unwrap(model)
            names = set(self.decay_parameter_names(model))
            decayed = {id(p) for name, p in model.named_parameters() if name in names}
            groups = [g for g in optimizer.param_groups if g["params"] and id(g["params"][0]) in decayed]
            self._found = (optimizer, groups)
        return self._found[1]

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        decay = schedules.weight_decay(state.global_step, state.max_steps, args.weight_decay, args.weight_decay_end)
        for group in self.decay_groups(optimizer, model):
            group["weight_decay"] = self.last_decay = decay


__all__ = [
    "NO_DECAY_NAMES",
    "PrototypeFreezeCallback",
    "TeacherEMACallback",
    "WeightDecayScheduleCallback",
    "decay_parameter_names",
    "schedule_steps",
    "unwrap",
]
