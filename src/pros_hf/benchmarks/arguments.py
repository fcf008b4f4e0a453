"""The flags of a benchmark run (`examples/benchmark.py`): what to run (`BenchmarkArguments`), the fine-tuning
recipe (`RecipeArguments`: the flags of `examples/finetune.py` that say how a head is trained, with their help texts)
and transformers' `TrainingArguments`, with defaults for real data on a GPU and the checks of the flags against each
other, so that a bad value stops the run with one line naming the flag."""

import dataclasses
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

from ..cli import flag_name
from ..finetuning import FinetuneArguments, with_training_defaults
from ..finetuning.training import HIGHER_IS_BETTER, TASK_METRICS
from .protocols import PROTOCOLS, canonical_name


@dataclass
class BenchmarkArguments:
    benchmark: str = field(
        metadata={
            "help": (
                f"The benchmark: {', '.join(PROTOCOLS)} (case, '-' and '_' do not matter). Each is read from the files its "
                "authors distribute (docs/benchmarks.md) and scored by its published protocol."
            )
        }
    )
    data_dir: str = field(
        metadata={
            "help": (
                "The benchmark's folder, laid out as its authors distribute it (the loader names any file it misses)."
            )
        }
    )
    model: str = field(
        metadata={
            "help": (
                "The backbone: a ProSModel folder or Hub id, or a pre-training checkpoint folder (its EMA teacher)."
            )
        }
    )
    image_size: int = field(
        default=224,
        metadata={
            "help": (
                "Input side in pixels (a multiple of the patch size). 224 is the classification protocols' ViT input; FaRL's "
                "alignment setting is 448 (finer heatmaps, 4x the compute). The boxed benchmarks are cropped to this size."
            )
        },
    )
    data_ratio: float = field(
        default=1.0,
        metadata={
            "help": (
                "Fine-tune on this seeded fraction of the training split (FaRL's train_data_ratio, e.g. 0.01 or 0.1): the "
                "same --seed gives the same images to every model compared. Stratified for expressions."
            )
        },
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={
            "help": (
                "Held out of the (data-ratio) training images as the validation split that picks the evaluation to keep "
                "(the test splits are never looked at for that). Evaluations run at --eval_strategy and after the last step."
            )
        },
    )


def _recipe_field(name: str):
    source = {f.name: f for f in dataclasses.fields(FinetuneArguments)}[name]
    default = (
        {"default": source.default}
        if source.default is not dataclasses.MISSING
        else {"default_factory": source.default_factory}
    )
    return name, source.type, field(metadata=source.metadata, **default)


# How a head is trained, as examples/finetune.py takes it: the same flags, defaults and help texts.
RECIPE_FLAGS = (
    "mode",
    "lora",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "backbone_lr_scale",
    "layer_decay",
    "classifier_pooling",
    "landmark_decoder",
    "landmark_decoder_hidden_size",
    "augment",
)
RecipeArguments = dataclasses.make_dataclass("RecipeArguments", [_recipe_field(name) for name in RECIPE_FLAGS])
RecipeArguments.__doc__ = "The fine-tuning recipe flags of `FinetuneArguments` (see its fields for each)."

# Starting points for a ViT-B on one GPU, not values tuned on these benchmarks: the head learns at --learning_rate,
# the backbone at --backbone_lr_scale of it with layer decay. Alignment usually wants a longer schedule.
BENCHMARK_TRAINING_DEFAULTS = {
    "--output_dir": "outputs/benchmark",
    "--num_train_epochs": "30",
    "--per_device_train_batch_size": "64",
    "--per_device_eval_batch_size": "128",
    "--learning_rate": "5e-4",
    "--weight_decay": "0.05",
    "--warmup_steps": "0.05",
    "--lr_scheduler_type": "cosine",
    "--logging_steps": "50",
    "--save_strategy": "no",
    "--eval_strategy": "epoch",
    "--report_to": "none",
    "--dataloader_num_workers": "4",
}


