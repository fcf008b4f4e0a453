"""One-factor face variants, the feature-sensitivity measure, and examples/factor_sensitivity.py."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pros_hf.knn import factor_sensitivity
from pros_hf.knn.factor_pairs import FACTORS, make_factor_pairs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def renders():
    """Uncropped 64-px renders of 4 groups (no detector involved)."""
    faces, counts = make_factor_pairs(4, seed=3, image_size=64, crop_size=None)
    return faces, counts


def _pixels(faces):
    return np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in faces["image"]])


def test_every_group_has_a_base_and_one_variant_per_factor(renders):
    faces, counts = renders
    assert counts == {"groups_kept": 4, "groups_dropped": 0}
    assert faces.column_names == ["image", "group", "factor"]
    for group in range(4):
        factors = [f for g, f in zip(faces["group"], faces["factor"]) if g == group]
        assert sorted(factors) == sorted(("base", *FACTORS))


def test_each_variant_changes_what_it_names(renders):
    """The top rows and the border are background: the background variant changes them, an expression does not (it
    redraws only the face, with the same background and sensor-noise draws), another person's hair a little."""
    faces, _ = renders
    pixels = _pixels(faces)
    groups, factors = np.asarray(faces["group"]), np.asarray(faces["factor"])
    border = np.ones(pixels.shape[1:3], dtype=bool)
    border[4:-4, 4:-4] = False

    def row(group, factor):
        return pixels[np.flatnonzero((groups == group) & (factors == factor))[0]]

    for group in range(4):
        base = row(group, "base")
        assert np.array_equal(row(group, "expression")[:8], base[:8])
        for factor in FACTORS:
            assert not np.array_equal(row(group, factor), base), f"the {factor} variant is the base face"
        background_change = np.abs(row(group, "background")[border] - base[border]).mean()
        assert background_change > 5.0
        assert np.abs(row(group, "identity")[border] - base[border]).mean() < background_change / 2
        assert np.abs(row(group, "lighting") - base).mean() > 0.5


def test_same_seed_gives_the_same_faces():
    first, _ = make_factor_pairs(2, seed=5, image_size=48, crop_size=None)
    again, _ = make_factor_pairs(2, seed=5, image_size=48, crop_size=None)
    other, _ = make_factor_pairs(2, seed=6, image_size=48, crop_size=None)
    assert np.array_equal(_pixels(first), _pixels(again))
    assert not np.array_equal(_pixels(first), _pixels(other))


def test_face_crops_keep_only_complete_groups():
    faces, counts = make_factor_pairs(3, seed=0, image_size=128, crop_size=32)
    assert counts["groups_kept"] + counts["groups_dropped"] == 3
    assert len(faces) == counts["groups_kept"] * (len(FACTORS) + 1)
    assert {image.size for image in faces["image"]} == {(32, 32)}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_groups"):
        make_factor_pairs(0)
    with pytest.raises(ValueError, match="background"):
        make_factor_pairs(1, background="beach")


def test_sensitivity_by_hand():
    """Two groups with orthogonal bases (unrelated distance 1): a variant equal to its base is at 0, an orthogonal
    one at 1, one at 60 degrees at 0.5."""
    e1, e2, e3 = torch.eye(3)
    at_60 = 0.5 * e1 + (3**0.5 / 2) * e3
    features = torch.stack([e1, e1, e3, e2, at_60 * 4.0])  # the last one unnormalised: the measure normalises
    groups = [0, 0, 0, 1, 1]
    factors = ["base", "pose", "expression", "base", "pose"]
    # group 1's pose variant is e1/2 + e3*sqrt(3)/2 against base e2: cos 0, distance 1
    result = factor_sensitivity(features, groups, factors)
    assert result["unrelated_distance"] == pytest.approx(1.0)
    assert result["distance"]["pose"] == pytest.approx((0.0 + 1.0) / 2)
    assert result["distance"]["expression"] == pytest.approx(1.0)
    assert result["relative"]["pose"] == pytest.approx(0.5)

    scaled = factor_sensitivity(torch.stack([e1, 0.5 * e1 + (3 ** 0.5 / 2) * e2, e2]), [0, 0, 1],
                                ["base", "lighting", "base"])  # fmt: skip
    assert scaled["distance"]["lighting"] == pytest.approx(0.5)
    assert scaled["relative"]["lighting"] == pytest.approx(0.5)


