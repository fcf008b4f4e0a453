"""Weighted k-NN evaluation of frozen features: the "is it learning?" signal of self-distillation.

Why: the pre-training loss is a poor guide to representation quality (REFERENCE.md section 6, item 2; DINO's
maintainers tune with k-NN accuracy). A weighted k-NN on L2-normalised CLS features needs no training, no
hyper-parameter search and runs in seconds on a held-out labelled set, so it can be tracked during pre-training
(:class:`KNNCallback`) and compared against the same architecture at random initialisation.

The classifier follows DINO's ``knn_classifier`` (Caron et al. 2021, facebookresearch/dino ``eval_knn.py``): cosine
similarity to every training feature, the ``k`` most similar neighbours vote for their class with weight
``exp(similarity / temperature)``, classes are ranked by their summed weight. Accuracies are reported, as in DINO, in
percent (floats in [0, 100]).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

__all__ = [
    "KNNCallback",
    "default_backbone",
    "evaluate_knn",
    "extract_features",
    "knn_accuracy",
    "knn_accuracy_from_features",
    "load_backbone",
    "stratified_split_indices",
    "weighted_knn_classify",
]


# --------------------------------------------------------------------------------------------------------------------
# Features


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """Strip accelerate / DDP / DataParallel wrappers (they keep the real model in ``.module``)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def default_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The network k-NN should judge: the EMA teacher of a pre-training model (what ProS exports), else the model."""
    model = _unwrap(model)
    teacher = getattr(model, "teacher", None)
    return _unwrap(teacher) if isinstance(teacher, torch.nn.Module) else model


def load_backbone(path_or_id: str, **kwargs) -> torch.nn.Module:
    """A ``ProSModel`` from a saved backbone folder / Hub id, or the teacher of a ``ProSForPreTraining`` checkpoint.

    Refuses checkpoints whose backbone weights do not all load: transformers would otherwise initialise the missing
    ones at random with only a warning, and a k-NN number of a half-random model is worse than no number.
    """
    from .configuration_pros import ProSConfig
    from .modeling_pros import ProSModel

    config = ProSConfig.from_pretrained(path_or_id, **kwargs)
    if "ProSForPreTraining" in (config.architectures or []):
        from .modeling_pros_pretraining import ProSForPreTraining

        model, info = ProSForPreTraining.from_pretrained(path_or_id, output_loading_info=True, **kwargs)
        missing = [key for key in info["missing_keys"] if key.startswith("teacher.")]
        model = model.teacher
    else:
        model, info = ProSModel.from_pretrained(path_or_id, output_loading_info=True, **kwargs)
        missing = list(info["missing_keys"])
    if missing:
        raise ValueError(
            f"path_or_id {path_or_id!r}: {len(missing)} backbone weights are missing from the checkpoint (e.g. "
            f"{missing[:3]}); pass a saved ProSModel or a ProSForPreTraining checkpoint."
        )
    return model.eval()


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _cls_features(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The final-norm CLS token (``pooler_output``), falling back to the first token of ``last_hidden_state``."""
    outputs = model(pixel_values=pixel_values)
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is None:
        hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs[0]
        pooled = hidden[:, 0]
    return pooled


def _pixel_batches(source, image_processor, batch_size: int, image_column: str) -> tuple[Iterable, int]:
    """Yield float pixel batches from a pixel tensor, a ``datasets.Dataset`` with an image column, or a loader."""
    if isinstance(source, torch.Tensor):
        if source.ndim != 4 or not source.is_floating_point():
            raise ValueError(
                f"dataset_or_loader as a tensor must be float pixel values (N, C, H, W), got dtype {source.dtype} "
                f"and shape {tuple(source.shape)}."
            )
        starts = range(0, len(source), batch_size)
        return (source[i : i + batch_size] for i in starts), len(starts)
    column_names = getattr(source, "column_names", None)
    if column_names is not None:  # datasets.Dataset
        if image_column not in column_names:
            raise ValueError(f"image_column {image_column!r} is not a column of the dataset ({column_names}).")
        if image_processor is None:
            raise ValueError("image_processor is required to turn dataset images into pixel values.")
        images = source.select_columns([image_column])

        def from_dataset():
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size][image_column]
                batch = [image.convert("RGB") if hasattr(image, "convert") else image for image in batch]
                yield image_processor(batch, return_tensors="pt")["pixel_values"]

        return from_dataset(), math.ceil(len(images) / batch_size)

    def from_loader():  # a DataLoader (or any iterable) of dicts with pixel_values, tensors or (tensor, ...) tuples
        for batch in source:
            if isinstance(batch, dict) or hasattr(batch, "keys"):
                batch = batch["pixel_values"]
            elif isinstance(batch, (tuple, list)):
                batch = batch[0]
            yield batch

    return from_loader(), (len(source) if hasattr(source, "__len__") else None)


