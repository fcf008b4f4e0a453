"""Expression metrics: accuracy, macro-F1 and the confusion matrix of single-label class predictions.

Why: expression data sets (RAF-DB, AffectNet) are imbalanced (happy dominates, fear and disgust are rare), so top-1
accuracy (the ProS paper's measure) is reported next to macro-F1, which weighs each class equally, and the confusion
matrix shows which expressions are confused. Self-contained (numpy and evaluate only), because evaluate copies this
script into its modules cache and imports it from there.
"""

import datasets
import evaluate
import numpy as np

_CITATION = """\
@inproceedings{li2017rafdb,
  title={Reliable Crowdsourcing and Deep Locality-Preserving Learning for Expression Recognition in the Wild},
  author={Li, Shan and Deng, Weihong and Du, JunPing},
  booktitle={CVPR},
  year={2017}
}
"""

_DESCRIPTION = """\
Top-1 accuracy, macro-F1 and the confusion matrix of expression (or any single-label) class predictions, as
fractions in [0, 1]. Macro-F1 is the mean of the per-class F1 over the classes that occur in the references or the
predictions: a class with neither has an undefined F1 (0 / 0) and is left out, which is scikit-learn's f1_score(
average="macro") without an explicit labels argument; with labels=range(num_classes) scikit-learn would count it as 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids (the argmax of the logits).
    references (`list` of `int`): ground-truth class ids.
    num_classes (`int`, optional): the number of classes; defaults to len(label_names), else to the largest id + 1.
    label_names (`list` of `str`, optional): one name per class id, to key the per-class F1.
Returns:
    accuracy (`float`): fraction of correct predictions.
    macro_f1 (`float`): mean per-class F1 over the classes present in references or predictions.
    confusion_matrix (`list` of `list` of `int`): counts, rows = reference class, columns = predicted class.
    per_class_f1 (`dict` name -> `float`, or `list`): F1 of each class, None where undefined (absent class).
Examples:
    >>> metrics = evaluate.load("path/to/pros_hf/metrics/expression_metrics")
    >>> metrics.compute(predictions=[0, 1, 1], references=[0, 1, 0])["confusion_matrix"]
    [[1, 1], [0, 1]]
"""


def _class_ids(labels: np.ndarray, name: str) -> np.ndarray:
    """`labels` as int64 class ids, refusing any value that is not a whole number (named by its example).

    The metric declares float64 features so that its inputs arrive here as given: an int64 feature would turn a
    probability 0.9 into class 0 (evaluate casts with int()) before any check could see it. Whole floats (1.0) are
    accepted: they are how float tensors of argmax ids arrive.
    """
    if np.issubdtype(labels.dtype, np.integer):
        return labels.astype(np.int64)
    try:
        values = labels.astype(np.float64)  # None becomes NaN, refused below
    except (TypeError, ValueError):
        values = None
    if values is None:
        bad = np.arange(len(labels))
    else:
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
    if bad.size:
        raise ValueError(
            f"example {bad[0]}: {name} holds {labels[bad[0]]}, not a class id: pass integer class ids (the argmax "
            "of the logits), not probabilities or scores."
        )
    return values.astype(np.int64)


def confusion_matrix(predictions, references, num_classes: int | None = None) -> np.ndarray:
    """Counts (num_classes, num_classes), int64: rows are reference classes, columns predicted classes."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.ndim != 1 or predictions.shape != references.shape:
        raise ValueError(
            f"predictions and references must be two lists of class ids of the same length, got shapes "
            f"{predictions.shape} and {references.shape}."
        )
    if len(references) == 0:
        raise ValueError("no examples: pass at least one prediction and reference.")
    predictions, references = _class_ids(predictions, "predictions"), _class_ids(references, "references")
    if num_classes is None:
        num_classes = int(max(predictions.max(), references.max())) + 1
    for name, labels in (("references", references), ("predictions", predictions)):
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            raise ValueError(
                f"example {bad[0]}: {name} holds class {labels[bad[0]]}, outside [0, {num_classes}) "
                f"(num_classes={num_classes})."
            )
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (references, predictions), 1)
    return matrix


def per_class_f1(matrix: np.ndarray) -> np.ndarray:
    """F1 = 2 TP / (2 TP + FP + FN) per class from a confusion matrix; NaN for a class absent from both sides."""
    true_positives = np.diag(matrix).astype(np.float64)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2 TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * true_positives / denominator, np.nan)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExpressionMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # float64, not int64: an int64 feature truncates a probability (0.9 -> class 0) before `_class_ids` sees it
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references, num_classes=None, label_names=None):
        if label_names is not None:
            if num_classes is not None and num_classes != len(label_names):
                raise ValueError(f"num_classes is {num_classes} but label_names has {len(label_names)} names.")
            num_classes = len(label_names)
        if num_classes is not None and (not isinstance(num_classes, (int, np.integer)) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
        matrix = confusion_matrix(predictions, references, num_classes)
        f1 = per_class_f1(matrix)
        per_class = [None if np.isnan(value) else float(value) for value in f1]
        return {
            "accuracy": float(np.trace(matrix) / matrix.sum()),
            "macro_f1": float(np.nanmean(f1)),
            "confusion_matrix": matrix.tolist(),
            "per_class_f1": dict(zip(label_names, per_class)) if label_names is not None else per_class,
        }
