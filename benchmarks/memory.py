"""Peak tensor memory of one step on a CPU, where torch's allocator keeps no statistics (shared by the benchmarks)."""

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class LiveTensorMemory(TorchDispatchMode):
    """Peak bytes of tensors alive at once, counted op by op (forward and backward), above what existed before.

    torch's CPU allocator keeps no statistics and the process's resident set mixes in allocator caching, so on a CPU
    this is the fair figure: every tensor an op returns is counted until its storage is freed. Scratch buffers that a
    kernel allocates internally and frees before returning are not seen (the same for both models).
    """

    def __init__(self, existing=()):
        super().__init__()
        self.live = self.peak = 0
        self.references = {}
        # storages that were there before the step (weights, input): an op that returns one of them allocates nothing
        self.existing = {tensor.untyped_storage().data_ptr() for tensor in existing}

    def _release(self, pointer):
        count, size = self.references[pointer]
        if count == 1:
            del self.references[pointer]
            self.live -= size
        else:
            self.references[pointer] = (count - 1, size)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(output):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                pointer = storage.data_ptr()
                if pointer in self.existing:
                    continue
                count, size = self.references.get(pointer, (0, storage.nbytes()))
                if count == 0:
                    self.live += size
                    self.peak = max(self.peak, self.live)
                self.references[pointer] = (count + 1, size)
                weakref.finalize(tensor, self._release, pointer)
        return output