def extract_features(
    model: torch.nn.Module,
    dataset_or_loader,
    image_processor=None,
    batch_size: int = 64,
    image_column: str = "image",
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> torch.Tensor:
    """L2-normalised CLS features (float32, (N, D), on the CPU) of a frozen model, as DINO's k-NN uses them.

    ``dataset_or_loader``: a ``datasets.Dataset`` with PIL images in ``image_column`` (processed with
    ``image_processor``, default ``ProSImageProcessor.from_model_config(model.config)``), a float tensor of pixel
    values (N, C, H, W), or an iterable of batches (dicts with ``pixel_values``, tensors, or tuples whose first item
    is the pixel tensor). The model runs in eval mode under ``torch.inference_mode()``; its train/eval mode is
    restored afterwards, so this is safe to call in the middle of training.
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if image_processor is None and hasattr(dataset_or_loader, "column_names"):
        from .image_processing_pros import ProSImageProcessor

        image_processor = ProSImageProcessor.from_model_config(model.config)
    device = torch.device(device) if device is not None else _model_device(model)
    batches, total = _pixel_batches(dataset_or_loader, image_processor, batch_size, image_column)
    was_training = model.training
    model.eval()
    features = []
    try:
        with torch.inference_mode():
            for pixel_values in tqdm(batches, total=total, desc="Extracting features", disable=not show_progress,
                                     leave=False):  # fmt: skip
                pooled = _cls_features(model, pixel_values.to(device, non_blocking=True))
                features.append(torch.nn.functional.normalize(pooled.float(), dim=1, p=2).cpu())
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("dataset_or_loader is empty: no features to extract.")
    return torch.cat(features)


# --------------------------------------------------------------------------------------------------------------------
# The classifier


def _check_k_temperature(k, temperature) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be > 0 (votes are exp(similarity / temperature)), got {temperature!r}.")
    if 1.0 / temperature > 700:
        raise ValueError(f"temperature must be >= 1/700: exp(1 / temperature) overflows float64, got {temperature!r}.")


def _check_knn_inputs(train_features, train_labels, test_features, num_classes, k, temperature, chunk_size):
    _check_k_temperature(k, temperature)
    if not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError(
            f"train_features and test_features must be 2-D (N, D), got shapes {tuple(train_features.shape)} and "
            f"{tuple(test_features.shape)}."
        )
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"test_features has dimension {test_features.shape[1]} but train_features has {train_features.shape[1]}."
        )
    if train_labels.ndim != 1 or len(train_labels) != len(train_features):
        raise ValueError(
            f"train_labels must be 1-D with one label per row of train_features ({len(train_features)}), got shape "
            f"{tuple(train_labels.shape)}."
        )
    if k > len(train_features):
        raise ValueError(f"k={k} is larger than the number of training features ({len(train_features)}).")
    if train_labels.is_floating_point() or train_labels.is_complex():
        raise ValueError(f"train_labels must be integer class ids, got dtype {train_labels.dtype}.")
    if len(train_labels) and (int(train_labels.min()) < 0 or int(train_labels.max()) >= num_classes):
        raise ValueError(
            f"train_labels must lie in [0, num_classes={num_classes}), got range "
            f"[{int(train_labels.min())}, {int(train_labels.max())}]."
        )


@torch.no_grad()
def weighted_knn_classify(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DINO's weighted k-NN vote: returns ``(predictions, scores)``.

    Features are expected L2-normalised (as :func:`extract_features` returns them), so their dot product is the
    cosine similarity. For each test row, the ``k`` most similar training rows vote for their label with weight
    ``exp(similarity / temperature)``; ``scores`` (M, num_classes) are the summed votes (float64, so that small
    temperatures do not overflow) and ``predictions`` (M,) the best-scoring class. Ties go to the lower class id
    (DINO's unstable sort leaves them undefined). The test set is processed ``chunk_size`` rows at a time, so memory
    is O(chunk_size x N_train).
    ``k`` = 20 and ``temperature`` = 0.07 are DINO's defaults ("20 is usually working the best").
    """
    train_labels = torch.as_tensor(train_labels)
    _check_knn_inputs(train_features, train_labels, test_features, num_classes, k, temperature, chunk_size)
    train_labels = train_labels.to(train_features.device, torch.long)
    train_t = train_features.t()
    scores = []
    for start in range(0, len(test_features), chunk_size):
        chunk = test_features[start : start + chunk_size].to(train_features.device, train_features.dtype)
        similarity = chunk @ train_t
        top_similarity, indices = similarity.topk(k, dim=1, largest=True, sorted=True)
        neighbour_labels = train_labels[indices]  # (m, k)
        weights = (top_similarity.double() / temperature).exp()  # float64: exp(1 / 0.01) already overflows fp32
        votes = torch.zeros(len(chunk), num_classes, dtype=torch.float64, device=chunk.device)
        scores.append(votes.scatter_add_(1, neighbour_labels, weights))
    if not scores:
        scores = [torch.zeros(0, num_classes, dtype=torch.float64, device=train_features.device)]
    scores = torch.cat(scores)
    predictions = scores.sort(dim=1, descending=True, stable=True).indices[:, 0]
    return predictions, scores


def knn_accuracy_from_features(
    train_features: torch.Tensor,
    train_labels,
    test_features: torch.Tensor,
    test_labels,
    num_classes: int | None = None,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 256,
) -> dict[str, float]:
    """Top-1 (and, from 5 classes on, top-5) weighted k-NN accuracy in percent, from precomputed features.

    Top-5 follows DINO exactly: the first ``min(5, k)`` classes of the score ranking (with ``k`` < 5 it is top-k).
    ``num_classes`` defaults to 1 + the largest label seen.
    """
    train_labels, test_labels = torch.as_tensor(train_labels), torch.as_tensor(test_labels)
    if test_labels.ndim != 1 or len(test_labels) != len(test_features):
        raise ValueError(
            f"test_labels must be 1-D with one label per row of test_features ({len(test_features)}), got shape "
            f"{tuple(test_labels.shape)}."
        )
    if len(test_labels) == 0:
        raise ValueError("test_features is empty: nothing to evaluate.")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    if int(test_labels.min()) < 0 or int(test_labels.max()) >= num_classes:
        raise ValueError(
            f"test_labels must lie in [0, num_classes={num_classes}), got range "
            f"[{int(test_labels.min())}, {int(test_labels.max())}]."
        )
    _, scores = weighted_knn_classify(train_features, train_labels, test_features, num_classes, k, temperature,
                                      chunk_size)  # fmt: skip
    ranking = scores.sort(dim=1, descending=True, stable=True).indices
    correct = ranking.eq(test_labels.to(ranking.device, torch.long).view(-1, 1))
    result = {"top1": 100.0 * correct[:, 0].float().mean().item()}
    if num_classes >= 5:
        result["top5"] = 100.0 * correct[:, : min(5, k)].any(dim=1).float().mean().item()
    return result


# --------------------------------------------------------------------------------------------------------------------
# Datasets


def _effective_k(k: int, num_train: int) -> int:
    """Small evaluation splits can hold fewer than ``k`` training examples: vote with all of them, and say so."""
    if k > num_train:
        logger.warning("k=%d is larger than the %d training examples; using k=%d.", k, num_train, num_train)
    return min(k, num_train)


def _labels_and_num_classes(dataset, label_column: str) -> tuple[torch.Tensor, int | None]:
    """Integer labels of a single-label column, and the class count a ``ClassLabel`` feature declares (else None)."""
    if label_column not in dataset.column_names:
        raise ValueError(f"label_column {label_column!r} is not a column of the dataset ({dataset.column_names}).")
    values = dataset[label_column]
    try:
        labels = np.asarray(values)
    except ValueError:  # ragged lists, e.g. a multi-label column
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"label_column {label_column!r} must hold one integer label per example (k-NN is single-label), got "
            f"values like {values[:1]!r}."
        )
    feature = dataset.features.get(label_column)
    num_classes = getattr(feature, "num_classes", None)
    return torch.as_tensor(labels, dtype=torch.long), num_classes


