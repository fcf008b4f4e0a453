"""Images that could not be read during pre-training: counted, summed over the processes, kept with every checkpoint.

Each batch carries the skip records of its images (`pros_hf.data.loading.collate_pretraining`); the trainer adds them
to a `SkipReport` as it sees the batches. `SkipReportCallback` writes the counts of every process into each checkpoint
(`skip_report.json`), so that a resumed run reports the whole run's, and at the end of training sums them, warns about
what was skipped and stops a run in which not one image was read.
"""

import json
import logging
import os

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..data.skips import SkipReport

logger = logging.getLogger(__name__)

SKIP_REPORT_NAME = "skip_report.json"  # in the export and in every checkpoint


class NoImagesReadError(ValueError):
    """Not one training image could be decoded: a wrong image column or an unreadable set."""


def gather_skip_summary(report: SkipReport, world_size: int) -> dict:
    """`report` summed over the processes (a collective: every process must call it)."""
    summaries = [report.summary()]
    if world_size > 1:
        from accelerate.utils import gather_object

        summaries = gather_object(summaries)
    total = SkipReport.from_summary(summaries[0])
    for other in summaries[1:]:
        total.merge(SkipReport.from_summary(other))
    return total.summary()


def check_some_images_decode(
    report: SkipReport, batch_size: int, at_least: int = 16, num_images: int | None = None
) -> None:
    """Stop when not one image has decoded after `at_least` attempts (or a whole batch, if larger), or after every
    one of the `num_images` of the set was tried: a wrong image column or an unreadable set would otherwise train on
    empty batches to the end, and succeed. Called on an empty batch, before its step and any checkpoint."""
    needed = max(at_least, batch_size) if num_images is None else min(max(at_least, batch_size), num_images)
    if report.delivered == 0 and report.attempts >= needed:
        raise NoImagesReadError(
            f"No training image could be read: {report.format()}. Check --train_dir / "
            "--image_column: the column must hold images, image paths or image bytes."
        )


class SkipReportCallback(TrainerCallback):
    """Saves `report`, summed over the processes, into each new checkpoint (`on_save`); at the end of training puts
    the run's sum in `summary`, warns about the skipped images and raises `NoImagesReadError` when none was read."""

    def __init__(self, report: SkipReport):
        self.report = report
        self.summary: dict | None = None

    def restore(self, checkpoint, args, is_main_process: bool) -> None:
        """Add the counts saved with `checkpoint` (a path, or True for the last one in `args.output_dir`) to the main
        process's report: they hold every process's counts of the run before it."""
        if checkpoint is True:
            checkpoint = get_last_checkpoint(args.output_dir)
        path = os.path.join(checkpoint, SKIP_REPORT_NAME) if isinstance(checkpoint, (str, os.PathLike)) else None
        if is_main_process and path and os.path.isfile(path):
            with open(path) as handle:
                self.report.merge(SkipReport.from_summary(json.load(handle)))

    def on_save(self, args, state, control, **kwargs):
        summary = gather_skip_summary(self.report, args.world_size)
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if args.should_save and os.path.isdir(folder):
            with open(os.path.join(folder, SKIP_REPORT_NAME), "w") as handle:
                json.dump(summary, handle, indent=2)

    def on_train_end(self, args, state, control, **kwargs):
        self.summary = gather_skip_summary(self.report, args.world_size)
        report = SkipReport.from_summary(self.summary)
        if self.summary["skipped"]:
            logger.warning("Images skipped during training: %s", report.format())
        if self.summary["total"] and not self.summary["delivered"]:
            raise NoImagesReadError(f"No training image could be read: {report.format()}.")


__all__ = [
    "SKIP_REPORT_NAME",
    "NoImagesReadError",
    "SkipReportCallback",
    "check_some_images_decode",
    "gather_skip_summary",
]
