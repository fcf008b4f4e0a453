"""The fine-tuning comparison's reporting: the labels-only floor, the seed summary and the printed table."""

import datasets
import numpy as np
import pytest

from pros_hf.finetuning import TaskData, TaskLabels
from pros_hf.finetuning.reporting import format_comparison_table, labels_only_scores, summarise_seeds


def task_data(task, train_column, test_column, label_names=None, num_landmarks=None):
    labels = TaskLabels(task, label_names=label_names, num_landmarks=num_landmarks)
    return TaskData(
        datasets.Dataset.from_dict({task: train_column}),
        datasets.Dataset.from_dict({task: test_column}),
        labels,
        dataset_name="hand-made",
    )


def test_labels_only_expression_predicts_the_majority_of_the_chosen_examples():
    # class 2 is the majority of the whole training set, class 1 of the examples [0, 1, 2] the few-shot draw chose
    data = task_data("expression", [1, 1, 0, 2, 2, 2, 2], [1, 1, 1, 0, 2], label_names=("a", "b", "c"))
    scores = labels_only_scores(data, [0, 1, 2])
    assert scores["accuracy"] == pytest.approx(3 / 5)
    # macro-F1 over the 3 classes: class 1 has precision 3/5 and recall 1 (F1 0.75), the others 0
    assert scores["macro_f1"] == pytest.approx(0.75 / 3)


def test_labels_only_attributes_take_each_attributes_majority_value():
    # attribute 0 is present in 2 of 3 chosen examples (predicted on), attribute 1 in 1 of 3 (predicted off)
    data = task_data("attributes", [[0], [0, 1], [], [1], [1]], [[0], [0, 1], [1], []], label_names=("x", "y"))
    scores = labels_only_scores(data, [0, 1, 2])
    # predicted [1, 0] for every test row: attribute x right on rows 0, 1 (2 of 4), y right on rows 0, 3 (2 of 4)
    assert scores["mean_accuracy"] == pytest.approx(0.5)


def test_labels_only_landmarks_use_the_mean_shape_in_each_test_images_pixels():
    """The mean of the chosen examples' shapes, taken in normalised units and drawn back in each test image's size
    (pixel centres at +0.5): a test face whose points are that shape scores NME 0 at any size."""
    shapes = np.array(
        [
            [[2.0, 3.0], [7.0, 3.0], [4.5, 8.0]],
            [[1.0, 2.0], [6.0, 2.0], [3.5, 6.0]],
            [[30.0, 30.0], [31.0, 30.0], [30.5, 31.0]],
        ],
        dtype=np.float32,
    )
    train_sizes = [(10, 10), (10, 10), (40, 40)]  # (height, width); the third is not among the chosen examples
    mean_normalised = ((shapes[:2] + 0.5) / 10.0).mean(axis=0)
    test_sizes = [(10, 10), (20, 30)]
    references = [mean_normalised * np.array([w, h]) - 0.5 for h, w in test_sizes]
    data = task_data("landmarks", list(shapes), [r.astype(np.float32) for r in references], num_landmarks=3)
    scores = labels_only_scores(data, [0, 1], "box", 0.1, train_sizes, test_sizes)
    assert scores["nme"] == pytest.approx(0.0, abs=1e-6) and scores["failure_rate"] == 0.0
    # the same shape scored as if every test image were 10 x 10 is wrong for the 20 x 30 one
    assert labels_only_scores(data, [0, 1], "box", 0.1, train_sizes, [(10, 10), (10, 10)])["nme"] > 0.1
    with pytest.raises(ValueError, match="train_sizes and test_sizes"):
        labels_only_scores(data, [0, 1], "box")


def test_summarise_seeds_gives_mean_and_sample_std_of_the_shared_numbers():
    summary = summarise_seeds({0: {"accuracy": 0.5, "best_step": 50, "note": "x"}, 1: {"accuracy": 0.7}})
    assert summary["mean"] == {"accuracy": pytest.approx(0.6)}  # best_step is missing from seed 1, note is no number
    assert summary["std"]["accuracy"] == pytest.approx(np.sqrt(0.02))  # ddof=1
    assert summary["per_seed"]["0"]["best_step"] == 50
    assert summarise_seeds({3: {"accuracy": 0.5}})["std"] == {"accuracy": 0.0}


def test_table_of_one_seed_shows_no_spread():
    run = {"mean": {"accuracy": 0.5, "macro_f1": 0.25}, "std": {"accuracy": 0.0, "macro_f1": 0.0}}
    result = {
        "few_shot": None,
        "seeds": [3],
        "metrics": ["accuracy", "macro_f1"],
        "runs": {"pretrained": run},
        "prior": {"mean": {"accuracy": 0.1, "macro_f1": 0.05}},
    }
    table = format_comparison_table({"expression": result})
    assert "1 seed: 3" in table and "±" not in table and "0.5000" in table
    two = format_comparison_table({"expression": {**result, "seeds": [0, 1]}})
    assert "mean ± std over seeds [0, 1]" in two and "0.5000 ± 0.0000" in two


def test_table_says_which_initialisation_is_better_per_metric():
    def run(value, nme):
        return {"mean": {"nme": nme, "auc": value}, "std": {"nme": 0.0, "auc": 0.0}}

    result = {
        "few_shot": 0.05,
        "seeds": [0, 1],
        "metrics": ["nme", "auc"],
        "runs": {"pretrained": run(0.2, 0.10), "random_init": run(0.1, 0.12)},
        "prior": {"mean": {"nme": 0.13, "auc": 0.05}},
    }
    rows = format_comparison_table({"landmarks": result}).splitlines()
    assert "5% of the labels" in rows[0]
    nme_row = next(r for r in rows if r.startswith("landmarks   nme"))
    auc_row = next(r for r in rows if r.startswith("landmarks   auc"))
    assert nme_row.split()[-2] == "yes" and auc_row.split()[-2] == "yes"  # lower NME and higher AUC are better
    swapped = {**result, "runs": {"pretrained": run(0.1, 0.12), "random_init": run(0.2, 0.10)}}
    assert all(r.split()[-2] == "no" for r in format_comparison_table({"landmarks": swapped}).splitlines()[2:4])
    # means that print the same are level, whichever is ahead in the fifth decimal
    level = {**result, "runs": {"pretrained": run(0.10001, 0.57091), "random_init": run(0.10004, 0.57088)}}
    assert all(r.split()[-2] == "level" for r in format_comparison_table({"landmarks": level}).splitlines()[2:4])
