"""Picking the evaluation to keep on the validation split: a `TrainerCallback` that records every validation score
and keeps the weights of the best one in memory, so that one run reports both its last state and the
validation-selected one (transformers' `load_best_model_at_end` would replace the last state, and writes checkpoints
to disk to do it)."""

import torch
from transformers import TrainerCallback


class ValidationSelection(TrainerCallback):
    """Keeps the weights of the evaluation with the best `metric` (`greater_is_better` says which way) on the
    validation split. `history`: every evaluation's step, epoch and value; `best_step`: the step kept;
    `restore(model)` puts its weights back."""

    def __init__(self, metric: str, greater_is_better: bool):
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.history: list[dict] = []
        self.best_value: float | None = None
        self.best_step: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    @property
    def last_step(self) -> int | None:
        return self.history[-1]["step"] if self.history else None

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.greater_is_better else value < self.best_value

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = float(metrics[f"eval_{self.metric}"])
        self.history.append(
            {"step": int(state.global_step), "epoch": round(float(state.epoch or 0.0), 4), self.metric: value}
        )
        if self._better(value):  # ties keep the earlier evaluation
            self.best_value, self.best_step = value, int(state.global_step)
            # on the CPU, so that a copy of the weights costs no accelerator memory
            self._best_state = {
                name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()
            }

    def restore(self, model) -> None:
        """Load the kept weights into `model` (the one that was trained)."""
        if self._best_state is None:
            raise RuntimeError("no evaluation was recorded: run an evaluation on the validation split first.")
        model.load_state_dict(self._best_state)


__all__ = ["ValidationSelection"]
