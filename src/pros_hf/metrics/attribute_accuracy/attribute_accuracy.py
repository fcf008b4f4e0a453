"""Attribute accuracy: per-attribute accuracy of multi-label (multi-hot) predictions and their mean.

Why: face attributes (CelebA, LFWA: 40 binary attributes) are reported, as in the ProS paper, as the mean over
attributes of each attribute's accuracy, which a plain multi-label accuracy does not give: the per-attribute numbers
show which attributes the backbone encodes. Self-contained (numpy and evaluate only), because evaluate copies
this script into its modules cache and imports it from there.
"""

import datasets
import evaluate
import numpy as np

_CITATION = """\
@inproceedings{liu2015celeba,
  title={Deep Learning Face Attributes in the Wild},
  author={Liu, Ziwei and Luo, Ping and Wang, Xiaogang and Tang, Xiaoou},
  booktitle={ICCV},
  year={2015}
}
"""

_DESCRIPTION = """\
Mean over attributes of the per-attribute accuracy of binary face attributes (the CelebA / LFWA protocol), as a
fraction in [0, 1]. Predictions may be 0/1 or probabilities, which are thresholded.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per image, one 0/1 value or probability in [0, 1] per attribute
        (apply a sigmoid to logits first).
    references (`list` of `list` of `int`): per image, the 0/1 ground truth of each attribute.
    threshold (`float`, defaults to 0.5): a prediction counts as 1 when it is strictly above this.
    attribute_names (`list` of `str`, optional): one name per attribute, to key the per-attribute accuracies.
Returns:
    mean_accuracy (`float`): mean over attributes of the per-attribute accuracy.
    per_attribute_accuracy (`dict` name -> `float`, or `list` of `float` without attribute_names).
Examples:
    >>> accuracy = evaluate.load("path/to/pros_hf/metrics/attribute_accuracy")
    >>> accuracy.compute(predictions=[[0.9, 0.2], [0.1, 0.8]], references=[[1, 0], [1, 1]])
    {'mean_accuracy': 0.75, 'per_attribute_accuracy': [0.5, 1.0]}
"""


def _matrix(rows, name: str) -> np.ndarray:
    """Stack per-image vectors into (num_images, num_attributes), naming the first image of another length."""
    if len(rows) == 0:
        raise ValueError("no examples: pass at least one prediction and reference.")
    lengths = [len(row) for row in rows]
    for index, length in enumerate(lengths):
        if length != lengths[0]:
            raise ValueError(f"example {index}: {name} has {length} attributes but example 0 has {lengths[0]}.")
    if lengths[0] == 0:  # else every accuracy is a mean over no attribute: NaN, with no error
        raise ValueError(f"{name} hold no attributes: pass one value per attribute (at least one) per image.")
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), lengths[0])


def per_attribute_accuracy(predictions, references, threshold: float = 0.5) -> np.ndarray:
    """Accuracy of each attribute over the images, float64 (num_attributes,)."""
    # type first: comparing None or a string with 0 is a bare TypeError
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.integer, np.floating))
        or not 0 < threshold < 1
    ):
        raise ValueError(f"threshold must be a number that lies in (0, 1), got {threshold!r}.")
    predictions, references = _matrix(predictions, "predictions"), _matrix(references, "references")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references.")
    if predictions.shape != references.shape:
        raise ValueError(
            f"predictions have {predictions.shape[1]} attributes per image but references {references.shape[1]}."
        )
    bad = np.flatnonzero(~np.isin(references, (0, 1)).all(axis=1))
    if bad.size:
        raise ValueError(f"example {bad[0]}: references must be 0 or 1, got {references[bad[0]].tolist()}.")
    bad = np.flatnonzero(~((predictions >= 0) & (predictions <= 1)).all(axis=1))
    if bad.size:
        raise ValueError(
            f"example {bad[0]}: predictions must be 0/1 or probabilities in [0, 1] (apply a sigmoid to logits), "
            f"got {predictions[bad[0]].tolist()}."
        )
    return ((predictions > threshold) == (references == 1)).mean(axis=0)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AttributeAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # float64 both: an int32 feature truncates references (0.7 -> 0, 1.9 -> 1) before the 0/1 check sees
            # them, and float32 moves probabilities across the threshold (0.50000001 -> 0.5)
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
        )

    def _compute(self, predictions, references, threshold=0.5, attribute_names=None):
        accuracies = per_attribute_accuracy(predictions, references, threshold)
        per_attribute = accuracies.tolist()
        if attribute_names is not None:
            if len(attribute_names) != len(accuracies):
                raise ValueError(
                    f"attribute_names has {len(attribute_names)} names but the inputs have "
                    f"{len(accuracies)} attributes."
                )
            per_attribute = dict(zip(attribute_names, per_attribute))
        return {"mean_accuracy": float(accuracies.mean()), "per_attribute_accuracy": per_attribute}
