"""The real face benchmarks, read from the files their authors distribute, in the project's column layout.

`load_benchmark(name, data_dir)` returns a `datasets.DatasetDict` whose splits the fine-tuning data path takes as
they are (`image` + `expression` / `attributes` / `landmarks`, `face_box` where the protocol has one). One module per
data set holds its reader and documents the files and layout it expects: `celeba`, `lfwa`, `rafdb`, `affectnet`,
`face300w`, `wflw`, `aflw19`. `protocols` holds what each benchmark's published protocol is (task, metrics,
normalisation, threshold, split sizes, flip permutation, crop rule), `crops` the face crop, `subsets` the seeded
1% / 10% / 100% training subsets.

Not to be confused with the repository's top-level `benchmarks/` folder (speed benchmarks).
"""

from .crops import FaceCrop, crop_to_box, square_around
from .errors import BenchmarkFormatError
from .files import BenchmarkReport, SplitCount
from .layouts import AFLW_FLIP_PERMUTATION_19, EYE_POINTS, FLIP_PERMUTATIONS, WFLW_FLIP_PERMUTATION_98
from .protocols import (
    AFFECTNET8_EXPRESSION_NAMES,
    CELEBA_ATTRIBUTE_NAMES,
    PROTOCOLS,
    BenchmarkProtocol,
    CropRule,
    canonical_name,
    get_protocol,
)
from .registry import load_benchmark
from .subsets import train_subset

BENCHMARKS = tuple(PROTOCOLS)

__all__ = [
    "AFFECTNET8_EXPRESSION_NAMES",
    "AFLW_FLIP_PERMUTATION_19",
    "BENCHMARKS",
    "CELEBA_ATTRIBUTE_NAMES",
    "EYE_POINTS",
    "FLIP_PERMUTATIONS",
    "PROTOCOLS",
    "WFLW_FLIP_PERMUTATION_98",
    "BenchmarkFormatError",
    "BenchmarkProtocol",
    "BenchmarkReport",
    "CropRule",
    "FaceCrop",
    "SplitCount",
    "canonical_name",
    "crop_to_box",
    "get_protocol",
    "load_benchmark",
    "square_around",
    "train_subset",
]
