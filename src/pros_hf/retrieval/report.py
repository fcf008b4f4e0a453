"""The curation report: counts at every stage (JSON), a montage of kept/rejected samples and a dominance histogram.

Every image that enters the pipeline ends in exactly one bucket, so the counts add up (see
:meth:`CurationReport.consistency_errors`): a curated set whose losses are not accounted for cannot be trusted.
"""

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .dominance import REJECTION_REASONS

HISTOGRAM_BINS = 20  # dominance in [0, 1]: fixed bins, so shard histograms add up without keeping every value


def dominance_bin(dominance: float) -> int:
    return min(HISTOGRAM_BINS - 1, max(0, int(dominance * HISTOGRAM_BINS)))


@dataclass
class DetectionCounts:
    """What face detection did to a set of files (one shard, or all shards added up)."""

    files_seen: int = 0
    unreadable: int = 0
    unreadable_by_reason: dict = field(default_factory=dict)
    no_face: int = 0
    below_score: int = 0
    below_face_size: int = 0
    below_dominance: int = 0
    kept_after_detection: int = 0
    # images with a detected face, by dominance bin: kept ones and the ones a threshold rejected
    dominance_histogram_kept: list = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    dominance_histogram_rejected: list = field(default_factory=lambda: [0] * HISTOGRAM_BINS)

    def add_unreadable(self, reason: str) -> None:
        self.files_seen += 1
        self.unreadable += 1
        self.unreadable_by_reason[reason] = self.unreadable_by_reason.get(reason, 0) + 1

    def add_decision(self, status: str, dominance: float, has_face: bool) -> None:
        self.files_seen += 1
        if status == "kept":
            self.kept_after_detection += 1
        elif status in REJECTION_REASONS:
            setattr(self, status, getattr(self, status) + 1)
        else:
            raise ValueError(f"Unknown decision status {status!r}; valid: kept, {', '.join(REJECTION_REASONS)}.")
        if has_face:
            histogram = self.dominance_histogram_kept if status == "kept" else self.dominance_histogram_rejected
            histogram[dominance_bin(dominance)] += 1

    def merge(self, other: "DetectionCounts") -> "DetectionCounts":
        for name in ("files_seen", "unreadable", *REJECTION_REASONS, "kept_after_detection"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unreadable_by_reason = dict(Counter(self.unreadable_by_reason) + Counter(other.unreadable_by_reason))
        self.dominance_histogram_kept = [
            a + b for a, b in zip(self.dominance_histogram_kept, other.dominance_histogram_kept)
        ]
        self.dominance_histogram_rejected = [
            a + b for a, b in zip(self.dominance_histogram_rejected, other.dominance_histogram_rejected)
        ]
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "DetectionCounts":
        return cls(**values)


@dataclass
class CurationReport:
    """All counts of one curation run (JSON-serialisable with :meth:`to_dict`)."""

    source: dict = field(default_factory=dict)  # what was read; a folder's files without an image extension
    detection: DetectionCounts = field(default_factory=DetectionCounts)
    duplicates_removed: int = 0
    kept_after_dedup: int = 0
    seeds: dict = field(default_factory=dict)
    retrieved: int = 0
    not_retrieved: int = 0
    kept_final: int = 0
    index_type: str = ""
    shards: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def consistency_errors(self) -> list[str]:
        """Every broken accounting identity, as text (empty when the counts add up)."""
        d = self.detection
        errors = []
        if self.source.get("num_items", d.files_seen) != d.files_seen:
            errors.append(f"source has {self.source['num_items']} items but {d.files_seen} were seen")
        detected = d.unreadable + sum(getattr(d, r) for r in REJECTION_REASONS) + d.kept_after_detection
        if detected != d.files_seen:
            errors.append(f"files_seen {d.files_seen} != unreadable + rejections + kept ({detected})")
        if sum(d.unreadable_by_reason.values()) != d.unreadable:
            errors.append(f"unreadable {d.unreadable} != sum by reason {sum(d.unreadable_by_reason.values())}")
        if self.duplicates_removed + self.kept_after_dedup != d.kept_after_detection:
            errors.append(
                f"duplicates_removed {self.duplicates_removed} + kept_after_dedup {self.kept_after_dedup} != "
                f"kept_after_detection {d.kept_after_detection}"
            )
        if self.retrieved + self.not_retrieved != self.kept_after_dedup:
            errors.append(f"retrieved {self.retrieved} + not_retrieved {self.not_retrieved} != kept_after_dedup")
        if self.kept_final != self.retrieved:
            errors.append(f"kept_final {self.kept_final} != retrieved {self.retrieved}")
        with_face = d.files_seen - d.unreadable - d.no_face
        if sum(d.dominance_histogram_kept) + sum(d.dominance_histogram_rejected) != with_face:
            errors.append("dominance histograms do not cover every image with a face")
        return errors

    def to_dict(self) -> dict:
        values = asdict(self)
        values["consistent"] = not self.consistency_errors()
        return values

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.to_dict(), file, indent=2, sort_keys=False, default=_json_default)

    def summary(self) -> str:
        d = self.detection
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(d.unreadable_by_reason.items())) or "none"
        text = (
            f"{d.files_seen} files: {d.unreadable} unreadable ({reasons}), {d.no_face} without a face, "
            f"{d.below_score} below score, {d.below_face_size} below face size, {d.below_dominance} below dominance, "
            f"{d.kept_after_detection} kept; {self.duplicates_removed} near-duplicates removed; "
            f"{self.retrieved} retrieved around {self.seeds.get('used', 0)} seed queries; {self.kept_final} curated."
        )
        if d.kept_after_detection == 0:  # an empty result is a result, but not one to miss in a line of counts
            text += " No face was kept: the curated dataset is empty."
        return text


