"""Fine-tuning runs: one head (`train_head`), every seed and initialisation of a task (`run_task`), every task
(`run_finetuning`).

`train_head` is the unit the others repeat: one head on a backbone (pre-trained, or the same architecture at random
initialisation), one seed, trained with transformers' `Trainer` and scored on the test set. `run_task` draws the
few-shot subset and the validation split of each seed, adds the labels-only floor, and writes what the task
produces (`pros_hf.finetuning.outputs`). What the user can get wrong (the model, the data, the flags against them) is
checked before the first run and raised as `FinetuneError`, naming the flag.
"""

import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from transformers import TrainingArguments, set_seed

from ..image_processing_pros import ProSImageProcessor
from ..pipelines import image_height_width, processed_to_image_coordinates
from .arguments import FinetuneArguments, FinetuneError
from .data import (
    TASKS,
    FaceTaskCollator,
    TaskData,
    default_augmentation,
    few_shot_indices,
    label_array,
    load_task_data,
    multi_hot,
    processed_size,
)
from .lora import ParameterCount, apply_lora, count_trainable
from .optim import freeze_backbone
from .outputs import save_task_outputs, write_summary
from .reporting import labels_only_scores, summarise_seeds
from .training import (
    FinetuneTrainer,
    build_head,
    head_config_overrides,
    ignore_keys_for,
    make_compute_metrics,
    scalar_metrics,
    task_metrics,
)

logger = logging.getLogger(__name__)


class HeadRun(NamedTuple):
    """One trained head and its scores. `scalars`: the task's headline metrics with `train_seconds`, `train_loss`,
    `num_train_labelled` (and `num_validation`, `best_step` with a validation split); `full`: every output of the
    metrics (confusion matrix, per-attribute accuracy, per-image NME, the predicted points as `_points`)."""

    model: Any
    scalars: dict[str, float]
    full: dict
    counts: ParameterCount


def load_finetune_backbone(args: FinetuneArguments):
    """`(backbone, processor, name)` for `build_head`: the `--model` backbone (a `ProSModel`), or without it a
    `ProSConfig` for a random-init micro ViT; the processor at `--image_size` when given."""
    from .. import ProSConfig, ProSModel, load_backbone

    if args.model is None:
        try:
            config = ProSConfig.from_preset("micro", image_size=args.image_size or 64)
        except ValueError as error:  # an --image_size that is not a whole number of the micro model's patches
            raise FinetuneError(f"--image_size: {error}") from None
        backbone, name = config, "random-init micro ViT"
    else:
        try:
            backbone, name = load_backbone(args.model), args.model
        except (OSError, ValueError) as error:  # a missing folder, an unreachable Hub id, not a ProS model
            raise FinetuneError(f"--model: {error}") from None
        config = backbone.config
    patch = config.patch_size
    if args.image_size and args.image_size % patch:  # the patch embedding would fail in the first training step
        raise FinetuneError(
            f"--image_size {args.image_size} is not a multiple of the backbone's patch size {patch}; "
            f"e.g. {max(1, round(args.image_size / patch)) * patch}."
        )
    if args.lora:  # before any data is read: a typo would otherwise fail (or be dropped) when the first run builds LoRA
        from .lora import check_target_modules

        try:
            check_target_modules(
                backbone if isinstance(backbone, ProSModel) else ProSModel(config), args.lora_target_modules, prefix=""
            )
        except ValueError as error:
            raise FinetuneError(f"--lora_target_modules: {error}") from None
    processor = None
    if args.model is not None:
        try:
            processor = ProSImageProcessor.from_pretrained(args.model)
        except (OSError, ValueError):
            processor = None  # no preprocessor_config.json: derive it from the config
    if processor is None:
        processor = ProSImageProcessor.from_model_config(config)
    if args.image_size:
        processor = ProSImageProcessor(
            **{
                **processor.to_dict(),
                "size": {"shortest_edge": args.image_size},
                "crop_size": {"height": args.image_size, "width": args.image_size},
            }
        )
    processor_dict = {k: v for k, v in processor.to_dict().items() if k not in ("image_processor_type", "auto_map")}
    return backbone, ProSImageProcessor(**processor_dict), name


