"""`--output_json` of the benchmarks: every figure a run prints, with what produced it, in one JSON file.

docs/make_tables.py renders such a file (copied to docs/results/NAME.json) into the docs pages by its "kind"; the
"command", "machine" and "date" fields say what produced the figures, so every table prints the command that
re-measures it. The path is checked before anything is timed, so a typo does not lose a run's figures at its end.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path


def add_output_json_argument(parser: argparse.ArgumentParser, *aliases: str) -> None:
    parser.add_argument(
        "--output_json",
        *aliases,
        default=None,
        metavar="PATH",
        help=(
            "Also write every printed figure to this JSON file, with the command, the machine and the date "
            "(docs/make_tables.py renders it as a table of the docs)."
        ),
    )


def check_output_json(parser: argparse.ArgumentParser, path: str | None) -> None:
    """``parser.error`` naming --output_json when ``path`` cannot be written: now, not after the timed work."""
    if path is None:
        return
    if os.path.isdir(path):
        parser.error(f"--output_json {path!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        parser.error(f"--output_json {path!r}: the folder {folder!r} does not exist")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_summary(device: str | None = None) -> str:
    """A short description of where the figures were measured: OS, CPUs, torch, and the GPU for a CUDA run."""
    import torch

    cpu = _cpu_model()
    parts = [
        f"{platform.system()} {platform.machine()}",
        f"{os.cpu_count()} CPUs" + (f" ({cpu})" if cpu else ""),
        f"torch {torch.__version__}",
    ]
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(torch.device(device)))
    return ", ".join(parts)


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that re-runs the measurement: `python benchmarks/NAME.py` and the flags as they were given."""
    flags = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *flags])


def write_output_json(
    path: str, kind: str, script: str, argv: list[str] | None, figures: dict, device: str | None = None
) -> None:
    """Write ``figures`` to ``path`` after ``kind`` (the docs table it renders as), ``command``, ``machine`` and
    ``date``."""
    record = {
        "kind": kind,
        "command": command_line(script, argv),
        "machine": machine_summary(device),
        "date": datetime.date.today().isoformat(),
        **figures,
    }
    with open(path, "w") as handle:
        json.dump(record, handle, indent=2)
        handle.write("\n")
    print(f"wrote {path}", flush=True)
