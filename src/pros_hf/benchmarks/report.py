"""What a benchmark run reports: `benchmark.json` and one table row in the layout of FaRL's tables, so that a figure
can be read off next to the published ones (docs/benchmarks.md)."""

import json
from pathlib import Path
from typing import NamedTuple


class Column(NamedTuple):
    """One printed column: its heading, the test split and figure it shows, and how (figures are fractions; the
    tables print them in percent)."""

    heading: str
    split: str
    figure: str
    digits: int = 2


def _nme_columns(prefix: str, figure: str, splits: dict[str, str], digits: int = 2) -> tuple[Column, ...]:
    return tuple(Column(f"{prefix} {name}", split, figure, digits) for name, split in splits.items())


_WFLW_SUBSETS = {
    "Pose": "test_pose",
    "Expression": "test_expression",
    "Illumination": "test_illumination",
    "Make-up": "test_makeup",
    "Occlusion": "test_occlusion",
    "Blur": "test_blur",
}

# The columns of each benchmark's row, in the order of FaRL's tables.
ROW_COLUMNS: dict[str, tuple[Column, ...]] = {
    "celeba": (Column("mean acc", "test", "mean_accuracy"),),
    "lfwa": (Column("mean acc", "test", "mean_accuracy"),),
    "rafdb": (Column("acc", "test", "accuracy"),),
    "affectnet7": (Column("acc", "test", "accuracy"),),
    "affectnet8": (Column("acc", "test", "accuracy"),),
    "300w": _nme_columns(
        "NME_io", "nme_inter_ocular", {"Full": "test_full", "Common": "test_common", "Challenging": "test_challenging"}
    ),
    "wflw": (
        Column("NME_io Full", "test", "nme_inter_ocular"),
        Column("FR@0.10", "test", "failure_rate"),
        Column("AUC@0.10", "test", "auc"),
        *_nme_columns("NME_io", "nme_inter_ocular", _WFLW_SUBSETS),
    ),
    "aflw19": (
        *_nme_columns("NME_diag", "nme_box_diagonal", {"Full": "test_full", "Frontal": "test_frontal"}, 3),
        Column("NME_box Full", "test_full", "nme_box", 3),
        Column("AUC_box@0.07", "test_full", "auc"),
    ),
}


def row_cells(benchmark: str, subsets: dict[str, dict]) -> list[str]:
    """The row's figures in percent ("-" where a subset was empty)."""
    cells = []
    for column in ROW_COLUMNS[benchmark]:
        value = subsets.get(column.split, {}).get(column.figure)
        cells.append("-" if value is None else f"{100 * value:.{column.digits}f}")
    return cells


def format_row(result: dict) -> str:
    """A Markdown table of one row: the benchmark, the model and its validation-selected figures."""
    benchmark = result["benchmark"]
    headings = ["benchmark", "model", *(column.heading for column in ROW_COLUMNS[benchmark])]
    cells = [result["title"], result["model"], *row_cells(benchmark, result["selected"]["subsets"])]
    lines = [headings, ["---"] * len(headings), cells]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def write_report(result: dict, output_dir: str | Path) -> Path:
    """`output_dir/benchmark.json`: the run's settings, validation history and the figures of every test split for
    the last and the validation-selected evaluation."""
    path = Path(output_dir) / "benchmark.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


__all__ = ["ROW_COLUMNS", "Column", "format_row", "row_cells", "write_report"]
