"""ProSModel against transformers' own ViTModel with identical dimensions, in one run, alternating.

    python benchmarks/bench_backbone.py                       # ViT-S/16 at 224, CPU, fp32 and bf16 autocast
    python benchmarks/bench_backbone.py --preset vit-b16 --device cuda --batch_size 64
    python benchmarks/bench_backbone.py --output_json backbone.json   # also the figures as JSON (docs tables)

Both models use SDPA attention and the same precision. For each mode (inference, forward+backward) and precision the
two models take turns, repetition by repetition, so that drifts in machine load hit both alike; the figure is the
median. Peak memory of one step, above the model and its input: on CUDA `max_memory_allocated`, on a CPU the peak of
live tensor bytes counted op by op (`LiveTensorMemory`), since torch's CPU allocator keeps no statistics.
"""

import argparse
import statistics
import time

import torch
from argument_checks import at_least, check_device  # benchmarks/argument_checks.py
from memory import LiveTensorMemory  # benchmarks/memory.py
from output_json import add_output_json_argument, check_output_json, write_output_json  # benchmarks/output_json.py
from transformers import ViTConfig, ViTModel

from pros_hf import ProSConfig, ProSModel
from pros_hf.throughput import synchronize


def build(kind: str, preset: str, image_size: int, device: str) -> torch.nn.Module:
    """The two contenders: identical widths, depths, heads, patch size and norm epsilon, SDPA attention."""
    config = ProSConfig.from_preset(preset, image_size=image_size, drop_path_rate=0.0)
    if kind == "pros":
        model = ProSModel(config)
    else:
        model = ViTModel(
            ViTConfig(
                hidden_size=config.hidden_size,
                num_hidden_layers=config.num_hidden_layers,
                num_attention_heads=config.num_attention_heads,
                intermediate_size=config.intermediate_size,
                image_size=image_size,
                patch_size=config.patch_size,
                layer_norm_eps=config.layer_norm_eps,
                qkv_bias=config.qkv_bias,
            ),
            add_pooling_layer=False,
        )
    if model.config._attn_implementation != "sdpa":
        raise RuntimeError(f"{kind} runs {model.config._attn_implementation!r} attention, not SDPA")
    return model.to(device)


def step(model, pixel_values, mode: str, precision: str) -> None:
    device_type = pixel_values.device.type
    autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if mode == "inference":
        model.eval()
        with torch.inference_mode(), autocast:
            model(pixel_values).last_hidden_state.sum().item()
    else:
        model.train()
        with autocast:
            output = model(pixel_values).last_hidden_state
        output.float().square().mean().backward()
        model.zero_grad(set_to_none=True)


def measure_speed(args, models, pixel_values) -> dict:
    results = {}
    for mode in ("inference", "train"):
        for precision in args.precisions:
            timings = {kind: [] for kind in models}
            for model in models.values():  # warm-up (allocator, kernels, oneDNN primitives)
                for _ in range(args.warmup):
                    step(model, pixel_values, mode, precision)
            for _ in range(args.repeats):
                for kind, model in models.items():
                    synchronize(args.device)
                    start = time.perf_counter()
                    step(model, pixel_values, mode, precision)
                    synchronize(args.device)
                    timings[kind].append(time.perf_counter() - start)
            row = {kind: args.batch_size / statistics.median(values) for kind, values in timings.items()}
            row["ratio"] = row["pros"] / row["vit"]
            results[f"{mode}/{precision}"] = row
            print(
                f"{mode:>9} {precision:>4}: ViTModel {row['vit']:8.1f} img/s   ProSModel {row['pros']:8.1f} img/s"
                f"   ratio {row['ratio']:.3f}",
                flush=True,
            )
    return results


def peak_step_memory(model, pixel_values, mode: str, precision: str) -> float:
    """Peak memory (MiB) of one step above the model, its input and the allocator's pools (after a warm-up step)."""
    step(model, pixel_values, mode, precision)
    if pixel_values.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(model, pixel_values, mode, precision)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with LiveTensorMemory(existing=[pixel_values, *model.parameters(), *model.buffers()]) as tracker:
        step(model, pixel_values, mode, precision)
    return tracker.peak / 2**20


def measure_memory(args, models, pixel_values) -> dict:
    results = {}
    for mode in ("inference", "train"):
        for precision in args.precisions:
            row = {kind: peak_step_memory(model, pixel_values, mode, precision) for kind, model in models.items()}
            row["ratio"] = row["pros"] / row["vit"]
            results[f"{mode}/{precision}"] = row
            print(
                f"{mode:>9} {precision:>4}: peak step memory ViTModel {row['vit']:8.1f} MiB   ProSModel "
                f"{row['pros']:8.1f} MiB   ratio {row['ratio']:.3f}",
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vit-s16")
    parser.add_argument("--image_size", type=at_least(1), default=224)
    parser.add_argument("--batch_size", type=at_least(1), default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--warmup", type=at_least(0), default=2)
    parser.add_argument("--repeats", type=at_least(1), default=7)
    add_output_json_argument(parser, "--json")
    args = parser.parse_args(argv)
    check_device(parser, "--device", args.device)
    check_output_json(parser, args.output_json)
    print(
        f"{args.preset} at {args.image_size} px, batch {args.batch_size}, {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    models = {kind: build(kind, args.preset, args.image_size, args.device) for kind in ("vit", "pros")}
    pixel_values = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=args.device)
    settings = {key: value for key, value in vars(args).items() if key != "output_json"}
    results = {
        "settings": settings,
        "speed": measure_speed(args, models, pixel_values),
        "memory": measure_memory(args, models, pixel_values),
    }
    if args.output_json:
        write_output_json(args.output_json, "backbone", __file__, argv, results, device=args.device)


if __name__ == "__main__":
    main()
