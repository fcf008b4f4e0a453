"""The ProS pre-training step against a DINO-style reference step built from transformers' ViTModel, in one run.

    python benchmarks/bench_pretrain_step.py                                   # CPU: ViT-S/16, 2x224 + 6x96, batch 4
    python benchmarks/bench_pretrain_step.py --preset vit-b16 --batch_size 64 --num_local 10 --device cuda --precisions bf16
    python benchmarks/bench_pretrain_step.py --output_json step.json           # also the figures as JSON (docs tables)

A step is forward, backward, gradient clipping, AdamW and the EMA teacher update, on crops prepared beforehand; both
sides get the same crops, widths, depths, heads, prototype count and batch, and the same precision. Each side uses its
own AdamW: the reference DINO's (`torch.optim.AdamW` with torch's defaults: a per-tensor loop on CPU, `foreach` on
CUDA), ProS the fused kernel that `ProSTrainer` runs (transformers' default `optim="adamw_torch_fused"`);
`--same_optimizer` gives the reference the fused one too, which isolates what the model itself gains.
The reference is DINO's training step (facebookresearch/dino main_dino.py) with transformers' `ViTModel` (SDPA) as
the backbone: MultiCropWrapper (one backbone call per crop resolution), DINOHead with a weight-normalised last layer,
DINOLoss's double loop with centering, and a `_foreach` EMA. Steps alternate between the two so that load drifts hit
both alike; the figure is the median, and the ratio of each back-to-back pair is summarised too (median, range,
how many pairs ProS lost), so one run says how far its ratio can be trusted. Also printed: peak step memory, the FLOPs
of a step (FlopCounterMode with CPU attention counted: `pros_hf.flop_counting`) as a fraction of a large matmul's rate
measured in the same run, and (`--with_augmentation`) the on-device multi-crop throughput, which must exceed the
step's for the data path never to be the bottleneck.
"""

import argparse
import statistics
import time

import torch
from accelerate.utils import compile_regions
from argument_checks import at_least, check_device  # benchmarks/argument_checks.py
from memory import LiveTensorMemory  # benchmarks/memory.py
from output_json import add_output_json_argument, check_output_json, write_output_json  # benchmarks/output_json.py
from torch import nn
from torch.nn import functional as F
from transformers import ViTConfig, ViTModel

from pros_hf import ProSConfig, ProSForPreTraining
from pros_hf.augmentation import MultiCropAugmentation, MultiCropConfig
from pros_hf.flop_counting import flop_counter
from pros_hf.throughput import synchronize


class DinoHead(nn.Module):
    """DINO's head: 3-layer MLP, L2-normalised bottleneck, weight-normalised last layer (weight_g fixed to 1)."""

    def __init__(self, in_dim, out_dim, hidden_dim, bottleneck_dim):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1)
        self.last_layer.parametrizations.weight.original0.requires_grad = False

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


class DinoReference(nn.Module):
    """Student and teacher (ViTModel + DinoHead), DINOLoss with centering, as main_dino.py wires them."""

    def __init__(self, config: ProSConfig):
        super().__init__()
        vit_config = ViTConfig(
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            image_size=config.image_size,
            patch_size=config.patch_size,
            layer_norm_eps=config.layer_norm_eps,
        )
        head = (config.hidden_size, config.num_prototypes, config.head_hidden_size, config.head_bottleneck_size)
        self.student, self.teacher = (
            ViTModel(vit_config, add_pooling_layer=False),
            ViTModel(vit_config, add_pooling_layer=False),
        )
        self.student_head, self.teacher_head = DinoHead(*head), DinoHead(*head)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        for parameter in [*self.teacher.parameters(), *self.teacher_head.parameters()]:
            parameter.requires_grad = False
        self.register_buffer("center", torch.zeros(1, config.num_prototypes))
        self.student_temperature, self.teacher_temperature = config.student_temperature, config.teacher_temperature

    def embed(self, backbone, crops_by_resolution):  # MultiCropWrapper
        # a resolution without crops (--num_local 0) is skipped: ViTModel cannot run an empty batch, and DINO's
        # MultiCropWrapper never sees one (it groups the crops it is given)
        cls = [
            backbone(crops, interpolate_pos_encoding=True).last_hidden_state[:, 0]
            for crops in crops_by_resolution
            if crops.shape[0] > 0
        ]
        return torch.cat(cls)

    def forward(self, global_crops, local_crops):
        num_global, num_views = global_crops.shape[1], global_crops.shape[1] + local_crops.shape[1]
        globals_, locals_ = global_crops.transpose(0, 1).flatten(0, 1), local_crops.transpose(0, 1).flatten(0, 1)
        student_output = self.student_head(self.embed(self.student, [globals_, locals_]))
        with torch.no_grad():
            teacher_output = self.teacher_head(self.embed(self.teacher, [globals_]))
        student_chunks = (student_output / self.student_temperature).chunk(num_views)
        teacher_chunks = F.softmax((teacher_output - self.center) / self.teacher_temperature, dim=-1).detach()
        teacher_chunks = teacher_chunks.chunk(num_global)
        total, terms = 0, 0
        for iq, q in enumerate(teacher_chunks):
            for v in range(len(student_chunks)):
                if v == iq:
                    continue
                total = total + torch.sum(-q * F.log_softmax(student_chunks[v], dim=-1), dim=-1).mean()
                terms += 1
        with torch.no_grad():
            self.center.mul_(0.9).add_(teacher_output.mean(dim=0, keepdim=True), alpha=0.1)
        return total / terms

    @torch.no_grad()
    def update_teacher(self, momentum):
        student = [p.data for p in [*self.student.parameters(), *self.student_head.parameters()]]
        teacher = [p.data for p in [*self.teacher.parameters(), *self.teacher_head.parameters()]]
        torch._foreach_mul_(teacher, momentum)
        torch._foreach_add_(teacher, student, alpha=1 - momentum)


