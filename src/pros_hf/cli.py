"""What the example scripts share on their command lines: reading the flags a user gave in any spelling, and
checking an output file before the work that fills it.

HfArgumentParser accepts `--max-steps` for `--max_steps` and the `--flag=value` form; a script that adds defaults of
its own must recognise the user's flags in every spelling, or a default appended after them overrides them.
"""

import os

from .validation import check_finite_fields


def flag_name(arg: str) -> str | None:
    """`--max-steps=3` -> `--max_steps`; None for a value (not a flag)."""
    return "--" + arg[2:].split("=", 1)[0].replace("-", "_") if arg.startswith("--") else None


def flag_is_on(argv: list[str], name: str) -> bool:
    """Whether the boolean flag `name` is set on: bare (`--bf16`), `--bf16 true` or `--bf16=True`, any spelling; the
    last occurrence wins, as in argparse."""
    on = False
    for index, arg in enumerate(argv):
        if flag_name(arg) != name:
            continue
        value = (
            arg.split("=", 1)[1]
            if "=" in arg
            else (argv[index + 1] if index + 1 < len(argv) and not argv[index + 1].startswith("--") else "true")
        )
        on = value.strip().lower() in ("true", "1", "yes", "y", "t")
    return on


def check_output_file(flag: str, path: str | None) -> None:
    """SystemExit, naming `flag`, when `path` cannot be written: checked first, so that results are not lost after
    all the work, at the very end."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise SystemExit(f"{flag} {path!r} is a folder; give a file name.")
    if not os.path.isdir(folder):
        raise SystemExit(f"{flag} {path!r}: the folder {folder!r} does not exist.")
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise SystemExit(f"{flag} {path!r} is not writable.")


def check_output_folder(flag: str, path: str | None) -> None:
    """SystemExit, naming `flag`, when the folder `path` cannot be created or written (a file of that name, a
    read-only folder, or a read-only parent of a folder to create): found before the work, not at its first save."""
    if not path:
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise SystemExit(f"{flag} {path!r} is a file; give a folder (created if missing).")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise SystemExit(f"{flag} {path!r}: {existing!r} is a file, so the folder cannot be created.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SystemExit(f"{flag} {path!r}: {existing!r} is not writable.")


def parse_flags(parser, argv: list[str] | None, prog: str) -> tuple:
    """`parser.parse_args_into_dataclasses(argv)` (an `HfArgumentParser`), with every float flag finite: a value its
    dataclass refuses (`__post_init__`) or a NaN / inf ends the run in one line, `prog: message`, not a traceback."""
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
        for arguments in parsed:
            check_finite_fields(arguments)
    except ValueError as error:
        raise SystemExit(f"{prog}: {error}") from None
    return parsed


__all__ = ["check_output_file", "check_output_folder", "flag_is_on", "flag_name", "parse_flags"]
