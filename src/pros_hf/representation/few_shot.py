"""Few-shot fine-tuning: the backbone and a linear readout per task trained end to end on a seeded fraction of the
training labels (FaRL's data-ratio protocol: 1%, 5%, 10% and 100%), scored by the readouts' own predictions.

Where a probe asks what frozen features hold, fine-tuning asks how good a starting point the weights are when a few
labels are all there is. The recipe is the supervised ceiling's (`CeilingRecipe`: same optimiser, schedule, flips),
so that random initialisation at 100% of the labels *is* the ceiling; a subset trains for the recipe's epochs over
the subset and at least `min_steps` optimizer steps, since a 1% subset of a few thousand images is a few batches.
The subset is stratified by expression (every class present) and drawn with the seed; each seed also changes the
mini-batch order. Identity is not a few-shot task: its test people have no training labels, so there is no readout
to fine-tune for them.
"""

import copy
from collections.abc import Sequence

import numpy as np
import torch

from ..finetuning.data.splits import few_shot_indices
from .ceiling import CeilingRecipe, SupervisedModel, train_supervised
from .tasks import RepresentationTask, landmark_nme

FEW_SHOT_FRACTIONS = (0.01, 0.05, 0.10, 1.0)
DEFAULT_MIN_STEPS = 150


def few_shot_protocol_name(fraction: float) -> str:
    """`few_shot_5%` for 0.05: the protocol's key in the report."""
    return f"few_shot_{100 * fraction:g}%"


def supervised_scores(
    model: SupervisedModel, pixel_values: torch.Tensor, targets: dict, tasks: Sequence[RepresentationTask]
) -> dict:
    """`{task: score}` of the readouts' own predictions: accuracy, mean attribute accuracy, inter-ocular NME."""
    outputs = model.predict(pixel_values)
    scores = {}
    for task in tasks:
        output, target = outputs[task.name], targets[task.name]
        if task.kind == "single_label":
            scores[task.name] = float((output.argmax(1) == target).float().mean())
        elif task.kind == "multi_label":
            scores[task.name] = float(((output > 0) == (target > 0.5)).float().mean())
        else:
            scores[task.name] = landmark_nme(output, target)
    return scores


def few_shot_rows(expression: torch.Tensor, fraction: float, seed: int) -> np.ndarray:
    """The seeded training rows of a `fraction` subset, stratified by expression class."""
    return few_shot_indices(expression.numpy(), fraction, seed)


def few_shot_scores(
    model: torch.nn.Module,
    train,
    test,
    tasks: Sequence[RepresentationTask],
    fraction: float,
    seed: int,
    recipe: CeilingRecipe | None = None,
    flip_permutation=None,
    min_steps: int = DEFAULT_MIN_STEPS,
    show_progress: bool = False,
) -> dict:
    """`{task: score}` of a copy of `model` fine-tuned on a `fraction` of `train`'s labels drawn with `seed`
    (`train`, `test`: `EvaluationData`; identity-like tasks are left out)."""
    tasks = [task for task in tasks if not task.held_out_people]
    if not tasks:
        raise ValueError(
            "few-shot fine-tuning needs a task with training labels (expression, attributes or landmarks)."
        )
    anchor = train.targets.get("expression")
    rows = (
        few_shot_rows(anchor, fraction, seed)
        if anchor is not None
        else few_shot_indices(np.arange(len(train.pixel_values)), fraction, seed, stratify=False)
    )
    rows_tensor = torch.as_tensor(rows)
    targets = {task.name: train.targets[task.name][rows_tensor] for task in tasks}
    recipe = copy.deepcopy(recipe or CeilingRecipe())
    recipe.seed = seed
    supervised = train_supervised(
        copy.deepcopy(model),
        train.pixel_values[rows_tensor],
        targets,
        tasks,
        recipe,
        flip_permutation,
        show_progress,
        min_steps=min_steps,
        description=f"Fine-tuning on {100 * fraction:g}% of the labels",
    )
    return supervised_scores(supervised, test.pixel_values, test.targets, tasks)


__all__ = [
    "DEFAULT_MIN_STEPS",
    "FEW_SHOT_FRACTIONS",
    "few_shot_protocol_name",
    "few_shot_rows",
    "few_shot_scores",
    "supervised_scores",
]
