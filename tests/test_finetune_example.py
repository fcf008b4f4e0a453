"""examples/finetune.py end to end on tiny data: every task, few-shot with 2 seeds against random init, LoRA, linear
probe, results.json, PNGs, and the exact folder --push_to_hub would upload (checked offline, and loaded back in a
fresh process without pros_hf)."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import install_in_hub_cache, run_without_pros_hf
from PIL import Image

from pros_hf import ProSConfig, ProSImageProcessor, ProSModel
from pros_hf.finetuning import FinetuneError, split_validation
from pros_hf.finetuning import runs as finetuning_runs

pytestmark = pytest.mark.slow  # whole scripts end to end, minutes of CPU


ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--num_train",
    "40",
    "--num_test",
    "16",
    "--max_steps",
    "3",
    "--per_device_train_batch_size",
    "8",
    "--logging_steps",
    "1",
    "--num_plot_faces",
    "4",
    "--disable_tqdm",
    "True",
]


def load_example():
    spec = importlib.util.spec_from_file_location("finetune_example", ROOT / "examples" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the string annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one intra-op thread does not spin against the other jobs
    yield load_example()
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A micro backbone (as the Hub would serve it, org/pros-micro) and a shared cache of rendered face crops."""
    root = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(0)
    backbone = ProSModel(ProSConfig.from_preset("micro", image_size=32))
    backbone.save_pretrained(root / "backbone")
    ProSImageProcessor.from_model_config(backbone.config).save_pretrained(root / "backbone")
    install_in_hub_cache(root / "backbone", "org/pros-micro")
    return root


def common(workspace):
    return ["--model", str(workspace / "backbone"), "--data_cache_dir", str(workspace / "cache"), *TINY]


def assert_png(path):
    assert path.is_file(), path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


@pytest.fixture(scope="module")
def all_tasks(example, workspace):
    """The few-shot comparison in one command: three tasks, 2 seeds, pre-trained vs random init."""
    output = workspace / "all"
    results = example.main(
        [
            "--task",
            "all",
            "--few_shot",
            "0.5",
            "--seeds",
            "0",
            "1",
            "--compare_random_init",
            "--output_dir",
            str(output),
            *common(workspace),
        ]
    )
    return output, results


def test_all_tasks_few_shot_two_seeds_results_and_figures(all_tasks, capsys):
    output, results = all_tasks
    assert set(results) == {"expression", "attributes", "landmarks"}
    for task, metrics in (
        ("expression", ["accuracy", "macro_f1"]),
        ("attributes", ["mean_accuracy"]),
        ("landmarks", ["nme", "failure_rate", "auc"]),
    ):
        saved = json.loads((output / task / "results.json").read_text())
        assert saved["metrics"] == metrics and saved["seeds"] == [0, 1] and saved["few_shot"] == 0.5
        for init in ("pretrained", "random_init"):
            run = saved["runs"][init]
            assert set(run["per_seed"]) == {"0", "1"}
            for metric in metrics:
                values = [run["per_seed"][seed][metric] for seed in ("0", "1")]
                assert all(np.isfinite(values))
                assert run["mean"][metric] == pytest.approx(np.mean(values))
                assert run["std"][metric] == pytest.approx(np.std(values, ddof=1))
            labelled = run["per_seed"]["0"]["num_train_labelled"]
            assert 0 < labelled < saved["num_train"]  # the few-shot subset, not everything
        assert (
            saved["runs"]["pretrained"]["per_seed"]["0"]["num_train_labelled"]
            == saved["runs"]["random_init"]["per_seed"]["0"]["num_train_labelled"]
        )  # same labelled examples
    expression = json.loads((output / "expression" / "results.json").read_text())
    assert len(expression["details"]["pretrained"]["0"]["confusion_matrix"]) == 7
    for figure in (
        "expression/confusion_matrix.png",
        "expression/confusion_matrix_random_init.png",
        "attributes/attribute_accuracy.png",
        "landmarks/landmarks.png",
        "landmarks/ced.png",
    ):
        assert_png(output / figure)
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary) == {"expression", "attributes", "landmarks"}
    table = (output / "summary.txt").read_text()
    assert "random init" in table and "better" in table and "mean ± std over seeds [0, 1]" in table
    assert table.count("\n") == 2 + 6 + 1  # title, header, six metric rows, the note on the labels-only column
    assert "labels only" in table
    landmarks = json.loads((output / "landmarks" / "results.json").read_text())
    assert set(landmarks["prior"]["per_seed"]) == {"0", "1"} and landmarks["prior"]["mean"]["nme"] > 0


