"""Fine-tune a ProS backbone for facial expressions, attributes or landmarks, and say what pre-training contributed.

    python examples/finetune.py --task expression --model outputs/demo/backbone
    python examples/finetune.py --task landmarks --model outputs/demo/backbone --few_shot 0.05 --seeds 0 1 2 \
        --compare_random_init
    python examples/finetune.py --task all --model outputs/demo/backbone --few_shot 0.05 --seeds 0 1 2 \
        --compare_random_init          # the few-shot table: pre-trained vs random init on all three tasks
    python examples/finetune.py --task attributes --model org/pros-vitb --lora --push_to_hub \
        --hub_model_id org/pros-vitb-attributes-lora

With no data flag it uses the synthetic faces, face-cropped as `make demo` crops its pre-training images (rendered
once, then cached). Each (seed, initialisation) is one `Trainer` run; the script writes to `--output_dir`:
`results.json` (every metric per seed, mean and std, for the pre-trained backbone and with `--compare_random_init` the
same architecture at random initialisation), PNGs (confusion matrix, per-attribute accuracy, landmarks on test faces
and the CED curve), and the fine-tuned head of the first seed (or its LoRA adapter, with the merged head next to it in
`<output_dir>-merged`) with its image processor and a model card carrying the measured metrics. `--help` lists every
flag with why it matters.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import HfArgumentParser, TrainingArguments, set_seed

from pros_hf.cli import flag_is_on, flag_name


logger = logging.getLogger("finetune")
TASK_CHOICES = ("attributes", "expression", "landmarks", "all")


@dataclass
class FinetuneArguments:
    task: str = field(default="expression", metadata={
        "choices": TASK_CHOICES,
        "help": "expression (7-way single-label, cross-entropy), attributes (multi-label, BCE; mean accuracy over "
                "attributes) or landmarks (heatmaps + soft-argmax, NME). 'all' runs the three in turn into "
                "<output_dir>/<task> and prints one table: the few-shot comparison in one command."})
    model: str | None = field(default=None, metadata={"help": (
        "The backbone: a ProSModel folder or Hub id (what pre-training exports), or a pre-training checkpoint folder "
        "(its EMA teacher is used, as ProS fine-tunes the teacher). Default: a random-init 'micro' ViT, the floor.")})
    random_init: bool = field(default=False, metadata={"help": (
        "Train the --model architecture from random weights instead of its pre-trained ones.")})
    compare_random_init: bool = field(default=False, metadata={"help": (
        "Also run every seed with the same architecture at random initialisation, same recipe and same labelled "
        "examples: the gap is what pre-training contributes (results.json 'random_init', the printed table).")})

    dataset: str | None = field(default=None, metadata={"help": (
        "A dataset saved with save_to_disk (a Dataset, or a DatasetDict with train and test/validation splits) with "
        "an image column and the task's column: expression (ClassLabel or int), attributes (list of ClassLabel ids "
        "present, or a 0/1 vector with --class_names), landmarks ((N, 2) or 2N pixel coordinates).")})
    test_dataset: str | None = field(default=None, metadata={"help": (
        "A saved dataset to test on, next to --dataset (e.g. examples/demo.py's faces_eval next to faces_train).")})
    image_dir: str | None = field(default=None, metadata={"help": (
        "A folder of images, with --labels_file naming them (file_name column, relative to this folder).")})
    labels_file: str | None = field(default=None, metadata={"help": (
        "CSV or JSON/JSONL labels for --image_dir: file_name, then expression (class id or name), or one 0/1 column "
        "per attribute, or landmarks (2N pixel numbers, or N [x, y] pairs in JSON). Bad rows are reported by line.")})
    test_labels_file: str | None = field(default=None, metadata={"help": (
        "Labels of a separate test set in --image_dir. Without it, --test_fraction of --labels_file is held out.")})
    hub_dataset: str | None = field(default=None, metadata={"help": (
        "A Hub dataset id (datasets.load_dataset), with the columns described for --dataset. Needs the network "
        "once; offline it must be in the cache.")})
    hub_config: str | None = field(default=None, metadata={"help": "Configuration name of --hub_dataset."})
    train_split: str = field(default="train", metadata={"help": "Split to train on when the dataset has splits."})
    test_split: str | None = field(default=None, metadata={"help": (
        "Split to test on (default: test, validation, valid or val, whichever exists).")})
    test_fraction: float = field(default=0.2, metadata={"help": (
        "Held-out fraction when the data has no test split (stratified for expressions, seeded by the first seed).")})
    image_column: str = field(default="image", metadata={"help": "Image column of --dataset / --hub_dataset."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (default: the task's name)."})
    class_names: list[str] | None = field(default=None, metadata={"help": (
        "Expression class names in id order (default: the 7 basic expressions neutral, happiness, sadness, surprise, "
        "fear, disgust, anger), or the attribute names of a 0/1 vector / of the label file's columns to use.")})
    attribute_columns: list[str] | None = field(default=None, metadata={"help": (
        "Separate 0/1 columns of a dataset that together are the attributes (CelebA on the Hub is laid out so).")})
    num_landmarks: int | None = field(default=None, metadata={"help": (
        "Points per face; every row must have this many (default: the count of the first row).")})
    num_train: int | None = field(default=None, metadata={"help": (
        "Cap on training images (synthetic default: 2000 rendered, the demo's pre-training set).")})
    num_test: int | None = field(default=None, metadata={"help": (
        "Cap on test images (synthetic default: 1000 rendered with another seed, the demo's k-NN set).")})
    data_cache_dir: str | None = field(default=None, metadata={"help": (
        "Where rendered synthetic face crops are cached (default: under HF_DATASETS_CACHE).")})

    few_shot: float | None = field(default=None, metadata={"help": (
        "Train on this fraction of the training labels (e.g. 0.05), drawn per seed: stratified by class for "
        "expressions (at least one per class), at least one positive and one negative per attribute, at random for "
        "landmarks. Few-shot is where a pre-trained backbone should matter most.")})
    validation_fraction: float = field(default=0.0, metadata={"help": (
        "Hold out this fraction of the labelled training examples (after --few_shot; stratified like it, per seed) "
        "as a validation split, scored every --eval_steps with --eval_strategy steps. With --load_best_model_at_end "
        "the checkpoint with the best --metric_for_best_model on it (default: the loss) is kept: the number of steps "
        "is then chosen without looking at the test set, as VTAB-1k does with 200 of its 1,000 labels. Without it, "
        "--eval_strategy scores the test set, for monitoring only.")})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": (
        "Repeat with these seeds (few-shot subset, head init, augmentation, data order); results are reported per "
        "seed and as mean and std. Few-shot numbers vary a lot: use at least 3 seeds to compare models.")})

    mode: str = field(default="full", metadata={"choices": ("full", "linear_probe"), "help": (
        "full: train everything (backbone at a lower, layer-decayed learning rate). linear_probe: freeze the "
        "backbone and train the head alone; measures the frozen features, cheapest, robust with very few labels.")})
    lora: bool = field(default=False, metadata={"help": (
        "LoRA through PEFT: the backbone frozen, low-rank updates on its attention projections (--lora_target_"
        "modules) and the head trained in full (modules_to_save). Saves a small adapter instead of a whole model.")})
    lora_r: int = field(default=2, metadata={"help": (
        "LoRA rank. Parameters grow linearly with it: at the micro demo size (width 64) r=2 is 1.4 percent of the "
        "model (r=8 would be 5.4); on a ViT-B/16, r=8 is 0.5 percent.")})
    lora_alpha: float = field(default=4.0, metadata={"help": (
        "LoRA scale numerator: updates are scaled by alpha / r. Keep alpha = 2r when changing r so the effective "
        "step size stays comparable.")})
    lora_dropout: float = field(default=0.0, metadata={"help": (
        "Dropout on the LoRA input. 0.05-0.1 helps on larger data; with a few dozen images it mostly adds noise.")})
    lora_target_modules: list[str] = field(default_factory=lambda: ["qkv", "o_proj"], metadata={"help": (
        "Backbone Linear layers to adapt: qkv (fused query/key/value) and o_proj (attention output); fc1 / fc2 add the "
        "MLPs at 4x the cost.")})

    backbone_lr_scale: float = field(default=0.3, metadata={"help": (
        "Backbone learning rate = this x --learning_rate (the head gets the full rate). A fresh head's large early "
        "gradients would otherwise wash out pre-trained features. 0.1 suits large pre-trained ViTs; the micro demo "
        "backbone needs to move more (0.1 left its landmark head behind 0.3 and 1.0).")})
    layer_decay: float = field(default=0.75, metadata={"help": (
        "Layer-wise lr decay (BEiT/MAE): block i of L gets decay^(L - i) of the backbone rate, the embeddings "
        "decay^(L+1). Early blocks hold generic features and move least. 1.0 disables it; 0.65-0.75 is usual.")})
    classifier_pooling: str | None = field(default=None, metadata={"choices": (None, "cls", "cls_mean"), "help": (
        "What the classifier sees: cls (the token pre-training shaped) or cls_mean (CLS + mean patch token, "
        "better for local cues such as glasses or an open mouth). Default: the model config's (cls).")})
    landmark_decoder: str | None = field(default=None, metadata={"choices": (None, "heatmap", "regression"), "help": (
        "heatmap (several blocks -> heatmaps -> soft-argmax; precise) or regression (pooled features -> MLP; "
        "cheaper, coarser). Default: the config's (heatmap).")})
    landmark_decoder_hidden_size: int | None = field(default=None, metadata={"help": (
        "Channels of the landmark decoder. Default: 256, or the backbone width when it is narrower (a 256-channel "
        "3x3 convolution would have 3x the micro backbone's parameters and dominate its CPU time); 64 with --lora, "
        "since the new decoder trains in full and would otherwise outweigh the adapters (1.0M of a ViT-S/16's "
        "22M parameters at 256 channels, 0.14M at 64).")})
    image_size: int | None = field(default=None, metadata={"help": (
        "Input side in pixels (multiple of the patch size). Default: the backbone's pre-training size, which its "
        "position embeddings were learnt at (other sizes are interpolated).")})
    augment: bool = field(default=True, metadata={"help": (
        "Training-time augmentation: a random similarity (rotation, zoom, shift) moving image and landmarks together; "
        "plus horizontal flips for the classifiers. With few labels it is the main guard against memorising them.")})
    flip_landmarks: bool = field(default=False, metadata={"help": (
        "Also flip landmark faces, with iBUG's 68-point permutation so left and right points swap. Only correct for "
        "the 68-point layout.")})
    nme_normalization: str | None = field(default=None, metadata={
        "choices": (None, "inter_ocular", "inter_pupil", "box", "box_diagonal"), "help": (
            "NME normaliser: inter_ocular (outer eye corners; 300W, WFLW; the default for 68 and 98 points), "
            "inter_pupil, box (sqrt of the landmark box area) or box_diagonal (AFLW-19; default for other counts).")})
    failure_threshold: float = field(default=0.10, metadata={"help": (
        "NME above which a face counts as a failure, also the end of the CED curve for the AUC (0.10 usual; 0.07 "
        "for AFLW-19).")})
    num_plot_faces: int = field(default=8, metadata={"help": (
        "Test faces drawn with their predicted landmarks (0: no landmarks.png).")})
    hub_base_model: str | None = field(default=None, metadata={"help": (
        "Hub id of the backbone for the card's base_model and the adapter's base_model_name_or_path (default: "
        "--model when it is a Hub id; a local folder is recorded as its path).")})
    license: str = field(default="apache-2.0", metadata={"help": "License written in the model card."})


# Defaults that fit the demo scale (micro ViT, 48-64 px face crops) on a CPU, applied unless the flag is given.
# 400 steps of 32 images: 100 epochs over a 5% few-shot set (98 crops, 4 batches), ~6.5 over the full 1,959; 20-40 s
# per run on one busy CPU core. On the synthetic 5% split, 1e-3 / 300 steps left the landmark head near the mean shape
# (NME 0.14 to 0.20); 3e-3 and more steps brought it to 0.11-0.12. The head takes this rate, the backbone a fraction
# of it. The classifiers peak earlier (a validation split picks 50-150 steps; README), the landmark head at 350-400.
TRAINING_DEFAULTS = {
    "--output_dir": "outputs/finetune", "--max_steps": "400", "--per_device_train_batch_size": "32",
    "--per_device_eval_batch_size": "128", "--learning_rate": "3e-3", "--weight_decay": "0.05",
    "--warmup_steps": "0.1", "--lr_scheduler_type": "cosine", "--logging_steps": "50", "--save_strategy": "no",
    "--eval_strategy": "no", "--report_to": "none", "--dataloader_num_workers": "0",
}


def with_training_defaults(argv: list[str]) -> list[str]:
    given = {flag_name(arg) for arg in argv if arg.startswith("--")}
    extra = []
    defaults = dict(TRAINING_DEFAULTS)
    if not torch.cuda.is_available():
        defaults["--dataloader_pin_memory"] = "False"  # nothing to pin to without a GPU (and torch warns)
    if flag_is_on(argv, "--load_best_model_at_end"):
        defaults["--save_strategy"] = "best"  # a checkpoint whenever the validation metric improves, and only then
    for flag, value in defaults.items():
        if flag not in given and not (flag == "--max_steps" and "--num_train_epochs" in given):
            extra += [flag, value]
    return argv + extra


def build_parser() -> HfArgumentParser:
    """The parser, with TRAINING_DEFAULTS shown by --help where TrainingArguments' own defaults would be."""
    parser = HfArgumentParser((FinetuneArguments, TrainingArguments))
    for action in parser._actions:
        flag = action.option_strings[0] if action.option_strings else None
        if flag == "--max_steps":
            action.help = (f"{action.help or ''} finetune.py: {TRAINING_DEFAULTS[flag]} unless --num_train_epochs "
                           "is given.")
        elif flag == "--metric_for_best_model":
            action.help = (f"{action.help or ''} finetune.py: loss, or a metric of the task (accuracy, macro_f1, "
                           "mean_accuracy, nme, failure_rate, auc); --greater_is_better follows the metric unless "
                           "given.")
        elif flag in TRAINING_DEFAULTS:
            action.default = TRAINING_DEFAULTS[flag]  # what with_training_defaults passes when the flag is absent
    return parser


