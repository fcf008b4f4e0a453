"""`KNNCallback`: weighted k-NN accuracy of the teacher tracked during training, logged and usable for model selection."""

import logging
from collections.abc import Callable, Sequence

import torch
from transformers import TrainerCallback

from ..validation import check_k_temperature
from .classifier import knn_accuracy_from_features
from .evaluation import _effective_k, _labels_and_num_classes, stratified_split_indices
from .features import check_image_column, default_backbone, extract_dataset_features, holds_shards

logger = logging.getLogger(__name__)


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
        check_k_temperature(k, temperature)
        for part, dataset in (("train_dataset", train_dataset), ("test_dataset", test_dataset)):
            check_image_column(dataset, image_column, part)  # now, not at the first k-NN hours into a run
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

    def compute(self, model: torch.nn.Module, show_progress: bool = True) -> dict[str, float]:
        """k-NN top-1 (percent) of ``model_getter(model)`` for every label column: ``{"knn/<label>_top1": ...}``,
        plus ``"knn_skipped_images"`` when images that could not be decoded were left out (not under ``knn/``,
        which holds accuracies only)."""
        backbone = self.model_getter(model)
        common = dict(
            image_processor=self.image_processor,
            batch_size=self.batch_size,
            image_column=self.image_column,
            show_progress=show_progress,
        )
        train = extract_dataset_features(backbone, self.train_dataset, name="the k-NN memory bank", **common)
        test = extract_dataset_features(backbone, self.test_dataset, name="the k-NN queries", **common)
        metrics = {}
        for name, (train_labels, test_labels, num_classes) in self.labels.items():
            scores = knn_accuracy_from_features(train.features, train_labels[train.kept], test.features,
                                                test_labels[test.kept], num_classes,
                                                _effective_k(self.k, len(train.kept)), self.temperature)  # fmt: skip
            metrics[f"knn/{name}_top1"] = round(scores["top1"], 4)
        if train.num_skipped or test.num_skipped:
            metrics["knn_skipped_images"] = train.num_skipped + test.num_skipped
        return metrics

    def _run(self, args, state, control, model) -> dict[str, float] | None:
        if model is None:
            logger.warning("KNNCallback: no model passed to the callback event; k-NN evaluation skipped.")
            return None
        if self._last_step == state.global_step and self.latest:
            return self.latest  # already measured at this step (e.g. eval and train end coincide)
        sharded = holds_shards(self.model_getter(model))
        if not state.is_world_process_zero and not sharded:  # features of the whole split on one process
            return None
        # a sharded backbone (FSDP) gathers its weights from every process in each forward: all of them run it
        show_progress = state.is_world_process_zero and not getattr(args, "disable_tqdm", False)
        metrics = self.compute(model, show_progress=show_progress)
        self.latest, self._last_step = metrics, state.global_step  # on every process that ran, so all skip alike
        if not state.is_world_process_zero:
            return None
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
            self._run(args, state, control, model)
        return control

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        if self.eval_steps is None or self._last_step == state.global_step:
            results = self._run(args, state, control, model)
            if results and metrics is not None:
                metrics.update({f"eval_{key}": value for key, value in results.items()})
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.at_train_end:
            self._run(args, state, control, model)
        return control