def test_each_task_saves_a_head_with_processor_and_card(all_tasks):
    from huggingface_hub import ModelCard

    output, _ = all_tasks
    for task, auto_class in (
        ("expression", "AutoModelForImageClassification"),
        ("attributes", "AutoModelForImageClassification"),
        ("landmarks", "AutoModelForPoseEstimation"),
    ):
        folder = output / task
        config = json.loads((folder / "config.json").read_text())
        assert auto_class in config["auto_map"] and (folder / "model.safetensors").is_file()
        assert json.loads((folder / "preprocessor_config.json").read_text())["crop_size"] == {"height": 32, "width": 32}
        card = ModelCard.load(folder / "README.md")
        means = json.loads((folder / "results.json").read_text())["runs"]["pretrained"]["mean"]
        headline = card.data.eval_results[0]
        assert headline.metric_value == pytest.approx(
            means[json.loads((folder / "results.json").read_text())["metrics"][0]], abs=1e-6
        )
    attributes = json.loads((output / "attributes" / "config.json").read_text())
    assert attributes["problem_type"] == "multi_label_classification" and len(attributes["id2label"]) == 12


def test_saved_heads_work_in_the_pipelines(all_tasks):
    from transformers import pipeline

    output, _ = all_tasks
    face = Image.new("RGB", (64, 64), (180, 120, 90))
    scores = pipeline("image-classification", model=str(output / "attributes"))(face, top_k=12)
    # one independent probability per attribute: the sigmoid of each logit (a softmax would sum to 1)
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(output / "attributes").eval()
    with torch.no_grad():
        logits = model(**ProSImageProcessor.from_pretrained(output / "attributes")(face, return_tensors="pt")).logits
    expected = {model.config.id2label[i]: p for i, p in enumerate(torch.sigmoid(logits)[0].tolist())}
    assert len(scores) == 12
    assert {s["label"]: s["score"] for s in scores} == pytest.approx(expected, abs=1e-5)
    assert sum(s["score"] for s in scores) != pytest.approx(1.0, abs=1e-2)
    expression = pipeline("image-classification", model=str(output / "expression"))(face, top_k=7)
    assert sum(s["score"] for s in expression) == pytest.approx(1.0, abs=1e-4)
    points = pipeline("face-landmarks", model=str(output / "landmarks"))(face)["landmarks"]
    assert np.asarray(points).shape == (68, 2)


REMOTE_SCRIPT = r"""
import json
import numpy as np, torch
from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification,
                          AutoModelForPoseEstimation)
jobs, out = json.loads(sys.argv[1]), {}
image = np.load(sys.argv[2])
for name, (kind, repo) in jobs.items():
    processor = AutoImageProcessor.from_pretrained(repo, trust_remote_code=True)
    pixel_values = processor(image, return_tensors="pt").pixel_values
    if kind == "adapter":
        from peft import PeftConfig, PeftModel
        config = AutoConfig.from_pretrained(repo, trust_remote_code=True)
        base = AutoModelForImageClassification.from_config(config, trust_remote_code=True)
        backbone = AutoModel.from_pretrained(PeftConfig.from_pretrained(repo).base_model_name_or_path,
                                             trust_remote_code=True)
        base.pros.load_state_dict(backbone.state_dict())
        model = PeftModel.from_pretrained(base, repo).eval()
        inner = model.get_base_model()
    else:
        auto = AutoModelForPoseEstimation if kind == "landmarks" else AutoModelForImageClassification
        model = inner = auto.from_pretrained(repo, trust_remote_code=True).eval()
    assert type(inner).__module__.startswith("transformers_modules"), type(inner).__module__
    with torch.no_grad():
        result = model(pixel_values=pixel_values)
    out[name] = (result.landmarks if kind == "landmarks" else result.logits).numpy().tolist()
json.dump(out, open(sys.argv[3], "w"))
"""


