"""The representation protocols on micro models: probes that recover planted signals, the gap-closed arithmetic,
seeds that change what they should, the ceiling cache, and the report end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pros_hf import ProSConfig, ProSImageProcessor, ProSModel
from pros_hf.data.synthetic import synthetic_faces_arrays
from pros_hf.representation import (
    FLIP_PERMUTATION,
    CeilingCache,
    CeilingRecipe,
    EvaluationData,
    benchmark_evaluation_data,
    evaluate_representation,
    few_shot_rows,
    floor_scores,
    format_gap_table,
    gap_closed,
    get_tasks,
    knn_score,
    landmark_nme,
    linear_probe,
    mean_and_std,
    train_supervised,
)
from pros_hf.representation.ceiling import _flip
from pros_hf.representation.linear_probe import _fit_logistic, validation_split

ROOT = Path(__file__).resolve().parents[1]


def planted(n=1200, d=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator)
    w = torch.randn(d, 5, generator=generator)
    return x, x @ w


def test_linear_probe_recovers_planted_classes_attributes_and_coordinates():
    x, scores = planted()
    labels = scores.argmax(1)
    result = linear_probe(x[:900], labels[:900], x[900:], labels[900:], "single_label", seed=0)
    assert result.test_score > 0.85  # chance is about 0.2
    attributes = (scores > 0).float()
    result = linear_probe(x[:900], attributes[:900], x[900:], attributes[900:], "multi_label", seed=0)
    assert result.test_score > 0.9
    result = linear_probe(x[:900], scores[:900], x[900:], scores[900:], "regression", seed=0)
    assert result.test_score < 1e-3 * float(scores.var())
    # noise features carry nothing: the probe stays near chance
    noise = torch.randn(1200, 32, generator=torch.Generator().manual_seed(9))
    result = linear_probe(noise[:900], labels[:900], noise[900:], labels[900:], "single_label", seed=0)
    assert result.test_score < 0.45


@pytest.mark.parametrize("kind", ["single_label", "multi_label"])
def test_logistic_probe_steps_equal_torch_adamw_on_autograd_gradients(kind):
    """The probe's written-out gradients and side-by-side AdamW give, per setting, the weights that torch.optim.AdamW
    reaches on the autograd gradients of the mean cross-entropy (or logistic loss) under the same cosine schedule."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(60, 8, generator=generator)
    y = torch.randint(0, 4, (60,), generator=generator)
    if kind == "multi_label":
        y = torch.nn.functional.one_hot(y, 4).float()
    settings = [{"learning_rate": 0.05, "weight_decay": 0.0}, {"learning_rate": 0.01, "weight_decay": 0.3}]
    steps = 6
    fitted = _fit_logistic(x, y, kind, settings, steps, seed=5, num_outputs=4)
    initial = torch.randn(len(settings), 8, 4, generator=torch.Generator().manual_seed(5)) * 0.01
    for index, setting in enumerate(settings):
        weight = initial[index].clone().requires_grad_(True)
        bias = torch.zeros(4, requires_grad=True)
        optimizer = torch.optim.AdamW(
            [{"params": [weight], "weight_decay": setting["weight_decay"]}, {"params": [bias], "weight_decay": 0.0}],
            lr=setting["learning_rate"],
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1.0 + np.cos(np.pi * step / steps)))
        for _ in range(steps):
            logits = x @ weight + bias
            if kind == "single_label":
                loss = torch.nn.functional.cross_entropy(logits, y)
            else:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        with torch.no_grad():
            torch.testing.assert_close(fitted[index](x), x @ weight + bias, rtol=1e-4, atol=1e-5)


def test_linear_probe_chooses_its_settings_without_the_test_labels():
    x, scores = planted()
    labels = scores.argmax(1)
    honest = linear_probe(x[:900], labels[:900], x[900:], labels[900:], "single_label", seed=0)
    shuffled = labels[900:][torch.randperm(300, generator=torch.Generator().manual_seed(1))]
    blind = linear_probe(x[:900], labels[:900], x[900:], shuffled, "single_label", seed=0)
    assert honest.hyperparameters == blind.hyperparameters
    assert honest.validation_scores == blind.validation_scores
    assert len(honest.validation_scores) > 1