def make_step(model, optimizer, global_crops, local_crops, precision):
    device_type = global_crops.device.type

    def step():
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            output = model(global_crops, local_crops)
        loss = output if isinstance(output, torch.Tensor) else output.loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 3.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_teacher(0.996)
        return loss

    return step


def matmul_rate(device, dtype, size=2048, repeats=10) -> float:
    """FLOP/s of a large square matmul on this device and dtype: the ceiling the step's utilisation is measured on.
    A CPU without bf16 instructions runs bf16 matmuls through a slow reference kernel: there 512 is large enough, and
    2048 would take minutes."""
    if torch.device(device).type == "cpu" and dtype == torch.bfloat16:
        size = min(size, 512)
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and crop flags of a step (defaults: ViT-S/16 with DINO's crops, a size a CPU times in seconds),
    shared with profile_pretrain_step.py."""
    parser.add_argument("--preset", default="vit-s16")
    parser.add_argument("--batch_size", type=at_least(1), default=4)
    parser.add_argument("--num_global", type=at_least(1), default=2)
    parser.add_argument("--num_local", type=at_least(0), default=6)
    parser.add_argument("--global_size", type=at_least(1), default=224)
    parser.add_argument("--local_size", type=at_least(1), default=96)
    parser.add_argument("--num_prototypes", type=at_least(1), default=65536)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def check_step_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What `add_step_arguments`' flags cannot check one by one; call right after `parse_args`."""
    if args.num_global + args.num_local < 2:
        # both losses compare every student view with the other views' teacher targets: one view has none
        parser.error(
            f"--num_global + --num_local must be >= 2 (views per image), got {args.num_global} + {args.num_local}"
        )
    check_device(parser, "--device", args.device)


def step_inputs(args: argparse.Namespace) -> tuple[ProSConfig, torch.Tensor, torch.Tensor]:
    """The config and the random global and local crops that `add_step_arguments`' flags describe."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = ProSConfig.from_preset(
        args.preset, image_size=args.global_size, num_prototypes=args.num_prototypes, drop_path_rate=0.0
    )
    global_crops = torch.randn(args.batch_size, args.num_global, 3, args.global_size, args.global_size, device=device)
    local_crops = torch.randn(args.batch_size, args.num_local, 3, args.local_size, args.local_size, device=device)
    return config, global_crops, local_crops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_step_arguments(parser)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--warmup", type=at_least(0), default=1)
    parser.add_argument("--repeats", type=at_least(1), default=5)
    parser.add_argument(
        "--compile",
        choices=["none", "pros", "both"],
        default="none",
        help=(
            "torch.compile the student and teacher of the ProS side, or of both sides (a fair comparison of compiled "
            "steps); the default compares eager steps"
        ),
    )
    parser.add_argument(
        "--compile_scope",
        choices=["backbones", "regions"],
        default="backbones",
        help=(
            "what --compile compiles in the student and teacher backbones: each backbone whole, or each transformer block "
            "and each other submodule apart (accelerate's regional compilation, which ProSTrainer uses with "
            "--torch_compile: one compiled block serves every layer; the heads and the loss stay eager here)"
        ),
    )
    parser.add_argument(
        "--compile_backend",
        default="inductor",
        help=(
            "torch.compile's backend for --compile: inductor generates the kernels measured on a GPU; aot_eager "
            "traces the same graphs (forward and backward) without code generation, for a quick trial of the command"
        ),
    )
    parser.add_argument(
        "--same_optimizer",
        action="store_true",
        help=("give the reference the fused AdamW too (default: DINO's torch.optim.AdamW with torch's defaults)"),
    )
    parser.add_argument("--with_augmentation", action="store_true", help="also time the on-device multi-crop")
    add_output_json_argument(parser)
    args = parser.parse_args(argv)
    check_step_arguments(parser, args)
    check_output_json(parser, args.output_json)
    device = torch.device(args.device)
    config, global_crops, local_crops = step_inputs(args)
    models = {
        "reference": DinoReference(config).to(device).train(),
        "pros": ProSForPreTraining(config).to(device).train(),
    }
    for name, model in models.items():
        if args.compile == "both" or (args.compile == "pros" and name == "pros"):
            compile_backbone = compile_regions if args.compile_scope == "regions" else torch.compile
            model.student = compile_backbone(model.student, backend=args.compile_backend)
            model.teacher = compile_backbone(model.teacher, backend=args.compile_backend)
    print(
        f"{args.preset}, batch {args.batch_size}, {args.num_global}x{args.global_size} + {args.num_local}x"
        f"{args.local_size} crops, K={args.num_prototypes}, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, compiled: {args.compile}"
        f"{'' if args.compile == 'none' else ' (' + args.compile_scope + ')'}, reference optimizer: "
        f"{'fused AdamW' if args.same_optimizer else 'torch.optim.AdamW defaults (DINO)'}",
        flush=True,
    )

    figures = {
        "settings": {key: value for key, value in vars(args).items() if key != "output_json"},
        "reference_optimizer": "fused AdamW" if args.same_optimizer else "torch.optim.AdamW defaults (DINO)",
        "precisions": {},
        "augmentation_images_per_second": None,
    }
    for precision in args.precisions:
        steps, flops = {}, {}
        for name, model in models.items():
            fused = name == "pros" or args.same_optimizer
            optimizer = torch.optim.AdamW(
                [p for p in model.parameters() if p.requires_grad], lr=1e-4, **({"fused": True} if fused else {})
            )
            steps[name] = make_step(model, optimizer, global_crops, local_crops, precision)
            for _ in range(args.warmup):
                steps[name]()
            with flop_counter() as counter:
                steps[name]()
            flops[name] = counter.get_total_flops()
        timings = {name: [] for name in steps}
        for _ in range(args.repeats):
            for name, step in steps.items():
                synchronize(device)
                start = time.perf_counter()
                step()
                synchronize(device)
                timings[name].append(time.perf_counter() - start)
        peak = matmul_rate(device, torch.bfloat16 if precision == "bf16" else torch.float32)
        rates = {name: args.batch_size / statistics.median(values) for name, values in timings.items()}
        utilisation = {name: flops[name] / statistics.median(timings[name]) / peak for name in steps}
        for name in steps:
            print(
                f"{precision:>4} {name:>9}: {rates[name]:8.2f} img/s  {flops[name] / 1e9:8.1f} GFLOP/step  "
                f"{100 * utilisation[name]:5.1f}% of a {peak / 1e12:.2f} TFLOP/s matmul",
                flush=True,
            )
        print(f"{precision:>4}     ratio: ProS / reference = {rates['pros'] / rates['reference']:.3f}", flush=True)
        # each repeat times the two steps back to back, so a pair shares the machine's state: the spread of the
        # per-pair ratios says how far one run's ratio can be trusted, and a pair below 1 is a step where ProS was
        # slower
        pairs = sorted(ref / pros for ref, pros in zip(timings["reference"], timings["pros"]))
        print(
            f"{precision:>4}     paired ratios over {len(pairs)} repeats: median {statistics.median(pairs):.3f}, "
            f"min {pairs[0]:.3f}, max {pairs[-1]:.3f}, ProS slower in {sum(r < 1 for r in pairs)}",
            flush=True,
        )
        if device.type == "cuda":
            memory = {}
            for name, step in steps.items():
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                step()
                torch.cuda.synchronize()
                memory[name] = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            memory = {}
            for name, step in steps.items():
                model = models[name]
                with LiveTensorMemory(
                    existing=[global_crops, local_crops, *model.parameters(), *model.buffers()]
                ) as tracker:
                    step()
                memory[name] = tracker.peak / 2**20
        print(
            f"{precision:>4}    memory: reference {memory['reference']:.0f} MiB, ProS {memory['pros']:.0f} MiB, "
            f"ratio {memory['pros'] / memory['reference']:.3f}",
            flush=True,
        )
        figures["precisions"][precision] = {
            "images_per_second": rates,
            "ratio": rates["pros"] / rates["reference"],
            "paired_ratios": {
                "median": statistics.median(pairs),
                "min": pairs[0],
                "max": pairs[-1],
                "pros_slower": sum(r < 1 for r in pairs),
                "count": len(pairs),
            },
            "gflop_per_step": {name: flops[name] / 1e9 for name in steps},
            "matmul_tflops": peak / 1e12,
            "matmul_utilisation": utilisation,
            "peak_memory_mib": memory,
            "memory_ratio": memory["pros"] / memory["reference"],
        }

    if args.with_augmentation:
        source = torch.randint(0, 256, (args.batch_size, 3, 256, 256), dtype=torch.uint8, device=device)
        augmentation = MultiCropAugmentation(
            MultiCropConfig(
                n_global_crops=args.num_global,
                n_local_crops=args.num_local,
                global_crop_size=args.global_size,
                local_crop_size=args.local_size,
                **MultiCropConfig.dino_global_probabilities(args.num_global),
            )
        )
        augmentation(source)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.repeats):
            augmentation(source)
        synchronize(device)
        rate = args.batch_size * args.repeats / (time.perf_counter() - start)
        print(f"multi-crop on {device}: {rate:.1f} img/s ({rate / rates['pros']:.1f}x the last ProS step rate)")
        figures["augmentation_images_per_second"] = rate
    if args.output_json:
        write_output_json(args.output_json, "pretrain_step", __file__, argv, figures, device=args.device)


if __name__ == "__main__":
    main()
