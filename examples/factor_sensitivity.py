"""Which factors of a face does a backbone's CLS encode? Expression, background, pose, lighting, identity.

    python examples/factor_sensitivity.py --model outputs/demo/backbone --compare_random_init
    python examples/factor_sensitivity.py --model ./a ./b --output_json sensitivity.json

Renders groups of synthetic faces that differ from a base face in one factor only, face-crops them like the demo's
data, and prints, per model, how far the L2-normalised CLS feature moves for each factor relative to two unrelated
faces (0: invariant; 1: as far as another face). With --compare_random_init the same architecture at random
initialisation is measured too (mean of --random_init_seeds seeds): a factor whose figure training lowered is one the
model learnt to ignore. Explains a k-NN result (examples/knn_eval.py) rather than repeating it.
"""

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import HfArgumentParser

from pros_hf import ProSConfig, ProSImageProcessor
from pros_hf.cli import check_output_file, parse_flags
from pros_hf.data.face_rendering import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from pros_hf.knn import extract_features, factor_sensitivity, load_backbone_and_processor, random_init_backbone
from pros_hf.knn.factor_pairs import FACTORS, make_factor_pairs

logger = logging.getLogger("factor_sensitivity")


@dataclass
class FactorSensitivityArguments:
    model: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Saved ProSModel folders, Hub ids or ProSForPreTraining checkpoints (their teacher is "
            "measured). Default: only the random-init micro model."
        },
    )
    num_groups: int = field(
        default=150,
        metadata={
            "help": "Base faces, each rendered once more per factor. 150 groups give figures stable to about "
            "0.005 on the relative scale, in about a minute on a CPU."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the faces and of the first random initialisation."})
    image_size: int = field(default=128, metadata={"help": "Render size before face cropping (the demo's 128)."})
    crop_size: int = field(default=64, metadata={"help": "Face-crop side (the demo's 64); models resize from it."})
    compare_random_init: bool = field(
        default=False,
        metadata={
            "help": "Also measure each model's architecture at random initialisation (the baseline that shows "
            "what training changed)."
        },
    )
    random_init_seeds: int = field(
        default=3, metadata={"help": "Random initialisations to average (seed, seed+1, ...)."}
    )
    initializer_range: float | None = field(
        default=None,
        metadata={
            "help": "Weight initialisation std of the random-init micro model used when no --model is given "
            "(default: the preset's 0.02)."
        },
    )
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass."})
    output_json: str | None = field(default=None, metadata={"help": "Write the results to this JSON file."})
    device: str | None = field(default=None, metadata={"help": "torch device (default: cuda if available, else cpu)."})


def _measure(model, processor, faces, args, device) -> dict:
    features = extract_features(model.to(device), faces, image_processor=processor, batch_size=args.batch_size,
                                device=device, show_progress=False)  # fmt: skip
    return factor_sensitivity(features, faces["group"], faces["factor"])


def _row(name: str, relative: dict, spread: dict | None = None) -> str:
    cells = (f"{relative[f]:.3f}" + (f" +- {spread[f]:.3f}" if spread else "") for f in FACTORS)
    return f"{name:<36}" + "".join(f"{cell:>16}" for cell in cells)


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (args,) = parse_flags(HfArgumentParser(FactorSensitivityArguments), argv, "factor_sensitivity.py")
    # Everything that can fail is checked before the faces are rendered (a minute at the default --num_groups).
    if args.random_init_seeds < 1:
        raise SystemExit(f"--random_init_seeds must be at least 1, got {args.random_init_seeds}.")
    if args.num_groups < 2:
        raise SystemExit(f"--num_groups must be at least 2 (the scale is the distance between groups), got "
                         f"{args.num_groups}.")  # fmt: skip
    if not MIN_IMAGE_SIZE <= args.image_size <= MAX_IMAGE_SIZE:
        raise SystemExit(f"--image_size must lie in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {args.image_size}.")
    if args.crop_size < 8:
        raise SystemExit(f"--crop_size must be at least 8 pixels, got {args.crop_size}.")
    if args.batch_size < 1:
        raise SystemExit(f"--batch_size must be at least 1, got {args.batch_size}.")
    check_output_file("--output_json", args.output_json)  # else the results would be lost after all the work
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    models = []
    for path in args.model:
        try:
            model, processor = load_backbone_and_processor(path)
        except (OSError, ValueError) as error:  # a missing folder, a Hub id that cannot be reached, not a ProS model
            raise SystemExit(f"--model: {error}") from None
        models.append((path, model, processor))
    if not models:
        overrides = {} if args.initializer_range is None else {"initializer_range": args.initializer_range}
        try:
            config = ProSConfig.from_preset("micro", image_size=48, **overrides)
        except ValueError as error:
            raise SystemExit(f"--initializer_range: {error}") from None
        model = random_init_backbone(config, args.seed)
        models.append(("random-init micro", model, ProSImageProcessor.from_model_config(config)))

    logger.info("Rendering %d groups of %d faces", args.num_groups, len(FACTORS) + 1)
    faces, counts = make_factor_pairs(args.num_groups, seed=args.seed, image_size=args.image_size,
                                      crop_size=args.crop_size)  # fmt: skip
    if counts["groups_kept"] < 2:
        raise SystemExit(f"Only {counts['groups_kept']} complete groups were face-cropped; use more --num_groups.")
    results = {"factors": list(FACTORS), "counts": counts, "models": {}}

    header = f"{'model':<36}" + "".join(f"{f:>16}" for f in FACTORS)
    lines = [header]
    for name, model, processor in models:
        entry = _measure(model, processor, faces, args, device)
        lines.append(_row(name, entry["relative"]))
        if args.compare_random_init:
            runs = [
                _measure(random_init_backbone(model.config, args.seed + offset), processor, faces, args, device)
                for offset in range(args.random_init_seeds)
            ]
            mean = {f: float(np.mean([run["relative"][f] for run in runs])) for f in FACTORS}
            std = {f: float(np.std([run["relative"][f] for run in runs])) for f in FACTORS}
            entry["random_init_relative"], entry["random_init_relative_std"] = mean, std
            lines.append(_row("  same architecture, random init", mean, std))
        results["models"][name] = entry
    print(
        f"CLS cosine distance of a one-factor change, over the mean distance between unrelated faces "
        f"({counts['groups_kept']} groups; 0 = invariant, 1 = as far as another face):"
    )
    print("\n".join(lines))
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump(results, handle, indent=2)
        print(f"wrote {args.output_json}")
    return results


if __name__ == "__main__":
    main()
