"""Representation protocols: what frozen features hold, against a floor, random initialisation and a supervised
ceiling.

- `linear_probe`: DINO's linear evaluation, hyper-parameters chosen on a validation split of the training labels;
- `knn_score`: DINO's weighted k-NN for classes, attribute rows and landmark coordinates;
- `train_ceiling` / `train_supervised` / `CeilingRecipe`: the same architecture trained end to end with every label;
- `few_shot_scores`: fine-tuning on a seeded 1% / 5% / 10% / 100% of the labels (FaRL's data-ratio protocol);
- `benchmark_evaluation_data` / `benchmark_faces_dataset`: the embedded benchmark (face-dominant synthetic faces
  whose labels the micro ViT learns under full supervision);
- `evaluate_representation`: every task and protocol over several seeds, with the share of the random-to-ceiling
  gap that pre-training closes (`gap_closed`);
- `format_gap_table`, `plot_gap_closed`, `write_report`: the table, the figure and the JSON.
"""

from .benchmark_faces import (
    BENCHMARK_FACES,
    FLIP_PERMUTATION,
    TEST_SEED,
    TRAIN_SEED,
    benchmark_evaluation_data,
    benchmark_faces_dataset,
    benchmark_settings,
)
from .ceiling import CeilingRecipe, SupervisedModel, train_ceiling, train_supervised
from .ceiling_cache import CeilingCache
from .data import evaluation_data
from .evaluation import (
    PROTOCOLS,
    EvaluationData,
    ceiling_scores,
    evaluate_representation,
    few_shot_results,
    floor_scores,
    random_init_model,
    score_backbone,
)
from .features import frozen_features, pool_features
from .few_shot import FEW_SHOT_FRACTIONS, few_shot_protocol_name, few_shot_rows, few_shot_scores, supervised_scores
from .gap import gap_closed, mean_and_std
from .knn_protocol import knn_predict, knn_score
from .linear_probe import LinearProbeResult, linear_probe
from .report import format_gap_table, plot_gap_closed, provenance, write_report
from .tasks import TASK_NAMES, TASKS, RepresentationTask, floor_score, get_tasks, landmark_nme, task_targets

__all__ = [
    "BENCHMARK_FACES",
    "FEW_SHOT_FRACTIONS",
    "FLIP_PERMUTATION",
    "PROTOCOLS",
    "TASKS",
    "TASK_NAMES",
    "TEST_SEED",
    "TRAIN_SEED",
    "CeilingCache",
    "CeilingRecipe",
    "EvaluationData",
    "LinearProbeResult",
    "RepresentationTask",
    "SupervisedModel",
    "benchmark_evaluation_data",
    "benchmark_faces_dataset",
    "benchmark_settings",
    "ceiling_scores",
    "evaluate_representation",
    "evaluation_data",
    "few_shot_protocol_name",
    "few_shot_results",
    "few_shot_rows",
    "few_shot_scores",
    "floor_score",
    "floor_scores",
    "format_gap_table",
    "frozen_features",
    "gap_closed",
    "get_tasks",
    "knn_predict",
    "knn_score",
    "landmark_nme",
    "linear_probe",
    "mean_and_std",
    "plot_gap_closed",
    "pool_features",
    "provenance",
    "random_init_model",
    "score_backbone",
    "supervised_scores",
    "task_targets",
    "train_ceiling",
    "train_supervised",
    "write_report",
]
