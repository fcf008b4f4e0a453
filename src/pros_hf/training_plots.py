"""The pre-training run at a glance: loss, entropies, prototypes in use, schedules and k-NN accuracy against steps.

Why: self-distillation fails quietly. A loss flat at ln K is uniform collapse, a teacher entropy near 0 with few
prototypes in use is one-hot collapse, and a falling loss says nothing about the features, which k-NN accuracy
does. These are the curves DINO's users are told to look at. `ProSTrainer` writes them
next to the exported backbone as `training_curves.png`, from `trainer.state.log_history`.
"""

import math
from collections.abc import Mapping, Sequence

from .evaluation_plots import new_figure, save_figure

__all__ = ["plot_pretraining_curves"]

_SCHEDULES = (
    ("learning_rate", "learning rate"),
    ("teacher_momentum", "teacher momentum"),
    ("teacher_temperature", "teacher temperature"),
    ("weight_decay", "weight decay"),
)


def _series(log_history: Sequence[Mapping], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of every log entry that has a finite number under `key`."""
    steps, values = [], []
    for entry in log_history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and "step" in entry:
            steps.append(entry["step"])
            values.append(float(value))
    return steps, values


def plot_pretraining_curves(
    log_history: Sequence[Mapping], path, num_prototypes: int | None = None, title: str | None = None
) -> str:
    """One row of panels from a Trainer's `log_history`: the losses, the two entropies, the prototypes in use, the
    schedules (each scaled to its own range, named in the legend) and, when a `KNNCallback` logged them, the k-NN
    top-1 accuracies. With `num_prototypes` (K) the collapse levels are drawn: ln K for the loss and entropies, K for
    the prototypes. Raises ValueError when no training step was logged."""
    if not isinstance(log_history, Sequence) or isinstance(log_history, (str, bytes)):
        raise ValueError(
            f"log_history must be a list of log dicts (trainer.state.log_history), got {type(log_history).__name__}."
        )
    # the loss terms ProSTrainer logs; a plain Trainer's total loss otherwise
    losses = [
        (name, *_series(log_history, name)) for name in ("matching_loss", "patch_loss", "me_max_loss", "koleo_loss")
    ]
    losses = [item for item in losses if item[1]] or [("loss", *_series(log_history, "loss"))]
    if not losses[0][1]:
        raise ValueError("no training step was logged (raise the run's length or lower --logging_steps).")
    entropies = [(name, *_series(log_history, name)) for name in ("teacher_entropy", "student_mean_entropy")]
    schedules = [(label, *_series(log_history, key)) for key, label in _SCHEDULES]
    knn = sorted({key for entry in log_history for key in entry if key.startswith("knn/")})

    panels = ["loss", "entropy", "prototypes", "schedules"] + (["knn"] if knn else [])
    figure = new_figure(3.6 * len(panels), 3.2)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    log_k = math.log(num_prototypes) if num_prototypes else None
    for axis, panel in zip(axes, panels):
        if panel == "loss":
            for name, steps, values in losses:
                axis.plot(steps, values, label=name.replace("_", " "))
            if log_k:
                axis.axhline(log_k, color="grey", linestyle="--", linewidth=1, label="ln K (uniform collapse)")
            axis.set_title("losses", fontsize=10)
        elif panel == "entropy":
            for name, steps, values in entropies:
                if steps:
                    axis.plot(steps, values, label=name.replace("_", " "))
            if log_k:
                axis.axhline(log_k, color="grey", linestyle="--", linewidth=1, label="ln K")
            axis.set_title("entropies (nats)", fontsize=10)
        elif panel == "prototypes":
            steps, values = _series(log_history, "active_prototypes")
            axis.plot(steps, values, label="teacher argmax in use")
            if num_prototypes:
                axis.axhline(num_prototypes, color="grey", linestyle="--", linewidth=1, label=f"K = {num_prototypes}")
            axis.set_title("active prototypes", fontsize=10)
        elif panel == "schedules":
            for label, steps, values in schedules:
                if not values:
                    continue
                low, high = min(values), max(values)
                if high > low:  # a momentum going 0.99 -> 1 would be a flat line as a fraction of its maximum
                    axis.plot(
                        steps,
                        [(v - low) / (high - low) for v in values],
                        label=f"{label} ({values[0]:.3g} to {values[-1]:.3g})",
                    )
                else:
                    axis.plot(steps, [1.0] * len(values), linestyle=":", label=f"{label} ({high:.3g}, constant)")
            axis.set_ylim(-0.05, 1.05)
            axis.set_title("schedules, each scaled to its range", fontsize=10)
        else:
            for key in knn:
                steps, values = _series(log_history, key)
                axis.plot(steps, values, marker="o", label=key[len("knn/") :].replace("_top1", ""))
            axis.set_ylabel("top-1 (%)")
            axis.set_title("weighted k-NN of the teacher", fontsize=10)
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=11)
    return save_figure(figure, path, "pre-training curves")
