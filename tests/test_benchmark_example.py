"""examples/benchmark.py end to end on every benchmark's native-format fixture folder with a micro backbone: the
report's keys and test subsets, the printed row's columns, LoRA, the linear probe and the data ratio; the crop's way
back to the source pixels; the validation selection; and one-line errors for a missing folder and an unknown
benchmark."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import test_benchmark_loaders as loaders  # the native-format fixture writers
import torch

from pros_hf import ProSConfig, ProSImageProcessor, ProSModel
from pros_hf.benchmarks import PROTOCOLS, ROW_COLUMNS, ProtocolFraming, ValidationSelection, load_benchmark
from pros_hf.benchmarks.scoring import source_points
from pros_hf.finetuning import FaceTaskCollator, TaskLabels

ROOT = Path(__file__).resolve().parents[1]
MICRO = [
    "--max_steps",
    "2",
    "--image_size",
    "32",
    "--per_device_train_batch_size",
    "4",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "1",
    "--dataloader_num_workers",
    "0",
    "--disable_tqdm",
    "True",
]


def _write_folder(name: str, root: Path) -> None:
    """The benchmark's fixture folder, written by the loader tests' writers; large enough that the validation split
    leaves images to train on."""
    if name == "celeba":
        loaders._celeba(root, np.random.default_rng(0).choice([-1, 1], (6, 40)))
    elif name == "lfwa":
        loaders._lfwa(root)
    elif name == "rafdb":
        lines = [(f"train_{i:05d}.jpg", 1 + i % 7) for i in range(14)] + [
            (f"test_{i:04d}.jpg", 1 + i) for i in range(3)
        ]
        loaders._rafdb(root, lines)
    elif name in ("affectnet7", "affectnet8"):
        loaders._affectnet(root, [*range(8), *range(8)], [0, 3, 7, 6])
    elif name == "300w":
        loaders._300w(root)
    elif name == "wflw":
        loaders._wflw(root, [[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 1, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]])
    else:
        loaders._aflw(root)


@pytest.fixture(scope="module")
def example():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one intra-op thread does not spin against the other jobs
    spec = importlib.util.spec_from_file_location("benchmark_example", ROOT / "examples" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backbone")
    torch.manual_seed(0)
    model = ProSModel(ProSConfig.from_preset("micro", image_size=32))
    model.save_pretrained(folder)
    ProSImageProcessor.from_model_config(model.config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """name -> its fixture folder, written on first use (AFLW-19's takes seconds)."""
    root = tmp_path_factory.mktemp("benchmarks")
    written = {}

    def folder(name: str) -> Path:
        if name not in written:
            written[name] = root / name
            written[name].mkdir()
            _write_folder(name, written[name])
        return written[name]

    return folder


# one run per benchmark; LoRA, the linear probe and the data ratio ride along on three of them
EXTRA = {"rafdb": ["--lora"], "lfwa": ["--mode", "linear_probe"], "300w": ["--data_ratio", "0.75"]}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_every_benchmark_end_to_end(example, backbone, folders, tmp_path, capsys, name):
    output = tmp_path / "out"
    result = example.main(
        [
            "--benchmark",
            name,
            "--data_dir",
            str(folders(name)),
            "--model",
            str(backbone),
            "--output_dir",
            str(output),
            *MICRO,
            *EXTRA.get(name, []),
        ]
    )
    protocol = PROTOCOLS[name]
    report = json.loads((output / "benchmark.json").read_text())
    assert report == json.loads(json.dumps(result))
    assert {
        "benchmark",
        "title",
        "model",
        "settings",
        "protocol",
        "num_images",
        "parameters",
        "validation",
        "last",
        "selected",
    } <= set(report)
    assert report["benchmark"] == name and report["model"] == str(backbone)
    subsets = [protocol.test_split, *protocol.test_subsets]
    expected = {
        "landmarks": {f"nme_{n}" for n in protocol.normalizations} | {"failure_rate", "auc"},
        "attributes": {"mean_accuracy"},
        "expression": {"accuracy", "macro_f1"},
    }[protocol.task]
    for which in ("last", "selected"):
        assert list(report[which]["subsets"]) == subsets
        for subset in subsets:
            figures = report[which]["subsets"][subset]
            assert figures["num_images"] == report["num_images"][subset] > 0
            assert set(figures) == expected | {"num_images"}
            assert all(np.isfinite(figures[key]) for key in expected)
    # the validation split chose, from evaluations at every step and after the last one
    steps = [entry["step"] for entry in report["validation"]]
    assert steps == [1, 2] and report["last"]["step"] == 2 and report["selected"]["step"] in steps
    metric = report["settings"]["selection_metric"]
    assert metric == protocol.default_metric
    best = (max if report["settings"]["greater_is_better"] else min)(entry[metric] for entry in report["validation"])
    assert report["selected"][f"validation_{metric}"] == best
    if report["selected"]["step"] == 2:
        assert report["selected"]["subsets"] == report["last"]["subsets"]
    # the printed row: FaRL's columns, one figure per column
    table = capsys.readouterr().out.split("| benchmark |", 1)[1].splitlines()
    headings = [cell.strip() for cell in table[0].strip(" |").split("|")]
    assert headings == ["model", *(column.heading for column in ROW_COLUMNS[name])]
    cells = [cell.strip() for cell in table[2].strip(" |").split("|")]
    assert cells[:2] == [protocol.title, str(backbone)] and len(cells) == len(headings) + 1
    assert all(float(cell) >= 0 for cell in cells[2:])

    settings, parameters = report["settings"], report["parameters"]
    if name == "rafdb":
        assert settings["mode"] == "lora" and settings["lora_r"] == 2 and parameters["lora_parameters"] > 0
        assert parameters["trainable_parameters"] < parameters["total_parameters"]
    elif name == "lfwa":
        assert settings["mode"] == "linear_probe"
        assert parameters["trainable_parameters"] == parameters["head_parameters"]
    else:
        assert settings["mode"] == "full" and parameters["trainable_fraction"] == 1.0
    if name == "300w":  # 3 of the 4 training images, one of them held out for validation
        assert settings["data_ratio"] == 0.75 and report["num_images"]["train_available"] == 4
        assert (report["num_images"]["train"], report["num_images"]["validation"]) == (2, 1)


@pytest.mark.parametrize("name", ["300w", "wflw", "aflw19"])
def test_framed_points_map_back_to_the_source_pixels(folders, name):
    """The targets the model trains on, read back the way predictions are, are the annotated points."""
    protocol = PROTOCOLS[name]
    split = load_benchmark(name, folders(name))[protocol.test_split]
    framing = ProtocolFraming(protocol.crop, 48)
    processor = ProSImageProcessor(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48})
    labels = TaskLabels("landmarks", num_landmarks=protocol.num_landmarks)
    batch = FaceTaskCollator(labels, processor, prepare_row=framing)(list(split))
    assert batch["pixel_values"].shape[-2:] == (48, 48)
    points = source_points(batch["landmarks"].numpy(), split, framing, processor)
    for mapped, annotated in zip(points, split["landmarks"]):
        np.testing.assert_allclose(mapped, np.asarray(annotated), atol=1e-3)