def test_linear_probe_rejects_bad_input_by_name():
    x, scores = planted(n=20)
    with pytest.raises(ValueError, match="kind must be one of"):
        linear_probe(x, scores, x, scores, "ranking")
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(x, scores[:5], x, scores, "regression")
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(bad, scores, x, scores, "regression")


@pytest.mark.parametrize(
    ("pretrained", "random_init", "ceiling", "expected"),
    [
        (0.6, 0.2, 1.0, 0.5),  # accuracy: half-way
        (0.2, 0.2, 1.0, 0.0),  # no better than random weights
        (1.0, 0.2, 1.0, 1.0),  # the ceiling
        (0.06, 0.10, 0.05, 0.8),  # NME, lower is better: 0.04 of the 0.05 gap
        (0.12, 0.10, 0.05, -0.4),  # worse than random weights
        (0.5, 0.3, 0.3, None),  # no gap: undefined, not a number
        (float("nan"), 0.3, 0.9, None),
    ],
)
def test_gap_closed_arithmetic(pretrained, random_init, ceiling, expected):
    value = gap_closed(pretrained, random_init, ceiling)
    if expected is None:
        assert value is None
    else:
        assert value == pytest.approx(expected)


def test_mean_and_std_is_the_sample_spread():
    assert mean_and_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_and_std([4.0]) == (4.0, 0.0)


def test_seeds_change_the_splits_and_the_same_seed_repeats_them():
    labels = torch.arange(200) % 7
    a, b = validation_split(labels, "single_label", 0.2, 0), validation_split(labels, "single_label", 0.2, 1)
    assert not np.array_equal(a[1], b[1])
    assert np.array_equal(a[1], validation_split(labels, "single_label", 0.2, 0)[1])
    assert set(labels[a[1]].tolist()) == set(range(7))  # every class in the validation split
    assert not np.array_equal(few_shot_rows(labels, 0.1, 0), few_shot_rows(labels, 0.1, 1))
    assert np.array_equal(few_shot_rows(labels, 0.1, 2), few_shot_rows(labels, 0.1, 2))


def test_knn_scores_every_kind_of_target():
    x, scores = planted(n=600)
    labels = scores.argmax(1)
    assert knn_score(x[:500], labels[:500], x[500:], labels[500:], "single_label") > 0.5
    assert knn_score(x[:500], (scores[:500] > 0).float(), x[500:], (scores[500:] > 0).float(), "multi_label") > 0.7
    error = knn_score(x[:500], scores[:500], x[500:], scores[500:], "regression")
    assert error < float(scores.var())


def test_landmark_nme_divides_by_the_outer_eye_corners():
    truth = torch.zeros(1, 68, 2)
    truth[0, 36] = torch.tensor([0.0, 0.0])
    truth[0, 45] = torch.tensor([10.0, 0.0])
    shifted = truth + torch.tensor([0.0, 1.0])  # every point 1 unit off: NME 1 / 10
    assert landmark_nme(shifted, truth) == pytest.approx(0.1)


def test_flipping_landmarks_twice_is_the_identity():
    tasks = get_tasks(["landmarks"])
    points = torch.rand(4, 136)
    pixels = torch.rand(4, 3, 8, 8)
    flip = torch.tensor([True, False, True, True])
    once_pixels, once = _flip(pixels, {"landmarks": points}, tasks, flip, torch.as_tensor(FLIP_PERMUTATION))
    twice_pixels, twice = _flip(once_pixels, once, tasks, flip, torch.as_tensor(FLIP_PERMUTATION))
    assert torch.allclose(twice["landmarks"], points) and torch.equal(twice_pixels, pixels)
    assert torch.equal(once["landmarks"][1], points[1])  # not flipped
    assert not torch.allclose(once["landmarks"][0], points[0])


def test_supervised_training_learns_a_planted_label():
    """Bright against dark images: a micro ViT trained end to end separates them far above chance."""
    config = ProSConfig.from_preset("micro", image_size=16)
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(128) % 2
    pixels = torch.randn(128, 3, 16, 16, generator=generator) * 0.3 + (labels.float() * 2 - 1).view(-1, 1, 1, 1)
    tasks = get_tasks(["expression"])
    torch.manual_seed(0)
    model = train_supervised(
        ProSModel(config),
        pixels[:96],
        {"expression": labels[:96]},
        tasks,
        CeilingRecipe(epochs=5, batch_size=16, flip=False),
        show_progress=False,
    )
    predictions = model.predict(pixels[96:])["expression"].argmax(1)
    assert float((predictions == labels[96:]).float().mean()) > 0.9


