"""Shared plumbing of the loaders: finding the distributed files, checking which listed images exist, counting each
split against its published size, and building a split's `datasets.Dataset` with images stored as paths.

Images are never read here: the `image` column holds file paths (`datasets.Image()` decodes on access), so CelebA's
202,599 images cost a list of strings, not memory.
"""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BenchmarkFormatError

logger = logging.getLogger("pros_hf.benchmarks")

# how many missing file names a warning quotes (the count is always given)
QUOTED_MISSING = 3


def find_file(root: Path, name: str, subdirs: Sequence[str], title: str) -> Path:
    """The first of `root/<subdir>/<name>` that exists, else a one-line error naming every place looked at."""
    for sub in subdirs:
        candidate = root / sub / name
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(Path(sub) / name) for sub in subdirs)
    raise BenchmarkFormatError(f"{title}: {name} not found in {root} (looked for {looked}).")


def find_dir(root: Path, candidates: Sequence[str], title: str, what: str) -> Path:
    """The first of `root/<candidate>` that is a folder, else a one-line error (`what` says what it should hold)."""
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    looked = ", ".join(f"{c}/" for c in candidates)
    raise BenchmarkFormatError(f"{title}: no {what} folder in {root} (looked for {looked}).")


def shown(root: Path, path: Path) -> str:
    """`path` as the user knows it: relative to the data folder when inside it."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


class ImageIndex:
    """Which files exist below a folder, listing each sub-folder once: one listing of CelebA's image folder is far
    cheaper than 202,599 `stat` calls."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._listed: dict[str, set[str]] = {}

    def exists(self, relative: str) -> bool:
        parent, _, name = relative.rpartition("/")
        names = self._listed.get(parent)
        if names is None:
            try:
                names = set(os.listdir(self.root / parent))
            except OSError:  # the sub-folder is missing (or not a folder): none of its images exist
                names = set()
            self._listed[parent] = names
        return name in names

    def path(self, relative: str) -> str:
        return str(self.root / relative)


@dataclass
class SplitCount:
    """What one split holds against what was published: rows listed by the annotation, images kept, images listed
    but missing (skipped), and rows dropped by the protocol (e.g. AffectNet's non-face codes), by reason."""

    split: str
    expected: int | None
    source: str  # the annotation file(s) the rows come from, for messages
    image_dir: str  # where the images should be, for messages
    listed: int = 0
    kept: int = 0
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        expected = f" of {self.expected:,} published" if self.expected is not None else ""
        text = f"{self.split}: {self.kept:,}{expected}"
        if self.missing:
            text += f", {self.missing:,} missing images skipped"
        if self.dropped:
            text += ", dropped " + ", ".join(f"{reason} {count:,}" for reason, count in self.dropped.items())
        return text


@dataclass
class BenchmarkReport:
    """What `load_benchmark` found, split by split (`load_benchmark(..., return_report=True)` returns it)."""

    benchmark: str
    data_dir: str
    splits: dict[str, SplitCount] = field(default_factory=dict)

    def add(self, count: SplitCount) -> SplitCount:
        self.splits[count.split] = count
        return count

    def summary(self) -> str:
        return f"{self.benchmark} ({self.data_dir}): " + "; ".join(c.summary() for c in self.splits.values())


def build_split(title: str, count: SplitCount, columns: dict[str, list], features: dict, images: ImageIndex):
    """The `datasets.Dataset` of one split from column lists (`file_name` relative to `images.root`, plus the
    columns of `features`), keeping the rows whose image exists and counting the others in `count`."""
    import datasets

    names = columns["file_name"]
    present = [images.exists(name) for name in names]
    count.listed = len(names)
    count.kept = sum(present)
    count.missing = count.listed - count.kept
    count.missing_examples = [name for name, ok in zip(names, present) if not ok][:QUOTED_MISSING]
    if count.missing:
        columns = {key: [value for value, ok in zip(values, present) if ok] for key, values in columns.items()}
    data = {"image": [images.path(name) for name in columns["file_name"]], "file_name": columns["file_name"]}
    data.update((key, columns[key]) for key in features)
    schema = datasets.Features({"image": datasets.Image(), "file_name": datasets.Value("string"), **features})
    info = datasets.DatasetInfo(description=f"{title} {count.split}, read from {count.source}", features=schema)
    return datasets.Dataset.from_dict(data, features=schema, info=info)


def first_non_number(values: Sequence[str]) -> str:
    """The first of `values` that `float` refuses (for the message of a row that did not parse)."""
    for value in values:
        try:
            float(value)
        except ValueError:
            return value
    return ""


def warn_on_counts(report: BenchmarkReport) -> None:
    """A warning for every split whose size is not the published one, with both counts, and the missing images
    (skipped) when that is why; a one-line error when no split found a single image."""
    title = report.benchmark
    for count in report.splits.values():
        if count.expected is None or count.kept == count.expected:
            continue
        message = f"{title} {count.split}: found {count.kept:,} of the {count.expected:,} published images"
        if count.missing:
            quoted = ", ".join(count.missing_examples)
            more = ", ..." if count.missing > len(count.missing_examples) else ""
            message += (
                f"; skipped {count.missing:,} image(s) listed in {count.source} but missing under "
                f"{count.image_dir} ({quoted}{more})"
            )
        if count.listed != count.expected:
            message += f"; {count.source} lists {count.listed:,}"
        logger.warning(message + ".")
    if report.splits and not any(count.kept for count in report.splits.values()):
        first = next(iter(report.splits.values()))
        raise BenchmarkFormatError(
            f"{title}: not one listed image exists under {first.image_dir} in {report.data_dir} "
            f"({first.source} lists {first.listed:,} for {first.split})."
        )