def load_finetune_data(args: FinetuneArguments, task: str) -> TaskData:
    """The task's train and test sets from the data flags, checked (labels, images, the flags that depend on them)."""
    try:
        data = load_task_data(
            task,
            dataset=args.dataset,
            image_dir=args.image_dir,
            labels_file=args.labels_file,
            test_labels_file=args.test_labels_file,
            test_dataset=args.test_dataset,
            hub_dataset=args.hub_dataset,
            hub_config=args.hub_config,
            train_split=args.train_split,
            test_split=args.test_split,
            test_fraction=args.test_fraction,
            image_column=args.image_column,
            label_column=args.label_column,
            label_names=args.class_names,
            attribute_columns=args.attribute_columns,
            num_landmarks=args.num_landmarks,
            num_train=args.num_train,
            num_test=args.num_test,
            seed=args.seeds[0],
            cache_dir=args.data_cache_dir,
        )
    # bad labels, rows, columns, images or folders (the message names them); RuntimeError: a Hub dataset offline
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise FinetuneError(f"{task} data: {error}") from None
    if task == "landmarks" and args.flip_landmarks and args.augment and data.labels.num_landmarks != 68:
        raise FinetuneError(
            f"--flip_landmarks swaps left and right points with iBUG's 68-point permutation; this "
            f"data has {data.labels.num_landmarks} points per face. Leave --flip_landmarks out."
        )
    return data