def parse(argv: list[str]) -> tuple[FinetuneArguments, TrainingArguments]:
    parser = build_parser()
    try:
        args, training_args = parser.parse_args_into_dataclasses(args=with_training_defaults(argv))
    except ValueError as error:  # TrainingArguments' own checks: a message, not a traceback
        raise SystemExit(f"finetune.py: {error}") from None
    if args.lora and args.mode == "linear_probe":
        raise SystemExit("--lora and --mode linear_probe exclude each other: LoRA already freezes the backbone's "
                         "weights and trains low-rank updates plus the head.")
    if args.random_init and args.compare_random_init:
        raise SystemExit("--random_init already trains from random weights; --compare_random_init adds that run "
                         "next to the pre-trained one. Pass one of them.")
    if args.task == "all" and training_args.push_to_hub:
        raise SystemExit("--push_to_hub pushes one head: pick one --task.")
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise SystemExit("--push_to_hub needs --hub_model_id ORG/NAME.")
    if not args.seeds:
        raise SystemExit("--seeds needs at least one seed.")
    if len(set(args.seeds)) != len(args.seeds):  # a repeated seed repeats a run and fakes the spread over seeds
        raise SystemExit(f"--seeds repeats a seed ({args.seeds}); pass distinct seeds.")
    for flag, count in (("--num_train", args.num_train), ("--num_test", args.num_test)):
        if count is not None and count < 1:
            raise SystemExit(f"{flag} must be at least 1 (leave it out for all the images), got {count}.")
    if not 0.0 < args.test_fraction < 1.0:
        raise SystemExit(f"--test_fraction is the held-out fraction of the labels, in (0, 1); got "
                         f"{args.test_fraction}.")
    if args.num_plot_faces < 0:
        raise SystemExit(f"--num_plot_faces must be >= 0 (0: no landmarks.png), got {args.num_plot_faces}.")
    if not (np.isfinite(args.failure_threshold) and args.failure_threshold > 0):
        raise SystemExit(f"--failure_threshold is an NME (a fraction, e.g. 0.10) and must be > 0, got "
                         f"{args.failure_threshold}.")
    if args.image_size is not None and args.image_size < 1:
        raise SystemExit(f"--image_size must be a positive number of pixels, got {args.image_size}.")
    # the optimizer and LoRA would refuse these only once the first run builds them, with a traceback
    if not 0.0 < args.layer_decay <= 1.0:
        raise SystemExit(f"--layer_decay must be in (0, 1] (1 = no decay), got {args.layer_decay}.")
    if not (np.isfinite(args.backbone_lr_scale) and args.backbone_lr_scale >= 0):
        raise SystemExit(f"--backbone_lr_scale must be >= 0 (0 freezes the backbone's step), got "
                         f"{args.backbone_lr_scale}.")
    if args.lora:
        if args.lora_r < 1:
            raise SystemExit(f"--lora_r (the LoRA rank) must be >= 1, got {args.lora_r}.")
        if not 0.0 <= args.lora_dropout < 1.0:
            raise SystemExit(f"--lora_dropout must be in [0, 1), got {args.lora_dropout}.")
        if not args.lora_alpha > 0:  # the updates are scaled by alpha / r: 0 would train nothing
            raise SystemExit(f"--lora_alpha must be > 0, got {args.lora_alpha}.")
        if not args.lora_target_modules:
            raise SystemExit("--lora_target_modules is empty: name the backbone layers to adapt (qkv, o_proj, ...).")
    if args.few_shot is not None and not 0.0 < args.few_shot <= 1.0:
        raise SystemExit(f"--few_shot is the fraction of the training labels to keep, in (0, 1]; got {args.few_shot}.")
    if not 0.0 <= args.validation_fraction < 1.0:
        raise SystemExit(f"--validation_fraction must be in [0, 1), got {args.validation_fraction}.")
    evaluates = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"
    if args.validation_fraction and not evaluates:
        raise SystemExit("--validation_fraction needs --eval_strategy steps (and --eval_steps N) to score the "
                         "validation split during training.")
    if training_args.load_best_model_at_end and not args.validation_fraction:
        raise SystemExit("--load_best_model_at_end without --validation_fraction would pick the checkpoint by its "
                         "test-set score; hold out a validation split, e.g. --validation_fraction 0.2.")
    if training_args.metric_for_best_model:
        from pros_hf.finetuning.training import HIGHER_IS_BETTER, TASK_METRICS

        metric = training_args.metric_for_best_model
        name = metric[len("eval_"):] if metric.startswith("eval_") else metric
        tasks = [t for t in TASK_METRICS if args.task in ("all", t)]
        known = ["loss"] + [m for m in TASK_METRICS[tasks[0]] if all(m in TASK_METRICS[t] for t in tasks)]
        if name not in known:  # the Trainer would only fail at the first evaluation, in the middle of the run
            raise SystemExit(f"--metric_for_best_model {metric!r} is not a validation metric of --task {args.task}; "
                             f"choose one of {known}.")
        # transformers takes every metric not ending in "loss" as higher-is-better: with nme or failure_rate
        # --load_best_model_at_end would keep the worst checkpoint
        if not any(flag_name(arg) == "--greater_is_better" for arg in argv):
            training_args.greater_is_better = HIGHER_IS_BETTER.get(name, False)  # loss: lower is better
    return args, training_args


