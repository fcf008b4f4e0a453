"""Flag checks shared by the benchmarks: a value that cannot work ends the run at once in argparse's usage error,
which names the flag, before any model is built or anything is timed (not in a StatisticsError, a
ZeroDivisionError or a CUDA assertion after the work)."""

import argparse


def at_least(minimum: int):
    """An argparse ``type``: an int >= ``minimum`` (``--repeats 0`` has no median, ``--batch_size 0`` no rate)."""

    def parse(text: str) -> int:
        value = int(text)  # a ValueError here is argparse's own "invalid int >= N value" message
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"  # how argparse names the type in its message
    return parse


def check_device(parser: argparse.ArgumentParser, flag: str, device: str) -> None:
    """``parser.error`` unless ``device`` can hold a tensor here (``--device cuda`` on a machine without CUDA)."""
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as error:  # torch raises all three, by device and build
        parser.error(f"{flag} {device!r} cannot be used on this machine: {error}")