def split_validation(
    all_labels, indices, fraction: float, seed: int, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """`indices` (the labelled examples of one seed) split into (training, validation), the validation part a
    seeded `fraction` of them, stratified like the few-shot draw unless `stratify` is False (then drawn uniformly:
    a few images cannot give every attribute a positive and a negative example on both sides). Both parts must be
    non-empty."""
    held_out = few_shot_indices(all_labels[indices], fraction, seed, stratify=stratify)
    validation = indices[held_out]
    training = np.setdiff1d(indices, validation)
    if not training.size:
        raise FinetuneError(
            f"--validation_fraction {fraction} leaves none of the {len(indices)} labelled examples "
            "for training; lower it or label more (--few_shot)."
        )
    return training, validation


def image_sizes(images) -> list[tuple[int, int]]:
    """(height, width) of each image (PIL, numpy or torch), as the processor reads it."""
    return [tuple(int(v) for v in image_height_width(image)) for image in images]


def landmark_decoder_width(args: FinetuneArguments, backbone) -> int:
    """`--landmark_decoder_hidden_size`, else 256 channels (64 with LoRA), at most the backbone's width."""
    if args.landmark_decoder_hidden_size:
        return args.landmark_decoder_hidden_size
    hidden = backbone.hidden_size if hasattr(backbone, "hidden_size") else backbone.config.hidden_size
    return min(64 if args.lora else 256, hidden)


def head_trainer(
    args: FinetuneArguments,
    training_args: TrainingArguments,
    data: TaskData,
    backbone,
    processor: ProSImageProcessor,
    *,
    output_dir: str,
    train_indices=None,
    validation_indices=None,
    init: str = "pretrained",
    seed: int = 0,
    prepare_row=None,
    callbacks=None,
) -> tuple[FinetuneTrainer, ParameterCount]:
    """The `Trainer` of one head of `data.labels.task` on `backbone` (a `ProSModel`, or a `ProSConfig` for random
    weights), ready to train, and the head's parameter counts.

    The recipe is `args` (mode, LoRA, learning-rate scale and layer decay, augmentation, head options, metric
    options) and `training_args` (steps, batch, optimizer; `output_dir`, `seed`, saving and the labels are set per
    run). `train_indices`: the labelled examples of `data.train` to train on (default: all); `validation_indices`:
    the held-out ones that evaluation during training scores (without them, evaluation scores the test set).
    `init`: "pretrained" or "random_init" (the same architecture from seeded random weights). `prepare_row`: applied
    to every row before the processor, in training and evaluation alike (a benchmark's face crop). `callbacks`: extra
    `TrainerCallback`s. `output_dir`: where the Trainer writes checkpoints."""
    labels = data.labels
    set_seed(seed)
    overrides = head_config_overrides(
        labels,
        classifier_pooling=args.classifier_pooling,
        landmark_decoder=args.landmark_decoder,
        landmark_decoder_hidden_size=landmark_decoder_width(args, backbone) if labels.task == "landmarks" else None,
        drop_path_rate=0.0 if args.mode == "linear_probe" else None,
    )  # a frozen backbone runs as in inference
    model = build_head(labels.task, backbone, overrides, random_init=(init == "random_init"), seed=seed)
    if args.lora:
        model = apply_lora(
            model,
            r=args.lora_r,
            alpha=args.lora_alpha,
            dropout=args.lora_dropout,
            target_modules=args.lora_target_modules,
        )
    elif args.mode == "linear_probe":
        freeze_backbone(model)
    counts = count_trainable(model)

    input_size = processed_size(processor)
    augmentation = (
        default_augmentation(labels.task, input_size, processor, labels.num_landmarks, args.flip_landmarks)
        if args.augment
        else None
    )
    # checkpoints only where load_best_model_at_end needs them
    saving = dict(save_total_limit=1) if training_args.load_best_model_at_end else dict(save_strategy="no")
    run_args = dataclasses.replace(
        training_args,
        output_dir=os.path.join(output_dir, f"{init}-seed{seed}"),
        seed=seed,
        data_seed=seed,
        label_names=[labels.label_key],
        remove_unused_columns=False,
        push_to_hub=False,
        **saving,
    )
    train_set = data.train.select(train_indices) if train_indices is not None else data.train
    if validation_indices is not None:
        eval_set = data.train.select(validation_indices)
    else:
        eval_set = data.test if run_args.eval_strategy != "no" else None
    trainer = FinetuneTrainer(
        model=model,
        args=run_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=FaceTaskCollator(labels, processor, augmentation, prepare_row=prepare_row),
        eval_data_collator=FaceTaskCollator(labels, processor, prepare_row=prepare_row),
        compute_metrics=make_compute_metrics(labels, input_size, args.nme_normalization, args.failure_threshold),
        backbone_lr_scale=args.backbone_lr_scale,
        layer_decay=args.layer_decay,
        callbacks=callbacks,
    )
    return trainer, counts


def train_head(
    args: FinetuneArguments,
    training_args: TrainingArguments,
    data: TaskData,
    backbone,
    processor: ProSImageProcessor,
    *,
    train_indices=None,
    validation_indices=None,
    init: str = "pretrained",
    seed: int = 0,
    test_sizes=None,
    output_dir: str | None = None,
) -> HeadRun:
    """Train one head (`head_trainer`, whose docstring gives the arguments) and score it on `data.test`.

    `test_sizes`: (height, width) of each test image, for landmarks (read from the images when not given).
    `output_dir`: where the Trainer writes checkpoints (default: a temporary folder)."""
    if output_dir is None:
        with tempfile.TemporaryDirectory(prefix="pros_finetune_") as scratch:
            return train_head(
                args,
                training_args,
                data,
                backbone,
                processor,
                train_indices=train_indices,
                validation_indices=validation_indices,
                init=init,
                seed=seed,
                test_sizes=test_sizes,
                output_dir=scratch,
            )
    labels = data.labels
    trainer, counts = head_trainer(
        args,
        training_args,
        data,
        backbone,
        processor,
        output_dir=output_dir,
        train_indices=train_indices,
        validation_indices=validation_indices,
        init=init,
        seed=seed,
    )
    start = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - start
    full = score_predictions(
        args, data, trainer.predict(data.test, ignore_keys=ignore_keys_for(labels.task)), processor, test_sizes
    )
    scalars = scalar_metrics(labels, full)
    scalars.update(
        train_seconds=round(train_seconds, 2),
        train_loss=float(train_output.training_loss),
        num_train_labelled=len(trainer.train_dataset),
    )
    if validation_indices is not None:
        scalars["num_validation"] = len(validation_indices)
        if trainer.args.load_best_model_at_end and trainer.state.best_global_step:
            scalars["best_step"] = int(trainer.state.best_global_step)
    logger.info("%s %s seed %d: %s", labels.task, init, seed, scalars)
    model = trainer.model
    model.eval()
    return HeadRun(model, scalars, full, counts)


def score_predictions(args: FinetuneArguments, data: TaskData, prediction, processor, test_sizes=None) -> dict:
    """The full metrics of `Trainer.predict`'s output on `data.test`; landmarks are scored in the pixels of the
    original test images (the `face-landmarks` pipeline's frame), their points kept as `_points`."""
    labels = data.labels
    predictions = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    if labels.task == "landmarks":
        sizes = test_sizes if test_sizes is not None else image_sizes(data.test["image"])
        points = [processed_to_image_coordinates(p, size, processor) for p, size in zip(np.asarray(predictions), sizes)]
        references = [np.asarray(p, dtype=np.float64) for p in data.test["landmarks"]]
        full = task_metrics(labels, points, references, args.nme_normalization, args.failure_threshold)
        full["_points"] = points
        return full
    if labels.task == "attributes":
        return task_metrics(labels, predictions, multi_hot(data.test["attributes"], labels.num_labels))
    return task_metrics(labels, predictions, np.asarray(data.test["expression"]))


def run_task(
    args: FinetuneArguments,
    training_args: TrainingArguments,
    task: str,
    output_dir: str | os.PathLike,
    loaded=None,
    data: TaskData | None = None,
) -> dict:
    """Every (seed, initialisation) run of one task, then its figures, head folder, card and `results.json` in
    `output_dir` (see `outputs.save_task_outputs`); returns the results. `loaded`: what `load_finetune_backbone`
    returned (loaded once for several tasks); `data`: what `load_finetune_data` returned."""
    backbone, processor, backbone_name = loaded or load_finetune_backbone(args)
    data = data or load_finetune_data(args, task)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    logger.info(
        "%s: %d training / %d test images from %s; backbone %s",
        task,
        len(data.train),
        len(data.test),
        data.dataset_name,
        backbone_name,
    )
    inits = ["random_init"] if (args.random_init or args.model is None) else ["pretrained"]
    if args.compare_random_init and inits == ["pretrained"]:
        inits.append("random_init")

    all_labels = label_array(data.train, data.labels)
    train_sizes = test_sizes = None
    if task == "landmarks":  # decoded once per task, not per run
        train_sizes, test_sizes = image_sizes(data.train["image"]), image_sizes(data.test["image"])
    runs: dict[str, dict[int, HeadRun]] = {init: {} for init in inits}
    priors: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pros_finetune_") as scratch:
        for seed in args.seeds:
            indices = few_shot_indices(all_labels, args.few_shot, seed) if args.few_shot else np.arange(len(data.train))
            validation = None
            if args.validation_fraction:
                indices, validation = split_validation(all_labels, indices, args.validation_fraction, seed)
            priors[seed] = labels_only_scores(
                data, indices, args.nme_normalization, args.failure_threshold, train_sizes, test_sizes
            )
            for init in inits:
                run = train_head(
                    args,
                    training_args,
                    data,
                    backbone,
                    processor,
                    train_indices=indices,
                    validation_indices=validation,
                    init=init,
                    seed=seed,
                    test_sizes=test_sizes,
                    output_dir=scratch,
                )
                # only the first seed's head is saved: free the others
                runs[init][seed] = run if seed == args.seeds[0] else run._replace(model=None)
    return save_task_outputs(
        args,
        training_args,
        task,
        output_dir,
        data,
        processor,
        backbone_name,
        runs,
        summary={init: summarise_seeds({seed: r.scalars for seed, r in seeds.items()}) for init, seeds in runs.items()},
        prior=summarise_seeds(priors),
    )


def run_finetuning(args: FinetuneArguments, training_args: TrainingArguments) -> dict[str, dict]:
    """Every task `args.task` names (three with "all", each into its own folder of `training_args.output_dir`, with
    `summary.json` and `summary.txt` next to them); returns `{task: results}`. The backbone is loaded once, and every
    task's data is read and checked before the first run: a problem with the last task's labels must not surface
    after the others have trained."""
    output_root = Path(training_args.output_dir)
    if training_args.push_to_hub:  # the whole folder is uploaded: another --task all run's task folders included
        nested = [task for task in TASKS if (output_root / task / "results.json").is_file()]
        if nested:
            raise FinetuneError(
                f"--push_to_hub uploads all of --output_dir {output_root}, which holds the task "
                f"folders {nested} of an earlier --task all run; pick an empty --output_dir."
            )
    loaded = load_finetune_backbone(args)  # build_head copies it for each run
    data = {task: load_finetune_data(args, task) for task in args.tasks}
    results = {}
    for task in args.tasks:
        folder = output_root / task if args.task == "all" else output_root
        results[task] = run_task(args, training_args, task, folder, loaded, data[task])
    if args.task == "all":
        write_summary(output_root, results)
    return results


__all__ = [
    "HeadRun",
    "head_trainer",
    "load_finetune_backbone",
    "load_finetune_data",
    "run_finetuning",
    "run_task",
    "score_predictions",
    "split_validation",
    "train_head",
]
