"""`FinetuneArguments`: what a fine-tuning run does, one field per command-line flag, each explained; the training
defaults of the demo scale; and the checks of the flags against each other, so that a bad combination stops before
the first run with a message naming the flags.
"""

import math
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments

from ..cli import flag_is_on, flag_name
from ..validation import check_finite_fields, check_training_numbers
from .data import TASKS
from .training import HIGHER_IS_BETTER, TASK_METRICS


class FinetuneError(ValueError):
    """What a fine-tuning run cannot use (a flag, the model, the data, the output folder) or cannot do (a push
    offline), with a message that names it: known before training where it can be."""


TASK_CHOICES = (*TASKS, "all")
ALL_TASKS = ("expression", "attributes", "landmarks")  # the order --task all runs and prints them


@dataclass
class FinetuneArguments:
    task: str = field(
        default="expression",
        metadata={
            "choices": TASK_CHOICES,
            "help": "expression (7-way single-label, cross-entropy), attributes (multi-label, BCE; mean accuracy over "
            "attributes) or landmarks (heatmaps + soft-argmax, NME). 'all' runs the three in turn into "
            "<output_dir>/<task> and prints one table: the few-shot comparison in one command.",
        },
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": (
                "The backbone: a ProSModel folder or Hub id (what pre-training exports), or a pre-training checkpoint folder "
                "(its EMA teacher is used, as ProS fine-tunes the teacher). Default: a random-init 'micro' ViT, the floor."
            )
        },
    )
    random_init: bool = field(
        default=False,
        metadata={"help": ("Train the --model architecture from random weights instead of its pre-trained ones.")},
    )
    compare_random_init: bool = field(
        default=False,
        metadata={
            "help": (
                "Also run every seed with the same architecture at random initialisation, same recipe and same labelled "
                "examples: the gap is what pre-training contributes (results.json 'random_init', the printed table)."
            )
        },
    )

    dataset: str | None = field(
        default=None,
        metadata={
            "help": (
                "A dataset saved with save_to_disk (a Dataset, or a DatasetDict with train and test/validation splits) with "
                "an image column and the task's column: expression (ClassLabel or int), attributes (list of ClassLabel ids "
                "present, or a 0/1 vector with --class_names), landmarks ((N, 2) or 2N pixel coordinates)."
            )
        },
    )
    test_dataset: str | None = field(
        default=None,
        metadata={
            "help": (
                "A saved dataset to test on, next to --dataset (e.g. examples/demo.py's faces_eval next to faces_train)."
            )
        },
    )
    image_dir: str | None = field(
        default=None,
        metadata={
            "help": ("A folder of images, with --labels_file naming them (file_name column, relative to this folder).")
        },
    )
    labels_file: str | None = field(
        default=None,
        metadata={
            "help": (
                "CSV or JSON/JSONL labels for --image_dir: file_name, then expression (class id or name), or one 0/1 column "
                "per attribute, or landmarks (2N pixel numbers, or N [x, y] pairs in JSON). Bad rows are reported by line."
            )
        },
    )
    test_labels_file: str | None = field(
        default=None,
        metadata={
            "help": (
                "Labels of a separate test set in --image_dir. Without it, --test_fraction of --labels_file is held out."
            )
        },
    )
    hub_dataset: str | None = field(
        default=None,
        metadata={
            "help": (
                "A Hub dataset id (datasets.load_dataset), with the columns described for --dataset. Needs the network "
                "once; offline it must be in the cache."
            )
        },
    )
    hub_config: str | None = field(default=None, metadata={"help": "Configuration name of --hub_dataset."})
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": (
                "How the model card names the data (e.g. its Hub id, org/my-faces). Default: --hub_dataset, else the data "
                "folder's name; a local path never goes into a card, which is published with the head."
            )
        },
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on when the dataset has splits."})
    test_split: str | None = field(
        default=None,
        metadata={"help": ("Split to test on (default: test, validation, valid or val, whichever exists).")},
    )
    test_fraction: float = field(
        default=0.2,
        metadata={
            "help": (
                "Held-out fraction when the data has no test split (stratified for expressions, seeded by the first seed)."
            )
        },
    )
    image_column: str = field(default="image", metadata={"help": "Image column of --dataset / --hub_dataset."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (default: the task's name)."})
    class_names: list[str] | None = field(
        default=None,
        metadata={
            "help": (
                "Expression class names in id order (default: the 7 basic expressions neutral, happiness, sadness, surprise, "
                "fear, disgust, anger), or the attribute names of a 0/1 vector / of the label file's columns to use."
            )
        },
    )
    attribute_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": (
                "Separate 0/1 columns of a dataset that together are the attributes (CelebA on the Hub is laid out so)."
            )
        },
    )
    num_landmarks: int | None = field(
        default=None,
        metadata={"help": ("Points per face; every row must have this many (default: the count of the first row).")},
    )
    num_train: int | None = field(
        default=None,
        metadata={"help": ("Cap on training images (synthetic default: 2000 rendered, the demo's pre-training set).")},
    )
    num_test: int | None = field(
        default=None,
        metadata={
            "help": ("Cap on test images (synthetic default: 1000 rendered with another seed, the demo's k-NN set).")
        },
    )
    data_cache_dir: str | None = field(
        default=None,
        metadata={"help": ("Where rendered synthetic face crops are cached (default: under HF_DATASETS_CACHE).")},
    )

    few_shot: float | None = field(
        default=None,
        metadata={
            "help": (
                "Train on this fraction of the training labels (e.g. 0.05), drawn per seed: stratified by class for "
                "expressions (at least one per class), at least one positive and one negative per attribute, at random for "
                "landmarks. Few-shot is where a pre-trained backbone should matter most."
            )
        },
    )
    validation_fraction: float = field(
        default=0.0,
        metadata={
            "help": (
                "Hold out this fraction of the labelled training examples (after --few_shot; stratified like it, per seed) "
                "as a validation split, scored every --eval_steps with --eval_strategy steps. With --load_best_model_at_end "
                "the checkpoint with the best --metric_for_best_model on it (default: the loss) is kept: the number of steps "
                "is then chosen without looking at the test set, as VTAB-1k does with 200 of its 1,000 labels. Without it, "
                "--eval_strategy scores the test set, for monitoring only."
            )
        },
    )
    seeds: list[int] = field(
        default_factory=lambda: [0],
        metadata={
            "help": (
                "Repeat with these seeds (few-shot subset, head init, augmentation, data order); results are reported per "
                "seed and as mean and std. Few-shot numbers vary a lot: use at least 3 seeds to compare models."
            )
        },
    )

    mode: str = field(
        default="full",
        metadata={
            "choices": ("full", "linear_probe"),
            "help": (
                "full: train everything (backbone at a lower, layer-decayed learning rate). linear_probe: freeze the "
                "backbone and train the head alone; measures the frozen features, cheapest, robust with very few labels."
            ),
        },
    )
    lora: bool = field(
        default=False,
        metadata={
            "help": (
                "LoRA through PEFT: the backbone frozen, low-rank updates on its attention projections (--lora_target_"
                "modules) and the head trained in full (modules_to_save). Saves a small adapter instead of a whole model."
            )
        },
    )
    lora_r: int = field(
        default=2,
        metadata={
            "help": (
                "LoRA rank. Parameters grow linearly with it: at the micro demo size (width 64) r=2 is 1.4 percent of the "
                "model (r=8 would be 5.4); on a ViT-B/16, r=8 is 0.5 percent."
            )
        },
    )
    lora_alpha: float = field(
        default=4.0,
        metadata={
            "help": (
                "LoRA scale numerator: updates are scaled by alpha / r. Keep alpha = 2r when changing r so the effective "
                "step size stays comparable."
            )
        },
    )
    lora_dropout: float = field(
        default=0.0,
        metadata={
            "help": (
                "Dropout on the LoRA input. 0.05-0.1 helps on larger data; with a few dozen images it mostly adds noise."
            )
        },
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["qkv", "o_proj"],
        metadata={
            "help": (
                "Backbone Linear layers to adapt: qkv (fused query/key/value) and o_proj (attention output); fc1 / fc2 add the "
                "MLPs at 4x the cost."
            )
        },
    )

    backbone_lr_scale: float = field(
        default=0.3,
        metadata={
            "help": (
                "Backbone learning rate = this x --learning_rate (the head gets the full rate). A fresh head's large early "
                "gradients would otherwise wash out pre-trained features. 0.1 suits large pre-trained ViTs; the micro demo "
                "backbone needs to move more (0.1 left its landmark head behind 0.3 and 1.0)."
            )
        },
    )
    layer_decay: float = field(
        default=0.75,
        metadata={
            "help": (
                "Layer-wise lr decay (BEiT/MAE): block i of L gets decay^(L - i) of the backbone rate, the embeddings "
                "decay^(L+1). Early blocks hold generic features and move least. 1.0 disables it; 0.65-0.75 is usual."
            )
        },
    )
    classifier_pooling: str | None = field(
        default=None,
        metadata={
            "choices": (None, "cls", "cls_mean"),
            "help": (
                "What the classifier sees: cls (the token pre-training shaped) or cls_mean (CLS + mean patch token, "
                "better for local cues such as glasses or an open mouth). Default: the model config's (cls)."
            ),
        },
    )
    landmark_decoder: str | None = field(
        default=None,
        metadata={
            "choices": (None, "heatmap", "regression"),
            "help": (
                "heatmap (several blocks -> heatmaps -> soft-argmax; precise) or regression (pooled features -> MLP; "
                "cheaper, coarser). Default: the config's (heatmap)."
            ),
        },
    )
    landmark_decoder_hidden_size: int | None = field(
        default=None,
        metadata={
            "help": (
                "Channels of the landmark decoder. Default: 256, or the backbone width when it is narrower (a 256-channel "
                "3x3 convolution would have 3x the micro backbone's parameters and dominate its CPU time); 64 with --lora, "
                "since the new decoder trains in full and would otherwise outweigh the adapters (1.0M of a ViT-S/16's "
                "22M parameters at 256 channels, 0.14M at 64)."
            )
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": (
                "Input side in pixels (multiple of the patch size). Default: the backbone's pre-training size, which its "
                "position embeddings were learnt at (other sizes are interpolated)."
            )
        },
    )
    augment: bool = field(
        default=True,
        metadata={
            "help": (
                "Training-time augmentation: a random similarity (rotation, zoom, shift) moving image and landmarks together; "
                "plus horizontal flips for the classifiers. With few labels it is the main guard against memorising them."
            )
        },
    )
    flip_landmarks: bool = field(
        default=False,
        metadata={
            "help": (
                "Also flip landmark faces, with iBUG's 68-point permutation so left and right points swap. Only correct for "
                "the 68-point layout."
            )
        },
    )
    nme_normalization: str | None = field(
        default=None,
        metadata={
            "choices": (None, "inter_ocular", "inter_pupil", "box", "box_diagonal"),
            "help": (
                "NME normaliser: inter_ocular (outer eye corners; 300W, WFLW; the default for 68 and 98 points), "
                "inter_pupil, box (sqrt of the landmark box area) or box_diagonal (AFLW-19; default for other counts)."
            ),
        },
    )
    failure_threshold: float = field(
        default=0.10,
        metadata={
            "help": (
                "NME above which a face counts as a failure, also the end of the CED curve for the AUC (0.10 usual; 0.07 "
                "for AFLW-19)."
            )
        },
    )
    num_plot_faces: int = field(
        default=8, metadata={"help": ("Test faces drawn with their predicted landmarks (0: no landmarks.png).")}
    )
    hub_base_model: str | None = field(
        default=None,
        metadata={
            "help": (
                "Hub id of the backbone for the card's base_model and the adapter's base_model_name_or_path (default: "
                "--model when it is a Hub id; a local folder is recorded as its path)."
            )
        },
    )
    license: str = field(default="apache-2.0", metadata={"help": "License written in the model card."})

    def __post_init__(self):
        """The values the optimizer, LoRA or the data would refuse only once the first run builds them."""
        check_finite_fields(self)
        if self.lora and self.mode == "linear_probe":
            raise ValueError(
                "--lora and --mode linear_probe exclude each other: LoRA already freezes the backbone's "
                "weights and trains low-rank updates plus the head."
            )
        if self.random_init and self.compare_random_init:
            raise ValueError(
                "--random_init already trains from random weights; --compare_random_init adds that run "
                "next to the pre-trained one. Pass one of them."
            )
        if not self.seeds:
            raise ValueError("--seeds needs at least one seed.")
        if len(set(self.seeds)) != len(self.seeds):  # a repeated seed repeats a run and fakes the spread over seeds
            raise ValueError(f"--seeds repeats a seed ({self.seeds}); pass distinct seeds.")
        for flag, count in (("--num_train", self.num_train), ("--num_test", self.num_test)):
            if count is not None and count < 1:
                raise ValueError(f"{flag} must be at least 1 (leave it out for all the images), got {count}.")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(
                f"--test_fraction is the held-out fraction of the labels, in (0, 1); got {self.test_fraction}."
            )
        if self.num_plot_faces < 0:
            raise ValueError(f"--num_plot_faces must be >= 0 (0: no landmarks.png), got {self.num_plot_faces}.")
        if not (math.isfinite(self.failure_threshold) and self.failure_threshold > 0):
            raise ValueError(
                f"--failure_threshold is an NME (a fraction, e.g. 0.10) and must be > 0, got {self.failure_threshold}."
            )
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"--image_size must be a positive number of pixels, got {self.image_size}.")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"--layer_decay must be in (0, 1] (1 = no decay), got {self.layer_decay}.")
        if not (math.isfinite(self.backbone_lr_scale) and self.backbone_lr_scale >= 0):
            raise ValueError(
                f"--backbone_lr_scale must be >= 0 (0 freezes the backbone's step), got {self.backbone_lr_scale}."
            )
        if self.lora:
            self._check_lora()
        if self.few_shot is not None and not 0.0 < self.few_shot <= 1.0:
            raise ValueError(
                f"--few_shot is the fraction of the training labels to keep, in (0, 1]; got {self.few_shot}."
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"--validation_fraction must be in [0, 1), got {self.validation_fraction}.")

    def _check_lora(self) -> None:
        if self.lora_r < 1:
            raise ValueError(f"--lora_r (the LoRA rank) must be >= 1, got {self.lora_r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if not self.lora_alpha > 0:  # the updates are scaled by alpha / r: 0 would train nothing
            raise ValueError(f"--lora_alpha must be > 0, got {self.lora_alpha}.")
        if not self.lora_target_modules:
            raise ValueError("--lora_target_modules is empty: name the backbone layers to adapt (qkv, o_proj, ...).")

    @property
    def tasks(self) -> list[str]:
        """The tasks to run, in order."""
        return list(ALL_TASKS) if self.task == "all" else [self.task]


# Defaults that fit the demo scale (micro ViT, 48-64 px face crops) on a CPU, applied unless the flag is given.
# 400 steps of 32 images: 100 epochs over a 5% few-shot set (98 crops, 4 batches), ~6.5 over the full 1,959; 20-40 s
# per run on one busy CPU core. On the synthetic 5% split, 1e-3 / 300 steps left the landmark head near the mean shape
# (NME 0.14 to 0.20); 3e-3 and more steps brought it to 0.11-0.12. The head takes this rate, the backbone a fraction
# of it. The classifiers peak earlier (a validation split picks 50-150 steps; README), the landmark head at 350-400.
TRAINING_DEFAULTS = {
    "--output_dir": "outputs/finetune",
    "--max_steps": "400",
    "--per_device_train_batch_size": "32",
    "--per_device_eval_batch_size": "128",
    "--learning_rate": "3e-3",
    "--weight_decay": "0.05",
    "--warmup_steps": "0.1",
    "--lr_scheduler_type": "cosine",
    "--logging_steps": "50",
    "--save_strategy": "no",
    "--eval_strategy": "no",
    "--report_to": "none",
    "--dataloader_num_workers": "0",
}


def with_training_defaults(argv: list[str], defaults: dict[str, str] | None = None) -> list[str]:
    """`argv` with `defaults` (`TRAINING_DEFAULTS` unless given) appended for the flags it does not give (in any
    spelling); without a GPU, no memory pinning; with --load_best_model_at_end, a checkpoint at each new best only."""
    given = {flag_name(arg) for arg in argv if arg.startswith("--")}
    extra = []
    defaults = dict(TRAINING_DEFAULTS if defaults is None else defaults)
    if not torch.cuda.is_available():
        defaults["--dataloader_pin_memory"] = "False"  # nothing to pin to without a GPU (and torch warns)
    if flag_is_on(argv, "--load_best_model_at_end"):
        defaults["--save_strategy"] = "best"  # a checkpoint whenever the validation metric improves, and only then
    for flag, value in defaults.items():
        if flag not in given and not (flag == "--max_steps" and "--num_train_epochs" in given):
            extra += [flag, value]
    return argv + extra


def finetune_parser(prog: str = "finetune.py") -> HfArgumentParser:
    """The parser of `FinetuneArguments` and `TrainingArguments`, whose --help shows the `TRAINING_DEFAULTS` that
    `with_training_defaults` passes where TrainingArguments' own defaults would be (`prog`: the script's name)."""
    parser = HfArgumentParser((FinetuneArguments, TrainingArguments))
    for action in parser._actions:
        flag = action.option_strings[0] if action.option_strings else None
        if flag == "--max_steps":
            action.help = f"{action.help or ''} {prog}: {TRAINING_DEFAULTS[flag]} unless --num_train_epochs is given."
        elif flag == "--metric_for_best_model":
            action.help = (
                f"{action.help or ''} {prog}: loss, or a metric of the task (accuracy, macro_f1, "
                "mean_accuracy, nme, failure_rate, auc); --greater_is_better follows the metric unless "
                "given."
            )
        elif flag in TRAINING_DEFAULTS:
            action.default = TRAINING_DEFAULTS[flag]  # what with_training_defaults passes when the flag is absent
    return parser


def check_finetune_arguments(args: FinetuneArguments, training_args: TrainingArguments, argv: list[str]) -> None:
    """Raise `ValueError` for flags that contradict each other (`argv`: the command line, to tell what the user gave);
    set `training_args.greater_is_better` from `--metric_for_best_model` unless given, since transformers takes every
    metric not ending in "loss" as higher-is-better (with nme or failure_rate, --load_best_model_at_end would keep the
    worst checkpoint)."""
    check_training_numbers(training_args)  # a negative learning rate would fail inside torch after the set-up
    if args.task == "all" and training_args.push_to_hub:
        raise ValueError("--push_to_hub pushes one head: pick one --task.")
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME.")
    evaluates = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"
    if args.validation_fraction and not evaluates:
        raise ValueError(
            "--validation_fraction needs --eval_strategy steps (and --eval_steps N) to score the "
            "validation split during training."
        )
    if training_args.load_best_model_at_end and not args.validation_fraction:
        raise ValueError(
            "--load_best_model_at_end without --validation_fraction would pick the checkpoint by its "
            "test-set score; hold out a validation split, e.g. --validation_fraction 0.2."
        )
    if training_args.metric_for_best_model:
        metric = training_args.metric_for_best_model
        name = metric[len("eval_") :] if metric.startswith("eval_") else metric
        tasks = args.tasks
        known = ["loss"] + [m for m in TASK_METRICS[tasks[0]] if all(m in TASK_METRICS[t] for t in tasks)]
        if name not in known:  # the Trainer would only fail at the first evaluation, in the middle of the run
            raise ValueError(
                f"--metric_for_best_model {metric!r} is not a validation metric of --task {args.task}; "
                f"choose one of {known}."
            )
        if not any(flag_name(arg) == "--greater_is_better" for arg in argv):
            training_args.greater_is_better = HIGHER_IS_BETTER.get(name, False)  # loss: lower is better


__all__ = [
    "ALL_TASKS",
    "TASK_CHOICES",
    "TRAINING_DEFAULTS",
    "FinetuneArguments",
    "FinetuneError",
    "check_finetune_arguments",
    "finetune_parser",
    "with_training_defaults",
]
