"""What a fine-tuning task leaves in its output folder: figures, the first seed's head (or adapter) with its image
processor and card, `results.json`, and with several tasks `summary.json` / `summary.txt` next to their folders.

The folder is what `--push_to_hub` uploads, so a rerun into it removes the files of this list it does not write
again (another task's figures or head code, a head's weights next to an adapter), and never any other file.
"""

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..evaluation_plots import plot_attribute_accuracy, plot_ced_curves, plot_confusion_matrix, plot_landmarks
from ..hub import head_card, is_hub_id
from .arguments import FinetuneError
from .export import push_head_folder, save_adapter_folder, save_head_folder, write_card
from .lora import merge_adapter
from .reporting import INIT_NAMES, format_comparison_table
from .training import TASK_METRICS

logger = logging.getLogger(__name__)

# The files that depend on the task, the kind of model saved or the runs (config.json, README.md, results.json, the
# processor and shared code are rewritten every time).
FIGURE_FILES = (
    "confusion_matrix.png",
    "confusion_matrix_random_init.png",
    "attribute_accuracy.png",
    "landmarks.png",
    "ced.png",
)
HEAD_CODE_FILES = {"classifier": "modeling_pros_classification.py", "landmarks": "modeling_pros_landmarks.py"}
WEIGHT_FILES = {"head": ("model.safetensors",), "adapter": ("adapter_model.safetensors", "adapter_config.json")}
SUMMARY_FILES = ("summary.json", "summary.txt")  # several tasks', in the folder above the tasks'


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


def make_plots(
    data, output_dir: Path, runs: dict, seed: int, num_plot_faces: int = 8, failure_threshold: float = 0.10
) -> list[str]:
    """The figures of the `seed` runs (confusion matrix, landmarks on test faces, CED) or of all seeds (per-attribute
    accuracy); `runs` maps each initialisation to `{seed: HeadRun}`, the main one first."""
    labels, written = data.labels, []
    first = {init: seeds[seed] for init, seeds in runs.items()}
    main = next(iter(runs))
    if labels.task == "expression":
        for init, run in first.items():
            suffix = "" if init == main else f"_{init}"
            written.append(
                plot_confusion_matrix(
                    run.full["confusion_matrix"],
                    list(labels.label_names),
                    output_dir / f"confusion_matrix{suffix}.png",
                    title=f"expression, {INIT_NAMES[init]} (seed {seed}): accuracy {run.full['accuracy']:.1%}",
                )
            )
    elif labels.task == "attributes":
        per_model = {
            f"{INIT_NAMES[init]} (mean of {len(seeds)} seeds)": {
                name: float(np.mean([run.full["per_attribute_accuracy"][name] for run in seeds.values()]))
                for name in labels.label_names
            }
            for init, seeds in runs.items()
        }
        written.append(
            plot_attribute_accuracy(
                per_model, output_dir / "attribute_accuracy.png", title="per-attribute accuracy on the test set"
            )
        )
    else:
        count = min(num_plot_faces, len(data.test))
        if count:  # no faces to draw: no landmarks.png (plot_landmarks refuses an empty grid)
            faces = data.test.select(range(count))
            written.append(
                plot_landmarks(
                    faces["image"],
                    first[main].full["_points"][:count],
                    [np.asarray(p) for p in faces["landmarks"]],
                    path=output_dir / "landmarks.png",
                    title=f"{INIT_NAMES[main]} (seed {seed}): red predicted, green reference",
                )
            )
        written.append(
            plot_ced_curves(
                {f"{INIT_NAMES[init]} (seed {seed})": run.full["per_image_nme"] for init, run in first.items()},
                output_dir / "ced.png",
                threshold=failure_threshold,
            )
        )
    return written


def recipe_summary(args, training_args) -> tuple[str, str]:
    """(mode, schedule): the fine-tuning mode and the training schedule in words, for the model card."""
    length = (
        f"{training_args.max_steps} steps"
        if training_args.max_steps > 0
        else f"{training_args.num_train_epochs:g} epochs"
    )
    scheduler = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    schedule = (
        f"{length}, batch {training_args.per_device_train_batch_size}, AdamW lr "
        f"{training_args.learning_rate:g} ({scheduler}), weight decay {training_args.weight_decay:g}, backbone "
        f"lr x{args.backbone_lr_scale:g}, layer decay {args.layer_decay:g}, augmentation "
        f"{'on' if args.augment else 'off'}"
    )
    if args.validation_fraction:
        selection = (
            f"the checkpoint with the best validation {training_args.metric_for_best_model or 'loss'}"
            if training_args.load_best_model_at_end
            else "the last checkpoint"
        )
        schedule += f"; {args.validation_fraction:g} of the labelled examples held out for validation, {selection} kept"
    if args.lora:
        mode = (
            f"LoRA (r={args.lora_r}, alpha={args.lora_alpha:g}, dropout {args.lora_dropout:g}, on "
            f"{', '.join(args.lora_target_modules)}; head trained in full)"
        )
    else:
        mode = {"full": "full fine-tuning", "linear_probe": "linear probe (backbone frozen)"}[args.mode]
    return mode, schedule


