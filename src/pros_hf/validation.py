"""The toolkit's argument checks, shared across its modules: each returns the value it accepted (as the type the
caller uses) or raises a one-line `ValueError` naming the argument and what it got.

The model core (configuration and modeling files) keeps its own checks: it is copied to the Hub and may import
nothing of the toolkit.
"""

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


__all__ = [
    "check_choice",
    "check_finite_triple",
    "check_int",
    "check_k_temperature",
    "check_prob",
    "check_range",
    "check_source_size",
]