# ----------------------------------------------------------------------------------------------------------------------


def load_backbone_and_processor(args: FinetuneArguments):
    """(backbone for build_head: a ProSModel, or a ProSConfig for the default random micro), processor, name."""
    from pros_hf import ProSConfig, ProSImageProcessor, load_backbone

    if args.model is None:
        try:
            config = ProSConfig.from_preset("micro", image_size=args.image_size or 64)
        except ValueError as error:  # an --image_size that is not a whole number of the micro model's patches
            raise SystemExit(f"--image_size: {error}") from None
        backbone, name = config, "random-init micro ViT"
    else:
        try:
            backbone, name = load_backbone(args.model), args.model
        except (OSError, ValueError) as error:  # a missing folder, an unreachable Hub id, not a ProS model
            raise SystemExit(f"--model: {error}") from None
        config = backbone.config
    patch = config.patch_size
    if args.image_size and args.image_size % patch:  # the patch embedding would fail in the first training step
        raise SystemExit(f"--image_size {args.image_size} is not a multiple of the backbone's patch size {patch}; "
                         f"e.g. {max(1, round(args.image_size / patch)) * patch}.")
    if args.lora:  # before any data is read: a typo would otherwise fail (or be dropped) when the first run builds LoRA
        from pros_hf import ProSModel
        from pros_hf.finetuning.lora import check_target_modules

        try:
            check_target_modules(backbone if isinstance(backbone, ProSModel) else ProSModel(config),
                                 args.lora_target_modules, prefix="")
        except ValueError as error:
            raise SystemExit(f"--lora_target_modules: {error}") from None
    processor = None
    if args.model is not None:
        try:
            processor = ProSImageProcessor.from_pretrained(args.model)
        except (OSError, ValueError):
            processor = None  # no preprocessor_config.json: derive it from the config
    if processor is None:
        processor = ProSImageProcessor.from_model_config(config)
    if args.image_size:
        processor = ProSImageProcessor(**{**processor.to_dict(), "size": {"shortest_edge": args.image_size},
                                          "crop_size": {"height": args.image_size, "width": args.image_size}})
    processor_dict = {k: v for k, v in processor.to_dict().items() if k not in ("image_processor_type", "auto_map")}
    processor = ProSImageProcessor(**processor_dict)
    return backbone, processor, name


