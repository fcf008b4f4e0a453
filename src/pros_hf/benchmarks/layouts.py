"""Landmark layouts of the alignment benchmarks: how points swap under a horizontal flip, and which are the eyes.

A flip permutation is used as `flipped = mirror(points)[FLIP]` (mirror: x -> width - 1 - x): after mirroring, the
point that sits where the left eye corner was is the old right eye corner, so index i takes the point FLIP[i]. Every
permutation here is an involution (pairs swap, points on the mid-line stay), which `tests/test_benchmark_protocols.py`
checks, along with the mirror symmetry of each layout's published mean shape.
"""

from collections.abc import Iterable

from ..data.face_params import FLIP_PERMUTATION_68


def _from_pairs(num_points: int, pairs: Iterable[tuple[int, int]]) -> tuple[int, ...]:
    permutation = list(range(num_points))
    for a, b in pairs:
        permutation[a], permutation[b] = b, a
    return tuple(permutation)


# WFLW 98 points (Wu et al. 2018): contour 0-32, upper brows 33-37 / 42-46, lower brows 38-41 / 47-50, nose bridge
# 51-54, nose bottom 55-59, eyes 60-67 / 68-75, outer lips 76-87, inner lips 88-95, pupils 96 / 97. The pairs are
# the ones HRNet's face-alignment code flips with (0-based).
WFLW_FLIP_PERMUTATION_98 = _from_pairs(98, [
    *((i, 32 - i) for i in range(16)),  # contour; 16 is the chin
    (33, 46), (34, 45), (35, 44), (36, 43), (37, 42),  # upper brow edges
    (38, 50), (39, 49), (40, 48), (41, 47),  # lower brow edges
    (55, 59), (56, 58),  # nose bottom; 51-54 and 57 on the mid-line
    (60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73),  # eyes
    (76, 82), (77, 81), (78, 80), (87, 83), (86, 84),  # outer lips; 79 and 85 on the mid-line
    (88, 92), (89, 91), (95, 93),  # inner lips; 90 and 94 on the mid-line
    (96, 97),  # pupils
])  # fmt: skip

# AFLW-19 (AFLW's 21 points without the two ears, as re-annotated by Zhu et al. 2016): brows 0-2 / 3-5, eyes 6-8
# (outer corner, centre, inner corner) / 9-11 (inner, centre, outer), nose 12-14 (sides 12 / 14, tip 13), mouth 15-17
# (corners 15 / 17, centre 16), chin 18. HRNet's pairs, 0-based.
AFLW_FLIP_PERMUTATION_19 = _from_pairs(19, [
    (0, 5), (1, 4), (2, 3),  # brows
    (6, 11), (7, 10), (8, 9),  # eyes
    (12, 14),  # nostrils; 13 (nose tip) on the mid-line
    (15, 17),  # mouth corners; 16 and the chin 18 on the mid-line
])  # fmt: skip

FLIP_PERMUTATIONS = {68: FLIP_PERMUTATION_68, 98: WFLW_FLIP_PERMUTATION_98, 19: AFLW_FLIP_PERMUTATION_19}

# The eye points of the eye normalisations (left, right: the image's left first); a range is averaged to a centre.
# 300W and WFLW as in FaRL's scorers; AFLW-19's as FaRL reports them too (outer corners 6 / 11, centres 7 / 10),
# although its protocol normalises by the face box.
EYE_POINTS = {
    68: {"inter_ocular": (36, 45), "inter_pupil": (tuple(range(36, 42)), tuple(range(42, 48)))},
    98: {"inter_ocular": (60, 72), "inter_pupil": (96, 97)},
    19: {"inter_ocular": (6, 11), "inter_pupil": (7, 10)},
}