def test_joint_training_weighs_each_attribute_like_a_task_and_scales_landmarks_by_the_recipe():
    """Averaged over 12 attributes, the rare ones stayed at their majority class beside the other tasks' losses: each
    attribute's loss counts in full, and the landmark loss takes the recipe's weight."""
    from pros_hf.representation.ceiling import _loss

    generator = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(8, 12, generator=generator), (torch.rand(8, 12, generator=generator) > 0.5).float()
    per_attribute = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    attributes, landmarks = get_tasks(["attributes", "landmarks"])
    recipe = CeilingRecipe()
    torch.testing.assert_close(_loss(attributes, logits, targets, recipe), per_attribute.sum(1).mean())
    points, truth = torch.rand(8, 136, generator=generator), torch.rand(8, 136, generator=generator)
    light, heavy = (_loss(landmarks, points, truth, CeilingRecipe(landmark_loss_weight=w)) for w in (1.0, 20.0))
    torch.testing.assert_close(heavy, 20.0 * light)
    assert CeilingRecipe().to_dict()["landmark_loss_weight"] == 20.0  # part of the ceiling cache's key
    with pytest.raises(ValueError, match="landmark_loss_weight"):
        CeilingRecipe(landmark_loss_weight=-1.0)


def test_ceiling_cache_returns_results_only_for_the_same_settings(tmp_path):
    cache = CeilingCache(tmp_path)
    settings = {"recipe": {"epochs": 30}, "train_data": "abc"}
    cache.put("ceiling", settings, {"expression": {"linear_probe": 0.9}})
    assert cache.get("ceiling", settings) == {"expression": {"linear_probe": 0.9}}
    assert cache.get("ceiling", {"recipe": {"epochs": 31}, "train_data": "abc"}) is None
    assert cache.get("ceiling", {**settings, "train_data": "abd"}) is None
    assert cache.get("other", settings) is None
    (tmp_path / "ceiling.json").write_text("{not json")
    assert cache.get("ceiling", settings) is None
    with pytest.raises(ValueError, match="plain file name"):
        cache.path("../escape")


@pytest.fixture(scope="module")
def micro_benchmark():
    config = ProSConfig.from_preset("micro", image_size=32)
    processor = ProSImageProcessor.from_model_config(config)
    train = benchmark_evaluation_data(120, 32, 0, processor)
    test = benchmark_evaluation_data(60, 32, 1, processor)
    torch.manual_seed(3)
    return ProSModel(config).eval(), train, test


@pytest.mark.slow
def test_evaluate_representation_reports_every_task_and_protocol(micro_benchmark, tmp_path):
    model, train, test = micro_benchmark
    cache = CeilingCache(tmp_path)
    kwargs = dict(
        seeds=(0, 1),
        few_shot_fractions=(0.2,),
        flip_permutation=FLIP_PERMUTATION,
        ceiling_cache=cache,
        few_shot_min_steps=2,
        show_progress=False,
    )
    report = evaluate_representation(model, train, test, ceiling_recipe=CeilingRecipe(epochs=1), **kwargs)
    assert set(report["tasks"]) == {"expression", "attributes", "landmarks", "identity"}
    assert set(report["tasks"]["expression"]) == {"linear_probe", "knn", "few_shot_20%"}
    assert set(report["tasks"]["identity"]) == {"linear_probe", "knn"}  # no few-shot readout for unseen people
    for protocols in report["tasks"].values():
        for row in protocols.values():
            assert len(row["seeds"]["pretrained"]) == 2
            expected = gap_closed(row["pretrained"], row["random_init"], row["ceiling"])
            assert row["gap_closed"] == (pytest.approx(expected) if expected is not None else None)
    assert report["tasks"]["landmarks"]["linear_probe"]["higher_is_better"] is False
    json.dumps(report)  # the JSON the example writes
    assert "| expression | linear_probe |" in format_gap_table(report)
    ceiling_file = tmp_path / "ceiling.json"
    first = json.loads(ceiling_file.read_text())
    # the same settings reuse the cached ceiling; another recipe replaces it
    again = evaluate_representation(model, train, test, ceiling_recipe=CeilingRecipe(epochs=1), **kwargs)
    assert (
        again["tasks"]["expression"]["linear_probe"]["ceiling"]
        == report["tasks"]["expression"]["linear_probe"]["ceiling"]
    )
    evaluate_representation(model, train, test, ceiling_recipe=CeilingRecipe(epochs=2), **kwargs)
    assert (
        json.loads(ceiling_file.read_text())["settings"]["recipe"]["epochs"]
        == 2
        != first["settings"]["recipe"]["epochs"]
    )