def decoder_width(args: FinetuneArguments, backbone) -> int | None:
    if args.landmark_decoder_hidden_size:
        return args.landmark_decoder_hidden_size
    hidden = backbone.hidden_size if hasattr(backbone, "hidden_size") else backbone.config.hidden_size
    return min(64 if args.lora else 256, hidden)


def image_sizes(images) -> list[tuple[int, int]]:
    """(height, width) of each image (PIL, numpy or torch), as the processor reads it."""
    from pros_hf.pipelines import _image_size

    return [tuple(int(v) for v in _image_size(image)) for image in images]


def to_image_points(normalised: np.ndarray, sizes, processor) -> list[np.ndarray]:
    """Normalised predictions on the processed input -> pixel points of each original image of (height, width)
    `sizes` (the pipeline's maths)."""
    from pros_hf.pipelines import processed_to_image_coordinates

    return [processed_to_image_coordinates(prediction, size, processor) for prediction, size in zip(normalised, sizes)]


def run_once(args, training_args, data, backbone, processor, train_indices, init: str, seed: int, scratch: str,
             test_sizes=None, validation_indices=None):
    """Train one head (one seed, one initialisation) and score it on the test set (`test_sizes`: (height, width) of
    the test images, for landmarks). `validation_indices`: the held-out part of the labelled training examples that
    evaluation during training scores (and `load_best_model_at_end` selects on); without them it scores the test
    set."""
    from pros_hf.finetuning import FaceTaskCollator, apply_lora, count_trainable, default_augmentation, freeze_backbone
    from pros_hf.finetuning.data import processed_size
    from pros_hf.finetuning.training import (
        FinetuneTrainer, build_head, head_config_overrides, ignore_keys_for, make_compute_metrics, scalar_metrics,
        task_metrics,
    )

    labels = data.labels
    set_seed(seed)
    overrides = head_config_overrides(
        labels, classifier_pooling=args.classifier_pooling, landmark_decoder=args.landmark_decoder,
        landmark_decoder_hidden_size=decoder_width(args, backbone) if labels.task == "landmarks" else None,
        drop_path_rate=0.0 if args.mode == "linear_probe" else None)  # a frozen backbone runs as in inference
    model = build_head(labels.task, backbone, overrides, random_init=(init == "random_init"), seed=seed)
    if args.lora:
        model = apply_lora(model, r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                           target_modules=args.lora_target_modules)
    elif args.mode == "linear_probe":
        freeze_backbone(model)
    counts = count_trainable(model)

    input_size = processed_size(processor)
    augmentation = default_augmentation(labels.task, input_size, processor, labels.num_landmarks,
                                        args.flip_landmarks) if args.augment else None
    # checkpoints (in the scratch folder) only where load_best_model_at_end needs them
    saving = dict(save_total_limit=1) if training_args.load_best_model_at_end else dict(save_strategy="no")
    run_args = dataclasses.replace(
        training_args, output_dir=os.path.join(scratch, f"{init}-seed{seed}"), seed=seed, data_seed=seed,
        label_names=[labels.label_key], remove_unused_columns=False, push_to_hub=False, **saving,
    )
    train_set = data.train.select(train_indices)
    if validation_indices is not None:
        eval_set = data.train.select(validation_indices)
    else:
        eval_set = data.test if run_args.eval_strategy != "no" else None
    trainer = FinetuneTrainer(
        model=model, args=run_args, train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=FaceTaskCollator(labels, processor, augmentation),
        eval_data_collator=FaceTaskCollator(labels, processor),
        compute_metrics=make_compute_metrics(labels, input_size, args.nme_normalization, args.failure_threshold),
        backbone_lr_scale=args.backbone_lr_scale, layer_decay=args.layer_decay,
    )
    start = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - start
    prediction = trainer.predict(data.test, ignore_keys=ignore_keys_for(labels.task))
    predictions = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    if labels.task == "landmarks":
        predicted_points = to_image_points(np.asarray(predictions), test_sizes, processor)
        references = [np.asarray(points, dtype=np.float64) for points in data.test["landmarks"]]
        full = task_metrics(labels, predicted_points, references, args.nme_normalization, args.failure_threshold)
        full["_points"] = predicted_points
    elif labels.task == "attributes":
        from pros_hf.finetuning.data import multi_hot

        full = task_metrics(labels, predictions, multi_hot(data.test["attributes"], labels.num_labels))
    else:
        full = task_metrics(labels, predictions, np.asarray(data.test["expression"]))
    scalars = scalar_metrics(labels, full)
    scalars.update(train_seconds=round(train_seconds, 2), train_loss=float(train_output.training_loss),
                   num_train_labelled=len(train_set))
    if validation_indices is not None:
        scalars["num_validation"] = len(validation_indices)
        if run_args.load_best_model_at_end and trainer.state.best_global_step:
            scalars["best_step"] = int(trainer.state.best_global_step)
    logger.info("%s %s seed %d: %s", labels.task, init, seed, scalars)
    model.eval()
    return {"model": model, "scalars": scalars, "full": full, "counts": counts}


