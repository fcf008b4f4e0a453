"""Weighted k-NN accuracy (DINO's protocol) of a ProS backbone on a labelled face dataset: "is it learning?".

    python examples/knn_eval.py                                   # random-init micro model on synthetic faces
    python examples/knn_eval.py --model ./pros-vits --compare_random_init --output_json knn.json
    python examples/knn_eval.py --dataset ./my_saved_dataset --label_columns expression

Prints one row per label column (classes, majority-class chance, model top-1, optionally random-init top-1) and
writes the same numbers as JSON. A pre-trained backbone should beat its random-init twin clearly; if it does not,
pre-training has not learned (or has collapsed), whatever the loss says.
"""

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import HfArgumentParser

from pros_hf import ProSConfig, ProSImageProcessor
from pros_hf.cli import check_output_file, parse_flags
from pros_hf.knn import (
    evaluate_knn,
    load_backbone_and_processor,
    load_labelled_dataset,
    random_init_backbone,
    stratified_split_indices,
)
from pros_hf.knn.features import check_image_column

logger = logging.getLogger("knn_eval")


@dataclass
class KNNEvalArguments:
    model: str | None = field(
        default=None,
        metadata={
            "help": "A saved ProSModel folder or Hub id, or a ProSForPreTraining checkpoint (its EMA teacher is "
            "evaluated, as ProS uses the teacher downstream). Default: a random-init 'micro' ProSModel, "
            "the floor any pre-trained model must beat."
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "A folder written by datasets' save_to_disk with an image column and integer label "
            "columns. Default: synthetic faces rendered on the fly (offline, labelled)."
        },
    )
    split: str = field(
        default="train",
        metadata={"help": "Split to use when --dataset is a DatasetDict; it is divided into k-NN train/test below."},
    )
    image_column: str = field(default="image", metadata={"help": "Column holding the (PIL) images."})
    num_images: int = field(
        default=600,
        metadata={
            "help": "Synthetic faces to render when no --dataset is given: 600 = 60 identities x 10 images, "
            "enough for stable k-NN numbers in seconds on a CPU."
        },
    )
    image_size: int = field(
        default=64,
        metadata={
            "help": "Side of the synthetic faces and of the default random-init model's input (pixels, a "
            "multiple of the patch size 8). Loaded models keep their own input size."
        },
    )
    label_columns: list[str] = field(
        default_factory=lambda: ["expression", "identity"],
        metadata={
            "help": "Single-label integer columns to classify. Identity k-NN measures how well the features "
            "separate people; expression measures whether they carry facial-muscle cues."
        },
    )
    k: int = field(
        default=20,
        metadata={
            "help": "Neighbours that vote. DINO's default; 10-20 is robust, large k favours frequent classes. "
            "Clipped to the number of training examples."
        },
    )
    temperature: float = field(
        default=0.07,
        metadata={
            "help": "Vote weight exp(cosine / T). DINO's 0.07: low T lets the closest neighbours dominate; "
            "T -> infinity is a plain majority vote."
        },
    )
    test_fraction: float = field(
        default=0.2,
        metadata={"help": "Fraction of each class of the first label column held out as queries (stratified)."},
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the synthetic data, the split and the random-init model: the same seed compares "
            "models on the same examples."
        },
    )
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass when extracting features."})
    compare_random_init: bool = field(
        default=False,
        metadata={
            "help": "Also evaluate the same architecture at random initialisation (seeded): the baseline that "
            "tells learned features from what a random ViT's inductive bias already gives."
        },
    )
    random_init_seeds: int = field(
        default=3,
        metadata={
            "help": "Random initialisations to average for the baseline (seeds seed, seed+1, ...). One random "
            "ViT's k-NN accuracy varies by a point or more with its seed, so the floor is a mean with "
            "its spread, not one draw."
        },
    )
    output_json: str | None = field(default=None, metadata={"help": "Write the results to this JSON file."})
    device: str | None = field(default=None, metadata={"help": "torch device (default: cuda if available, else cpu)."})


def load_dataset_for_knn(args: KNNEvalArguments):
    if args.dataset is None:
        from pros_hf.data.synthetic import make_synthetic_faces

        logger.info("Rendering %d synthetic faces at %d px", args.num_images, args.image_size)
        return make_synthetic_faces(args.num_images, image_size=args.image_size, seed=args.seed)
    if args.num_images != KNNEvalArguments.num_images:
        logger.warning(
            "--num_images %d is for the synthetic faces; --dataset %s is used whole", args.num_images, args.dataset
        )
    return load_labelled_dataset(args.dataset, args.split)


def check_arguments(args: KNNEvalArguments) -> None:
    """Refuse, in one line and before any model is loaded or feature computed, what would fail later."""
    if args.k < 1:
        raise SystemExit(f"--k must be a positive number of neighbours, got {args.k}.")
    if not args.temperature > 0:
        raise SystemExit(f"--temperature must be > 0 (votes are exp(cosine / T)), got {args.temperature}.")
    if not 0 < args.test_fraction < 1:
        raise SystemExit(f"--test_fraction must lie in (0, 1), got {args.test_fraction}.")
    for name in ("batch_size", "num_images") + (("random_init_seeds",) if args.compare_random_init else ()):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be at least 1, got {getattr(args, name)}.")
    check_output_file("--output_json", args.output_json)  # else the results would be lost after all the work


