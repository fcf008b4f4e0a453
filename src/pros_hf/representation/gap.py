"""How much of the way from random initialisation to full supervision a pre-trained representation goes.

A learning figure means little alone: 0.45 expression accuracy is good if random weights give 0.20 and full
supervision 0.50, and poor if they give 0.40 and 0.95. Every result of the representation protocols is reported
with its floor (labels alone: the majority class, each attribute's majority value, the mean face shape), the same
architecture at random initialisation, and the ceiling (the same architecture trained end to end with every training
label), and summarised as the share of the random-to-ceiling gap that pre-training closes:

    gap_closed = (pretrained - random_init) / (ceiling - random_init)

1 means the ceiling and 0 random initialisation, in either metric direction (for a lower-is-better error such as
NME both differences are negative). It is undefined when the ceiling does not differ from random initialisation:
the benchmark then cannot tell, which is reported as None rather than as a number.
"""

import math
from collections.abc import Sequence

# below this |ceiling - random_init| the two are taken as equal and the ratio as undefined
MIN_GAP = 1e-9


def gap_closed(pretrained: float, random_init: float, ceiling: float) -> float | None:
    """`(pretrained - random_init) / (ceiling - random_init)`, or None when the gap is empty or a value is not
    finite."""
    values = (pretrained, random_init, ceiling)
    if any(value is None or not math.isfinite(value) for value in values):
        return None
    span = ceiling - random_init
    if abs(span) < MIN_GAP:
        return None
    return (pretrained - random_init) / span


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value): the spread over seeds the tables report."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_and_std needs at least one value.")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


__all__ = ["MIN_GAP", "gap_closed", "mean_and_std"]
