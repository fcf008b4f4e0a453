"""MATLAB `.mat` annotation files (AFLW-19's `AFLWinfo_release.mat`, LFWA's `lfw_att_40.mat`), in either format.

MATLAB writes two formats: v5 (what `scipy.io.loadmat` reads) and v7.3, which is HDF5 (readable with h5py). LFWA's
files circulate in both, so both are read; a field comes back as a list of strings (`strings`) or a numpy array in
MATLAB's row/column order (`arrays`; HDF5 stores MATLAB arrays transposed, which is undone here).
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import BenchmarkFormatError


def _one_string(item) -> str:
    """One cell of a v5 cell array of strings: a char array (one row), possibly wrapped in a 1-element cell."""
    array = np.asarray(item)
    if array.dtype == object:
        if array.size != 1:
            raise ValueError(f"a cell of {array.size} items where one string was expected")
        return _one_string(array.ravel()[0])
    if array.dtype.kind != "U":
        raise ValueError(f"a {array.dtype} array where a string was expected")
    return "".join(str(s) for s in array.ravel())


def _strings(value) -> list[str]:
    """A v5 cell array of strings (any shape) as a flat list, one str per cell; a char matrix gives one per row."""
    array = np.asarray(value)
    if array.dtype == object:
        return [_one_string(item) for item in array.ravel()]
    if array.dtype.kind == "U":
        return [str(s) for s in array.ravel()]
    raise ValueError(f"a {array.dtype} array where strings were expected")


def _read_v5(path: Path, strings: Sequence[str], arrays: Sequence[str], optional: Sequence[str], shown: str) -> dict:
    import scipy.io

    content = scipy.io.loadmat(str(path))
    out = {}
    for name in (*strings, *arrays):
        if name not in content and name not in optional:
            fields = sorted(k for k in content if not k.startswith("__"))
            raise BenchmarkFormatError(f"{shown}: no field {name!r} (it holds {fields}).")
    for name in strings:
        if name not in content:
            out[name] = None
            continue
        try:
            out[name] = _strings(content[name])
        except ValueError as error:
            raise BenchmarkFormatError(f"{shown}: field {name!r} is not a list of strings ({error}).") from None
    for name in arrays:
        out[name] = np.asarray(content[name]) if name in content else None
    return out


def _read_v73(path: Path, strings: Sequence[str], arrays: Sequence[str], optional: Sequence[str], shown: str) -> dict:
    try:
        import h5py
    except ImportError:
        raise ImportError(
            f"{shown} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install h5py "
            "(or pip install 'pros-hf[benchmarks]')."
        ) from None
    out = {}
    with h5py.File(path, "r") as handle:
        for name in (*strings, *arrays):
            if name not in handle and name not in optional:
                raise BenchmarkFormatError(f"{shown}: no field {name!r} (it holds {sorted(handle.keys())}).")
        for name in strings:
            # a cell array is an array of references, each to a uint16 array of character codes
            refs = np.asarray(handle[name]).ravel() if name in handle else None
            out[name] = None if refs is None else ["".join(map(chr, np.asarray(handle[r]).ravel())) for r in refs]
        for name in arrays:
            out[name] = np.asarray(handle[name]).T if name in handle else None
    return out


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """HDF5's signature at the start, or after MATLAB's 512-byte header (a v7.3 file)."""
    with open(path, "rb") as handle:
        head = handle.read(520)
    return head[:8] == _HDF5_SIGNATURE or head[512:520] == _HDF5_SIGNATURE


def read_mat(
    path: Path,
    strings: Sequence[str] = (),
    arrays: Sequence[str] = (),
    optional: Sequence[str] = (),
    shown: str | None = None,
) -> dict:
    """The named fields of a `.mat` file: `strings` as lists of str, `arrays` as numpy arrays (MATLAB's shape).

    A missing field is a `BenchmarkFormatError` naming the file and the fields it does hold, unless it is in
    `optional` (then it is None).
    """
    import scipy.io

    shown = shown or path.name
    if _is_hdf5(path):
        return _read_v73(path, strings, arrays, optional, shown)
    try:
        return _read_v5(path, strings, arrays, optional, shown)
    except NotImplementedError:  # scipy's answer to a v7.3 file
        return _read_v73(path, strings, arrays, optional, shown)
    except (ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as error:
        if isinstance(error, BenchmarkFormatError):
            raise
        raise BenchmarkFormatError(f"{shown} is not a MATLAB .mat file scipy can read ({error}).") from None
