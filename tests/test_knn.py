"""k-NN evaluation, the k-NN Trainer callback, CLS attention maps, and the knn_eval / visualize examples."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TrainerControl, TrainerState

from pros_hf import ProSConfig, ProSImageProcessor, ProSModel
from pros_hf.knn import (
    KNNCallback,
    evaluate_knn,
    extract_features,
    knn_accuracy,
    knn_accuracy_from_features,
    load_backbone,
    stratified_split_indices,
    weighted_knn_classify,
)
from pros_hf.visualization import cls_attention_maps, denormalize, save_attention_figure

ROOT = Path(__file__).resolve().parents[1]


def _normalized(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=generator), dim=1)


def _reference_knn(train_features, train_labels, test_features, num_classes, k, temperature):
    """Plain loops: DINO's weighted vote for one query at a time."""
    scores = torch.zeros(len(test_features), num_classes, dtype=torch.float64)
    for i, query in enumerate(test_features.double()):
        similarities = [float(query @ row) for row in train_features.double()]
        nearest = sorted(range(len(similarities)), key=lambda j: -similarities[j])[:k]
        for j in nearest:
            scores[i, int(train_labels[j])] += math.exp(similarities[j] / temperature)
    return scores


@pytest.fixture(scope="module")
def micro_model():
    torch.manual_seed(0)
    return ProSModel(ProSConfig.from_preset("micro", image_size=32)).eval()


@pytest.fixture(scope="module")
def faces():
    from pros_hf.data.synthetic import make_synthetic_faces

    return make_synthetic_faces(60, image_size=32, seed=0)


# ---------------------------------------------------------------------------------------------------------------------
# the classifier