def test_floors_are_what_the_labels_alone_predict(micro_benchmark):
    _, train, test = micro_benchmark
    tasks = get_tasks(["expression", "landmarks"])
    floors = floor_scores(train, test, tasks, [0])
    majority = torch.bincount(train.targets["expression"]).argmax()
    assert floors["expression"] == pytest.approx(float((test.targets["expression"] == majority).float().mean()))
    assert 0.0 < floors["landmarks"] < 1.0


def test_evaluation_data_refuses_misaligned_targets():
    with pytest.raises(ValueError, match="3 expression targets for 2 images"):
        EvaluationData(torch.zeros(2, 3, 8, 8), {"expression": torch.zeros(3)})


def test_generator_defaults_are_unchanged_and_the_new_knobs_act():
    default = synthetic_faces_arrays(6, image_size=64, seed=4)
    explicit = synthetic_faces_arrays(6, image_size=64, seed=4, face_scale=0.24, expression_strength=1.0)
    assert np.array_equal(default["images"], explicit["images"])
    bigger = synthetic_faces_arrays(6, image_size=64, seed=4, face_scale=0.34)
    spread = lambda lm: np.ptp(lm[:, :, 0], axis=1).mean()  # noqa: E731
    assert spread(bigger["landmarks"]) > 1.3 * spread(default["landmarks"])
    stronger = synthetic_faces_arrays(6, image_size=64, seed=4, expression_strength=2.0)
    assert not np.allclose(stronger["landmarks"][:, 48:68], default["landmarks"][:, 48:68])  # the mouth moves
    assert np.array_equal(stronger["expression"], default["expression"])
    with pytest.raises(ValueError, match="face_scale"):
        synthetic_faces_arrays(2, face_scale=0.9)
    with pytest.raises(ValueError, match="expression_strength"):
        synthetic_faces_arrays(2, expression_strength=-1)


def test_benchmark_test_people_are_not_training_people():
    config = ProSConfig.from_preset("micro", image_size=32)
    processor = ProSImageProcessor.from_model_config(config)
    train = synthetic_faces_arrays(**_settings(40, 0), return_params=True)
    test = synthetic_faces_arrays(**_settings(40, 1), return_params=True)
    train_people = {params.identity for params in train["params"]}
    test_people = {params.identity for params in test["params"]}
    assert len(train_people) == len(test_people) == 4 and not train_people & test_people
    data = benchmark_evaluation_data(40, 32, 1, processor)
    assert sorted(set(data.targets["identity"].tolist())) == list(range(4))  # 10 images per person, renumbered


def _settings(n, seed):
    from pros_hf.representation import benchmark_settings

    return benchmark_settings(n, 32, seed)


@pytest.mark.slow
def test_evaluate_representation_example_end_to_end(tmp_path):
    model_dir = tmp_path / "model"
    ProSModel(ProSConfig.from_preset("micro", image_size=32)).save_pretrained(model_dir)
    output = tmp_path / "out"
    completed = subprocess.run(
        [
            sys.executable,
            "examples/evaluate_representation.py",
            "--model",
            str(model_dir),
            "--output_dir",
            str(output),
            "--num_train",
            "80",
            "--num_test",
            "40",
            "--seeds",
            "0",
            "--ceiling_epochs",
            "1",
            "--tasks",
            "expression",
            "landmarks",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads((output / "representation.json").read_text())
    assert set(report["tasks"]) == {"expression", "landmarks"}
    assert (output / "gap_closed.png").stat().st_size > 1000
    assert "| landmarks | linear_probe |" in completed.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "examples/evaluate_representation.py",
            "--model",
            str(tmp_path / "none"),
            "--output_dir",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and str(tmp_path / "none") in bad.stderr