def split_validation(all_labels, indices, fraction: float, seed: int):
    """`indices` (the labelled examples of one seed) split into (training, validation), the validation part a
    seeded `fraction` of them, stratified like the few-shot draw. Both parts must be non-empty."""
    from pros_hf.finetuning import few_shot_indices

    held_out = few_shot_indices(all_labels[indices], fraction, seed)
    validation = indices[held_out]
    training = np.setdiff1d(indices, validation)
    if not training.size:
        raise SystemExit(f"--validation_fraction {fraction} leaves none of the {len(indices)} labelled examples for "
                         "training; lower it or label more (--few_shot).")
    return training, validation


def make_plots(args, data, output_dir: Path, runs: dict[str, dict[int, dict]]) -> list[str]:
    """The figures of the first seed (confusion matrix, landmarks, CED) or of all seeds (attribute accuracy)."""
    from pros_hf.evaluation_plots import (
        plot_attribute_accuracy, plot_ced_curves, plot_confusion_matrix, plot_landmarks,
    )
    from pros_hf.finetuning.reporting import INIT_NAMES as names

    labels, written = data.labels, []
    seed0 = args.seeds[0]
    first = {init: seeds[seed0] for init, seeds in runs.items()}
    if labels.task == "expression":
        for init, run in first.items():
            suffix = "" if init == next(iter(runs)) else f"_{init}"
            written.append(plot_confusion_matrix(
                run["full"]["confusion_matrix"], list(labels.label_names), output_dir / f"confusion_matrix{suffix}.png",
                title=f"expression, {names[init]} (seed {seed0}): accuracy {run['full']['accuracy']:.1%}"))
    elif labels.task == "attributes":
        per_model = {}
        for init, seeds in runs.items():
            attrs = list(labels.label_names)
            per_model[f"{names[init]} (mean of {len(seeds)} seeds)"] = {
                name: float(np.mean([seeds[s]["full"]["per_attribute_accuracy"][name] for s in seeds]))
                for name in attrs}
        written.append(plot_attribute_accuracy(per_model, output_dir / "attribute_accuracy.png",
                                               title="per-attribute accuracy on the test set"))
    else:
        main = next(iter(runs))
        run = first[main]
        count = min(args.num_plot_faces, len(data.test))
        if count:  # --num_plot_faces 0: no faces to draw (plot_landmarks refuses an empty grid)
            written.append(plot_landmarks(
                data.test.select(range(count))["image"], run["full"]["_points"][:count],
                [np.asarray(p) for p in data.test.select(range(count))["landmarks"]],
                path=output_dir / "landmarks.png",
                title=f"{names[main]} (seed {seed0}): red predicted, green reference"))
        written.append(plot_ced_curves(
            {f"{names[init]} (seed {seed0})": r["full"]["per_image_nme"] for init, r in first.items()},
            output_dir / "ced.png", threshold=args.failure_threshold))
    return written


