"""Stochastic depth that skips the dropped samples (ProSLayer) against DINO's 0/1 mask, in one ProS training step.

    python benchmarks/bench_stochastic_depth.py                          # CPU: ViT-S/16, 2x224 + 6x96, batch 4
    python benchmarks/bench_stochastic_depth.py --drop_path_rates 0.1 0.3 --precisions fp32 bf16
    python benchmarks/bench_stochastic_depth.py --output_json sd.json    # also the figures as JSON (docs tables)

DINO's `drop_path` runs every residual branch on every sample and multiplies the dropped ones by 0; `ProSLayer` runs
each branch only on the samples that keep it (DINOv2's `drop_add_residual_stochastic_depth`, with DINO's per-sample
draws), the same outputs and gradients (tests/test_modeling.py). The two steps use the same model, crops and
optimizer; only the blocks' forward differs (the reference forces the mask path). They alternate, so load drifts hit
both; printed: images/s of each (median), the ratio, and the spread of the per-pair ratios. DINO's ViT-S/B use 0.1
(linear over depth: the last block drops 10%, on average 5%), ViT-L 0.3-0.4, so the gain grows with the model.
"""

import argparse
import statistics
import time

import torch
from argument_checks import at_least  # benchmarks/argument_checks.py
from bench_pretrain_step import add_step_arguments, check_step_arguments, make_step, step_inputs
from output_json import add_output_json_argument, check_output_json, write_output_json  # benchmarks/output_json.py

from pros_hf import ProSForPreTraining
from pros_hf.modeling_pros import ProSLayer, drop_path
from pros_hf.throughput import synchronize


def masked_forward(self, hidden_states, output_attentions=False, num_queries=None):
    """ProSLayer's block with DINO's stochastic depth: both branches on every sample, times a 0/1 mask."""
    attention, weights = self.attention(
        self.norm1(hidden_states), output_attentions=output_attentions, num_queries=num_queries
    )
    if num_queries is not None:
        hidden_states = hidden_states[:, :num_queries]
    hidden_states = hidden_states + drop_path(attention, self.drop_path_rate, self.training)
    return hidden_states + drop_path(self.mlp(self.norm2(hidden_states)), self.drop_path_rate, self.training), weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_step_arguments(parser)
    parser.add_argument("--drop_path_rates", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=at_least(1), default=5)
    parser.add_argument(
        "--warmup",
        type=at_least(1),
        default=1,
        help=(
            "untimed steps of each side first; on a CPU in bf16, oneDNN builds a matmul kernel for every new batch size "
            "the random draws produce, which many warm-up steps leave cached (as a long run does)"
        ),
    )
    add_output_json_argument(parser)
    args = parser.parse_args(argv)
    check_step_arguments(parser, args)
    check_output_json(parser, args.output_json)
    if any(not 0.0 < rate < 1.0 for rate in args.drop_path_rates):
        parser.error(f"--drop_path_rates must lie in (0, 1), got {args.drop_path_rates}")
    device = torch.device(args.device)
    config, global_crops, local_crops = step_inputs(args)
    print(
        f"{args.preset}, batch {args.batch_size}, {args.num_global}x{args.global_size} + {args.num_local}x"
        f"{args.local_size} crops, K={args.num_prototypes}, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    rows = []
    for rate in args.drop_path_rates:
        config.drop_path_rate = rate
        for precision in args.precisions:
            torch.manual_seed(0)
            model = ProSForPreTraining(config).to(device).train()
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
            step = make_step(model, optimizer, global_crops, local_crops, precision)
            masked = [layer for layer in model.modules() if isinstance(layer, ProSLayer)]

            def run(mask: bool) -> float:
                for layer in masked:  # an instance attribute shadows the class's forward for the mask side
                    if mask:
                        layer.forward = masked_forward.__get__(layer)
                    else:
                        layer.__dict__.pop("forward", None)
                synchronize(device)
                start = time.perf_counter()
                step()
                synchronize(device)
                return time.perf_counter() - start

            for _ in range(args.warmup):
                run(False), run(True)
            timings = {"mask": [], "skip": []}
            for _ in range(args.repeats):
                timings["mask"].append(run(True))
                timings["skip"].append(run(False))
            rates = {name: args.batch_size / statistics.median(values) for name, values in timings.items()}
            pairs = sorted(mask / skip for mask, skip in zip(timings["mask"], timings["skip"]))
            print(
                f"drop_path_rate {rate:.2f} {precision:>4}: mask {rates['mask']:7.2f} img/s, skip {rates['skip']:7.2f} "
                f"img/s, ratio {rates['skip'] / rates['mask']:.3f} (pairs: median {statistics.median(pairs):.3f}, "
                f"min {pairs[0]:.3f}, max {pairs[-1]:.3f}, skip slower in {sum(r < 1 for r in pairs)})",
                flush=True,
            )
            rows.append(
                {
                    "drop_path_rate": rate,
                    "precision": precision,
                    "images_per_second": rates,
                    "ratio": rates["skip"] / rates["mask"],
                    "paired_ratios": {
                        "median": statistics.median(pairs),
                        "min": pairs[0],
                        "max": pairs[-1],
                        "skip_slower": sum(r < 1 for r in pairs),
                        "count": len(pairs),
                    },
                }
            )
    if args.output_json:
        settings = {key: value for key, value in vars(args).items() if key != "output_json"}
        write_output_json(
            args.output_json,
            "stochastic_depth",
            __file__,
            argv,
            {"settings": settings, "rows": rows},
            device=args.device,
        )


if __name__ == "__main__":
    main()