def remote_outputs(jobs: dict, image: np.ndarray, tmp_path) -> dict:
    """Each job's outputs from a fresh process where pros_hf cannot be imported (conftest's helper)."""
    np.save(tmp_path / "image.npy", image)
    run_without_pros_hf(REMOTE_SCRIPT, json.dumps(jobs), tmp_path / "image.npy", tmp_path / "o.json", cwd=tmp_path)
    return {name: np.asarray(values) for name, values in json.loads((tmp_path / "o.json").read_text()).items()}


def local_outputs(kind, folder, image):
    from transformers import AutoModelForImageClassification, AutoModelForPoseEstimation

    processor = ProSImageProcessor.from_pretrained(folder)
    pixel_values = processor(image, return_tensors="pt").pixel_values
    if kind == "adapter":
        from pros_hf.finetuning import load_adapter_folder

        model = load_adapter_folder(folder)
    else:
        auto = AutoModelForPoseEstimation if kind == "landmarks" else AutoModelForImageClassification
        model = auto.from_pretrained(folder).eval()
    with torch.no_grad():
        result = model(pixel_values=pixel_values)
    return (result.landmarks if kind == "landmarks" else result.logits).numpy()


@pytest.fixture(scope="module")
def pushed(example, workspace):
    """--push_to_hub offline: a LoRA attribute adapter and a linear-probe expression head. The push must fail with a
    clear error after the folder is complete."""
    folders = {}
    for name, extra in (
        (
            "adapter",
            [
                "--task",
                "attributes",
                "--lora",
                "--hub_model_id",
                "org/pros-attributes-lora",
                "--hub_base_model",
                "org/pros-micro",
            ],
        ),
        ("probe", ["--task", "expression", "--mode", "linear_probe", "--hub_model_id", "org/pros-expression"]),
    ):
        output = workspace / name
        with pytest.raises(
            SystemExit,
            match=r"HF_HUB_OFFLINE is set. The folder is complete on disk; push it later "
            r"with `hf upload org/",
        ):
            example.main([*extra, "--push_to_hub", "--output_dir", str(output), *common(workspace)])
        folders[name] = output
    return folders


def test_push_folders_are_complete_and_cards_parse(pushed):
    from huggingface_hub import ModelCard

    adapter = pushed["adapter"]
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "README.md",
        "results.json",
        "attribute_accuracy.png",
        "modeling_pros_classification.py",
        "image_processing_pros.py",
    } <= set(os.listdir(adapter))
    assert not (adapter / "model.safetensors").exists()  # an adapter repo, not a copy of the backbone
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "org/pros-micro" and adapter_config["task_type"] is None
    assert adapter_config["modules_to_save"] == ["classifier"]
    results = json.loads((adapter / "results.json").read_text())
    card = ModelCard.load(adapter / "README.md")
    assert card.data.base_model == "org/pros-micro" and card.data.library_name == "peft"
    assert card.data.license == "apache-2.0" and "lora" in card.data.tags
    assert card.data.model_name == "pros-attributes-lora"
    [result] = card.data.eval_results
    assert result.metric_type == "accuracy" and result.task_type == "image-classification"
    assert result.metric_value == pytest.approx(results["runs"]["pretrained"]["mean"]["mean_accuracy"], abs=1e-6)
    assert result.dataset_name.startswith("synthetic faces")
    assert results["parameters"]["trainable_fraction"] < 0.02  # LoRA (r=2) + the 12-way classifier at micro size
    merged = Path(f"{adapter}-merged")
    assert (merged / "model.safetensors").is_file() and (merged / "README.md").is_file()

    probe = pushed["probe"]
    card = ModelCard.load(probe / "README.md")
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    means = json.loads((probe / "results.json").read_text())["runs"]["pretrained"]["mean"]
    assert values == pytest.approx({"accuracy": means["accuracy"], "f1": means["macro_f1"]}, abs=1e-6)
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-classification"
    # a local backbone folder is not a Hub id: it stays out of base_model
    assert card.data.base_model is None
    parameters = json.loads((probe / "results.json").read_text())["parameters"]
    assert parameters["trainable_parameters"] == 64 * 7 + 7