def test_weighted_knn_matches_loop_reference_across_chunks():
    train, test = _normalized(50, 16, seed=1), _normalized(13, 16, seed=2)
    labels = torch.randint(0, 6, (50,), generator=torch.Generator().manual_seed(3))
    predictions, scores = weighted_knn_classify(train, labels, test, num_classes=6, k=7, temperature=0.1, chunk_size=4)
    reference = _reference_knn(train, labels, test, 6, 7, 0.1)
    assert scores.shape == (13, 6) and scores.dtype == torch.float64
    torch.testing.assert_close(scores, reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(predictions, reference.argmax(dim=1))
    # each row's votes add up to the k weights exactly: no neighbour lost or double counted
    assert torch.all((scores > 0).sum(dim=1) <= 7)


def test_accuracy_top1_top5_match_reference():
    train, test = _normalized(80, 8, seed=4), _normalized(40, 8, seed=5)
    generator = torch.Generator().manual_seed(6)
    train_labels = torch.randint(0, 8, (80,), generator=generator)
    test_labels = torch.randint(0, 8, (40,), generator=generator)
    result = knn_accuracy_from_features(train, train_labels, test, test_labels, num_classes=8, k=10, temperature=0.07)
    ranking = _reference_knn(train, train_labels, test, 8, 10, 0.07).argsort(dim=1, descending=True)
    expected_top1 = 100.0 * (ranking[:, 0] == test_labels).double().mean().item()
    expected_top5 = 100.0 * (ranking[:, :5] == test_labels[:, None]).any(dim=1).double().mean().item()
    assert result["top1"] == pytest.approx(expected_top1)
    assert result["top5"] == pytest.approx(expected_top5)
    assert result["top5"] >= result["top1"]
    # fewer than 5 classes: no top-5
    assert set(knn_accuracy_from_features(train, train_labels % 3, test, test_labels % 3, k=5)) == {"top1"}


def test_separable_features_give_100_percent():
    generator = torch.Generator().manual_seed(7)
    centers = torch.eye(5, 32) * 3
    train_labels, test_labels = torch.arange(100) % 5, torch.arange(30) % 5
    noise = 0.3 * torch.randn(130, 32, generator=generator)
    train = torch.nn.functional.normalize(centers[train_labels] + noise[:100], dim=1)
    test = torch.nn.functional.normalize(centers[test_labels] + noise[100:], dim=1)
    assert knn_accuracy_from_features(train, train_labels, test, test_labels, k=20)["top1"] == 100.0


def test_label_independent_features_give_chance():
    generator = torch.Generator().manual_seed(8)
    train, test = _normalized(2000, 32, seed=9), _normalized(1000, 32, seed=10)
    train_labels = torch.randint(0, 4, (2000,), generator=generator)
    test_labels = torch.randint(0, 4, (1000,), generator=generator)
    top1 = knn_accuracy_from_features(train, train_labels, test, test_labels, k=20)["top1"]
    assert 20.0 < top1 < 30.0  # chance = 25 %, binomial std over 1000 queries ~ 1.4 %


def test_k1_is_nearest_neighbour_and_temperature_weights_votes():
    train, test = _normalized(40, 8, seed=11), _normalized(25, 8, seed=12)
    labels = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(13))
    predictions, _ = weighted_knn_classify(train, labels, test, num_classes=4, k=1)
    assert torch.equal(predictions, labels[(test @ train.T).argmax(dim=1)])

    # one very close neighbour of class 0 against two farther ones of class 1
    query = torch.tensor([[1.0, 0.0]])
    near, far = [0.99, math.sqrt(1 - 0.99**2)], [0.90, math.sqrt(1 - 0.90**2)]
    train = torch.tensor([near, far, far, [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    sharp, scores = weighted_knn_classify(train, labels, query, num_classes=3, k=3, temperature=0.01)
    assert sharp.item() == 0  # exp(99) >> 2 exp(90): the closest neighbour wins
    assert scores[0, 0].item() == pytest.approx(math.exp(0.99 / 0.01), rel=1e-4)
    flat, scores = weighted_knn_classify(train, labels, query, num_classes=3, k=3, temperature=1e4)
    assert flat.item() == 1  # T -> infinity: plain majority vote
    torch.testing.assert_close(scores, torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64), rtol=1e-3, atol=1e-3)
    assert scores[0, 2] == 0  # the 4th (farthest) example is not among the k = 3


def test_knn_validation_names_the_argument():
    train, test = _normalized(10, 4), _normalized(3, 4, seed=1)
    labels = torch.arange(10) % 2
    with pytest.raises(ValueError, match="k must"):
        weighted_knn_classify(train, labels, test, 2, k=0)
    with pytest.raises(ValueError, match="k=11"):
        weighted_knn_classify(train, labels, test, 2, k=11)
    with pytest.raises(ValueError, match="temperature"):
        weighted_knn_classify(train, labels, test, 2, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        weighted_knn_classify(train, labels, test, 2, temperature=1e-4)  # exp(1e4) overflows
    with pytest.raises(ValueError, match="train_labels"):
        weighted_knn_classify(train, labels[:9], test, 2, k=3)
    with pytest.raises(ValueError, match="train_labels"):
        weighted_knn_classify(train, labels + 1, test, 2, k=3)  # label 2 with num_classes = 2
    with pytest.raises(ValueError, match="test_features"):
        weighted_knn_classify(train, labels, _normalized(3, 5), 2, k=3)
    with pytest.raises(ValueError, match="num_classes"):
        weighted_knn_classify(train, labels, test, 0, k=3)
    with pytest.raises(ValueError, match="test_labels"):
        knn_accuracy_from_features(train, labels, test, torch.tensor([0, 1, 5]), num_classes=2, k=3)
    with pytest.raises(ValueError, match="test_labels"):
        knn_accuracy_from_features(train, labels, test, torch.tensor([0, 1]), num_classes=2, k=3)


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(4), [10, 20, 5, 1])
    train, test = stratified_split_indices(labels, test_fraction=0.2, seed=0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(36))
    assert np.bincount(labels[test], minlength=4).tolist() == [2, 4, 1, 0]  # the singleton class stays in train
    assert np.array_equal(stratified_split_indices(labels, 0.2, seed=0)[1], test)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split_indices(labels, test_fraction=1.0)


# ---------------------------------------------------------------------------------------------------------------------
# features and datasets


def test_extract_features_dataset_tensor_and_loader_agree(micro_model, faces):
    subset = faces.select(range(10))
    processor = ProSImageProcessor.from_model_config(micro_model.config)
    micro_model.train()
    from_dataset = extract_features(micro_model, subset, batch_size=4)
    assert micro_model.training  # mode restored
    micro_model.eval()
    pixel_values = processor([image.convert("RGB") for image in subset["image"]], return_tensors="pt")["pixel_values"]
    from_tensor = extract_features(micro_model, pixel_values, batch_size=3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(pixel_values), batch_size=5)
    from_loader = extract_features(micro_model, loader)
    assert from_dataset.shape == (10, 64) and from_dataset.dtype == torch.float32
    torch.testing.assert_close(from_dataset.norm(dim=1), torch.ones(10))
    torch.testing.assert_close(from_tensor, from_dataset, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(from_loader, from_dataset, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(micro_model(pixel_values).pooler_output, dim=1)
    torch.testing.assert_close(from_tensor, expected, rtol=1e-5, atol=1e-5)


def test_evaluate_knn_and_knn_accuracy_on_micro_model(micro_model, faces):
    results = evaluate_knn(micro_model, faces, label_columns=("expression", "identity"), k=5, test_fraction=0.25)
    assert set(results) == {"expression", "identity"}
    assert all(0.0 <= value <= 100.0 for value in results.values())
    again = evaluate_knn(micro_model, faces, label_columns=("expression", "identity"), k=5, test_fraction=0.25)
    assert again == results  # fixed split, deterministic model
    scores = knn_accuracy(micro_model, faces.select(range(40)), faces.select(range(40, 60)), "expression", k=5)
    assert set(scores) == {"top1", "top5"} and 0 <= scores["top1"] <= scores["top5"] <= 100
    with pytest.raises(ValueError, match="label_column"):
        evaluate_knn(micro_model, faces, label_columns=("attributes",))  # multi-label column
    with pytest.raises(ValueError, match="temperature"):
        evaluate_knn(micro_model, faces, temperature=-1.0)


# ---------------------------------------------------------------------------------------------------------------------
# the callback


class _PreTrainingLike(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.student = torch.nn.Linear(2, 2)
        self.teacher = backbone


class _Wrapper(torch.nn.Module):  # what DDP / accelerate put around the model
    def __init__(self, module):
        super().__init__()
        self.module = module


def test_knn_callback_logs_on_schedule_and_restores_mode(micro_model, faces):
    torch.manual_seed(0)
    teacher = ProSModel(micro_model.config)
    model = _Wrapper(_PreTrainingLike(teacher)).train()
    callback = KNNCallback.from_dataset(faces, label_columns=("expression", "identity"), k=5, eval_steps=2)
    state, control = TrainerState(), TrainerControl()
    state.global_step, state.epoch = 1, 0.5
    callback.on_step_end(None, state, control, model=model)
    assert state.log_history == []  # not an evaluation step
    state.global_step = 2
    control.should_log = True
    callback.on_step_end(None, state, control, model=model)
    entry = state.log_history[-1]
    assert entry["step"] == 2 and entry["epoch"] == 0.5
    assert set(entry) == {"knn/expression_top1", "knn/identity_top1", "step", "epoch"}
    assert all(0 <= entry[key] <= 100 for key in ("knn/expression_top1", "knn/identity_top1"))
    assert teacher.training and model.training  # train mode restored
    assert control.should_log  # the train log of this step is untouched
    # the teacher was measured, not the student: same numbers as evaluating the teacher directly
    expected = callback.compute(teacher)
    assert entry["knn/expression_top1"] == expected["knn/expression_top1"]

    metrics = {"eval_loss": 1.0}
    callback.on_evaluate(None, state, control, model=model, metrics=metrics)  # same step: reuses, no new entry
    assert metrics["eval_knn/expression_top1"] == entry["knn/expression_top1"] and len(state.log_history) == 1
    state.global_step = 3
    callback.on_train_end(None, state, control, model=model)
    assert len(state.log_history) == 2 and state.log_history[-1]["step"] == 3


def test_knn_callback_reports_through_trainer_log(micro_model, faces):
    class FakeTrainer:
        def __init__(self):
            self.logged = []

        def log(self, logs):
            self.logged.append(logs)
            control.should_log = False  # what Trainer.log's on_log does

    state, control = TrainerState(), TrainerControl()
    state.global_step = 5
    control.should_log = True
    callback = KNNCallback(
        faces.select(range(40)), faces.select(range(40, 60)), label_columns="expression", k=3, trainer=FakeTrainer()
    )
    metrics = {}
    callback.on_evaluate(None, state, control, model=micro_model, metrics=metrics)
    assert list(callback.trainer.logged[0]) == ["knn/expression_top1"] and "eval_knn/expression_top1" in metrics
    assert control.should_log and state.log_history == []
    with pytest.raises(ValueError, match="eval_steps"):
        KNNCallback(faces, faces, eval_steps=0)
    with pytest.raises(ValueError, match="k must"):
        KNNCallback(faces, faces, k=-1)


# ---------------------------------------------------------------------------------------------------------------------
# bad k-NN data: refused at construction, or skipped and counted, never a crash at the end of training


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_dicts(images, labels):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "expression": datasets.Value("int64")})
    rows = [{"bytes": image if isinstance(image, bytes) else _png(image), "path": None} for image in images]
    return datasets.Dataset.from_dict({"image": rows, "expression": labels}, features=features)


def test_knn_callback_refuses_an_image_column_the_decoder_cannot_read(faces):
    import datasets

    labels = [0, 1, 0, 1]
    captions = datasets.Dataset.from_dict({"image": ["a smiling man"] * 4, "expression": labels})
    with pytest.raises(ValueError, match=r"image_column 'image' of train_dataset holds strings that are not paths"):
        KNNCallback.from_dataset(captions, label_columns="expression", test_fraction=0.5)
    numbers = datasets.Dataset.from_dict({"image": [1, 2, 3, 4], "expression": labels})
    with pytest.raises(ValueError, match=r"image_column 'image' of train_dataset holds Value\('int64'\), not images"):
        KNNCallback.from_dataset(numbers, label_columns="expression", test_fraction=0.5)
    with pytest.raises(ValueError, match=r"image_column 'image' of test_dataset holds Value\('int64'\)"):
        KNNCallback(faces.select(range(4)), numbers, "expression")
    with pytest.raises(ValueError, match="image_column 'landmarks' of the dataset holds"):
        evaluate_knn(torch.nn.Identity(), faces, image_column="landmarks")


def test_knn_callback_reads_paths_and_skips_undecodable_images(tmp_path, micro_model, faces, caplog):
    """Path strings work; a garbage, an empty and a missing file are left out with their labels, and counted."""
    import datasets

    subset = faces.select(range(24))
    paths = []
    for row, image in enumerate(subset["image"]):
        paths.append(str(tmp_path / f"{row}.png"))
        image.save(paths[-1])
    (tmp_path / "2.png").write_bytes(b"not an image at all")  # garbage bytes
    (tmp_path / "5.png").write_bytes(b"")
    paths[7] = str(tmp_path / "missing.png")
    labels = subset["expression"]
    by_path = datasets.Dataset.from_dict({"image": paths, "expression": labels})
    callback = KNNCallback(by_path.select(range(16)), by_path.select(range(16, 24)), "expression", k=3)
    state, control = TrainerState(), TrainerControl()
    state.global_step = 4
    with caplog.at_level("WARNING", logger="pros_hf.knn.features"):
        callback.on_train_end(None, state, control, model=micro_model)
    entry = state.log_history[-1]
    assert entry["knn_skipped_images"] == 3
    assert (
        "3 of 16 images of the k-NN memory bank could not be decoded (1 empty file, 1 missing file, 1 not an "
        "image)" in caplog.text
    )
    # the same figure as a k-NN on the good images alone: the bad rows' labels were dropped with them
    good = [row for row in range(16) if row not in (2, 5, 7)]
    clean = KNNCallback(by_path.select(good), by_path.select(range(16, 24)), "expression", k=3)
    assert entry["knn/expression_top1"] == clean.compute(micro_model)["knn/expression_top1"]

    # a datasets Image column with one garbage image (datasets' own decoder would raise on it)
    images = [*subset["image"][:11], b"\x89PNG garbage"]
    stored = _image_dicts(images, labels[:12])
    scores = KNNCallback(stored.select(range(8)), stored.select(range(8, 12)), "expression", k=3).compute(micro_model)
    assert scores["knn_skipped_images"] == 1 and 0 <= scores["knn/expression_top1"] <= 100


def test_every_image_unreadable_is_a_clear_error_and_extract_features_keeps_rows_aligned(micro_model, faces):
    from pros_hf.knn import extract_dataset_features

    broken = _image_dicts([b"junk"] * 3, [0, 1, 0])
    with pytest.raises(
        ValueError,
        match=r"3 of 3 images of the dataset could not be decoded \(3 not an image\): no "
        "image left",
    ):
        extract_dataset_features(micro_model, broken)
    one_bad = _image_dicts([*faces.select(range(3))["image"], b"junk"], [0, 1, 0, 1])
    extracted = extract_dataset_features(micro_model, one_bad)
    assert extracted.kept.tolist() == [0, 1, 2] and extracted.skipped == {"not an image": 1}
    with pytest.raises(ValueError, match="1 images of the dataset could not be decoded"):
        extract_features(micro_model, one_bad)  # one row per image, or an error: never silently fewer rows


def test_knn_decodes_16_bit_and_rgba_images_as_training_does(micro_model):
    """16-bit greyscale is scaled (not clipped to white), transparency composited on white, as in training."""
    from PIL import Image

    from pros_hf.data.decoding import open_image_rgb

    grey16 = Image.fromarray(np.full((16, 16), 30000, dtype=np.uint16))  # mode I;16: ~117 in 8 bits
    rgba = Image.new("RGBA", (16, 16), (200, 40, 40, 64))
    sources = [_png(grey16), _png(rgba)]
    seen = []
    processor = ProSImageProcessor.from_model_config(micro_model.config)

    def recording_processor(images, return_tensors=None):
        seen.extend(images)
        return processor(images, return_tensors=return_tensors)

    extract_features(micro_model, _image_dicts(sources, [0, 1]), image_processor=recording_processor)
    for image, source in zip(seen, sources):
        assert image.mode == "RGB"
        assert np.array_equal(np.asarray(image), np.asarray(open_image_rgb(source)))
    assert np.asarray(seen[0]).max() < 130  # convert("RGB") of I;16 clips 30000 to 255 (white)
    assert tuple(np.asarray(seen[1])[0, 0]) != (200, 40, 40)  # alpha composited, not dropped


def test_a_set_too_small_to_split_says_so(faces):
    import datasets

    with pytest.raises(ValueError, match=r"too small to split .*: 3 examples in 3 classes \(test_fraction=0.5\)"):
        stratified_split_indices(np.array([0, 1, 2]), test_fraction=0.5)
    tiny = datasets.Dataset.from_dict({"image": faces.select(range(3))["image"], "expression": [4, 0, 2]})
    with pytest.raises(ValueError, match="too small to split into a k-NN memory bank and queries: 3 examples"):
        KNNCallback.from_dataset(tiny, label_columns="expression", test_fraction=0.5)
    with pytest.raises(ValueError, match="too small to split"):
        evaluate_knn(torch.nn.Identity(), tiny, label_columns="expression")


# ---------------------------------------------------------------------------------------------------------------------
# attention maps


def test_cls_attention_maps_shape_and_mass(micro_model):
    pixel_values = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    maps = cls_attention_maps(micro_model, pixel_values)
    assert maps.shape == (2, 4, 4, 8) and maps.dtype == torch.float32
    with torch.no_grad():
        attentions = micro_model(pixel_values, output_attentions=True).attentions
    cls_self = attentions[-1][:, :, 0, 0]
    torch.testing.assert_close(maps.sum(dim=(2, 3)), 1 - cls_self, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps[:, :, 1, 3], attentions[-1][:, :, 0, 1 + 1 * 8 + 3])  # row-major patch grid
    first = cls_attention_maps(micro_model, pixel_values, layer=0)
    torch.testing.assert_close(first.flatten(2), attentions[0][:, :, 0, 1:])
    with pytest.raises(ValueError, match="layer"):
        cls_attention_maps(micro_model, pixel_values, layer=4)


def test_save_attention_figure_writes_png(tmp_path, micro_model):
    processor = ProSImageProcessor.from_model_config(micro_model.config)
    pixel_values = torch.randn(2, 3, 32, 32)
    images = denormalize(pixel_values, processor.image_mean, processor.image_std)
    assert images.shape == (2, 32, 32, 3) and images.min() >= 0 and images.max() <= 1
    path = save_attention_figure(images, cls_attention_maps(micro_model, pixel_values), tmp_path / "maps.png")
    from PIL import Image

    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > png.height > 100  # 2 rows x 6 panels
    with pytest.raises(ValueError, match="maps"):
        save_attention_figure(images, torch.zeros(3, 4, 4, 4), tmp_path / "bad.png")


# ---------------------------------------------------------------------------------------------------------------------
# examples and loading


def test_load_backbone_round_trip(tmp_path, micro_model):
    micro_model.save_pretrained(tmp_path / "backbone")
    loaded = load_backbone(str(tmp_path / "backbone"))
    assert type(loaded) is ProSModel and not loaded.training
    for (name, a), (_, b) in zip(micro_model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def _run_example(script, *args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    completed = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.slow
def test_knn_eval_example_end_to_end(tmp_path, micro_model):
    micro_model.save_pretrained(tmp_path / "backbone")
    out = tmp_path / "knn.json"
    stdout = _run_example("knn_eval.py", "--model", str(tmp_path / "backbone"), "--num_images", "60",
                          "--image_size", "32", "--k", "5", "--compare_random_init", "--output_json", str(out),
                          cwd=tmp_path)  # fmt: skip
    assert "expression" in stdout and "identity" in stdout
    results = json.loads(out.read_text())
    assert results["num_examples"] == 60 and results["k"] == 5
    expression = results["labels"]["expression"]
    assert expression["num_classes"] == 7
    for entry in results["labels"].values():
        for key in ("top1", "random_init_top1", "majority_chance_top1"):
            assert 0 <= entry[key] <= 100
        assert len(entry["random_init_top1_per_seed"]) == 3  # the default --random_init_seeds
        assert entry["random_init_top1"] == pytest.approx(sum(entry["random_init_top1_per_seed"]) / 3)


@pytest.mark.slow
def test_visualize_example_end_to_end(tmp_path):
    out = tmp_path / "attention.png"
    args = ("--num_images", "2", "--image_size", "32", "--output", str(out))
    stdout = _run_example("visualize.py", *args, cwd=tmp_path)
    assert "4 heads" in stdout and out.stat().st_size > 1000


@pytest.mark.slow
def test_pretrain_example_tracks_knn_and_writes_it_into_the_card(tmp_path, faces, capfd):
    """examples/pretrain.py --knn_dataset: the teacher's k-NN every --knn_eval_steps and at the end, in the log
    history and in the exported backbone's model card; bad k-NN arguments stop before training, naming them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pretrain_example", ROOT / "examples" / "pretrain.py")
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    faces.save_to_disk(str(tmp_path / "labelled"))
    base = [
        "--output_dir",
        str(tmp_path / "run"),
        "--num_synthetic_images",
        "16",
        "--synthetic_image_size",
        "40",
        "--global_crop_size",
        "32",
        "--local_crop_size",
        "16",
        "--num_local_crops",
        "2",
        "--per_device_train_batch_size",
        "8",
        "--max_steps",
        "4",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--knn_dataset",
        str(tmp_path / "labelled"),
    ]
    trainer, _ = pretrain.build_trainer(base + ["--knn_eval_steps", "2"])
    capfd.readouterr()
    trainer.train()
    assert "Extracting features" not in capfd.readouterr().err  # --disable_tqdm holds for the k-NN's bars too
    steps = [entry["step"] for entry in trainer.state.log_history if "knn/identity_top1" in entry]
    assert steps == [2, 4]  # every 2 steps; the end of training (step 4) is not measured twice
    last = [entry for entry in trainer.state.log_history if "knn/expression_top1" in entry][-1]
    card = (tmp_path / "run" / "README.md").read_text()
    assert "knn/expression_top1" in card and f"{last['knn/expression_top1']:.2f}" in card
    # --knn_seed picks knn_eval.py's split (stratified on the first label column), whatever the training seed
    seeded, _ = pretrain.build_trainer(base + ["--knn_seed", "3"])
    callback = next(c for c in seeded.callback_handler.callbacks if isinstance(c, KNNCallback))
    _, test_idx = stratified_split_indices(np.asarray(faces["expression"]), 0.5, 3)
    assert callback.test_dataset["identity"] == faces.select(test_idx)["identity"]
    # without --train_dir and --knn_dataset, held-out synthetic faces; --knn_synthetic_images 0 turns that off
    no_data = base[:-2]
    held_out, _ = pretrain.build_trainer(no_data + ["--knn_synthetic_images", "30"])
    callback = next(c for c in held_out.callback_handler.callbacks if isinstance(c, KNNCallback))
    assert len(callback.train_dataset) + len(callback.test_dataset) == 30
    plain, _ = pretrain.build_trainer(no_data + ["--knn_synthetic_images", "0"])
    assert not any(isinstance(c, KNNCallback) for c in plain.callback_handler.callbacks)
    with pytest.raises(SystemExit, match="too small to split into a k-NN memory bank and queries: 3 examples"):
        pretrain.build_trainer(no_data + ["--knn_synthetic_images", "3"])  # one face per expression: nothing to query
    with pytest.raises(SystemExit, match="'mood' is not a column"):
        pretrain.build_trainer(base + ["--knn_label_columns", "mood"])
    with pytest.raises(SystemExit, match="image_column 'photo' is not a column of train_dataset"):
        pretrain.build_trainer(base + ["--knn_image_column", "photo"])
    with pytest.raises(SystemExit, match="not a dataset folder"):
        pretrain.build_trainer(base[:-1] + [str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="--knn_eval_steps must be a positive"):
        pretrain.build_trainer(base + ["--knn_eval_steps", "0"])


def test_knn_eval_warns_that_num_images_does_not_apply_to_a_dataset(tmp_path, caplog, monkeypatch):
    """--num_images sizes the synthetic faces only; with --dataset it is ignored, and said to be."""
    import importlib.util
    import logging

    import datasets
    from PIL import Image

    spec = importlib.util.spec_from_file_location("knn_eval", ROOT / "examples" / "knn_eval.py")
    knn_eval = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "knn_eval", knn_eval)  # dataclasses look their module up there
    spec.loader.exec_module(knn_eval)
    images = [Image.new("RGB", (8, 8), (i, i, i)) for i in range(4)]
    datasets.Dataset.from_dict({"image": images, "expression": [0, 1, 0, 1]}).save_to_disk(str(tmp_path / "set"))
    args = knn_eval.KNNEvalArguments(dataset=str(tmp_path / "set"), num_images=60)
    with caplog.at_level(logging.WARNING, logger="knn_eval"):
        loaded = knn_eval.load_dataset_for_knn(args)
    assert len(loaded) == 4 and "--num_images 60 is for the synthetic faces" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="knn_eval"):
        knn_eval.load_dataset_for_knn(knn_eval.KNNEvalArguments(dataset=str(tmp_path / "set")))
    assert "--num_images" not in caplog.text


def test_load_backbone_and_processor_uses_the_saved_processor_or_the_config(tmp_path):
    from pros_hf.knn import load_backbone_and_processor

    model = ProSModel(ProSConfig.from_preset("micro", image_size=32))
    model.save_pretrained(tmp_path / "bare")
    model.save_pretrained(tmp_path / "with_processor")
    ProSImageProcessor(size={"shortest_edge": 40}, image_mean=[0.5, 0.5, 0.5]).save_pretrained(
        tmp_path / "with_processor"
    )
    loaded, processor = load_backbone_and_processor(str(tmp_path / "with_processor"))
    assert isinstance(loaded, ProSModel) and list(processor.image_mean) == [0.5, 0.5, 0.5]
    _, derived = load_backbone_and_processor(str(tmp_path / "bare"))
    assert derived.to_dict() == ProSImageProcessor.from_model_config(model.config).to_dict()


def test_evaluate_knn_returns_the_query_rows_it_scored(micro_model, faces):
    """The rows whose images decoded, among the split's queries: counts and chance levels are taken on those."""
    subset = faces.select(range(24))
    split = stratified_split_indices(np.asarray(subset["expression"]), 0.5, 0)[1]
    bad = int(split[0])  # a query: leaving it out must show in the rows returned
    images = list(subset["image"])
    images[bad] = b"not an image"
    stored = _image_dicts(images, subset["expression"])
    scores, rows = evaluate_knn(
        micro_model, stored, label_columns="expression", test_fraction=0.5, k=3, return_query_rows=True
    )
    assert bad not in rows.tolist() and len(rows) == len(split) - 1
    assert sorted(rows.tolist()) == sorted(row for row in split.tolist() if row != bad)
    assert scores == evaluate_knn(micro_model, stored, label_columns="expression", test_fraction=0.5, k=3)


def test_pixel_array_columns_are_images(micro_model, faces):
    """Decoded pixels stored as Array3D columns go to the processor as they are."""
    import datasets

    subset = faces.select(range(8))
    arrays = [np.asarray(image.convert("RGB")) for image in subset["image"]]
    shape = arrays[0].shape
    stored = datasets.Dataset.from_dict(
        {"image": arrays, "expression": subset["expression"]},
        features=datasets.Features({"image": datasets.Array3D(shape, "uint8"), "expression": datasets.Value("int64")}),
    )
    from_arrays = extract_features(micro_model, stored.with_format("numpy"))
    torch.testing.assert_close(from_arrays, extract_features(micro_model, subset))
