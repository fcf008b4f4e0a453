"""The representation protocols end to end: frozen-feature linear probes and k-NN of a backbone, against its floor,
the same architecture at random initialisation and the supervised ceiling, summarised as the share of the gap
closed (`pros_hf.representation.gap`).

One call scores a backbone on every task and protocol for several seeds. A seed changes what a protocol draws: the
probe's validation split and mini-batch order, the identity gallery/query split, and which random initialisation
the random-init baseline is (one per seed). The pre-trained backbone's own features do not depend on the seed.
"""

import copy
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..knn.evaluation import stratified_split_indices
from .ceiling import CeilingRecipe, train_supervised
from .ceiling_cache import CeilingCache
from .features import frozen_features
from .few_shot import DEFAULT_MIN_STEPS, few_shot_protocol_name, few_shot_scores, supervised_scores
from .gap import gap_closed, mean_and_std
from .knn_protocol import knn_score
from .linear_probe import linear_probe
from .tasks import TASK_NAMES, RepresentationTask, floor_score, get_tasks, landmark_nme

logger = logging.getLogger(__name__)

PROTOCOLS = ("linear_probe", "knn")  # frozen-feature protocols; few-shot fine-tuning is asked for by its fractions


@dataclass
class EvaluationData:
    """Processed images (N, 3, H, W) and each task's targets (`task_targets`), row for row."""

    pixel_values: torch.Tensor
    targets: dict

    def __post_init__(self):
        for name, target in self.targets.items():
            if len(target) != len(self.pixel_values):
                raise ValueError(f"{len(target)} {name} targets for {len(self.pixel_values)} images.")

    def fingerprint(self) -> str:
        """A digest of the pixels and targets, so that a cached ceiling is tied to the exact data."""
        digest = hashlib.sha256(self.pixel_values.float().numpy().tobytes())
        for name in sorted(self.targets):
            digest.update(name.encode())
            digest.update(self.targets[name].numpy().tobytes())
        return digest.hexdigest()[:16]


def _views(tasks):
    return sorted({task.features for task in tasks})


def score_backbone(
    model: torch.nn.Module,
    train: EvaluationData,
    test: EvaluationData,
    tasks: Sequence[RepresentationTask],
    protocols: Sequence[str],
    seeds: Sequence[int],
) -> list[dict]:
    """`{task: {protocol: score}}` of `model`'s frozen features for each of `seeds` (the features are computed once:
    they do not depend on the seed)."""
    tasks = list(tasks)
    train_features = frozen_features(model, train.pixel_values, _views(tasks))
    test_features = frozen_features(model, test.pixel_values, _views(tasks))
    return [_score_features(train_features, test_features, train, test, tasks, protocols, seed) for seed in seeds]


def _score_features(train_features, test_features, train, test, tasks, protocols, seed: int) -> dict:
    scores = {}
    for task in tasks:
        if task.held_out_people:  # identity: gallery and queries among the people no backbone trained on
            people = test.targets[task.name]
            gallery, queries = stratified_split_indices(people.numpy(), 0.5, seed)
            fit_x, fit_y = test_features[task.features][gallery], people[gallery]
            eval_x, eval_y = test_features[task.features][queries], people[queries]
        else:
            fit_x, fit_y = train_features[task.features], train.targets[task.name]
            eval_x, eval_y = test_features[task.features], test.targets[task.name]
        error = landmark_nme if task.kind == "regression" else None
        scores[task.name] = {}
        for protocol in protocols:
            if protocol == "linear_probe":
                result = linear_probe(fit_x, fit_y, eval_x, eval_y, task.kind, seed=seed, regression_error=error)
                scores[task.name][protocol] = result.test_score
            elif protocol == "knn":
                scores[task.name][protocol] = knn_score(fit_x, fit_y, eval_x, eval_y, task.kind, error)
            else:
                raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}.")
    return scores


def floor_scores(
    train: EvaluationData, test: EvaluationData, tasks: Sequence[RepresentationTask], seeds: Sequence[int]
) -> dict:
    """`{task: score}` of the labels alone (the identity floor is the gallery's most frequent person, over the
    seeds' gallery/query splits)."""
    out = {}
    for task in tasks:
        if task.held_out_people:
            people = test.targets[task.name]
            values = []
            for seed in seeds:
                gallery, queries = stratified_split_indices(people.numpy(), 0.5, seed)
                values.append(floor_score(task, people[gallery], people[queries]))
            out[task.name] = float(np.mean(values))
        else:
            out[task.name] = floor_score(task, train.targets[task.name], test.targets[task.name])
    return out