def test_folders_load_in_a_fresh_process_without_pros_hf(all_tasks, pushed, tmp_path):
    output, _ = all_tasks
    install_in_hub_cache(pushed["adapter"], "org/pros-attributes-lora")
    install_in_hub_cache(pushed["probe"], "org/pros-expression")
    install_in_hub_cache(output / "landmarks", "org/pros-landmarks")
    jobs = {
        "adapter": ("adapter", "org/pros-attributes-lora"),
        "probe": ("classifier", "org/pros-expression"),
        "landmarks": ("landmarks", "org/pros-landmarks"),
    }
    image = np.asarray(Image.new("RGB", (48, 48), (180, 120, 90)))
    image = (image + np.random.default_rng(0).integers(0, 40, image.shape)).astype(np.uint8)
    remote = remote_outputs(jobs, image, tmp_path)
    np.testing.assert_allclose(remote["adapter"], local_outputs("adapter", pushed["adapter"], image), atol=1e-6)
    np.testing.assert_allclose(remote["probe"], local_outputs("classifier", pushed["probe"], image), atol=1e-6)
    np.testing.assert_allclose(remote["landmarks"], local_outputs("landmarks", output / "landmarks", image), atol=1e-6)
    # the merged head (LoRA folded in) gives the adapter's outputs
    merged = local_outputs("classifier", Path(f"{pushed['adapter']}-merged"), image)
    np.testing.assert_allclose(merged, remote["adapter"], atol=1e-4)


def test_validation_split_chooses_the_checkpoint_without_the_test_set(example, workspace):
    """--validation_fraction holds out part of the labelled examples; --load_best_model_at_end keeps the checkpoint
    that scores best on it."""
    output = workspace / "validation"
    example.main(
        [
            "--task",
            "expression",
            "--few_shot",
            "0.5",
            "--seeds",
            "0",
            "--validation_fraction",
            "0.25",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "2",
            "--load_best_model_at_end",
            "--output_dir",
            str(output),
            *common(workspace),
            "--max_steps",
            "6",
        ]
    )
    run = json.loads((output / "results.json").read_text())["runs"]["pretrained"]["per_seed"]["0"]
    assert run["num_validation"] >= 7 and run["num_train_labelled"] >= 7  # every class on both sides
    assert run["best_step"] in (2, 4, 6)
    card = (output / "README.md").read_text()
    assert "held out for validation, the checkpoint with the best validation loss kept" in card


def test_validation_split_is_disjoint_stratified_and_seeded(example):
    labels = np.repeat(np.arange(7), 6)  # 7 classes x 6 labelled examples
    indices = np.arange(0, 84, 2)[: len(labels)]
    all_labels = np.zeros(84, dtype=np.int64)
    all_labels[indices] = labels
    training, validation = split_validation(all_labels, indices, 0.25, seed=3)
    assert set(training).isdisjoint(validation) and set(training) | set(validation) == set(indices)
    assert sorted(set(all_labels[validation])) == list(range(7))  # stratified: every class validated
    again = split_validation(all_labels, indices, 0.25, seed=3)
    assert np.array_equal(again[1], validation)
    with pytest.raises(FinetuneError, match="leaves none of the 1 labelled examples"):
        split_validation(all_labels, indices[:1], 0.5, seed=0)


def test_help_shows_the_defaults_that_are_used(example, capsys):
    """--help shows finetune.py's own training defaults, not TrainingArguments' (8 images, 3 epochs, no folder)."""
    with pytest.raises(SystemExit):
        example.parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 32)" in text and "(default: outputs/finetune)" in text and "(default: 3e-3)" in text
    assert "finetune.py: 400 unless --num_train_epochs is given" in text
    _, training_args = example.parse([])
    assert (
        training_args.per_device_train_batch_size,
        training_args.learning_rate,
        training_args.max_steps,
        training_args.output_dir,
    ) == (32, 3e-3, 400, "outputs/finetune")
    _, training_args = example.parse(["--num_train_epochs", "2"])
    assert training_args.max_steps == -1 and training_args.num_train_epochs == 2


