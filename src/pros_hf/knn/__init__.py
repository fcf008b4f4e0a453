"""Weighted k-NN evaluation of frozen features: the "is it learning?" signal of self-distillation.

Why: the pre-training loss is a poor guide to representation quality (it can fall while the features stay poor;
DINO's maintainers tune with k-NN accuracy). A weighted k-NN on L2-normalised CLS features needs no training, no
hyper-parameter search and runs in seconds on a held-out labelled set, so it can be tracked during pre-training
(:class:`KNNCallback`) and compared against the same architecture at random initialisation.

The classifier follows DINO's ``knn_classifier`` (Caron et al. 2021, facebookresearch/dino ``eval_knn.py``): cosine
similarity to every training feature, the ``k`` most similar neighbours vote for their class with weight
``exp(similarity / temperature)``, classes are ranked by their summed weight. Accuracies are reported, as in DINO, in
percent (floats in [0, 100]).

Layout: :mod:`.features` (which network, its image processor, extracting CLS features; the backbone itself loads with
:func:`pros_hf.load_backbone`), :mod:`.classifier` (the weighted vote), :mod:`.evaluation` (accuracy on labelled
datasets, the stratified split), :mod:`.callback` (:class:`KNNCallback`), :mod:`.sensitivity` (how far features move
when one factor of a face changes: why a k-NN result is what it is) and :mod:`.factor_pairs` (the synthetic faces,
changed one factor at a time, it measures on).
"""

from ..loading import load_backbone  # re-exported: k-NN users load the backbone they judge from here
from .callback import KNNCallback
from .classifier import knn_accuracy_from_features, weighted_knn_classify
from .evaluation import evaluate_knn, knn_accuracy, load_labelled_dataset, stratified_split_indices
from .features import (
    default_backbone,
    extract_dataset_features,
    extract_features,
    load_backbone_and_processor,
    random_init_backbone,
)
from .sensitivity import factor_sensitivity

__all__ = [
    "KNNCallback",
    "default_backbone",
    "evaluate_knn",
    "extract_dataset_features",
    "extract_features",
    "factor_sensitivity",
    "knn_accuracy",
    "knn_accuracy_from_features",
    "load_labelled_dataset",
    "random_init_backbone",
    "load_backbone",
    "load_backbone_and_processor",
    "stratified_split_indices",
    "weighted_knn_classify",
]
