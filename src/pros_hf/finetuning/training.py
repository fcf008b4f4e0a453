"""Fine-tuning a ProS head with transformers' `Trainer`: the head, the optimizer groups, and the task metrics.

`build_head` makes the head for a task on a pre-trained backbone (or the same architecture at random initialisation,
the baseline that says what pre-training contributes); `FinetuneTrainer` is `Trainer` with the layer-wise
parameter groups of `pros_hf.finetuning.optim` and a separate evaluation collator (no augmentation at test time);
`task_metrics` scores predictions with the evaluate modules of `pros_hf.metrics`.
"""

import contextlib
import logging
import os

import numpy as np
import torch
from transformers import Trainer

from .data import TaskLabels
from .optim import parameter_groups

logger = logging.getLogger(__name__)

# Scalar metrics of each task, the first one the headline (and whether higher is better).
TASK_METRICS = {
    "expression": ("accuracy", "macro_f1"),
    "attributes": ("mean_accuracy",),
    "landmarks": ("nme", "failure_rate", "auc"),
}
HIGHER_IS_BETTER = {
    "accuracy": True,
    "macro_f1": True,
    "mean_accuracy": True,
    "nme": False,
    "failure_rate": False,
    "auc": True,
}


def head_class(task: str):
    from .. import ProSForImageClassification, ProSForLandmarkDetection

    return ProSForLandmarkDetection if task == "landmarks" else ProSForImageClassification


def head_config_overrides(
    labels: TaskLabels,
    classifier_pooling: str | None = None,
    landmark_decoder: str | None = None,
    landmark_decoder_hidden_size: int | None = None,
    drop_path_rate: float | None = None,
) -> dict:
    """The config fields a task head needs on top of the backbone's."""
    overrides: dict = {}
    if labels.task == "landmarks":
        overrides["num_landmarks"] = labels.num_landmarks
        if landmark_decoder:
            overrides["landmark_decoder"] = landmark_decoder
        if landmark_decoder_hidden_size:
            overrides["landmark_decoder_hidden_size"] = landmark_decoder_hidden_size
    else:
        overrides.update(
            num_labels=labels.num_labels,
            id2label=labels.id2label,
            label2id=labels.label2id,
            problem_type=labels.problem_type,
        )
        if classifier_pooling:
            overrides["classifier_pooling"] = classifier_pooling
    if drop_path_rate is not None:
        overrides["drop_path_rate"] = drop_path_rate
    return overrides


def build_head(task: str, backbone, overrides: dict, random_init: bool = False, seed: int = 0):
    """The task head on `backbone` (a ProSModel / pre-training export, a folder or Hub id of one, or a `ProSConfig`
    for a random-init model of that size). With `random_init` the same architecture gets seeded random weights."""
    from .. import ProSConfig
    from ..loading import load_backbone
    from ..modeling_pros_heads import head_config

    cls = head_class(task)
    torch.manual_seed(seed)
    if isinstance(backbone, ProSConfig) or random_init:  # the architecture only: no backbone weights to copy
        if isinstance(backbone, ProSConfig):
            backbone_config = backbone
        elif isinstance(backbone, (str, os.PathLike)):  # read config.json alone; the weights are not needed
            backbone_config = ProSConfig.from_pretrained(backbone)
        else:
            backbone_config = load_backbone(backbone).config
        return cls(head_config(backbone_config, **overrides))
    return cls.from_backbone(backbone, **overrides)