def test_bad_flag_combinations_are_refused(example, capsys):
    with pytest.raises(SystemExit) as done:
        example.parse(["--help"])
    assert done.value.code == 0 and "--compare_random_init" in capsys.readouterr().out  # every help text formats
    with pytest.raises(SystemExit, match="exclude each other"):
        example.parse(["--lora", "--mode", "linear_probe"])
    with pytest.raises(SystemExit, match=r"--few_shot is the fraction .* in \(0, 1\]; got 1.5"):
        example.parse(["--few_shot", "1.5"])
    with pytest.raises(SystemExit, match=r"expression data: dataset 'no/such/folder': no such folder"):
        example.main(["--task", "expression", "--dataset", "no/such/folder"])
    with pytest.raises(SystemExit, match=r"--model: No model folder 'no/such/backbone'"):
        example.main(["--task", "expression", "--model", "no/such/backbone", "--dataset", str(Path(__file__).parent)])
    with pytest.raises(SystemExit, match="needs --hub_model_id"):
        example.parse(["--push_to_hub"])
    with pytest.raises(SystemExit, match="pick one --task"):
        example.parse(["--task", "all", "--push_to_hub", "--hub_model_id", "a/b"])
    with pytest.raises(SystemExit, match="would pick the checkpoint by its test-set score"):
        example.parse(["--eval_strategy", "steps", "--load_best_model_at_end"])
    with pytest.raises(SystemExit, match="needs --eval_strategy steps"):
        example.parse(["--validation_fraction", "0.2"])
    with pytest.raises(SystemExit, match=r"must be in \[0, 1\)"):
        example.parse(["--validation_fraction", "1.0", "--eval_strategy", "steps"])


def test_dash_and_equals_spellings_are_the_users_flags(example):
    """`--max-steps 3` and `--output_dir=x` are the user's flags (HfArgumentParser reads both spellings): the
    script's own defaults, appended after them, used to override them (400 steps into outputs/finetune)."""
    _, training_args = example.parse(
        ["--max-steps", "3", "--output-dir", "somewhere", "--learning_rate=1e-4", "--per-device-train-batch-size=4"]
    )
    assert (
        training_args.max_steps,
        training_args.output_dir,
        training_args.learning_rate,
        training_args.per_device_train_batch_size,
    ) == (3, "somewhere", 1e-4, 4)
    _, training_args = example.parse(["--num-train-epochs", "2"])
    assert training_args.max_steps == -1 and training_args.num_train_epochs == 2
    args = ["--validation_fraction", "0.2", "--eval_strategy", "steps", "--eval_steps", "5"]
    _, training_args = example.parse([*args, "--load-best-model-at-end"])
    assert training_args.load_best_model_at_end and str(training_args.save_strategy.value) == "best"
    _, training_args = example.parse([*args, "--load_best_model_at_end=False"])
    assert not training_args.load_best_model_at_end and str(training_args.save_strategy.value) == "no"


