"""The steady-state training rate: samples per second once a run is past its first steps.

The Trainer's `train_samples_per_second` divides by the whole run, so its first steps count in it: the allocator
growing to its working set, cuBLAS/cuDNN picking kernels, compilation, DataLoader workers starting. On the short runs
that benchmarks make, that start-up hides the rate a long run settles at. `SteadyThroughputCallback` times the steps
after the first few only, and makes the host wait for the device at just those two points (its start and the end).
"""

import time

import torch
from transformers import TrainerCallback


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work, so that a wall-clock reading includes it (the benchmarks use it too)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xpu":
        torch.xpu.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class SteadyThroughputCallback(TrainerCallback):
    """Times optimizer steps from the end of step `skip_steps(max_steps)` to the end of the last step.

    `samples_per_second` is then optimizer steps x per-device batch x processes x accumulation steps, over the
    seconds between (a last, partial batch counts as full); None when the run had no step after the skipped ones.
    The clock stops at the last step, so what runs after it (a final k-NN evaluation, the export) is not counted; a
    run stopped early is timed to its end. Put it first among the callbacks, so that its readings come before other
    callbacks' work at a step's end.
    """

    def __init__(self, max_skip: int = 10, clock=time.perf_counter):
        self.max_skip = max_skip
        self.clock = clock
        self.start: tuple[int, float] | None = None
        self.samples_per_second: float | None = None

    def skip_steps(self, max_steps: int) -> int:
        """The first quarter of a run, at least one step and at most `max_skip`."""
        return max(1, min(self.max_skip, max_steps // 4))

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.samples_per_second = None, None

    def on_step_end(self, args, state, control, **kwargs):
        if self.start is None and state.global_step >= self.skip_steps(state.max_steps):
            synchronize(args.device)
            self.start = (state.global_step, self.clock())
        elif self.start is not None and state.global_step >= state.max_steps:
            self._stop(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        if self.samples_per_second is None:  # stopped before its last step
            self._stop(args, state)

    def _stop(self, args, state) -> None:
        if self.start is None or state.global_step <= self.start[0]:
            return
        synchronize(args.device)
        step, began = self.start
        samples = (
            (state.global_step - step)
            * args.per_device_train_batch_size
            * args.world_size
            * args.gradient_accumulation_steps
        )
        self.samples_per_second = samples / (self.clock() - began)
