"""examples/ablate_targets.py's own logic: arms given on the command line, the recipe each arm changes, the summary
over seeds and the choice of the best arm (the pre-training runs themselves are tested in test_pretrain_example)."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the script imports demo.py beside it

import ablate_targets  # noqa: E402


def test_an_arm_of_ones_own_is_parsed_with_shell_quoting():
    name, flags = ablate_targets.parse_arm("k1024=--num_prototypes 1024 --augmentation_overrides '{\"a\": [1, 1]}'")
    assert name == "k1024"
    assert flags == ["--num_prototypes", "1024", "--augmentation_overrides", '{"a": [1, 1]}']
    for bad in ("k1024", "=--seed 1", "k1024=1024"):
        with pytest.raises(argparse.ArgumentTypeError, match="--arm takes"):
            ablate_targets.parse_arm(bad)


def test_the_recipe_loses_exactly_the_flags_an_arm_sets():
    flags = ["--preset", "micro", "--target_mode", "center", "--bf16", "--seed", "0", "--num_prototypes", "64"]
    assert ablate_targets.recipe_without(flags, {"--target_mode", "--seed", "--bf16"}) == [
        "--preset",
        "micro",
        "--num_prototypes",
        "64",
    ]


def _report(expression: float, identity: float) -> dict:
    return {
        "tasks": {
            "expression": {"linear_probe": {"gap_closed": expression}},
            "identity": {"linear_probe": {"gap_closed": identity}},
        }
    }


def test_the_summary_averages_over_seeds_and_the_best_arm_wins_on_the_task_mean():
    reports = {
        "a-0": _report(0.1, 0.3),
        "a-1": _report(0.3, 0.5),
        "b-0": _report(0.5, 0.0),
        "b-1": _report(0.5, None),  # an undefined gap (ceiling equal to random init) is left out of the mean
    }
    table = ablate_targets.summarise(reports, ["a", "b"], [0, 1])
    assert table["a"]["expression"]["linear_probe"]["gap_closed"] == pytest.approx(0.2)
    assert table["a"]["expression"]["linear_probe"]["gap_closed_std"] == pytest.approx(0.1, rel=0.5)
    assert table["b"]["identity"]["linear_probe"]["gap_closed"] == pytest.approx(0.0)
    assert table["b"]["identity"]["linear_probe"]["values"] == [0.0, None]
    # a: (0.2 + 0.4) / 2 = 0.3; b: (0.5 + 0.0) / 2 = 0.25
    assert ablate_targets.best_arm(table) == "a"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--arms"], "no arm to run"),
        (["--arm", "k=--num_prototypes 8", "--arm", "k=--seed 1"], "given twice"),
        (["--arm", "k"], "--arm takes"),
        (["--parallel", "0"], "--parallel must be at least 1"),
    ],
)
def test_wrong_arms_are_refused_in_one_line_before_any_run(tmp_path, flags, message):
    result = subprocess.run(
        [sys.executable, "examples/ablate_targets.py", "--output_dir", str(tmp_path / "out"), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