def _json_default(value: Any):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def save_montage(
    kept: Sequence[tuple[np.ndarray | None, str]],
    rejected: Sequence[tuple[np.ndarray | None, str]],
    path: str,
    columns: int = 8,
) -> None:
    """A PNG grid: kept crops on top, rejected samples below, each with its caption (source / rejection reason).

    ``None`` images (unreadable files) are drawn as grey tiles so that the reason still shows.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # the object API: no pyplot global state, no window

    sections = [("kept", list(kept)), ("rejected", list(rejected))]
    rows_per_section = [max(1, -(-len(items) // columns)) for _, items in sections]
    figure = Figure(figsize=(columns * 1.4, sum(rows_per_section) * 1.6 + 0.6))
    grid = figure.add_gridspec(sum(rows_per_section), columns)
    row_offset = 0
    for (title, items), num_rows in zip(sections, rows_per_section):
        for position in range(num_rows * columns):
            axis = figure.add_subplot(grid[row_offset + position // columns, position % columns])
            axis.set_axis_off()
            if position == 0:
                axis.set_title(f"{title} ({len(items)} shown)" if items else f"{title}: none", fontsize=7, loc="left")
            if position >= len(items):
                continue
            image, caption = items[position]
            axis.imshow(image if image is not None else np.full((8, 8, 3), 160, np.uint8))
            axis.text(
                0.5,
                -0.04,
                caption[:28],
                transform=axis.transAxes,
                ha="center",
                va="top",
                fontsize=5,
                color="darkgreen" if title == "kept" else "darkred",
            )
        row_offset += num_rows
    figure.savefig(path, dpi=100, bbox_inches="tight")


def save_dominance_histogram(counts: DetectionCounts, min_dominance: float, path: str) -> None:
    """A PNG histogram of face dominance for images with a face, kept vs rejected, with the threshold marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    figure = Figure(figsize=(6, 3.5))
    axis = figure.add_subplot(1, 1, 1)
    kept = np.asarray(counts.dominance_histogram_kept)
    rejected = np.asarray(counts.dominance_histogram_rejected)
    axis.bar(centres, kept, width=width * 0.95, color="tab:green", label="kept")
    axis.bar(centres, rejected, width=width * 0.95, bottom=kept, color="tab:red", label="rejected (a threshold)")
    axis.axvline(min_dominance, color="black", linestyle="--", label=f"min_dominance={min_dominance:g}")
    axis.set_xlabel("face dominance (largest face box area / image area)")
    axis.set_ylabel("images")
    axis.set_xlim(0, 1)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_json(path: str, values: dict) -> None:
    """Write JSON atomically (a crash mid-write must not leave a half file that a resume would trust)."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(values, file, indent=2, default=_json_default)
    os.replace(temporary, path)
