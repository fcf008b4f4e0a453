"""Accounting for images that were skipped while loading, gathered in the main process.

DataLoader workers are separate processes: a counter they update never reaches the trainer. So each batch carries its
own skip records (`batch["skipped"] = [(source, reason), ...]`, see `loading.collate_pretraining`) and a `SkipReport`
in the main process adds them up; no global state, and the numbers are exact whatever the number of workers.

A bad file is counted once, however often it is read: every epoch reads it again, and two processes may both read
it (a distributed sampler pads the last batch with repeated rows). Records are told apart by their source (a path,
or a dataset row); a source without a name (`<bytes: 812>`, from a stream) cannot be, and is counted per record.
"""

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_LOGGER = logging.getLogger(__name__)


class SkipReport:
    """Counts delivered and skipped images per reason, keeps the first offending sources, and logs them.

    A warning is logged for each bad file the first time it is seen, for at most `max_logged` files (a corrupt
    million-file set must not flood the log); every skip is counted regardless. `summary()` gives the numbers as a
    dict (for a trainer's logs or a curation report), `log()` writes them as one line.

    Args:
        max_examples: how many `(source, reason)` pairs to keep for the summary.
        max_logged: how many bad files get their own warning.
        logger: where to log (default: this module's logger).
    """

    def __init__(self, max_examples: int = 20, max_logged: int = 20, logger: logging.Logger | None = None):
        if max_examples < 0 or max_logged < 0:
            raise ValueError(f"max_examples and max_logged must be >= 0, got {max_examples}, {max_logged}")
        self.max_examples = max_examples
        self.max_logged = max_logged
        self.logger = logger if logger is not None else _LOGGER
        self.reset()

    def reset(self) -> None:
        """Forget all counts (e.g. to report per epoch rather than per run)."""
        self.delivered = 0
        self.attempts = 0  # skip records seen, repeats included: what tells a set that never decodes
        self.files: dict[str, str] = {}  # named bad source -> reason, each counted once
        self.unnamed: Counter[str] = Counter()  # reason -> records whose source has no name
        self.examples: list[tuple[str, str]] = []
        self._logged: set[str] = set()
        self._told_limit = False

    @property
    def counts(self) -> Counter:
        """Bad images per reason, each named source once."""
        return Counter(self.files.values()) + self.unnamed

    @property
    def skipped(self) -> int:
        return len(self.files) + sum(self.unnamed.values())

    @property
    def total(self) -> int:
        return self.delivered + self.skipped

    @staticmethod
    def is_named(source: str) -> bool:
        """Whether `source` names one image (a path, a dataset row), rather than describing bytes without a name."""
        return not source.startswith("<")

    def add(self, source: Any, reason: str) -> None:
        """Count one skipped image (a source already counted is not counted again), warning about it if it is among
        the first `max_logged` distinct bad files."""
        source = str(source)
        self.attempts += 1
        if self.is_named(source):
            if source in self.files:
                return
            self.files[source] = reason
        else:
            self.unnamed[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append((source, reason))
        if source in self._logged:
            return
        if len(self._logged) < self.max_logged:
            self._logged.add(source)
            self.logger.warning("Skipping image %s: %s", source, reason)
        elif not self._told_limit:
            self._told_limit = True
            self.logger.warning(
                "More than %d unreadable images: further ones are counted but not logged one by one.", self.max_logged
            )

    def add_delivered(self, n: int) -> None:
        self.delivered += int(n)

    def update(self, batch: Mapping[str, Any]) -> int:
        """Account for one collated batch (`{"pixel_values": (B, 3, S, S), "skipped": [...]}`); returns B.

        A trainer calls this on every batch and skips the step when it returns 0 (every sample was bad).
        """
        pixel_values = batch.get("pixel_values")
        n = 0 if pixel_values is None else int(len(pixel_values))
        self.add_delivered(n)
        for source, reason in batch.get("skipped", ()):
            self.add(source, reason)
        return n

    def track(self, batches: Iterable[Mapping[str, Any]], log_summary: bool = True) -> Iterator[Mapping[str, Any]]:
        """Iterate `batches` (a DataLoader), accounting every batch and yielding only non-empty ones.

        When the iteration ends (the epoch is over) the summary is logged once if `log_summary`.
        """
        for batch in batches:
            if self.update(batch):
                yield batch
        if log_summary:
            self.log()

    def merge(self, other: "SkipReport") -> "SkipReport":
        """Add another report's counts into this one (e.g. one per process, gathered on the main process); a file
        both reports counted is counted once."""
        self.delivered += other.delivered
        self.attempts += other.attempts
        for source, reason in other.files.items():
            self.files.setdefault(source, reason)
        self.unnamed.update(other.unnamed)
        known = set(self.examples)
        room = self.max_examples - len(self.examples)
        if room > 0:
            self.examples.extend([example for example in other.examples if example not in known][:room])
        return self

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], **kwargs) -> "SkipReport":
        """The report a `summary()` describes (e.g. saved with a checkpoint, to go on counting after a resume)."""
        report = cls(**kwargs)
        report.delivered = int(summary.get("delivered", 0))
        report.attempts = int(summary.get("attempts", summary.get("skipped", 0)))
        if "files" in summary:
            report.files = {str(source): str(reason) for source, reason in summary["files"].items()}
            report.unnamed.update({str(reason): int(n) for reason, n in summary.get("unnamed", {}).items()})
        else:  # counts without their sources: kept as they are
            report.unnamed.update({str(reason): int(n) for reason, n in summary.get("by_reason", {}).items()})
        report.examples = [(e["source"], e["reason"]) for e in summary.get("examples", [])][: report.max_examples]
        report._logged = {source for source, _ in report.examples}
        return report

    def summary(self) -> dict[str, Any]:
        """Numbers as plain Python (JSON-serialisable) values."""
        total = self.total
        return {
            "delivered": self.delivered,
            "skipped": self.skipped,
            "total": total,
            "skip_rate": (self.skipped / total) if total else 0.0,
            "by_reason": dict(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "examples": [{"source": s, "reason": r} for s, r in self.examples],
            "attempts": self.attempts,
            "files": dict(self.files),  # what lets reports of several processes or runs count a file once
            "unnamed": dict(self.unnamed),
        }

    def format(self) -> str:
        s = self.summary()
        line = f"Image loading: {s['delivered']} delivered, {s['skipped']} skipped of {s['total']}"
        if s["skipped"]:
            reasons = ", ".join(f"{n} {reason}" for reason, n in s["by_reason"].items())
            shown = "; ".join(f"{e['source']} ({e['reason']})" for e in s["examples"][:5])
            line += f" ({reasons}); first: {shown}"
        return line

    def log(self, level: int | None = None) -> dict[str, Any]:
        """Log the summary (WARNING when anything was skipped, else INFO) and return `summary()`."""
        if level is None:
            level = logging.WARNING if self.skipped else logging.INFO
        self.logger.log(level, "%s", self.format())
        return self.summary()

    def __repr__(self) -> str:
        return f"SkipReport(delivered={self.delivered}, skipped={dict(self.counts)})"