class FinetuneTrainer(Trainer):
    """`Trainer` with BEiT-style parameter groups (lower backbone learning rate, layer-wise decay, no weight decay on
    biases, norms and embeddings) and a collator of its own for evaluation and prediction."""

    def __init__(
        self, *args, backbone_lr_scale: float = 1.0, layer_decay: float = 1.0, eval_data_collator=None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.backbone_lr_scale = backbone_lr_scale
        self.layer_decay = layer_decay
        self.eval_data_collator = eval_data_collator

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = model if model is not None else self.model
            groups = parameter_groups(
                opt_model,
                self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                backbone_lr_scale=self.backbone_lr_scale,
                layer_decay=self.layer_decay,
            )
            # The optimizer `--optim` names (transformers' default: fused AdamW), on the layer-wise groups; each
            # group's own `lr` / `weight_decay` override the defaults in `optimizer_kwargs`.
            if self.optimizer_cls_and_kwargs is not None:
                optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs = dict(optimizer_kwargs)
            if "params" in optimizer_kwargs or "model" in optimizer_kwargs:
                raise ValueError(
                    f"--optim {self.args.optim} builds its own parameter groups; FinetuneTrainer needs "
                    "an optimizer that takes the layer-wise groups (e.g. adamw_torch, adamw_torch_fused)."
                )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    @contextlib.contextmanager
    def _evaluation_collator(self):
        if self.eval_data_collator is None:
            yield
            return
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            yield
        finally:
            self.data_collator = train_collator

    def get_eval_dataloader(self, eval_dataset=None):
        with self._evaluation_collator():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        with self._evaluation_collator():
            return super().get_test_dataloader(test_dataset)


_METRIC_CACHE: dict[str, object] = {}


def _metric(name: str):
    if name not in _METRIC_CACHE:
        from ..metrics import load_metric

        _METRIC_CACHE[name] = load_metric(name)
    return _METRIC_CACHE[name]


def default_nme_normalization(num_landmarks: int) -> str:
    """Inter-ocular (outer eye corners) for the 68- and 98-point layouts (300W, WFLW), box diagonal otherwise
    (AFLW-19's protocol; it needs no eye indices)."""
    return "inter_ocular" if num_landmarks in (68, 98) else "box_diagonal"


def task_metrics(
    labels: TaskLabels, predictions, references, nme_normalization: str | None = None, failure_threshold: float = 0.10
) -> dict:
    """Full metrics of one run through the evaluate modules.

    expression: `predictions` logits (N, C) or ids (N,), `references` ids -> accuracy, macro_f1, confusion_matrix,
    per_class_f1. attributes: logits (N, C) (a sigmoid is applied) and 0/1 references -> mean_accuracy,
    per_attribute_accuracy. landmarks: (N, P, 2) points in one pixel frame -> nme, failure_rate, auc, per_image_nme.
    """
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    if labels.task == "expression":
        ids = predictions.argmax(axis=-1) if predictions.ndim == 2 else predictions
        return _metric("expression_metrics").compute(
            predictions=ids.astype(int).tolist(),
            references=references.astype(int).tolist(),
            num_classes=labels.num_labels,
            label_names=list(labels.label_names),
        )
    if labels.task == "attributes":
        probabilities = 1.0 / (1.0 + np.exp(-predictions.astype(np.float64)))
        return _metric("attribute_accuracy").compute(
            predictions=probabilities.tolist(),
            references=references.astype(int).tolist(),
            attribute_names=list(labels.label_names),
        )
    normalization = nme_normalization or default_nme_normalization(labels.num_landmarks)
    return _metric("landmark_nme").compute(
        predictions=list(predictions.astype(np.float64)),
        references=list(references.astype(np.float64)),
        normalization=normalization,
        failure_threshold=failure_threshold,
    )


def scalar_metrics(labels: TaskLabels, full: dict) -> dict[str, float]:
    return {key: float(full[key]) for key in TASK_METRICS[labels.task] if key in full}


def make_compute_metrics(
    labels: TaskLabels,
    input_size: tuple[int, int],
    nme_normalization: str | None = None,
    failure_threshold: float = 0.10,
):
    """`compute_metrics` for `Trainer` (scalars only; landmarks scored in the model input's pixels)."""

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        references = eval_prediction.label_ids
        if isinstance(references, (tuple, list)):
            references = references[0]
        if labels.task == "landmarks":
            scale = np.asarray([input_size[1], input_size[0]], dtype=np.float64)
            predictions, references = predictions * scale - 0.5, references * scale - 0.5
        return scalar_metrics(
            labels, task_metrics(labels, predictions, references, nme_normalization, failure_threshold)
        )

    return compute_metrics


def ignore_keys_for(task: str) -> list[str]:
    """Outputs `Trainer.predict` should not gather: heatmaps are (N, P, h, w), far larger than the points."""
    return ["heatmaps", "hidden_states", "attentions"] if task == "landmarks" else ["hidden_states", "attentions"]


__all__ = [
    "FinetuneTrainer",
    "HIGHER_IS_BETTER",
    "TASK_METRICS",
    "build_head",
    "default_nme_normalization",
    "head_class",
    "head_config_overrides",
    "ignore_keys_for",
    "make_compute_metrics",
    "scalar_metrics",
    "task_metrics",
]