def test_validation_selection_keeps_and_restores_the_best_weights():
    model = torch.nn.Linear(2, 1)
    selection = ValidationSelection("nme", greater_is_better=False)

    class State:
        epoch = 1.0

    kept = None
    for step, value in enumerate([0.5, 0.2, 0.3], start=1):
        with torch.no_grad():
            model.weight.fill_(float(step))
        State.global_step = step
        selection.on_evaluate(None, State, None, metrics={"eval_nme": value}, model=model)
        if step == 2:
            kept = model.weight.detach().clone()
    assert selection.best_step == 2 and selection.best_value == 0.2 and selection.last_step == 3
    assert [entry["nme"] for entry in selection.history] == [0.5, 0.2, 0.3]
    selection.restore(model)
    assert torch.equal(model.weight, kept)


def _one_line_exit(example, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        example.main(argv)
    message = str(exit_info.value.code)
    assert "\n" not in message and message.startswith("benchmark.py: ")
    return message


def test_one_line_errors(example, backbone, tmp_path):
    missing = tmp_path / "nowhere"
    message = _one_line_exit(
        example,
        [
            "--benchmark",
            "rafdb",
            "--data_dir",
            str(missing),
            "--model",
            str(backbone),
            "--output_dir",
            str(tmp_path / "out"),
            *MICRO,
        ],
    )
    assert "--data_dir" in message and str(missing) in message and "does not exist" in message
    message = _one_line_exit(
        example, ["--benchmark", "fer2013", "--data_dir", str(tmp_path), "--model", str(backbone), *MICRO]
    )
    assert message.startswith("benchmark.py: --benchmark: unknown benchmark 'fer2013'")
    message = _one_line_exit(
        example,
        ["--benchmark", "rafdb", "--data_dir", str(tmp_path), "--model", str(backbone), "--data_ratio", "0", *MICRO],
    )
    assert "--data_ratio" in message
    assert not (tmp_path / "out").exists()  # nothing ran
