"""The supervised ceiling: the evaluated architecture trained end to end, from random initialisation, with every
training label.

A representation is judged against what full supervision of the same model on the same data reaches; if that
ceiling is near the floor the benchmark cannot show learning at all. The ceiling model is the backbone plus, per
task, the same linear readout a probe uses (a linear layer on the pooled CLS + mean patch token, or on the CLS and
every patch token for landmarks), trained jointly: a probe of its frozen features then reads what supervision put
there with the capacity every other backbone gets. Identity is trained as a classifier over the training people and
scored, like every backbone, on people it never saw (the face-recognition setting).

Training: AdamW with a one-cycle schedule (linear warm-up, cosine decay), label smoothing on the classifiers, the
smooth-L1 loss on normalised landmark coordinates, and horizontal flips (landmarks mirrored and their indices swapped
by the flip permutation). Tasks are trained jointly so that one run gives every task's ceiling, so their losses are
weighed against each other: each binary attribute counts as much as the expression task (the attribute losses are
summed, not averaged: averaged over 12 attributes, the rare ones - hat, baldness, lipstick - stayed at their majority
class beside a 400-way identity loss), and the landmark loss is scaled up to the classification losses' size.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .features import pool_features
from .tasks import RepresentationTask


@dataclass
class CeilingRecipe:
    """How the ceiling model is trained. The defaults reach the benchmark's ceilings on the micro ViT in minutes on
    two CPU cores."""

    epochs: int = 30
    """Passes over the training set. A ViT trained from scratch on a few thousand images needs tens of epochs
    before its accuracy takes off: far more than a few-shot fine-tuning schedule."""
    batch_size: int = 64
    learning_rate: float = 1e-3
    """Peak AdamW learning rate of the one-cycle schedule."""
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    """Share of the steps spent warming the learning rate up from 0 (ViTs from scratch diverge without it)."""
    label_smoothing: float = 0.1
    flip: bool = True
    """Horizontal flips: free data for faces (landmark indices swapped by the flip permutation)."""
    landmark_loss_weight: float = 20.0
    """Scale of the smooth-L1 loss (beta 0.01) on landmark coordinates normalised to [0, 1], whose errors are
    ~0.01-0.1: x20 brings it to the size of the classification losses. On the benchmark faces, x20 gives the ceiling
    its landmark NME of 0.042 with every classifier above its target; x30 kept the classifiers at chance for all 30
    epochs in a measured run."""
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CeilingRecipe.{name} must be a positive integer, got {value!r}.")
        for name in ("learning_rate", "weight_decay", "warmup_fraction", "label_smoothing", "landmark_loss_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"CeilingRecipe.{name} must be a finite number >= 0, got {value!r}.")
        if self.learning_rate == 0 or self.warmup_fraction >= 1 or self.label_smoothing >= 1:
            raise ValueError("CeilingRecipe: learning_rate must be > 0, warmup_fraction and label_smoothing < 1.")

    def to_dict(self) -> dict:
        return asdict(self)


def one_cycle_factor(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at `step`: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class _Readouts(torch.nn.Module):
    """One linear layer per task on that task's frozen-feature view."""

    def __init__(self, hidden_size: int, num_tokens: int, tasks: Sequence[RepresentationTask], outputs: dict):
        super().__init__()
        self.tasks = list(tasks)
        widths = {"pooled": 2 * hidden_size, "tokens": num_tokens * hidden_size}
        self.layers = torch.nn.ModuleDict(
            {task.name: torch.nn.Linear(widths[task.features], outputs[task.name]) for task in self.tasks}
        )

    def forward(self, hidden: torch.Tensor) -> dict:
        views = {}
        return {
            task.name: self.layers[task.name](views.setdefault(task.features, pool_features(hidden, task.features)))
            for task in self.tasks
        }


def _flip(pixels, targets, tasks, flip, permutation):
    pixels = torch.where(flip.view(-1, 1, 1, 1), pixels.flip(3), pixels)
    out = dict(targets)
    for task in tasks:
        if task.kind != "regression":
            continue
        points = targets[task.name].view(len(pixels), -1, 2)
        mirrored = points[:, permutation].clone()
        mirrored[..., 0] = 1.0 - mirrored[..., 0]
        out[task.name] = torch.where(flip.view(-1, 1, 1), mirrored, points).reshape(len(pixels), -1)
    return pixels, out


def _loss(task: RepresentationTask, output, target, recipe: CeilingRecipe):
    if task.kind == "single_label":
        return F.cross_entropy(output, target, label_smoothing=recipe.label_smoothing)
    if task.kind == "multi_label":  # one binary cross-entropy per attribute, summed: each weighs like one task
        return F.binary_cross_entropy_with_logits(output, target, reduction="none").sum(dim=1).mean()
    return F.smooth_l1_loss(output, target, beta=0.01) * recipe.landmark_loss_weight


