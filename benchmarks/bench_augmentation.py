"""Multi-crop augmentation throughput: batched MultiCropAugmentation vs DINO's per-image PIL pipeline vs kornia.

All three produce the same views (DINO defaults: 2 global crops at 224, scale (0.4, 1); N local crops at 96, scale
(0.05, 0.4); flip 0.5; colour jitter p 0.8 (0.4, 0.4, 0.2, 0.1); grayscale 0.2; blur sigma 0.1-2.0 with p 1.0 /
0.1 / 0.5; solarize 0.2 on global view 2; ImageNet normalisation) from the same source images, and are timed in
one run with the repetitions alternating, so machine load hits all of them alike. An "image" is one source image
turned into all its views. Not a test: nothing is asserted.

    .venv/bin/python benchmarks/bench_augmentation.py                      # batch 32, 256 px, 2x224 + 6x96, CPU
    .venv/bin/python benchmarks/bench_augmentation.py --batch-size 64 --local-crops 10 --device cuda
    .venv/bin/python benchmarks/bench_augmentation.py --output-json augmentation.json   # also as JSON (docs tables)

(b) is written with PIL + numpy only (torchvision must not be installed next to the CPU torch: it breaks
transformers' ViT imports); it follows DINO's ``DataAugmentationDINO`` op by op: torchvision's RandomResizedCrop
parameters with PIL crop + bicubic resize, ``Image.transpose`` flip, ColorJitter as torchvision's PIL backend does it
(ImageEnhance brightness, contrast, colour; hue by shifting the H channel of ``convert("HSV")``) in a random order,
``convert("L")`` grayscale, ``ImageFilter.GaussianBlur``, ``ImageOps.solarize(128)``, then to a tensor and normalised.
It runs in this one process on one core, like one DataLoader worker; the printed "PIL x cores" line is the ideal of
one worker per core with no overhead.
"""

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from argument_checks import at_least, check_device  # benchmarks/argument_checks.py
from output_json import add_output_json_argument, check_output_json, write_output_json  # benchmarks/output_json.py
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from pros_hf.augmentation import MultiCropAugmentation, MultiCropConfig
from pros_hf.augmentation.functional import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

BLUR_SIGMA = (0.1, 2.0)


# ---------------------------------------------------------------------------------------------------------------
# (b) per-image PIL pipeline, DINO's way


class PILView:
    """One DINO view, per image, in PIL (mirrors ``main_dino.py: DataAugmentationDINO``)."""

    def __init__(self, size: int, scale: tuple[float, float], blur_p: float, solarize_p: float) -> None:
        self.size, self.scale, self.blur_p, self.solarize_p = size, scale, blur_p, solarize_p
        self.mean = np.array(IMAGENET_DEFAULT_MEAN, dtype=np.float32)
        self.std = np.array(IMAGENET_DEFAULT_STD, dtype=np.float32)

    def crop_box(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        """torchvision ``RandomResizedCrop.get_params``."""
        area = width * height
        log_ratio = (math.log(3 / 4), math.log(4 / 3))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                i = rng.randint(0, height - h)
                j = rng.randint(0, width - w)
                return j, i, w, h
        return 0, 0, width, height

    @staticmethod
    def adjust_hue(img: Image.Image, shift: float) -> Image.Image:
        """torchvision's PIL ``adjust_hue``: shift the uint8 H channel of the HSV image."""
        h, s, v = img.convert("HSV").split()
        np_h = np.array(h, dtype=np.uint8)
        with np.errstate(over="ignore"):
            np_h += np.uint8(int(shift * 255) % 256)
        return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert("RGB")

    def color_jitter(self, img: Image.Image, rng: random.Random) -> Image.Image:
        ops = [
            lambda im: ImageEnhance.Brightness(im).enhance(rng.uniform(0.6, 1.4)),
            lambda im: ImageEnhance.Contrast(im).enhance(rng.uniform(0.6, 1.4)),
            lambda im: ImageEnhance.Color(im).enhance(rng.uniform(0.8, 1.2)),
            lambda im: self.adjust_hue(im, rng.uniform(-0.1, 0.1)),
        ]
        rng.shuffle(ops)
        for op in ops:
            img = op(img)
        return img

    def __call__(self, img: Image.Image, rng: random.Random) -> np.ndarray:
        x, y, w, h = self.crop_box(img.width, img.height, rng)
        img = img.crop((x, y, x + w, y + h)).resize((self.size, self.size), Image.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < 0.8:
            img = self.color_jitter(img, rng)
        if rng.random() < 0.2:
            img = img.convert("L").convert("RGB")
        if rng.random() < self.blur_p:
            img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*BLUR_SIGMA)))
        if rng.random() < self.solarize_p:
            img = ImageOps.solarize(img, threshold=128)
        arr = np.asarray(img, dtype=np.float32) / 255.0  # ToTensor + Normalize
        return ((arr - self.mean) / self.std).transpose(2, 0, 1)