def stratified_split_indices(labels, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train / test indices with every class split in the same proportion (fixed ``seed``).

    Classes with a single example stay in train (a test example without any same-class neighbour only measures
    chance); otherwise each class puts ``round(test_fraction * n)`` of its ``n`` examples, at least 1 and at most
    ``n - 1``, in test.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = 0 if len(members) < 2 else min(max(1, round(test_fraction * len(members))), len(members) - 1)
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))


def knn_accuracy(
    model: torch.nn.Module,
    train_dataset,
    test_dataset,
    label_column: str,
    k: int = 20,
    temperature: float = 0.07,
    image_processor=None,
    batch_size: int = 64,
    image_column: str = "image",
    device=None,
) -> dict[str, float]:
    """Weighted k-NN accuracy (percent) of ``model``'s CLS features for one label column of two datasets.

    Returns ``{"top1": ...}`` plus ``"top5"`` when the label has at least 5 classes.
    """
    _check_k_temperature(k, temperature)
    train_labels, num_classes = _labels_and_num_classes(train_dataset, label_column)
    test_labels, _ = _labels_and_num_classes(test_dataset, label_column)
    common = dict(image_processor=image_processor, batch_size=batch_size, image_column=image_column, device=device)
    train_features = extract_features(model, train_dataset, **common)
    test_features = extract_features(model, test_dataset, **common)
    return knn_accuracy_from_features(train_features, train_labels, test_features, test_labels, num_classes, k,
                                      temperature)  # fmt: skip