def check_columns(features, args: KNNEvalArguments) -> None:
    """The label and image columns, from the schema alone: for synthetic faces, before any face is rendered."""
    import datasets

    for name in args.label_columns:
        if name not in features:
            raise SystemExit(f"--label_columns: {name!r} is not a column of the dataset ({list(features)}).")
        feature = features[name]
        if not (
            isinstance(feature, datasets.ClassLabel)
            or isinstance(feature, datasets.Value)
            and feature.dtype.startswith(("int", "uint"))
        ):
            kind = getattr(feature, "dtype", None) or type(feature).__name__  # e.g. "string", "List"
            raise SystemExit(
                f"--label_columns: {name!r} holds {kind} values, not one integer label per image (k-NN "
                "is single-label: a multi-label list column cannot be used)."
            )
    if args.image_column not in features:
        raise SystemExit(f"--image_column: {args.image_column!r} is not a column of the dataset ({list(features)}).")


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (args,) = parse_flags(HfArgumentParser(KNNEvalArguments), argv, "knn_eval.py")
    check_arguments(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    if args.model is None:
        try:
            model = random_init_backbone(ProSConfig.from_preset("micro", image_size=args.image_size), args.seed)
        except ValueError as error:  # e.g. an --image_size that is not a multiple of the patch size
            raise SystemExit(f"--image_size: {error}") from None
        processor = ProSImageProcessor.from_model_config(model.config)
        model_name = "random-init micro"
    else:
        try:
            model, processor = load_backbone_and_processor(args.model)
        except (OSError, ValueError) as error:  # a missing folder, a Hub id that cannot be reached, not a ProS model
            raise SystemExit(f"--model: {error}") from None
        model_name = args.model
    if args.dataset is None:
        from pros_hf.data.synthetic import synthetic_faces_features

        check_columns(synthetic_faces_features(), args)  # before rendering them
    try:
        dataset = load_dataset_for_knn(args)
        check_columns(dataset.features, args)
        check_image_column(dataset, args.image_column)  # holds images (or paths of existing files)
    except ValueError as error:  # not a saved dataset, no such --split, not images, or a bad synthetic-face setting
        raise SystemExit(f"knn_eval.py: {error}") from None

    common = dict(label_columns=args.label_columns, test_fraction=args.test_fraction, seed=args.seed, k=args.k,
                  temperature=args.temperature, image_processor=processor, batch_size=args.batch_size,
                  image_column=args.image_column)  # fmt: skip
    results = {"model": model_name, "num_examples": len(dataset), "k": args.k, "temperature": args.temperature,
               "labels": {}}  # fmt: skip
    try:  # label and image columns are checked before any feature is extracted
        scores, queries = evaluate_knn(model.to(device), dataset, return_query_rows=True, **common)
    except ValueError as error:
        raise SystemExit(f"knn_eval.py: {error}") from None
    baseline = None
    if args.compare_random_init:
        runs = [
            evaluate_knn(random_init_backbone(model.config, args.seed + offset).to(device), dataset, **common)
            for offset in range(args.random_init_seeds)
        ]
        baseline = {name: [run[name] for run in runs] for name in args.label_columns}

    # Chance level on the very queries evaluate_knn scored: its stratified split, without the images it could not
    # decode (it leaves them out of the k-NN)
    first = np.asarray(dataset[args.label_columns[0]])
    _, test_idx = stratified_split_indices(first, args.test_fraction, args.seed)
    results["num_queries"] = int(len(queries))
    results["num_queries_undecodable"] = int(len(test_idx) - len(queries))
    for name in args.label_columns:
        labels = np.asarray(dataset[name])[queries]
        entry = {
            "num_classes": int(len(np.unique(dataset[name]))),
            "majority_chance_top1": float(100.0 * np.bincount(labels).max() / len(labels)),
            "top1": scores[name],
        }
        if baseline is not None:
            entry["random_init_top1"] = float(np.mean(baseline[name]))
            entry["random_init_top1_std"] = float(np.std(baseline[name]))
            entry["random_init_top1_per_seed"] = baseline[name]
        results["labels"][name] = entry

    header = f"{'label':<14}{'classes':>8}{'chance':>9}{'model':>9}" + (
        f"{'random (mean +- std of ' + str(args.random_init_seeds) + ')':>30}" if baseline else ""
    )
    skipped = f" ({results['num_queries_undecodable']} undecodable left out)" if len(queries) < len(test_idx) else ""
    print(
        f"k-NN top-1 accuracy (%), k={args.k}, T={args.temperature}, {len(queries)} queries{skipped}, "
        f"model: {model_name}"
    )
    print(header)
    for name, entry in results["labels"].items():
        row = f"{name:<14}{entry['num_classes']:>8}{entry['majority_chance_top1']:>9.1f}{entry['top1']:>9.1f}"
        if baseline is not None:
            row += f"{entry['random_init_top1']:>22.1f} +- {entry['random_init_top1_std']:.1f}"
        print(row)
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump(results, handle, indent=2)
        print(f"wrote {args.output_json}")
    return results


if __name__ == "__main__":
    main()
