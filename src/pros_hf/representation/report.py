"""The representation report: the gap-closed table as text and as a figure, and the JSON it comes from."""

import json
import os
from collections.abc import Mapping

from ..evaluation_plots import new_figure, save_figure


def _number(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_gap_table(report: Mapping) -> str:
    """A Markdown table: one row per (task, protocol) with floor, random init, pre-trained, ceiling and gap closed
    (means over the seeds, with their spread)."""
    lines = [
        "| task | protocol | metric | floor | random init | pre-trained | ceiling | gap closed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, protocols in report["tasks"].items():
        for protocol, row in protocols.items():
            direction = "higher" if row["higher_is_better"] else "lower"
            gap = _number(row["gap_closed"], 2)
            if row.get("gap_closed_std") is not None and row["gap_closed"] is not None:
                gap += f" ± {row['gap_closed_std']:.2f}"
            lines.append(
                f"| {task} | {protocol} | {row['metric']} ({direction} is better) | {_number(row['floor'])} | "
                f"{_number(row['random_init'])} ± {_number(row['random_init_std'])} | "
                f"{_number(row['pretrained'])} ± {_number(row['pretrained_std'])} | {_number(row['ceiling'])} | "
                f"{gap} |"
            )
    return "\n".join(lines)


def plot_gap_closed(reports: Mapping[str, Mapping], path) -> str:
    """Bars of the gap closed per task and protocol, one bar per method (`reports`: method name -> report), with the
    seeds' spread as error bars; 0 is random initialisation, 1 the supervised ceiling."""
    import numpy as np

    methods = list(reports)
    if not methods:
        raise ValueError("plot_gap_closed needs at least one report.")
    first = reports[methods[0]]["tasks"]
    groups = [(task, protocol) for task, protocols in first.items() for protocol in protocols]
    figure = new_figure(max(6.0, 1.2 * len(groups) * max(1, len(methods)) ** 0.5), 4.0)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(methods)
    positions = np.arange(len(groups))
    for index, method in enumerate(methods):
        rows = [reports[method]["tasks"].get(task, {}).get(protocol, {}) for task, protocol in groups]
        values = [row.get("gap_closed") if row.get("gap_closed") is not None else np.nan for row in rows]
        errors = [row.get("gap_closed_std") or 0.0 for row in rows]
        axes.bar(
            positions + (index - (len(methods) - 1) / 2) * width, values, width, yerr=errors, capsize=3, label=method
        )
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
    axes.set_xticks(positions)
    axes.set_xticklabels([f"{task}\n{protocol.replace('_', ' ')}" for task, protocol in groups], fontsize=8)
    axes.set_ylabel("share of the random-init -> ceiling gap closed")
    axes.set_title("0 = random initialisation, 1 = supervised ceiling")
    if len(methods) > 1:
        axes.legend(fontsize=8)
    return save_figure(figure, path, "the gap-closed figure")


def provenance(kind: str, script: str, argv: list[str]) -> dict:
    """What docs/make_tables.py needs beside the figures: the kind of result, the command that re-measures it, the
    machine and the date."""
    import datetime
    import platform
    import shlex

    import torch

    return {
        "kind": kind,
        "command": " ".join(["python", script, *map(shlex.quote, argv)]),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
    }


def write_report(report: Mapping, path) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2)
    return path


__all__ = ["format_gap_table", "plot_gap_closed", "provenance", "write_report"]
