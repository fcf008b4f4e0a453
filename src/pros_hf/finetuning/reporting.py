"""What a fine-tuning comparison reports: the labels-only floor, per-seed figures as mean and spread, the printed table.

Why a floor: with a few labels a head can score well above chance without looking at the images (the majority
expression, each attribute's majority value, the mean face shape), so every comparison is printed next to what the
same labelled examples give alone. A head that does not beat it has learnt nothing from the pixels.
"""

import numpy as np

from .data import label_array, multi_hot
from .training import HIGHER_IS_BETTER, scalar_metrics, task_metrics

INIT_NAMES = {"pretrained": "pre-trained", "random_init": "random init"}


def labels_only_scores(
    data,
    train_indices,
    nme_normalization: str | None = None,
    failure_threshold: float = 0.1,
    train_sizes=None,
    test_sizes=None,
) -> dict[str, float]:
    """The task's metrics for predictions made from the labels of `data.train[train_indices]` alone: the majority
    class (expressions), each attribute's majority value, the mean face shape (landmarks). Landmarks need the
    (height, width) of every training image (`train_sizes`, indexed like `data.train`) and of each test image, since
    the mean shape is taken in normalised units and scored in each test image's pixels."""
    labels = data.labels
    train = data.train.select(train_indices)
    if labels.task == "expression":
        majority = np.bincount(label_array(train, labels), minlength=labels.num_labels).argmax()
        full = task_metrics(labels, np.full(len(data.test), majority), np.asarray(data.test["expression"]))
    elif labels.task == "attributes":
        majority = (label_array(train, labels).mean(axis=0) > 0.5).astype(np.float64)
        logits = np.where(np.tile(majority, (len(data.test), 1)) > 0, 10.0, -10.0)
        full = task_metrics(labels, logits, multi_hot(data.test["attributes"], labels.num_labels))
    else:
        if train_sizes is None or test_sizes is None:
            raise ValueError(
                "labels_only_scores for landmarks needs train_sizes and test_sizes ((height, width) of each image)."
            )
        sizes = [train_sizes[i][::-1] for i in train_indices]  # (width, height): the mean shape in normalised units
        points = label_array(train, labels)
        mean = np.mean([(p + 0.5) / np.asarray(size) for p, size in zip(points, sizes)], axis=0)
        predictions = [mean * np.asarray(size[::-1]) - 0.5 for size in test_sizes]
        references = [np.asarray(p, dtype=np.float64) for p in data.test["landmarks"]]
        full = task_metrics(labels, predictions, references, nme_normalization, failure_threshold)
    return scalar_metrics(labels, full)


def summarise_seeds(per_seed: dict[int, dict]) -> dict:
    """`{seed: {metric: value}}` -> per-seed figures, mean and sample std (0.0 for one seed) of every number all seeds
    have (`best_step`, for one, exists only where an evaluation ran)."""
    first = next(iter(per_seed.values()))
    keys = [k for k in first if isinstance(first[k], (int, float)) and all(k in run for run in per_seed.values())]
    mean = {k: float(np.mean([run[k] for run in per_seed.values()])) for k in keys}
    std = {k: float(np.std([run[k] for run in per_seed.values()], ddof=1)) if len(per_seed) > 1 else 0.0 for k in keys}
    return {"per_seed": {str(seed): run for seed, run in per_seed.items()}, "mean": mean, "std": std}


def format_comparison_table(all_results: dict[str, dict]) -> str:
    """The printed table of `{task: results}` (each as `results.json` holds it): every metric for the pre-trained
    backbone and, where both ran, random initialisation and which is better ("level" where the printed means are equal),
    next to the labels-only floor."""
    lines = []
    first = next(iter(all_results.values()))
    few = f"{100 * first['few_shot']:g}% of the labels" if first["few_shot"] else "all labels"
    # one seed has no spread: results.json keeps std 0.0 (the model card's table reads it), the table shows none
    single = len(first["seeds"]) == 1
    spread = f"1 seed: {first['seeds'][0]}" if single else f"mean ± std over seeds {first['seeds']}"
    lines.append(f"Fine-tuning ({few}, {spread}), test set scores:")
    compare = any("random_init" in r["runs"] and "pretrained" in r["runs"] for r in all_results.values())
    header = f"{'task':<12}{'metric':<15}{'pre-trained':>20}" + (f"{'random init':>20}{'better':>9}" if compare else "")
    if not compare:
        header = f"{'task':<12}{'metric':<15}{INIT_NAMES[next(iter(first['runs']))]:>20}"
    lines.append(header + f"{'labels only':>14}")
    for task, result in all_results.items():
        for metric in result["metrics"]:
            cells = []
            for init in ("pretrained", "random_init") if compare else (next(iter(result["runs"])),):
                run = result["runs"][init]
                cells.append(
                    f"{run['mean'][metric]:.4f}" if single else f"{run['mean'][metric]:.4f} ± {run['std'][metric]:.4f}"
                )
            row = f"{task:<12}{metric:<15}" + "".join(f"{c:>20}" for c in cells)
            if compare:
                a, b = result["runs"]["pretrained"]["mean"][metric], result["runs"]["random_init"]["mean"][metric]
                better = a > b if HIGHER_IS_BETTER[metric] else a < b
                verdict = "level" if f"{a:.4f}" == f"{b:.4f}" else ("yes" if better else "no")  # as printed
                row += f"{verdict:>9}"
            lines.append(row + f"{result['prior']['mean'][metric]:>14.4f}")
    lines.append(
        "labels only: the majority class, each attribute's majority value or the mean face shape of the same "
        "labelled examples, without the images."
    )
    return "\n".join(lines)


__all__ = ["INIT_NAMES", "format_comparison_table", "labels_only_scores", "summarise_seeds"]