def evaluate_knn(
    model: torch.nn.Module,
    dataset,
    label_columns: Sequence[str] = ("expression", "identity"),
    test_fraction: float = 0.2,
    seed: int = 0,
    k: int = 20,
    temperature: float = 0.07,
    image_processor=None,
    batch_size: int = 64,
    image_column: str = "image",
    device=None,
    stratify_by: str | None = None,
) -> dict[str, float]:
    """Split one labelled dataset (stratified on ``stratify_by``, default the first label column) and return
    ``{label: top-1 accuracy %}``.

    Features are extracted once and reused for every label column. The split depends only on ``seed`` and the
    labels, so two models (e.g. trained and random-init) are compared on the same examples.
    """
    _check_k_temperature(k, temperature)
    if isinstance(label_columns, str):
        label_columns = (label_columns,)
    if not label_columns:
        raise ValueError("label_columns must name at least one label column.")
    labels = {name: _labels_and_num_classes(dataset, name) for name in label_columns}
    stratify_by = stratify_by or label_columns[0]
    if stratify_by not in dataset.column_names:
        raise ValueError(f"stratify_by {stratify_by!r} is not a column of the dataset ({dataset.column_names}).")
    strata = labels[stratify_by][0] if stratify_by in labels else _labels_and_num_classes(dataset, stratify_by)[0]
    train_idx, test_idx = stratified_split_indices(strata.numpy(), test_fraction, seed)
    features = extract_features(model, dataset, image_processor=image_processor, batch_size=batch_size,
                                image_column=image_column, device=device)  # fmt: skip
    results = {}
    for name, (values, num_classes) in labels.items():
        k_used = _effective_k(k, len(train_idx))
        scores = knn_accuracy_from_features(features[train_idx], values[train_idx], features[test_idx],
                                            values[test_idx], num_classes, k_used, temperature)
        results[name] = scores["top1"]
    return results


# --------------------------------------------------------------------------------------------------------------------
# Trainer callback


