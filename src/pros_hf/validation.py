"""The toolkit's argument checks, shared across its modules: each returns the value it accepted (as the type the
caller uses) or raises a one-line `ValueError` naming the argument and what it got.

The model core (configuration and modeling files) keeps its own checks: it is copied to the Hub and may import
nothing of the toolkit.
"""

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """An integer (Python or numpy, not a bool) in `[low, high]` (`high` None: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        valid = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {valid}, got {value}")
    return int(value)


def check_choice(name: str, value, options: Sequence[str]) -> str:
    """One of `options`."""
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
    return value


def check_prob(name: str, p: float) -> float:
    """A probability in [0, 1]."""
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_range(name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> tuple[float, float]:
    """A `(min, max)` pair with `lo (<|<=) min <= max <= hi`."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}") from None
    left = "(" if lo_open else "["
    ok_lo = a > lo if lo_open else a >= lo
    if not (ok_lo and b <= hi):
        raise ValueError(f"{name} must lie in {left}{lo}, {hi}], got {value!r}")
    if a > b:
        raise ValueError(f"{name} must have min <= max, got {value!r}")
    return a, b


def check_finite_triple(name: str, value: Any) -> tuple[float, float, float]:
    """Three finite floats (R, G, B): a NaN or infinite mean/std would turn a whole channel into NaN or 0."""
    try:
        triple = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 3 numbers (R, G, B), got {value!r}") from None
    if len(triple) != 3:
        raise ValueError(f"{name} must have 3 values (R, G, B), got {value!r}")
    if not all(math.isfinite(v) for v in triple):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return triple


def check_source_size(batch_size: Any, height: Any, width: Any) -> tuple[int, int, int]:
    """A batch of images' sizes as positive ints (a 0 or fractional size gives inf/NaN crop or warp matrices)."""
    for name, value in (("batch_size", batch_size), ("height", height), ("width", width)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(batch_size), int(height), int(width)


def check_k_temperature(k, temperature) -> None:
    """`k` neighbours and the `temperature` of a weighted k-NN vote (`exp(similarity / temperature)`)."""
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be > 0 (votes are exp(similarity / temperature)), got {temperature!r}.")
    if 1.0 / temperature > 700:
        raise ValueError(f"temperature must be >= 1/700: exp(1 / temperature) overflows float64, got {temperature!r}.")


def check_finite_fields(arguments, prefix: str = "--") -> None:
    """Every number of a dataclass of flags (and every number in its list fields) is finite: argparse's `float`
    parses "nan" and "inf", which no flag of the toolkit means, and which would surface later as a NaN loss, an
    empty split or a comparison that is always False. The message names the flag (`prefix` + field name)."""
    for item in dataclasses.fields(arguments):
        value = getattr(arguments, item.name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        for number in values:
            if isinstance(number, float) and not math.isfinite(number):
                raise ValueError(f"{prefix}{item.name} must be a finite number, got {value!r}.")


# TrainingArguments' numbers and what each must be: (name, lowest, whether the lowest is allowed, highest, whether
# the highest is allowed); None: no bound. transformers takes them as given, and a negative learning rate, a zero
# batch or a beta of 1 fail only inside torch, after the model and the data are set up.
TRAINING_NUMBER_RANGES = (
    ("learning_rate", 0.0, False, None, False),
    ("weight_decay", 0.0, True, None, False),
    ("adam_beta1", 0.0, True, 1.0, False),
    ("adam_beta2", 0.0, True, 1.0, False),
    ("adam_epsilon", 0.0, False, None, False),
    ("max_grad_norm", 0.0, True, None, False),
    ("num_train_epochs", 0.0, False, None, False),
    ("warmup_steps", 0.0, True, None, False),
    ("warmup_ratio", 0.0, True, 1.0, True),
    ("label_smoothing_factor", 0.0, True, 1.0, False),
    ("per_device_train_batch_size", 1, True, None, False),
    ("per_device_eval_batch_size", 1, True, None, False),
    ("gradient_accumulation_steps", 1, True, None, False),
    ("logging_steps", 0.0, False, None, False),
    ("save_steps", 0.0, False, None, False),
    ("eval_steps", 0.0, False, None, False),
    ("eval_delay", 0.0, True, None, False),
    ("save_total_limit", 1, True, None, False),
    ("seed", 0, True, 2**32 - 1, True),
    ("data_seed", 0, True, 2**32 - 1, True),
    ("dataloader_num_workers", 0, True, None, False),
    ("dataloader_prefetch_factor", 1, True, None, False),
)


def check_training_numbers(args) -> None:
    """`TrainingArguments` numbers in their ranges (`TRAINING_NUMBER_RANGES`) and finite, and `max_steps` either
    -1 (train --num_train_epochs) or positive; one-line `ValueError` naming the flag."""
    check_finite_fields(args)
    for name, low, low_ok, high, high_ok in TRAINING_NUMBER_RANGES:
        value = getattr(args, name, None)
        if value is None or isinstance(value, bool) or not isinstance(value, numbers.Number):
            continue
        too_low = low is not None and (value < low if low_ok else value <= low)
        too_high = high is not None and (value > high if high_ok else value >= high)
        if too_low or too_high:
            left, right = ("[" if low_ok else "("), ("]" if high_ok else ")")
            bound = (
                f"> {low}"
                if not low_ok and high is None
                else f">= {low}"
                if high is None
                else f"in {left}{low}, {high}{right}"
            )
            raise ValueError(f"--{name} must be {bound}, got {value}.")
    max_steps = getattr(args, "max_steps", -1)
    if max_steps is not None and max_steps != -1 and max_steps < 1:
        raise ValueError(
            f"--max_steps must be a positive number of steps (or -1 to train --num_train_epochs), got {max_steps}."
        )


__all__ = [
    "TRAINING_NUMBER_RANGES",
    "check_choice",
    "check_finite_fields",
    "check_finite_triple",
    "check_int",
    "check_k_temperature",
    "check_prob",
    "check_range",
    "check_source_size",
    "check_training_numbers",
]
