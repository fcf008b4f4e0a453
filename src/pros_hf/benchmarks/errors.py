"""The one error a benchmark loader raises for a folder that is not laid out as its authors distribute it."""


class BenchmarkFormatError(ValueError):
    """A benchmark folder is wrong or incomplete: the message is the one line a user sees, naming the file (and line,
    field or value) at fault and what was expected there."""


def at(name: str, line: int | None = None) -> str:
    """ "Anno/list_attr_celeba.txt line 7": a file as the user knows it (relative to the data folder) and a 1-based
    line."""
    return f"{name} line {line}" if line is not None else str(name)