class SupervisedModel(torch.nn.Module):
    """A backbone trained with labels, and the linear readouts it was trained with (one per task)."""

    def __init__(self, backbone: torch.nn.Module, readouts: _Readouts):
        super().__init__()
        self.backbone = backbone
        self.readouts = readouts

    @torch.inference_mode()
    def predict(self, pixel_values: torch.Tensor, batch_size: int = 256) -> dict:
        """Each task's outputs for `pixel_values`: logits for classes and attributes, normalised coordinates for
        landmarks."""
        self.eval()
        chunks = [
            self.readouts(self.backbone(pixel_values=pixel_values[start : start + batch_size]).last_hidden_state)
            for start in range(0, len(pixel_values), batch_size)
        ]
        return {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}


def train_supervised(
    model: torch.nn.Module,
    pixel_values: torch.Tensor,
    targets: dict,
    tasks: Sequence[RepresentationTask],
    recipe: CeilingRecipe | None = None,
    flip_permutation: Sequence[int] | None = None,
    show_progress: bool = True,
    min_steps: int = 1,
    description: str = "Supervised training",
) -> SupervisedModel:
    """Train `model` (a `ProSModel`: freshly initialised for the ceiling, pre-trained for fine-tuning) end to end
    with a linear readout per task, jointly on `tasks`, and return both in eval mode.

    `pixel_values` are the processed training images (N, 3, H, W); `targets[task.name]` the task's targets as
    `pros_hf.representation.task_targets` makes them (class ids 0..C-1). A task with landmarks needs
    `flip_permutation` when `recipe.flip` is on. The run lasts `recipe.epochs` passes, and at least `min_steps`
    optimizer steps (few-shot subsets are small: a fixed number of passes would be a handful of steps).
    """
    recipe = recipe or CeilingRecipe()
    tasks = list(tasks)
    if not tasks:
        raise ValueError("supervised training needs at least one task.")
    if any(t.kind == "regression" for t in tasks) and recipe.flip and flip_permutation is None:
        raise ValueError("flip_permutation is needed to flip landmarks; pass it or CeilingRecipe(flip=False).")
    n = len(pixel_values)
    generator = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    with torch.no_grad():
        num_tokens = model(pixel_values=pixel_values[:1]).last_hidden_state.shape[1]
    outputs = {}
    for task in tasks:
        target = targets[task.name]
        if len(target) != n:
            raise ValueError(f"{len(target)} {task.name} targets for {n} images.")
        outputs[task.name] = int(target.max()) + 1 if task.kind == "single_label" else target.shape[1]
    readouts = _Readouts(model.config.hidden_size, num_tokens, tasks, outputs)
    parameters = list(model.parameters()) + list(readouts.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    batch_size = min(recipe.batch_size, n)
    steps_per_epoch = max(1, n // batch_size)
    total = max(steps_per_epoch * recipe.epochs, min_steps)
    warmup = max(1, round(recipe.warmup_fraction * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: one_cycle_factor(step, warmup, total))
    permutation = torch.as_tensor(flip_permutation) if flip_permutation is not None else None
    model.train()
    readouts.train()
    progress = tqdm(total=total, desc=description, disable=not show_progress, leave=False)
    step = 0
    while step < total:
        order = torch.randperm(n, generator=generator)
        for start in range(0, steps_per_epoch * batch_size, batch_size):
            if step == total:
                break
            rows = order[start : start + batch_size]
            pixels, batch = pixel_values[rows], {name: target[rows] for name, target in targets.items()}
            if recipe.flip:
                pixels, batch = _flip(
                    pixels, batch, tasks, torch.rand(len(rows), generator=generator) < 0.5, permutation
                )
            predictions = readouts(model(pixel_values=pixels).last_hidden_state)
            loss = sum(_loss(task, predictions[task.name], batch[task.name], recipe) for task in tasks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            progress.update()
            step += 1
    progress.close()
    return SupervisedModel(model, readouts).eval()


def train_ceiling(model, pixel_values, targets, tasks, recipe=None, flip_permutation=None, show_progress=True):
    """The supervised ceiling's backbone: `model` (freshly initialised) trained with every training label."""
    return train_supervised(
        model, pixel_values, targets, tasks, recipe, flip_permutation, show_progress, description="Supervised ceiling"
    ).backbone


__all__ = ["CeilingRecipe", "SupervisedModel", "train_ceiling", "train_supervised"]