def save_task_outputs(
    args,
    training_args,
    task: str,
    output_dir: Path,
    data,
    processor,
    backbone_name: str,
    runs: dict,
    summary: dict,
    prior: dict,
) -> dict:
    """Figures, the first seed's head (or adapter, with the merged head in `<output_dir>-merged`) with its processor
    and card, and `results.json`; pushed with `--push_to_hub`. Returns the results. `runs`: `{init: {seed: HeadRun}}`
    (the main initialisation first), `summary`: `{init: summarise_seeds(...)}`, `prior`: the labels-only floor."""
    seed0, main_init = args.seeds[0], next(iter(runs))
    model, counts = runs[main_init][seed0].model, runs[main_init][seed0].counts
    figures = make_plots(data, output_dir, runs, seed0, args.num_plot_faces, args.failure_threshold)
    base_model = args.hub_base_model or (
        args.model if is_hub_id(args.model) else (str(Path(args.model).resolve()) if args.model else None)
    )
    mode, schedule = recipe_summary(args, training_args)
    num_labelled = runs[main_init][seed0].scalars["num_train_labelled"]
    card_args = dict(
        task=task,
        results={**summary, "prior": prior},
        repo_id=training_args.hub_model_id,
        base_model=base_model,
        dataset=args.dataset_name or data.dataset_name,
        dataset_id=data.dataset_id or (args.dataset_name if is_hub_id(args.dataset_name) else None),
        num_test=len(data.test),
        num_train=f"{num_labelled} of {len(data.train)} per seed" if args.few_shot else len(data.train),
        few_shot=args.few_shot,
        seeds=list(args.seeds),
        mode_summary=mode,
        schedule_summary=schedule,
        license=args.license,
    )
    merged_dir = None
    remove_stale_files(output_dir, task, args.lora, figures)
    if args.lora:
        save_adapter_folder(model, processor, output_dir, base_model)
        merged = merge_adapter(model)
        write_card(
            head_card(
                merged,
                trainable_parameters=counts.trainable,
                lora_summary=(f"rank {args.lora_r} on {', '.join(args.lora_target_modules)}"),
                **card_args,
            ),
            output_dir,
        )
        merged_dir = Path(f"{str(output_dir).rstrip('/')}-merged")
        if merged_dir.is_dir():
            remove_stale_files(merged_dir, task, lora=False, figures=[])  # e.g. another task's head code
        save_head_folder(merged, processor, merged_dir)
        write_card(
            head_card(merged, trainable_parameters=counts.trainable, **{**card_args, "repo_id": None}), merged_dir
        )
    else:
        save_head_folder(model, processor, output_dir)
        write_card(head_card(model, trainable_parameters=counts.trainable, **card_args), output_dir)

    results = {
        "task": task,
        "model": backbone_name,
        "dataset": data.dataset_name,
        "num_train": len(data.train),
        "num_test": len(data.test),
        "few_shot": args.few_shot,
        "seeds": list(args.seeds),
        "mode": args.mode,
        "lora": (
            {
                "r": args.lora_r,
                "alpha": args.lora_alpha,
                "dropout": args.lora_dropout,
                "target_modules": list(args.lora_target_modules),
            }
            if args.lora
            else None
        ),
        "labels": list(data.labels.label_names or ()) or None,
        "num_landmarks": data.labels.num_landmarks,
        "metrics": list(TASK_METRICS[task]),
        "parameters": counts.as_dict(),
        "runs": summary,
        "prior": prior,  # the labels alone: majority class / attribute values, mean face shape
        "details": {
            init: {
                str(seed): {k: v for k, v in run.full.items() if not k.startswith("_")} for seed, run in seeds.items()
            }
            for init, seeds in runs.items()
        },
        "figures": [os.path.basename(f) for f in figures],
        "head_folder": str(output_dir),
        "merged_folder": str(merged_dir) if merged_dir else None,
    }
    with open(output_dir / "results.json", "w") as handle:
        json.dump(results, handle, indent=2, default=float)
    if training_args.push_to_hub:
        try:
            url = push_head_folder(
                output_dir,
                training_args.hub_model_id,
                token=training_args.hub_token,
                private=training_args.hub_private_repo,
                what="adapter" if args.lora else "head",
            )
        except RuntimeError as error:  # offline: the folder is complete, the message says how to push it later
            raise FinetuneError(str(error)) from None
        logger.info("Pushed %s to %s", output_dir, url)
    return results


def write_summary(output_root: Path, all_results: dict[str, dict]) -> str:
    """`summary.json` (each task's runs) and `summary.txt` (the printed comparison table) in `output_root`."""
    table = format_comparison_table(all_results)
    with open(output_root / "summary.json", "w") as handle:
        json.dump({task: r["runs"] for task, r in all_results.items()}, handle, indent=2)
    (output_root / "summary.txt").write_text(table + "\n")
    return table


__all__ = [
    "FIGURE_FILES",
    "HEAD_CODE_FILES",
    "SUMMARY_FILES",
    "WEIGHT_FILES",
    "make_plots",
    "recipe_summary",
    "remove_stale_files",
    "save_task_outputs",
    "write_summary",
]