def test_best_checkpoint_follows_the_direction_of_the_metric(example):
    """transformers takes every metric not ending in "loss" as higher-is-better: with nme (or failure_rate)
    --load_best_model_at_end kept the worst checkpoint."""
    best = ["--validation_fraction", "0.2", "--eval_strategy", "steps", "--eval_steps", "5", "--load_best_model_at_end"]
    for task, metric, higher in (
        ("landmarks", "nme", False),
        ("landmarks", "eval_failure_rate", False),
        ("landmarks", "auc", True),
        ("expression", "accuracy", True),
        ("all", "loss", False),
    ):
        _, training_args = example.parse(["--task", task, *best, "--metric_for_best_model", metric])
        assert training_args.greater_is_better is higher, (task, metric)
    _, training_args = example.parse(
        ["--task", "landmarks", *best, "--metric_for_best_model", "nme", "--greater-is-better", "True"]
    )  # the user's choice stands
    assert training_args.greater_is_better is True
    with pytest.raises(
        SystemExit,
        match=r"--metric_for_best_model 'nmee' is not a validation metric of --task "
        r"landmarks; choose one of \['loss', 'nme', 'failure_rate', 'auc'\]",
    ):
        example.parse(["--task", "landmarks", *best, "--metric_for_best_model", "nmee"])
    with pytest.raises(SystemExit, match=r"not a validation metric of --task all; choose one of \['loss'\]"):
        example.parse(["--task", "all", *best, "--metric_for_best_model", "nme"])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds", "0", "0"], r"--seeds repeats a seed \(\[0, 0\]\)"),
        (["--num_train", "0"], "--num_train must be at least 1"),
        (["--num_test", "-3"], "--num_test must be at least 1"),
        (["--num_plot_faces", "-1"], "--num_plot_faces must be >= 0"),
        (["--failure_threshold", "0"], "--failure_threshold .* must be > 0, got 0.0"),
        (["--test_fraction", "1.5"], r"--test_fraction .* in \(0, 1\); got 1.5"),
        (["--image_size", "0"], "--image_size must be a positive number of pixels"),
        (["--layer_decay", "0"], r"--layer_decay must be in \(0, 1\]"),
        (["--layer_decay", "1.5"], r"--layer_decay must be in \(0, 1\]"),
        (["--backbone_lr_scale", "-1"], "--backbone_lr_scale must be >= 0"),
        (["--lora", "--lora_r", "0"], "--lora_r .* must be >= 1, got 0"),
        (["--lora", "--lora_dropout", "1.5"], r"--lora_dropout must be in \[0, 1\), got 1.5"),
        (["--lora", "--lora_alpha", "0"], "--lora_alpha must be > 0"),
        (["--warmup_steps", "-1"], "finetune.py: Got warmup_steps = -1"),  # TrainingArguments' check, no traceback
    ],
)
def test_bad_numbers_are_refused_by_name(example, flags, message):
    with pytest.raises(SystemExit, match=message):
        example.parse(flags)


def write_label_folder(folder, count=16, points=5):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"f{index}.png")
        rows.append(f"f{index}.png,{index % 7}," + " ".join(f"{v:.1f}" for v in rng.uniform(2, 29, 2 * points)))
    (folder / "labels.csv").write_text("file_name,expression,landmarks\n" + "\n".join(rows) + "\n")
    return folder


def test_bad_input_known_before_training_stops_before_it(example, workspace, tmp_path, monkeypatch):
    """What can be known before the first run ends the run with one line, before any training: a model that is not
    ProS, an input size the patches do not tile, a LoRA layer that does not exist, a Hub dataset offline, a flip
    permutation for another landmark layout, and (with --task all) the last task's data."""

    def no_training(*args, **kwargs):
        raise AssertionError("a run started")

    monkeypatch.setattr(finetuning_runs, "train_head", no_training)
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
        )
    ).save_pretrained(tmp_path / "vit")
    base = ["--output_dir", str(tmp_path / "out"), *common(workspace)]
    with pytest.raises(
        SystemExit,
        match=r"^--model: '.*vit' is not a ProS model: its config.json has model_type "
        r"'vit'",
    ):
        example.main([*base, "--model", str(tmp_path / "vit")])
    with pytest.raises(
        SystemExit,
        match=r"--image_size 50 is not a multiple of the backbone's patch size 8; e\.g\. "
        r"48",
    ):
        example.main([*base, "--image_size", "50"])
    without_model = [arg for arg in base if arg not in ("--model", str(workspace / "backbone"))]
    with pytest.raises(SystemExit, match=r"^--image_size: ProSConfig.image_size \(60\) must be a multiple"):
        example.main([*without_model, "--image_size", "60"])  # the random micro backbone's patches, too
    for modules in (["foo"], ["qkv", "foo"]):
        with pytest.raises(SystemExit, match=r"--lora_target_modules: target_modules \['foo'\] match no Linear"):
            example.main([*base, "--lora", "--lora_target_modules", *modules])
    with pytest.raises(SystemExit, match=r"^expression data: Cannot load the Hub dataset 'org/none'"):
        example.main([*base, "--hub_dataset", "org/none"])
    folder = write_label_folder(tmp_path / "faces")
    with pytest.raises(SystemExit, match=r"--flip_landmarks swaps .* this data has 5 points per face"):
        example.main(
            [
                *base,
                "--task",
                "landmarks",
                "--flip_landmarks",
                "--image_dir",
                str(folder),
                "--labels_file",
                str(folder / "labels.csv"),
            ]
        )
    import datasets

    names = ["glasses", "beard"]
    no_landmarks = datasets.Dataset.from_dict(
        {
            "image": [Image.new("RGB", (32, 32), (i * 10, 90, 120)) for i in range(21)],
            "expression": [i % 7 for i in range(21)],
            "attributes": [[i % 2] for i in range(21)],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "expression": datasets.ClassLabel(num_classes=7),
                "attributes": datasets.List(datasets.ClassLabel(names=names)),
            }
        ),
    )
    no_landmarks.save_to_disk(str(tmp_path / "nolm"))
    with pytest.raises(SystemExit, match=r"^landmarks data: No landmarks label column 'landmarks'"):
        example.main([*base, "--task", "all", "--dataset", str(tmp_path / "nolm")])
    assert not (tmp_path / "out").exists()  # nothing was written