def load_data(args: FinetuneArguments, task: str):
    """The task's train and test sets, checked (labels, images, flags that depend on them); any problem ends the run
    with a one-line message before training."""
    from pros_hf.finetuning import load_task_data

    try:
        data = load_task_data(
            task, dataset=args.dataset, image_dir=args.image_dir, labels_file=args.labels_file,
            test_labels_file=args.test_labels_file, test_dataset=args.test_dataset, hub_dataset=args.hub_dataset,
            hub_config=args.hub_config,
            train_split=args.train_split, test_split=args.test_split, test_fraction=args.test_fraction,
            image_column=args.image_column, label_column=args.label_column, label_names=args.class_names,
            attribute_columns=args.attribute_columns, num_landmarks=args.num_landmarks, num_train=args.num_train,
            num_test=args.num_test, seed=args.seeds[0], cache_dir=args.data_cache_dir,
        )
    # bad labels, rows, columns, images or folders (the message names them); RuntimeError: a Hub dataset offline
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise SystemExit(f"{task} data: {error}") from None
    if task == "landmarks" and args.flip_landmarks and args.augment and data.labels.num_landmarks != 68:
        raise SystemExit(f"--flip_landmarks swaps left and right points with iBUG's 68-point permutation; this data "
                         f"has {data.labels.num_landmarks} points per face. Leave --flip_landmarks out.")
    return data