def benchmark_parser(prog: str = "benchmark.py") -> HfArgumentParser:
    """The parser of `BenchmarkArguments`, `RecipeArguments` and `TrainingArguments`; --help shows the defaults
    `with_training_defaults` passes."""
    parser = HfArgumentParser((BenchmarkArguments, RecipeArguments, TrainingArguments), prog=prog)
    for action in parser._actions:
        flag = action.option_strings[0] if action.option_strings else None
        if flag in BENCHMARK_TRAINING_DEFAULTS:
            action.default = BENCHMARK_TRAINING_DEFAULTS[flag]
        elif flag == "--metric_for_best_model":
            action.help = (
                f"{prog}: the validation metric that picks the evaluation to keep (default: the "
                "benchmark's headline, nme / accuracy / mean_accuracy; or loss)."
            )
    return parser


def parse_benchmark_arguments(argv: list[str]) -> tuple[BenchmarkArguments, FinetuneArguments, TrainingArguments]:
    """The flags as (what to run, the fine-tuning recipe as `FinetuneArguments`, `TrainingArguments`). A bad value or
    combination raises `ValueError` naming the flag (argparse's own errors exit with its usage line)."""
    args, recipe, training_args = benchmark_parser().parse_args_into_dataclasses(
        args=with_training_defaults(argv, BENCHMARK_TRAINING_DEFAULTS)
    )
    try:
        args.benchmark = canonical_name(args.benchmark)
    except ValueError as error:
        raise ValueError(f"--benchmark: {error}") from None
    protocol = PROTOCOLS[args.benchmark]
    if not 0.0 < args.data_ratio <= 1.0:
        raise ValueError(
            f"--data_ratio is the fraction of the training split to fine-tune on, in (0, 1]; got {args.data_ratio}."
        )
    if not 0.0 < args.validation_fraction < 1.0:
        raise ValueError(
            f"--validation_fraction must be in (0, 1): the evaluation kept is picked on it; got "
            f"{args.validation_fraction}."
        )
    if args.image_size < 1:
        raise ValueError(f"--image_size must be a positive number of pixels, got {args.image_size}.")
    if training_args.load_best_model_at_end:
        raise ValueError(
            "--load_best_model_at_end: the run keeps the validation-best evaluation itself and reports "
            "it next to the last one; leave the flag out."
        )
    if training_args.push_to_hub:
        raise ValueError(
            "--push_to_hub: a benchmark run writes benchmark.json, not a model; fine-tune and push with "
            "examples/finetune.py."
        )
    metric = training_args.metric_for_best_model or protocol.default_metric
    name = metric.removeprefix("eval_")
    if name not in ("loss", *TASK_METRICS[protocol.task]):
        raise ValueError(
            f"--metric_for_best_model {metric!r} is not a validation metric of {protocol.title}; choose "
            f"one of {['loss', *TASK_METRICS[protocol.task]]}."
        )
    training_args.metric_for_best_model = name
    if not any(flag_name(arg) == "--greater_is_better" for arg in argv):
        training_args.greater_is_better = HIGHER_IS_BETTER.get(name, False)  # loss: lower is better
    nme = (
        dict(nme_normalization=protocol.normalizations[0], failure_threshold=protocol.failure_threshold)
        if protocol.task == "landmarks"
        else {}
    )
    # FinetuneArguments checks the recipe (LoRA against the linear probe, ranges) as examples/finetune.py does
    finetune_args = FinetuneArguments(
        task=protocol.task, model=args.model, image_size=args.image_size, **dataclasses.asdict(recipe), **nme
    )
    return args, finetune_args, training_args


__all__ = [
    "BENCHMARK_TRAINING_DEFAULTS",
    "RECIPE_FLAGS",
    "BenchmarkArguments",
    "RecipeArguments",
    "benchmark_parser",
    "parse_benchmark_arguments",
]
