"""The real face benchmarks, read from the files their authors distribute, in the project's column layout.

`load_benchmark(name, data_dir)` returns a `datasets.DatasetDict` whose splits the fine-tuning data path takes as
they are (`image` + `expression` / `attributes` / `landmarks`, `face_box` where the protocol has one). One module per
data set holds its reader and documents the files and layout it expects: `celeba`, `lfwa`, `rafdb`, `affectnet`,
`face300w`, `wflw`, `aflw19`. `protocols` holds what each benchmark's published protocol is (task, metrics,
normalisation, threshold, split sizes, flip permutation, crop rule), `crops` the face crop, `subsets` the seeded
1% / 10% / 100% training subsets.

`run_benchmark` fine-tunes and scores a model on one of them by its protocol (`examples/benchmark.py` is it on the
command line): `arguments` (the flags), `framing` (the protocol's crop, applied as rows are read), `selection` (the
validation split picks the evaluation to keep), `scoring` (the protocol's figures on a test split), `report`
(`benchmark.json` and the row in the layout of FaRL's tables), `run` (the whole run).

Not to be confused with the repository's top-level `benchmarks/` folder (speed benchmarks).
"""

from .arguments import BenchmarkArguments, RecipeArguments, benchmark_parser, parse_benchmark_arguments
from .crops import FaceCrop, crop_to_box, square_around
from .errors import BenchmarkFormatError
from .files import BenchmarkReport, SplitCount
from .framing import ProtocolFraming
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
from .report import ROW_COLUMNS, format_row, write_report
from .run import run_benchmark
from .scoring import score_split
from .selection import ValidationSelection
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
    "ROW_COLUMNS",
    "WFLW_FLIP_PERMUTATION_98",
    "BenchmarkArguments",
    "BenchmarkFormatError",
    "BenchmarkProtocol",
    "BenchmarkReport",
    "CropRule",
    "FaceCrop",
    "ProtocolFraming",
    "RecipeArguments",
    "SplitCount",
    "ValidationSelection",
    "benchmark_parser",
    "canonical_name",
    "crop_to_box",
    "format_row",
    "get_protocol",
    "load_benchmark",
    "parse_benchmark_arguments",
    "run_benchmark",
    "score_split",
    "square_around",
    "train_subset",
    "write_report",
]
