"""`load_benchmark`: one entry point to every benchmark loader, returning the project's column layout."""

import importlib
import inspect
import logging
import os
from pathlib import Path

from .errors import BenchmarkFormatError
from .files import BenchmarkReport, warn_on_counts
from .protocols import PROTOCOLS, canonical_name

logger = logging.getLogger("pros_hf.benchmarks")

# benchmark -> (module, keyword arguments its `load` receives besides the folder and the report)
_LOADERS = {
    "celeba": ("celeba", {}),
    "lfwa": ("lfwa", {}),
    "rafdb": ("rafdb", {}),
    "affectnet7": ("affectnet", {"classes": 7}),
    "affectnet8": ("affectnet", {"classes": 8}),
    "300w": ("face300w", {}),
    "wflw": ("wflw", {}),
    "aflw19": ("aflw19", {}),
}


def load_benchmark(name: str, data_dir: str | os.PathLike, *, return_report: bool = False, **options):
    """Read benchmark `name` from `data_dir`, laid out as its authors distribute it, into a `datasets.DatasetDict`.

    Names (case, '-' and '_' do not matter): celeba, lfwa, rafdb, affectnet7, affectnet8, 300w, wflw, aflw19; each
    module's docstring gives the files it reads. Splits are `train`, `validation` where the data set has one, `test`
    (or `test_full`) and the named test subsets (`get_protocol(name).test_split` / `.test_subsets`).

    Columns: `image` (`datasets.Image()` from file paths, decoded on access), `file_name` (relative to the image
    folder) and the task's column as the fine-tuning data path reads it: `expression` (`ClassLabel`, the project's
    order: neutral, happiness, sadness, surprise, fear, disgust, anger; AffectNet-8 adds contempt), `attributes` (a
    list of `ClassLabel` ids of the attributes present, with the data set's own names), or `landmarks` ((N, 2)
    float32 (x, y) pixels of the stored image, pixel centres at integers) with `face_box` (x0, y0, x1, y1). So
    `pros_hf.finetuning.normalize_task_dataset(splits["train"], task)` takes a split as it is.

    A split smaller than published (a partial download, images listed but missing: those are skipped) logs a warning
    with both counts. A wrong or incomplete folder raises `BenchmarkFormatError` naming the file and line.
    `options` go to the loader (`layout` for 300w, `include_landmarks` for affectnet, `image_dir` for lfwa); with
    `return_report`, returns `(splits, BenchmarkReport)`, the counts of every split (listed, kept, missing, dropped).
    """
    import datasets

    key = canonical_name(name)
    protocol = PROTOCOLS[key]
    root = Path(data_dir)
    if not root.is_dir():
        raise BenchmarkFormatError(
            f"{protocol.title}: data folder {root} does not exist{'' if not root.exists() else ' (it is a file)'}."
        )
    module_name, fixed = _LOADERS[key]
    loader = importlib.import_module(f".{module_name}", __package__).load
    accepted = [p for p in inspect.signature(loader).parameters if p not in ("root", "report", *fixed)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise TypeError(f"load_benchmark({key!r}) got unknown option(s) {unknown}; its options: {valid}.")
    report = BenchmarkReport(protocol.title, str(root))
    splits = datasets.DatasetDict(loader(root, report, **fixed, **options))
    warn_on_counts(report)
    logger.info("%s", report.summary())
    return (splits, report) if return_report else splits
