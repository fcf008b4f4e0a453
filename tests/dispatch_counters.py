"""Dispatch-mode counters for what would make the host wait for a GPU, observable on a CPU-only machine."""

import collections
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# ops whose result the host must read back from the device before it can go on (a CUDA host-device sync)
HOST_SYNC_OPS = {
    "aten._local_scalar_dense.default",  # .item(), bool(tensor), float(tensor), `if tensor:`
    "aten.is_nonzero.default",
    "aten.equal.default",
    "aten.nonzero.default",  # and boolean-mask indexing, which calls it
    "aten.masked_select.default",
    "aten._unique2.default",
    "aten.unique_dim.default",
    "aten.unique_consecutive.default",
    "aten.repeat_interleave.Tensor",  # unless its output_size is given
}


class HostSyncs(TorchDispatchMode):
    """Counts the ops of `HOST_SYNC_OPS` run inside it, with where each was called from."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()
        self.callers = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in HOST_SYNC_OPS and (kwargs or {}).get("output_size") is None:
            self.ops[str(func)] += 1
            self.callers.append("".join(traceback.format_stack(limit=8)[:-1]))
        return func(*args, **(kwargs or {}))


class HostToDeviceCopies(TorchDispatchMode):
    """Counts the ops that copy a CPU tensor to another device (each one a host-device sync on CUDA unless it is
    non-blocking from pinned memory); the "meta" device stands in for a GPU on a CPU-only machine."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sources = {a.device.type for a in args if isinstance(a, torch.Tensor)}
        if sources == {"cpu"} and isinstance(out, torch.Tensor) and out.device.type != "cpu":
            self.count += 1
        return out
