"""plot_pretraining_curves: one panel per signal, a k-NN panel only when k-NN was logged, clear errors."""

import math

import pytest
from PIL import Image

from pros_hf.training_plots import plot_pretraining_curves


def history(steps=10, knn=False):
    logs = []
    for step in range(2, steps + 1, 2):
        logs.append(
            {
                "loss": 4.0 - 0.1 * step,
                "matching_loss": 4.0 - 0.1 * step,
                "teacher_entropy": 3.0,
                "student_mean_entropy": 4.1,
                "active_prototypes": 40 + step,
                "learning_rate": 1e-4 * step,
                "teacher_momentum": 0.99,
                "teacher_temperature": 0.04,
                "weight_decay": 0.04,
                "epoch": step / 10,
                "step": step,
            }
        )
        if knn and step % 4 == 0:
            logs.append({"knn/expression_top1": 14.0 + step, "knn/identity_top1": 5.0 + step, "step": step})
    logs.append({"train_runtime": 1.0, "train_loss": 3.5, "epoch": 1.0, "step": steps})  # the end-of-train entry
    return logs


def test_curves_have_a_knn_panel_only_when_knn_was_logged(tmp_path):
    with_knn = plot_pretraining_curves(history(knn=True), tmp_path / "a.png", num_prototypes=64)
    without = plot_pretraining_curves(history(), tmp_path / "b.png", num_prototypes=64, title="run")
    with Image.open(with_knn) as a, Image.open(without) as b:
        assert a.size[1] == b.size[1]
        assert a.size[0] == pytest.approx(b.size[0] * 5 / 4, rel=0.01)  # 5 panels against 4, same width each


def test_curves_skip_non_numbers_and_need_a_logged_step(tmp_path):
    logs = history(4)
    logs[0]["teacher_entropy"] = math.nan  # a non-finite value is left out of the curve, not plotted as a gap
    logs[1]["active_prototypes"] = "n/a"
    assert plot_pretraining_curves(logs, tmp_path / "ok.png").endswith("ok.png")
    with pytest.raises(ValueError, match="no training step was logged"):
        plot_pretraining_curves([{"train_runtime": 1.0, "step": 0}], tmp_path / "none.png")
    with pytest.raises(ValueError, match="list of log dicts"):
        plot_pretraining_curves("trainer_state.json", tmp_path / "x.png")
    with pytest.raises(ValueError, match="must end in .png"):
        plot_pretraining_curves(history(4), tmp_path / "curves.jpg")