# Every file run_task writes into --output_dir that depends on the task, the kind of model saved or the runs (the
# rest, config.json, README.md, results.json, the processor and shared code, is rewritten every time). The folder is
# what --push_to_hub uploads: a rerun into it removes the ones it does not write again, and never any other file.
FIGURE_FILES = ("confusion_matrix.png", "confusion_matrix_random_init.png", "attribute_accuracy.png",
                "landmarks.png", "ced.png")
HEAD_CODE_FILES = {"classifier": "modeling_pros_classification.py", "landmarks": "modeling_pros_landmarks.py"}
WEIGHT_FILES = {"head": ("model.safetensors",), "adapter": ("adapter_model.safetensors", "adapter_config.json")}
SUMMARY_FILES = ("summary.json", "summary.txt")  # --task all's, in the folder above the tasks'


def remove_stale_files(output_dir: Path, task: str, lora: bool, figures: list[str]) -> None:
    """Remove what an earlier run of another task / kind / set of runs left in `output_dir` (see FIGURE_FILES)."""
    stale = [name for name in FIGURE_FILES if name not in {os.path.basename(f) for f in figures}]
    stale.append(HEAD_CODE_FILES["classifier" if task == "landmarks" else "landmarks"])
    stale += WEIGHT_FILES["head" if lora else "adapter"]  # a model.safetensors next to an adapter loads as the base
    stale += SUMMARY_FILES
    for name in stale:
        if (output_dir / name).is_file():
            logger.warning("Removing %s left in %s by an earlier run", name, output_dir)
            (output_dir / name).unlink()


def run_task(args: FinetuneArguments, training_args: TrainingArguments, task: str, output_dir: Path,
             loaded=None, data=None) -> dict:
    """One task: every (seed, initialisation) run, figures, the saved head and results.json. `loaded`: what
    `load_backbone_and_processor(args)` returned (loaded once for --task all); `data`: what `load_data(args, task)`
    returned (main loads every task's before the first run)."""
    from pros_hf.finetuning import few_shot_indices, label_array
    from pros_hf.finetuning.export import push_head_folder, save_adapter_folder, save_head_folder, write_card
    from pros_hf.finetuning.lora import merge_adapter
    from pros_hf.finetuning.reporting import labels_only_scores, summarise_seeds
    from pros_hf.finetuning.training import TASK_METRICS
    from pros_hf.hub import _is_hub_id, head_card

    backbone, processor, backbone_name = loaded or load_backbone_and_processor(args)
    data = data or load_data(args, task)
    output_dir.mkdir(parents=True, exist_ok=True)
    logger.info("%s: %d training / %d test images from %s; backbone %s", task, len(data.train), len(data.test),
                data.dataset_name, backbone_name)
    inits = ["random_init"] if (args.random_init or args.model is None) else ["pretrained"]
    if args.compare_random_init and inits == ["pretrained"]:
        inits.append("random_init")

    all_labels = label_array(data.train, data.labels)
    train_sizes = test_sizes = None
    if task == "landmarks":  # decoded once per task, not per run
        train_sizes, test_sizes = image_sizes(data.train["image"]), image_sizes(data.test["image"])
    runs: dict[str, dict[int, dict]] = {init: {} for init in inits}
    priors: dict[int, dict] = {}
    counts = None
    with tempfile.TemporaryDirectory(prefix="pros_finetune_") as scratch:
        for seed in args.seeds:
            indices = (few_shot_indices(all_labels, args.few_shot, seed) if args.few_shot
                       else np.arange(len(data.train)))
            validation = None
            if args.validation_fraction:
                indices, validation = split_validation(all_labels, indices, args.validation_fraction, seed)
            priors[seed] = labels_only_scores(data, indices, args.nme_normalization, args.failure_threshold,
                                              train_sizes, test_sizes)
            for init in inits:
                result = run_once(args, training_args, data, backbone, processor, indices, init, seed, scratch,
                                  test_sizes, validation)
                counts = counts or result["counts"]
                if seed != args.seeds[0]:
                    result["model"] = None  # only the first seed's head is saved: free the others
                runs[init][seed] = result

    summary = {init: summarise_seeds({seed: r["scalars"] for seed, r in seeds.items()})
               for init, seeds in runs.items()}
    prior = summarise_seeds(priors)
    main_init = inits[0]
    model = runs[main_init][args.seeds[0]]["model"]
    figures = make_plots(args, data, output_dir, runs)

    # the head (or adapter) of the first seed, with its processor and card: the folder --push_to_hub uploads
    base_model = args.hub_base_model or (args.model if _is_hub_id(args.model) else (
        str(Path(args.model).resolve()) if args.model else None))
    length = (f"{training_args.max_steps} steps" if training_args.max_steps > 0 else
              f"{training_args.num_train_epochs:g} epochs")
    scheduler = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    schedule = (f"{length}, batch {training_args.per_device_train_batch_size}, AdamW lr "
                f"{training_args.learning_rate:g} ({scheduler}), weight decay "
                f"{training_args.weight_decay:g}, backbone lr x{args.backbone_lr_scale:g}, layer decay "
                f"{args.layer_decay:g}, augmentation {'on' if args.augment else 'off'}")
    if args.validation_fraction:
        selection = (f"the checkpoint with the best validation {training_args.metric_for_best_model or 'loss'}"
                     if training_args.load_best_model_at_end else "the last checkpoint")
        schedule += (f"; {args.validation_fraction:g} of the labelled examples held out for validation, "
                     f"{selection} kept")
    mode = ("LoRA" if args.lora else {"full": "full fine-tuning", "linear_probe": "linear probe (backbone frozen)"}[
        args.mode])
    if args.lora:
        mode += f" (r={args.lora_r}, alpha={args.lora_alpha:g}, dropout {args.lora_dropout:g}, on " \
                f"{', '.join(args.lora_target_modules)}; head trained in full)"
    card_args = dict(
        task=task, results={**summary, "prior": prior}, repo_id=training_args.hub_model_id, base_model=base_model,
        dataset=data.dataset_name, dataset_id=data.dataset_id, num_test=len(data.test),
        num_train=(f"{runs[main_init][args.seeds[0]]['scalars']['num_train_labelled']} of {len(data.train)} per seed"
                   if args.few_shot else len(data.train)),
        few_shot=args.few_shot, seeds=list(args.seeds), mode_summary=mode, schedule_summary=schedule,
        license=args.license,
    )
    merged_dir = None
    remove_stale_files(output_dir, task, args.lora, figures)
    if args.lora:
        save_adapter_folder(model, processor, output_dir, base_model)
        merged = merge_adapter(model)
        write_card(head_card(merged, trainable_parameters=counts.trainable, lora_summary=(
            f"rank {args.lora_r} on {', '.join(args.lora_target_modules)}"), **card_args), output_dir)
        merged_dir = Path(f"{str(output_dir).rstrip('/')}-merged")
        if merged_dir.is_dir():
            remove_stale_files(merged_dir, task, lora=False, figures=[])  # e.g. another task's head code
        save_head_folder(merged, processor, merged_dir)
        write_card(head_card(merged, trainable_parameters=counts.trainable, **{**card_args, "repo_id": None}),
                   merged_dir)
    else:
        save_head_folder(model, processor, output_dir)
        write_card(head_card(model, trainable_parameters=counts.trainable, **card_args), output_dir)

    results = {
        "task": task, "model": backbone_name, "dataset": data.dataset_name, "num_train": len(data.train),
        "num_test": len(data.test), "few_shot": args.few_shot, "seeds": list(args.seeds), "mode": args.mode,
        "lora": ({"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout,
                  "target_modules": list(args.lora_target_modules)} if args.lora else None),
        "labels": list(data.labels.label_names or ()) or None, "num_landmarks": data.labels.num_landmarks,
        "metrics": list(TASK_METRICS[task]), "parameters": counts.as_dict(), "runs": summary,
        "prior": prior,  # the labels alone: majority class / attribute values, mean face shape
        "details": {init: {str(seed): {k: v for k, v in r["full"].items() if not k.startswith("_")}
                           for seed, r in seeds.items()} for init, seeds in runs.items()},
        "figures": [os.path.basename(f) for f in figures], "head_folder": str(output_dir),
        "merged_folder": str(merged_dir) if merged_dir else None,
    }
    with open(output_dir / "results.json", "w") as handle:
        json.dump(results, handle, indent=2, default=float)
    if training_args.push_to_hub:
        try:
            url = push_head_folder(output_dir, training_args.hub_model_id, token=training_args.hub_token,
                                   private=training_args.hub_private_repo, what="adapter" if args.lora else "head")
        except RuntimeError as error:  # offline: the folder is complete, the message says how to push it later
            raise SystemExit(str(error)) from None
        print(f"Pushed {output_dir} to {url}")
    return results


