"""Where a pre-training step spends its time: torch.profiler over a few steps of ProS (or the reference).

    python benchmarks/profile_pretrain_step.py --preset vit-b16 --batch_size 64 --num_local 10 --precision bf16

Prints the busiest device kernels (CPU ops on a CPU), their share grouped as matmul, attention, optimizer and EMA,
and everything else (elementwise, normalisation, softmax, copies), and the device's busy time against the wall
time of the steps: a device busy for much less than the wall time is waiting for the host (launch-bound), and no
kernel can fix that; one busy all along is bound by its kernels, and the groups say which. bench_pretrain_step.py
gives the rates; this says why.
"""

import argparse
import collections
import time

import torch
from argument_checks import at_least
from bench_pretrain_step import DinoReference, add_step_arguments, check_step_arguments, make_step, step_inputs
from torch.profiler import ProfilerActivity, profile

from pros_hf import ProSForPreTraining
from pros_hf.throughput import synchronize

GROUPS = (  # kernel or op name fragments, lower case, first match wins
    ("attention", ("flash", "fmha", "attention", "attn")),
    (
        "matmul",
        (
            "gemm",
            "cutlass",
            "nvjet",
            "xmma",
            "sm90_",
            "sm80_",
            "aten::mm",
            "aten::addmm",
            "aten::bmm",
            "aten::baddbmm",
            "convolution",
            "conv",
        ),
    ),
    ("optimizer + EMA", ("adam", "foreach", "multi_tensor", "lerp")),
)


def group_of(name: str) -> str:
    lowered = name.lower()
    for group, fragments in GROUPS:
        if any(fragment in lowered for fragment in fragments):
            return group
    return "other (elementwise, norms, softmax, copies)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["pros", "reference"], default="pros")
    add_step_arguments(parser)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--steps", type=at_least(1), default=3, help="profiled steps, after two warm-up steps")
    parser.add_argument("--top", type=at_least(0), default=20, help="kernels listed")
    args = parser.parse_args(argv)
    check_step_arguments(parser, args)
    device = torch.device(args.device)
    config, global_crops, local_crops = step_inputs(args)
    model = (ProSForPreTraining(config) if args.model == "pros" else DinoReference(config)).to(device).train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4, **({"fused": True} if args.model == "pros" else {})
    )
    step = make_step(model, optimizer, global_crops, local_crops, args.precision)
    for _ in range(2):
        step()
    synchronize(device)
    on_device = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize(device)
        wall = (time.perf_counter() - start) / args.steps
    events = [
        event for event in prof.key_averages() if (event.device_type == torch.autograd.DeviceType.CUDA) == on_device
    ]
    time_of = (lambda e: e.self_device_time_total) if on_device else (lambda e: e.self_cpu_time_total)
    if not on_device:  # CPU: leaf aten ops only, so that nothing is counted twice
        events = [e for e in events if e.key.startswith("aten::") and time_of(e) > 0]
    busy = sum(time_of(e) for e in events) / 1e6 / args.steps  # seconds per step
    groups = collections.Counter()
    for event in events:
        groups[group_of(event.key)] += time_of(event) / 1e6 / args.steps
    print(
        f"{args.model}, {args.preset}, batch {args.batch_size}, {args.num_global}x{args.global_size} + "
        f"{args.num_local}x{args.local_size}, K={args.num_prototypes}, {args.precision}, {device}, "
        f"torch {torch.__version__}"
    )
    print(
        f"wall {1e3 * wall:.1f} ms/step ({args.batch_size / wall:.1f} img/s); "
        f"{'device kernels' if on_device else 'CPU ops'} busy {1e3 * busy:.1f} ms/step "
        f"({100 * busy / wall:.0f}% of the wall time)"
    )
    for group, seconds in groups.most_common():
        print(f"  {group:<45} {1e3 * seconds:8.1f} ms/step  {100 * seconds / busy:5.1f}%")
    print(f"busiest {'kernels' if on_device else 'ops'}:")
    for event in sorted(events, key=time_of, reverse=True)[: args.top]:
        print(
            f"  {1e3 * time_of(event) / 1e6 / args.steps:8.2f} ms/step  {event.count // args.steps:5d} calls/step  "
            f"{event.key[:110]}"
        )


if __name__ == "__main__":
    main()
