"""Peak tensor memory of one step on a CPU, where torch's allocator keeps no statistics (shared by the benchmarks)."""

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def _storage_pointers(tree):
    """The storage addresses of every tensor in a pytree of op arguments."""
    return {
        leaf.untyped_storage().data_ptr()
        for leaf in torch.utils._pytree.tree_leaves(tree)
        if isinstance(leaf, torch.Tensor) and leaf.device.type != "meta"
    }


class LiveTensorMemory(TorchDispatchMode):
    """Peak bytes of tensors alive at once, counted op by op (forward and backward), above what existed before.

    torch's CPU allocator keeps no statistics and the process's resident set mixes in allocator caching, so on a CPU
    this is the fair figure: every storage an op creates is counted until it is freed. Scratch buffers that a kernel
    allocates internally and frees before returning are not seen (the same for both models).

    Only storages created during the step count. An op's output that shares a storage with one of its arguments
    allocated nothing: an in-place op (``exp_avg.lerp_``, ``mul_``), an ``out=`` op or a view. So tensors that were
    there before the step (weights, inputs, optimizer state, buffers) are never counted, listed in ``existing`` or
    not: a non-fused AdamW returns its state from in-place ops and the fused kernel returns nothing, and counting
    the former's state as step memory made the two look different by the whole optimizer state.
    """

    def __init__(self, existing=()):
        super().__init__()
        self.live = self.peak = 0
        self.references = {}
        # storages that were there before the step (weights, input): an op that returns one of them allocates nothing
        # (kept for callers that list them; the argument check in __torch_dispatch__ covers them already)
        self.existing = {tensor.untyped_storage().data_ptr() for tensor in existing}

    def _release(self, pointer):
        count, size = self.references[pointer]
        if count == 1:
            del self.references[pointer]
            self.live -= size
        else:
            self.references[pointer] = (count - 1, size)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # taken before the call: an op that resizes an empty out= argument does allocate, at a new address
        # (except lift_fresh, behind torch.tensor / as_tensor: its argument is the new data, made during the step)
        arguments = set() if func is torch.ops.aten.lift_fresh.default else _storage_pointers((args, kwargs))
        output = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(output):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                pointer = storage.data_ptr()
                if pointer not in self.references and (pointer in self.existing or pointer in arguments):
                    continue  # a storage from before the step, returned in place or viewed: nothing allocated
                count, size = self.references.get(pointer, (0, storage.nbytes()))
                if count == 0:
                    self.live += size
                    self.peak = max(self.peak, self.live)
                self.references[pointer] = (count + 1, size)
                weakref.finalize(tensor, self._release, pointer)
        return output