def main(argv: list[str] | None = None) -> dict:
    args, training_args = parse(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import pros_hf  # noqa: F401  (registers the Auto classes before any model is built)

    tasks = ["expression", "attributes", "landmarks"] if args.task == "all" else [args.task]
    output_root = Path(training_args.output_dir)
    start = time.perf_counter()
    all_results = {}
    if training_args.push_to_hub:  # the whole folder is uploaded: another --task all run's task folders included
        nested = [t for t in TASK_CHOICES[:3] if (output_root / t / "results.json").is_file()]
        if nested:
            raise SystemExit(f"--push_to_hub uploads all of --output_dir {output_root}, which holds the task folders "
                             f"{nested} of an earlier --task all run; pick an empty --output_dir.")
    loaded = load_backbone_and_processor(args)  # once for all tasks (build_head copies it for each run)
    # every task's data read and checked before the first run: a problem with the last task's labels must not
    # surface after the others have trained
    data = {task: load_data(args, task) for task in tasks}
    for task in tasks:
        folder = output_root / task if args.task == "all" else output_root
        all_results[task] = run_task(args, training_args, task, folder, loaded, data[task])
    from pros_hf.finetuning.reporting import format_comparison_table

    table = format_comparison_table(all_results)
    print("\n" + table)
    if args.task == "all":
        with open(output_root / "summary.json", "w") as handle:
            json.dump({task: r["runs"] for task, r in all_results.items()}, handle, indent=2)
        (output_root / "summary.txt").write_text(table + "\n")
    print(f"\nFinished in {time.perf_counter() - start:.0f} s; outputs in {output_root}")
    return all_results


if __name__ == "__main__":
    main()
