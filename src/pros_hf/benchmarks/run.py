"""A benchmark run: fine-tune a head on a real benchmark by its published protocol and score every test subset.

`run_benchmark` reads the benchmark from its native files (`load_benchmark`), draws the seeded data-ratio subset of
the training split and carves a validation split out of it, frames the faces as the protocol does (on access, in the
collator), trains one head with the fine-tuning library's recipe (`pros_hf.finetuning.head_trainer`: full, linear
probe or LoRA), evaluates on the validation split at every `--eval_strategy` point and after the last step, and scores
every test subset twice: with the last weights and with the validation-selected ones (the test splits never choose
anything). It writes `benchmark.json` (`report.write_report`); `report.format_row` is the printed row.
"""

import dataclasses
import logging
import tempfile
import time

import numpy as np
from transformers import TrainingArguments

from ..finetuning import FinetuneArguments, FinetuneError, LabelError, TaskData, TaskLabels, load_finetune_backbone
from ..finetuning.data import label_array, validate_task_dataset
from ..finetuning.runs import head_trainer, split_validation
from .arguments import BenchmarkArguments
from .errors import BenchmarkFormatError
from .framing import ProtocolFraming
from .protocols import PROTOCOLS, BenchmarkProtocol
from .registry import load_benchmark
from .report import write_report
from .scoring import score_split
from .selection import ValidationSelection
from .subsets import train_subset

logger = logging.getLogger(__name__)


def benchmark_labels(protocol: BenchmarkProtocol, split) -> TaskLabels:
    """The task's labels as the loader declares them (class or attribute names, or the protocol's point count)."""
    if protocol.task == "landmarks":
        return TaskLabels("landmarks", num_landmarks=protocol.num_landmarks)
    feature = split.features[protocol.task]
    names = feature.names if protocol.task == "expression" else feature.feature.names
    return TaskLabels(protocol.task, label_names=tuple(names))


def load_splits(args: BenchmarkArguments, protocol: BenchmarkProtocol):
    """The benchmark's splits and labels, every split's labels checked; a bad folder or label is a
    `BenchmarkFormatError` naming the flag and the file."""
    try:
        splits = load_benchmark(args.benchmark, args.data_dir)
    except BenchmarkFormatError as error:
        raise BenchmarkFormatError(f"--data_dir: {error}") from None
    labels = benchmark_labels(protocol, splits["train"])
    for name in ("train", protocol.test_split, *protocol.test_subsets):
        try:
            validate_task_dataset(splits[name], labels)
        except LabelError as error:
            raise BenchmarkFormatError(f"--data_dir: {protocol.title} {name}: {error}") from None
    return splits, labels


def training_split(args: BenchmarkArguments, train, labels: TaskLabels, seed: int):
    """The data-ratio subset of `train` and its (training, validation) indices: expressions stratified by class,
    attributes and landmarks drawn uniformly (a few images cannot hold every attribute on both sides)."""
    if args.data_ratio < 1.0:
        train = train_subset(train, args.data_ratio, seed, labels.task)
    try:
        training, validation = split_validation(
            label_array(train, labels),
            np.arange(len(train)),
            args.validation_fraction,
            seed,
            stratify=labels.task == "expression",
        )
    except FinetuneError:
        raise FinetuneError(
            f"--validation_fraction {args.validation_fraction} leaves none of the {len(train)} "
            "training images for training; lower it or raise --data_ratio."
        ) from None
    return train, training, validation