class PILMultiCrop:
    def __init__(self, global_size: int, local_size: int, n_local: int) -> None:
        self.global_views = [PILView(global_size, (0.4, 1.0), 1.0, 0.0), PILView(global_size, (0.4, 1.0), 0.1, 0.2)]
        self.local_view = PILView(local_size, (0.05, 0.4), 0.5, 0.0)
        self.n_local, self.local_size = n_local, local_size

    def __call__(self, images: Sequence[Image.Image], rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        global_crops, local_crops = [], []
        for img in images:  # what DataLoader workers do, one image at a time
            global_crops.append(np.stack([view(img, rng) for view in self.global_views]))
            # np.stack of no views fails: --local-crops 0 gives (0, 3, h, w) per image, as MultiCropAugmentation does
            local_crops.append(
                np.stack([self.local_view(img, rng) for _ in range(self.n_local)])
                if self.n_local
                else np.empty((0, 3, self.local_size, self.local_size), dtype=np.float32)
            )
        return torch.from_numpy(np.stack(global_crops)), torch.from_numpy(np.stack(local_crops))  # collate


# ---------------------------------------------------------------------------------------------------------------
# (c) kornia


def build_kornia(global_size: int, local_size: int, n_local: int, device: torch.device):
    import kornia.augmentation as K

    def view(size, scale, blur_p, solarize_p):
        ops = [
            K.RandomResizedCrop((size, size), scale=scale, resample="BICUBIC", align_corners=False),
            K.RandomHorizontalFlip(p=0.5),
            K.ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
            # kornia needs a fixed kernel; 13 taps = 2 ceil(3 sigma_max) + 1, the same as MultiCropAugmentation
            K.RandomGaussianBlur(kernel_size=13, sigma=BLUR_SIGMA, p=blur_p),
        ]
        if solarize_p > 0:
            ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=solarize_p))  # threshold exactly 0.5
        ops.append(K.Normalize(mean=torch.tensor(IMAGENET_DEFAULT_MEAN), std=torch.tensor(IMAGENET_DEFAULT_STD)))
        return K.AugmentationSequential(*ops).to(device)

    g1 = view(global_size, (0.4, 1.0), 1.0, 0.0)
    g2 = view(global_size, (0.4, 1.0), 0.1, 0.2)
    loc = view(local_size, (0.05, 0.4), 0.5, 0.0)

    def run(images_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images_u8.float().div_(255.0)
        b = x.shape[0]
        glob = torch.stack([g1(x), g2(x)], dim=1)
        # all local views of the batch in one call (per-sample parameters), sources repeated view-major
        if n_local == 0:  # --local-crops 0: no call on an empty batch, the empty shape MultiCropAugmentation gives
            return glob, x.new_empty(b, 0, 3, local_size, local_size)
        loc_out = loc(x.repeat(n_local, 1, 1, 1))
        local = loc_out.view(n_local, b, 3, local_size, local_size).transpose(0, 1)
        return glob, local

    return run


# ---------------------------------------------------------------------------------------------------------------


def make_sources(batch: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random colour fields with some edges: a stand-in for decoded face crops (content barely matters)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.15 * torch.rand(batch, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=at_least(1), default=32, help="images per call")
    parser.add_argument("--source-size", type=at_least(1), default=256, help="side of the uint8 source images")
    parser.add_argument(
        "--global-crops",
        type=at_least(1),
        default=2,
        help=(
            "DINO's 2 (PIL/kornia model exactly 2); other counts extend DINO's per-view blur/solarize probabilities "
            "(MultiCropConfig.dino_global_probabilities)"
        ),
    )
    parser.add_argument("--local-crops", type=at_least(0), default=6, help="local views per image")
    parser.add_argument("--global-size", type=at_least(1), default=224)
    parser.add_argument("--local-size", type=at_least(1), default=96)
    parser.add_argument("--device", default="cpu", help="device for (a) and (c); PIL always runs on the CPU")
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch threads (default: what torch sees)")
    parser.add_argument(
        "--repeats",
        type=at_least(1),
        default=7,
        help="timed repetitions per method, alternating; the median and the best are reported (on a "
        "shared machine the best is the closest to an unloaded figure)",
    )
    parser.add_argument(
        "--interpolation",
        nargs="+",
        default=["bicubic", "bilinear"],
        choices=["bicubic", "bilinear"],
        help="MultiCropAugmentation variants to time (DINO resizes bicubic; bilinear is cheaper)",
    )
    parser.add_argument("--jitter-mode", default="fused", choices=["fused", "sequential"])
    parser.add_argument("--output-dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--skip", nargs="*", default=[], choices=["pil", "kornia"], help="methods to leave out")
    add_output_json_argument(parser, "--output-json")  # this script's flags are spelt with dashes
    args = parser.parse_args(argv)
    check_output_json(parser, args.output_json)
    if args.global_crops != 2 and ("pil" not in args.skip or "kornia" not in args.skip):
        parser.error("the PIL and kornia pipelines model DINO's 2 global views: use --global-crops 2 or --skip both")
    check_device(parser, "--device", args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    sources = make_sources(args.batch_size, args.source_size, seed=0)
    sources_dev = sources.to(device)
    pil_images = [Image.fromarray(img.permute(1, 2, 0).numpy(), "RGB") for img in sources]

    methods: dict[str, Callable[[], object]] = {}
    for mode in args.interpolation:
        ours = MultiCropAugmentation(
            n_global_crops=args.global_crops,
            global_crop_size=args.global_size,
            n_local_crops=args.local_crops,
            local_crop_size=args.local_size,
            interpolation=mode,
            color_jitter_mode=args.jitter_mode,
            output_dtype=args.output_dtype,
            **MultiCropConfig.dino_global_probabilities(args.global_crops),
        )
        methods[f"MultiCropAugmentation {mode}"] = (lambda aug: lambda: aug(sources_dev))(ours)
    if "pil" not in args.skip:
        pil = PILMultiCrop(args.global_size, args.local_size, args.local_crops)
        rng = random.Random(0)
        methods["PIL per image"] = lambda: pil(pil_images, rng)
    if "kornia" not in args.skip:
        kornia_run = build_kornia(args.global_size, args.local_size, args.local_crops, device)
        methods["kornia AugmentationSequential"] = lambda: kornia_run(sources_dev)

    print(
        f"torch {torch.__version__}, device {device}, torch threads {torch.get_num_threads()}, "
        f"cpu count {os.cpu_count()}, load average before {os.getloadavg()[0]:.2f}"
    )
    print(
        f"batch {args.batch_size} x {args.source_size}px -> {args.global_crops}x{args.global_size} + "
        f"{args.local_crops}x{args.local_size}; ours: jitter {args.jitter_mode}, "
        f"{args.output_dtype}"
    )
    busy = os.getloadavg()[0]
    if device.type == "cpu" and busy > 0.5 and torch.get_num_threads() >= (os.cpu_count() or 1):
        print(
            f"note: load average {busy:.2f} with torch using all {torch.get_num_threads()} cores: other processes "
            "will deschedule torch's worker threads and each parallel op then waits for them (measured up to 45x "
            "slower on a shared 2-core machine); compare with --threads 1 as well"
        )
    shapes = {}
    for name, fn in methods.items():  # warm-up (and shape check)
        g, l = fn()
        sync()
        shapes[name] = (tuple(g.shape), tuple(l.shape))
    if len(set(shapes.values())) != 1:
        print(f"warning: output shapes differ: {shapes}", file=sys.stderr)

    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    load_after = os.getloadavg()[0]

    rate = {name: args.batch_size / statistics.median(ts) for name, ts in times.items()}
    best = {name: args.batch_size / min(ts) for name, ts in times.items()}
    print(
        f"{'method':34s} {'images/s median':>16s} {'best':>8s} {'worst':>8s} {'vs PIL median':>14s} "
        f"{'vs PIL best':>12s}"
    )
    for name, ts in times.items():
        worst = args.batch_size / max(ts)
        if "PIL per image" in rate:
            ratios = f"{rate[name] / rate['PIL per image']:13.2f}x {best[name] / best['PIL per image']:11.2f}x"
        else:
            ratios = f"{'-':>14s} {'-':>12s}"
        print(f"{name:34s} {rate[name]:16.1f} {best[name]:8.1f} {worst:8.1f} {ratios}")
    if "PIL per image" in rate:
        cores = os.cpu_count() or 1
        ideal = rate["PIL per image"] * cores
        for name in methods:
            if name.startswith("MultiCrop"):
                print(
                    f"{name} vs PIL x {cores} cores (ideal {cores} workers, {ideal:.1f} images/s median): "
                    f"{rate[name] / ideal:.2f}x median, {best[name] / (best['PIL per image'] * cores):.2f}x best"
                )
    print(
        f"load average after {load_after:.2f}; per-repeat ms: "
        + "; ".join(f"{n}={[round(t * 1000) for t in ts]}" for n, ts in times.items())
    )
    if args.output_json:
        rows = [
            {
                "method": name,
                "median_images_per_second": rate[name],
                "best_images_per_second": best[name],
                "worst_images_per_second": args.batch_size / max(ts),
                "vs_pil_median": rate[name] / rate["PIL per image"] if "PIL per image" in rate else None,
                "vs_pil_best": best[name] / best["PIL per image"] if "PIL per image" in rate else None,
            }
            for name, ts in times.items()
        ]
        settings = {key: value for key, value in vars(args).items() if key != "output_json"}
        write_output_json(
            args.output_json,
            "augmentation",
            __file__,
            argv,
            {
                "settings": settings,
                "torch_threads": torch.get_num_threads(),
                "load_average_before": busy,
                "load_average_after": load_after,
                "rows": rows,
            },
            device=args.device,
        )


if __name__ == "__main__":
    main()