def test_rerun_into_a_folder_keeps_only_its_own_files(example, workspace, tmp_path):
    """--output_dir is what --push_to_hub uploads: a landmark run into an expression run's folder removes the
    confusion matrices and the classifier's code that run wrote (and nothing else); --num_plot_faces 0 finishes
    without a landmarks.png instead of failing after training."""
    output = tmp_path / "head"
    example.main(["--task", "expression", "--compare_random_init", "--output_dir", str(output), *common(workspace)])
    written = set(os.listdir(output))
    assert {"confusion_matrix.png", "confusion_matrix_random_init.png", "modeling_pros_classification.py"} <= written
    (output / "notes.txt").write_text("mine")
    (output / "landmarks.png").write_bytes(b"an old figure")  # a name this run writes only with faces to draw
    example.main(["--task", "landmarks", "--output_dir", str(output), *common(workspace), "--num_plot_faces", "0"])
    files = set(os.listdir(output))
    assert not files & {
        "confusion_matrix.png",
        "confusion_matrix_random_init.png",
        "modeling_pros_classification.py",
        "landmarks.png",
    }
    assert {"ced.png", "modeling_pros_landmarks.py", "model.safetensors", "notes.txt"} <= files
    assert json.loads((output / "results.json").read_text())["figures"] == ["ced.png"]
    # --push_to_hub would upload the task folders of an earlier --task all run: refused before training
    (output / "expression").mkdir()
    (output / "expression" / "results.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"holds the task folders \['expression'\] of an earlier --task all run"):
        example.main(
            [
                "--task",
                "landmarks",
                "--push_to_hub",
                "--hub_model_id",
                "org/x",
                "--output_dir",
                str(output),
                *common(workspace),
            ]
        )


def test_cards_name_the_local_backbone_by_its_folder_name(all_tasks, pushed, workspace):
    """Every card these runs wrote (heads of three tasks, a LoRA adapter and its merged head, a linear probe) was
    fine-tuned from a local backbone folder given by its absolute path: the cards name it by its folder's name and
    hold no local path, since they are published with the model."""
    output, _ = all_tasks
    cards = [output / task / "README.md" for task in ("expression", "attributes", "landmarks")]
    cards += [
        pushed["adapter"] / "README.md",
        Path(f"{pushed['adapter']}-merged") / "README.md",
        pushed["probe"] / "README.md",
    ]
    for card in cards:
        text = card.read_text()
        assert str(workspace) not in text and str(workspace.parent) not in text, card
    assert "**backbone**" in (pushed["probe"] / "README.md").read_text()
