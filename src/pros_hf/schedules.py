"""Training schedules as pure functions of the global optimizer step (DINO's recipe: cosine learning rate, weight
decay and teacher momentum, a linear teacher-temperature warm-up).

Being functions of the step and nothing else, they need no state in a checkpoint: a resumed run computes exactly the
values an uninterrupted one would have.
"""

import math


def cosine_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """Half a cosine from `start` (step 0) to `end` (step `total_steps`), constant afterwards."""
    if total_steps <= 0:
        return end
    progress = min(max(step, 0), total_steps) / total_steps
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear from `start` to `end` over `warmup_steps`, then `end`."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * max(step, 0) / warmup_steps


def teacher_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """EMA momentum of the teacher: cosine from `base` to `final`. Early on the teacher follows the student quickly;
    at the end it is frozen, which is why the final teacher is smoother than any student iterate."""
    return cosine_schedule(step, total_steps, base, final)


def teacher_temperature(step: int, warmup_steps: int, warmup: float = 0.04, final: float = 0.07) -> float:
    """Teacher softmax temperature: sharp (`warmup`) while the features are still random, then `final`."""
    return linear_warmup(step, warmup_steps, warmup, final)


def weight_decay(step: int, total_steps: int, start: float = 0.04, end: float = 0.4) -> float:
    """Weight decay grows along a cosine (DINO): light regularisation while learning fast, strong at the end."""
    return cosine_schedule(step, total_steps, start, end)


def prototypes_frozen(step: int, freeze_steps: int) -> bool:
    """Whether prototype gradients are cancelled at this step (DINO's `freeze_last_layer`): while the backbone is
    random, moving prototypes chase noise and collapse is likelier."""
    return step < freeze_steps


__all__ = [
    "cosine_schedule",
    "linear_warmup",
    "prototypes_frozen",
    "teacher_momentum",
    "teacher_temperature",
    "weight_decay",
]