def test_sensitivity_refuses_malformed_groups():
    features = torch.eye(3)
    with pytest.raises(ValueError, match="one entry per image"):
        factor_sensitivity(features, [0, 1], ["base", "base", "pose"])
    with pytest.raises(ValueError, match="more than one 'base'"):
        factor_sensitivity(features, [0, 0, 1], ["base", "base", "base"])
    with pytest.raises(ValueError, match="no 'base' row"):
        factor_sensitivity(features, [0, 1, 2], ["base", "base", "pose"])
    with pytest.raises(ValueError, match="at least 2 groups"):
        factor_sensitivity(features, [0, 0, 0], ["base", "pose", "identity"])
    with pytest.raises(ValueError, match="2-D"):
        factor_sensitivity(torch.ones(3), [0, 1, 2], ["base"] * 3)


def test_pixels_move_more_for_a_background_than_for_an_expression(renders):
    """On raw pixels of uncropped renders, a new background covers most of the image, a new expression a few
    pixels of mouth, eyes and brows."""
    faces, _ = renders
    result = factor_sensitivity(torch.from_numpy(_pixels(faces)).flatten(1), faces["group"], faces["factor"])
    relative = result["relative"]
    assert relative["background"] > 2 * relative["expression"] > 0
    assert all(np.isfinite(list(relative.values())))


def test_example_writes_every_factor_for_the_model_and_its_random_init(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import factor_sensitivity as example
    finally:
        sys.path.pop(0)
    from pros_hf import ProSConfig, ProSModel

    torch.manual_seed(0)
    ProSModel(ProSConfig.from_preset("micro", image_size=32)).save_pretrained(tmp_path / "model")
    out = tmp_path / "sensitivity.json"
    results = example.main(["--model", str(tmp_path / "model"), "--num_groups", "4", "--compare_random_init",
                            "--random_init_seeds", "2", "--output_json", str(out)])  # fmt: skip
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(results))
    entry = written["models"][str(tmp_path / "model")]
    for key in ("relative", "random_init_relative", "random_init_relative_std"):
        assert sorted(entry[key]) == sorted(FACTORS)
        assert all(np.isfinite(list(entry[key].values())))
    assert written["counts"]["groups_kept"] >= 2
    with pytest.raises(SystemExit, match="random_init_seeds"):
        example.main(["--random_init_seeds", "0"])


def test_example_refuses_bad_input_before_rendering(tmp_path, monkeypatch):
    """A bad --model used to be reported only after the 150 groups were rendered and face-cropped (about a minute),
    and an --output_json in a missing folder only after everything was measured."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("factor_sensitivity_example",
                                                  ROOT / "examples" / "factor_sensitivity.py")  # fmt: skip
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "factor_sensitivity_example", example)  # its dataclass looks it up there
    spec.loader.exec_module(example)

    def forbidden(*args, **kwargs):
        raise AssertionError("faces were rendered before the bad input was refused")

    monkeypatch.setattr(example, "make_factor_pairs", forbidden)
    not_pros = tmp_path / "not_pros"
    not_pros.mkdir()
    (not_pros / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 16}))
    cases = [
        (["--model", str(tmp_path / "nope")], "--model: No model folder"),
        (["--model", str(not_pros)], "--model: "),
        (["--num_groups", "0"], "--num_groups must be at least 2"),
        (["--image_size", "16"], "--image_size must lie in \\[32, 1024\\]"),
        (["--crop_size", "4"], "--crop_size must be at least 8"),
        (["--batch_size", "0"], "--batch_size must be at least 1"),
        (["--output_json", str(tmp_path / "missing" / "out.json")], "--output_json .*does not exist"),
        (["--output_json", str(tmp_path)], "--output_json .*is a folder"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit, match=message):
            example.main(argv)