class KNNCallback(TrainerCallback):
    """Track weighted k-NN top-1 accuracy of the backbone during training, on a fixed train/test split.

    When: every ``eval_steps`` optimizer steps if given, otherwise at each evaluation of the Trainer; and at the end of
    training when ``at_train_end``. What: ``model_getter(model)`` (default :func:`default_backbone`, i.e. the
    ``teacher`` of a pre-training model, unwrapped from accelerate / DDP) is run in eval mode; its mode is restored.

    Reporting: a callback does not receive the Trainer, so the values go
      * into ``state.log_history`` as ``{"knn/<label>_top1": ..., "step": ..., "epoch": ...}`` (saved in
        ``trainer_state.json`` with every checkpoint) and to the ``logging`` logger;
      * at evaluations, also into the evaluation ``metrics`` as ``eval_knn/<label>_top1``, so that
        ``metric_for_best_model="knn/expression_top1"`` and early stopping can use them (put this callback before
        ``EarlyStoppingCallback``);
      * through ``trainer.log`` (hence to TensorBoard / W&B and the other ``report_to`` integrations) if the
        callback is given the trainer: ``callback.trainer = trainer`` after building it.
    ``latest`` holds the last results.
    """

    def __init__(
        self,
        train_dataset,
        test_dataset,
        label_columns: Sequence[str] = ("expression",),
        k: int = 20,
        temperature: float = 0.07,
        eval_steps: int | None = None,
        at_train_end: bool = True,
        image_processor=None,
        batch_size: int = 64,
        image_column: str = "image",
        model_getter: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
        trainer=None,
    ):
        if isinstance(label_columns, str):
            label_columns = (label_columns,)
        if not label_columns:
            raise ValueError("label_columns must name at least one label column.")
        if eval_steps is not None and (not isinstance(eval_steps, int) or eval_steps <= 0):
            raise ValueError(f"eval_steps must be a positive integer or None, got {eval_steps!r}.")
        _check_k_temperature(k, temperature)
        self.train_dataset, self.test_dataset = train_dataset, test_dataset
        self.labels = {}
        for name in label_columns:  # validated and cached once: the split is fixed for the whole run
            train_labels, num_classes = _labels_and_num_classes(train_dataset, name)
            test_labels, _ = _labels_and_num_classes(test_dataset, name)
            if num_classes is None:
                num_classes = int(max(train_labels.max(), test_labels.max())) + 1
            self.labels[name] = (train_labels, test_labels, num_classes)
        self.k, self.temperature, self.eval_steps, self.at_train_end = k, temperature, eval_steps, at_train_end
        self.image_processor, self.batch_size, self.image_column = image_processor, batch_size, image_column
        self.model_getter = model_getter or default_backbone
        self.trainer = trainer
        self.latest: dict[str, float] = {}
        self._last_step: int | None = None

    @classmethod
    def from_dataset(cls, dataset, label_columns: Sequence[str] = ("expression",), test_fraction: float = 0.2,
                     seed: int = 0, **kwargs) -> "KNNCallback":  # fmt: skip
        """Split one labelled dataset as :func:`evaluate_knn` does (stratified on the first label column)."""
        if isinstance(label_columns, str):
            label_columns = (label_columns,)
        if not label_columns:
            raise ValueError("label_columns must name at least one label column.")
        labels, _ = _labels_and_num_classes(dataset, label_columns[0])
        train_idx, test_idx = stratified_split_indices(labels.numpy(), test_fraction, seed)
        return cls(dataset.select(train_idx), dataset.select(test_idx), label_columns, **kwargs)

    def compute(self, model: torch.nn.Module) -> dict[str, float]:
        """k-NN top-1 (percent) of ``model_getter(model)`` for every label column: ``{"knn/<label>_top1": ...}``."""
        backbone = self.model_getter(model)
        common = dict(image_processor=self.image_processor, batch_size=self.batch_size, image_column=self.image_column)
        train_features = extract_features(backbone, self.train_dataset, **common)
        test_features = extract_features(backbone, self.test_dataset, **common)
        metrics = {}
        for name, (train_labels, test_labels, num_classes) in self.labels.items():
            scores = knn_accuracy_from_features(train_features, train_labels, test_features, test_labels, num_classes,
                                                _effective_k(self.k, len(train_labels)), self.temperature)  # fmt: skip
            metrics[f"knn/{name}_top1"] = round(scores["top1"], 4)
        return metrics

    def _run(self, state, control, model) -> dict[str, float] | None:
        if model is None:
            logger.warning("KNNCallback: no model passed to the callback event; k-NN evaluation skipped.")
            return None
        if self._last_step == state.global_step and self.latest:
            return self.latest  # already measured at this step (e.g. eval and train end coincide)
        if not state.is_world_process_zero:  # features of the whole split on one process; others skip
            return None
        metrics = self.compute(model)
        self.latest, self._last_step = metrics, state.global_step
        logger.info("k-NN at step %d: %s", state.global_step, metrics)
        if self.trainer is not None:
            should_log = control.should_log  # trainer.log resets it; keep the train-loss log of this step
            self.trainer.log(dict(metrics))
            control.should_log = should_log
        else:
            entry = dict(metrics, step=state.global_step)
            if state.epoch is not None:
                entry["epoch"] = state.epoch
            state.log_history.append(entry)
        return metrics

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.eval_steps is not None and state.global_step > 0 and state.global_step % self.eval_steps == 0:
            self._run(state, control, model)
        return control

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        if self.eval_steps is None or self._last_step == state.global_step:
            results = self._run(state, control, model)
            if results and metrics is not None:
                metrics.update({f"eval_{key}": value for key, value in results.items()})
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.at_train_end:
            self._run(state, control, model)
        return control