def settings_of(
    args: BenchmarkArguments,
    recipe: FinetuneArguments,
    training_args: TrainingArguments,
    selection: ValidationSelection,
) -> dict:
    """What the run did, for benchmark.json: enough to repeat it."""
    mode = "lora" if recipe.lora else recipe.mode
    settings = {
        "image_size": args.image_size,
        "data_ratio": args.data_ratio,
        "validation_fraction": args.validation_fraction,
        "mode": mode,
        "seed": training_args.seed,
        "max_steps": training_args.max_steps,
        "num_train_epochs": training_args.num_train_epochs,
        "learning_rate": training_args.learning_rate,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "eval_strategy": str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)),
        "selection_metric": selection.metric,
        "greater_is_better": selection.greater_is_better,
        "backbone_lr_scale": recipe.backbone_lr_scale,
        "layer_decay": recipe.layer_decay,
        "augment": recipe.augment,
    }
    if recipe.lora:
        settings.update(
            lora_r=recipe.lora_r,
            lora_alpha=recipe.lora_alpha,
            lora_dropout=recipe.lora_dropout,
            lora_target_modules=list(recipe.lora_target_modules),
        )
    return settings


def run_benchmark(args: BenchmarkArguments, recipe: FinetuneArguments, training_args: TrainingArguments) -> dict:
    """Fine-tune `recipe.model` on `args.benchmark` and score it by the protocol; writes and returns the report
    (`benchmark.json` in `training_args.output_dir`). Problems with the flags, model or data raise `FinetuneError` or
    `BenchmarkFormatError` before training."""
    protocol = PROTOCOLS[args.benchmark]
    seed = training_args.seed
    backbone, processor, backbone_name = load_finetune_backbone(recipe)
    splits, labels = load_splits(args, protocol)
    train, training, validation = training_split(args, splits["train"], labels, seed)
    data = TaskData(train=train, test=splits[protocol.test_split], labels=labels, dataset_name=protocol.title)
    framing = ProtocolFraming(protocol.crop, args.image_size)
    selection = ValidationSelection(training_args.metric_for_best_model, bool(training_args.greater_is_better))
    test_names = (protocol.test_split, *protocol.test_subsets)
    logger.info(
        "%s: %d training / %d validation images (of %d), test %s; backbone %s",
        protocol.title,
        len(training),
        len(validation),
        len(splits["train"]),
        {name: len(splits[name]) for name in test_names},
        backbone_name,
    )

    def score_all() -> dict[str, dict]:
        return {name: score_split(trainer, splits[name], protocol, labels, framing, processor) for name in test_names}

    with tempfile.TemporaryDirectory(prefix="pros_benchmark_") as scratch:
        trainer, counts = head_trainer(
            recipe,
            training_args,
            data,
            backbone,
            processor,
            output_dir=scratch,
            train_indices=training,
            validation_indices=validation,
            seed=seed,
            prepare_row=framing,
            callbacks=[selection],
        )
        start = time.perf_counter()
        train_output = trainer.train()
        train_seconds = time.perf_counter() - start
        last_step = int(trainer.state.global_step)
        if selection.last_step != last_step:  # the last weights are always a candidate
            trainer.evaluate()
        last = score_all()
        if selection.best_step != last_step:
            selection.restore(trainer.model)
            selected = score_all()
        else:
            selected = last
    result = {
        "benchmark": protocol.name,
        "title": protocol.title,
        "model": backbone_name,
        "settings": settings_of(args, recipe, training_args, selection),
        "protocol": {
            "task": protocol.task,
            "crop": dataclasses.asdict(protocol.crop),
            "normalizations": list(protocol.normalizations),
            "failure_threshold": protocol.failure_threshold,
            "curve_normalization": protocol.curve_normalization,
            "test_splits": list(test_names),
        },
        "num_images": {
            "train_available": len(splits["train"]),
            "train": len(training),
            "validation": len(validation),
            **{name: len(splits[name]) for name in test_names},
        },
        "parameters": counts.as_dict(),
        "train_loss": float(train_output.training_loss),
        "train_seconds": round(train_seconds, 2),
        "validation": selection.history,
        "last": {"step": last_step, "subsets": last},
        "selected": {
            "step": selection.best_step,
            f"validation_{selection.metric}": selection.best_value,
            "subsets": selected,
        },
    }
    write_report(result, training_args.output_dir)
    return result


__all__ = ["benchmark_labels", "load_splits", "run_benchmark", "training_split"]