# fields that do not change the function a backbone computes on unmasked images
_NOT_ARCHITECTURE = (
    "architectures",
    "auto_map",
    "transformers_version",
    "_name_or_path",
    "use_mask_token",
    "dtype",
    "use_cache",
)


def architecture(model: torch.nn.Module) -> dict:
    """The configuration fields that define what `model` computes: a backbone exported with a mask token (the masked
    patch loss) has the same ceiling and random initialisation as one without."""
    return {k: v for k, v in model.config.to_dict().items() if k not in _NOT_ARCHITECTURE}


def random_init_model(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """The same architecture as `model` (without a mask token), freshly initialised with `seed` (its
    `_init_weights`, as `from_config`)."""
    config = copy.deepcopy(model.config)
    config.use_mask_token = False
    torch.manual_seed(seed)
    return type(model)(config).eval()


def _cache_settings(model, train, test, tasks, seeds, recipe, flip_permutation, **extra) -> dict:
    """Everything a ceiling or a random-init baseline depends on (not the evaluated weights)."""
    return {
        "architecture": architecture(model),
        "tasks": [task.name for task in tasks],
        "seeds": list(seeds),
        "recipe": recipe.to_dict(),
        "train_data": train.fingerprint(),
        "test_data": test.fingerprint(),
        "flip_permutation": list(flip_permutation) if flip_permutation is not None else None,
        **extra,
    }


def _cached(cache: CeilingCache | None, name: str, settings: dict, compute):
    if cache is not None:
        stored = cache.get(name, settings)
        if stored is not None:
            logger.info("%s read from %s", name, cache.path(name))
            return stored
    results = compute()
    if cache is not None:
        cache.put(name, settings, results)
    return results


def ceiling_scores(
    model: torch.nn.Module,
    train: EvaluationData,
    test: EvaluationData,
    tasks: Sequence[RepresentationTask],
    protocols: Sequence[str],
    seeds: Sequence[int],
    recipe: CeilingRecipe,
    flip_permutation: Sequence[int] | None = None,
    cache: CeilingCache | None = None,
    show_progress: bool = True,
) -> dict:
    """`{task: {protocol: score}}` (means over `seeds`) of the architecture trained with every training label, plus
    `{task: {"supervised": score}}`, its readouts' own test score (the few-shot protocols' ceiling); read from
    `cache` when it holds a ceiling made with exactly these settings, else trained and stored there."""

    def compute():
        supervised = train_supervised(
            random_init_model(model, recipe.seed),
            train.pixel_values,
            train.targets,
            tasks,
            recipe,
            flip_permutation,
            show_progress,
            description="Supervised ceiling",
        )
        per_seed = score_backbone(supervised.backbone, train, test, tasks, protocols, seeds)
        results = {
            task.name: {protocol: float(np.mean([s[task.name][protocol] for s in per_seed])) for protocol in protocols}
            for task in tasks
        }
        own = supervised_scores(
            supervised, test.pixel_values, test.targets, [task for task in tasks if not task.held_out_people]
        )
        for name, score in own.items():
            results[name]["supervised"] = score
        return results

    settings = _cache_settings(model, train, test, tasks, seeds, recipe, flip_permutation, protocols=list(protocols))
    return _cached(cache, "ceiling", settings, compute)


def few_shot_results(
    model: torch.nn.Module,
    train: EvaluationData,
    test: EvaluationData,
    tasks: Sequence[RepresentationTask],
    fractions: Sequence[float],
    seeds: Sequence[int],
    recipe: CeilingRecipe,
    flip_permutation=None,
    min_steps: int = DEFAULT_MIN_STEPS,
    show_progress: bool = True,
) -> dict:
    """`{protocol: [ {task: score} per seed ]}` of few-shot fine-tuning of `model` for each fraction."""
    return {
        few_shot_protocol_name(fraction): [
            few_shot_scores(
                model, train, test, tasks, fraction, seed, recipe, flip_permutation, min_steps, show_progress
            )
            for seed in seeds
        ]
        for fraction in fractions
    }


def _check_fractions(fractions) -> list[float]:
    fractions = [float(f) for f in fractions]
    if any(not 0.0 < f <= 1.0 for f in fractions):
        raise ValueError(f"few-shot fractions must be in (0, 1], got {fractions!r}.")
    return fractions


def _entry(task, floor, pre, rnd, top) -> dict:
    pre_mean, pre_std = mean_and_std(pre)
    rnd_mean, rnd_std = mean_and_std(rnd)
    gaps = [g for g in (gap_closed(p, r, top) for p, r in zip(pre, rnd)) if g is not None]
    return {
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "floor": floor,
        "random_init": rnd_mean,
        "random_init_std": rnd_std,
        "pretrained": pre_mean,
        "pretrained_std": pre_std,
        "ceiling": top,
        "gap_closed": gap_closed(pre_mean, rnd_mean, top),
        "gap_closed_std": mean_and_std(gaps)[1] if gaps else None,
        "seeds": {"pretrained": list(pre), "random_init": list(rnd)},
    }


def evaluate_representation(
    model: torch.nn.Module,
    train: EvaluationData,
    test: EvaluationData,
    tasks: Sequence[str] = TASK_NAMES,
    protocols: Sequence[str] = PROTOCOLS,
    seeds: Sequence[int] = (0, 1, 2),
    few_shot_fractions: Sequence[float] = (),
    ceiling_recipe: CeilingRecipe | None = None,
    flip_permutation: Sequence[int] | None = None,
    ceiling_cache: CeilingCache | None = None,
    few_shot_min_steps: int = DEFAULT_MIN_STEPS,
    show_progress: bool = True,
) -> dict:
    """Score `model` (a pre-trained backbone) against the floor, random initialisation and the supervised ceiling.

    `protocols` are the frozen-feature ones (`linear_probe`, `knn`); `few_shot_fractions` (e.g. 0.01, 0.05, 0.1,
    1.0) add few-shot fine-tuning at those fractions of the training labels (protocols `few_shot_1%`, ...; identity
    has none). Returns `{"tasks": {TASK: {PROTOCOL: {"metric", "higher_is_better", "floor", "random_init",
    "random_init_std", "pretrained", "pretrained_std", "ceiling", "gap_closed", "gap_closed_std", "seeds"}}}}`:
    means and sample standard deviations over `seeds`; `gap_closed` is computed from the means, `gap_closed_std` is
    the spread of the per-seed gaps. The frozen protocols' ceiling is the protocol applied to the supervised model's
    features; the few-shot ceiling is the supervised model's own readouts. The ceiling and the random-init scores do
    not depend on `model`'s weights: with `ceiling_cache` they are stored and reused for the same settings.
    """
    tasks = get_tasks(tasks)
    protocols = list(protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not (protocols or few_shot_fractions):
        raise ValueError(
            f"protocols must be a list from {list(PROTOCOLS)} (or few_shot_fractions given), got {protocols!r}."
        )
    fractions = _check_fractions(few_shot_fractions)
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed.")
    recipe = ceiling_recipe or CeilingRecipe()
    floors = floor_scores(train, test, tasks, seeds)
    pretrained = score_backbone(model, train, test, tasks, protocols, seeds)

    def random_init_scores():
        return {
            "frozen": [
                score_backbone(random_init_model(model, seed), train, test, tasks, protocols, [seed])[0]
                for seed in seeds
            ],
            "few_shot": few_shot_results(
                random_init_model(model, 0),
                train,
                test,
                tasks,
                fractions,
                seeds,
                recipe,
                flip_permutation,
                few_shot_min_steps,
                show_progress,
            ),
        }

    random_settings = _cache_settings(
        model,
        train,
        test,
        tasks,
        seeds,
        recipe,
        flip_permutation,
        protocols=protocols,
        few_shot_fractions=fractions,
        few_shot_min_steps=few_shot_min_steps,
    )
    random_init = _cached(ceiling_cache, "random_init", random_settings, random_init_scores)
    ceiling = ceiling_scores(
        model, train, test, tasks, protocols, seeds, recipe, flip_permutation, ceiling_cache, show_progress
    )
    pretrained_few_shot = few_shot_results(
        model, train, test, tasks, fractions, seeds, recipe, flip_permutation, few_shot_min_steps, show_progress
    )
    report = {"tasks": {}, "seeds": seeds, "ceiling_recipe": recipe.to_dict()}
    for task in tasks:
        entries = {}
        for protocol in protocols:
            entries[protocol] = _entry(
                task,
                floors[task.name],
                [s[task.name][protocol] for s in pretrained],
                [s[task.name][protocol] for s in random_init["frozen"]],
                ceiling[task.name][protocol],
            )
        for protocol, per_seed in pretrained_few_shot.items():
            if task.held_out_people:
                continue
            entries[protocol] = _entry(
                task,
                floors[task.name],
                [s[task.name] for s in per_seed],
                [s[task.name] for s in random_init["few_shot"][protocol]],
                ceiling[task.name]["supervised"],
            )
        report["tasks"][task.name] = entries
    return report


__all__ = [
    "EvaluationData",
    "PROTOCOLS",
    "ceiling_scores",
    "evaluate_representation",
    "few_shot_results",
    "floor_scores",
    "random_init_model",
    "score_backbone",
]
