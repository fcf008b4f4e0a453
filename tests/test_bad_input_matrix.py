"""Every entry point answers bad input in one line: the rows of docs/results/bad_input_matrix.json (the same rows
docs/reliability.md renders) run against micro fixtures, each asserting the exit code (or exception), that the answer
is ONE line matching the row's pattern and naming the offending file, row or flag, and that no traceback is printed.

Most rows run in-process (the example's `main(argv)`, SystemExit caught: any other exception escaping fails the row);
a few run as subprocesses, one under `accelerate launch -q` (without -q the launcher adds its own CalledProcessError
traceback after the script's one-line message). The fixtures are built once per module.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MATRIX = json.loads((ROOT / "docs" / "results" / "bad_input_matrix.json").read_text())
ROWS = MATRIX["rows"]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # chmod does not bite: read-only rows cannot fail as root


def _row_id(row) -> str:
    what = row.get("argv") or row.get("args")
    return f"{row['entry'].split('/')[-1]}:{row['class']}:{' '.join(map(str, what))}"[:120]


def _write_csv(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Every placeholder a row may name, as a real file or folder."""
    import datasets
    from transformers import CLIPVisionConfig, CLIPVisionModel, Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    from pros_hf import ProSConfig, ProSImageProcessor, ProSModel

    root = tmp_path_factory.mktemp("matrix")
    p = {"missing": str(root / "does-not-exist")}
    tiny = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8)
    for name, model in (
        ("vit", ViTModel(ViTConfig(intermediate_size=32, **tiny))),
        ("clip", CLIPVisionModel(CLIPVisionConfig(intermediate_size=32, **tiny))),
        ("dinov2", Dinov2Model(Dinov2Config(**tiny))),
    ):
        model.save_pretrained(root / name)
        p[name] = str(root / name)

    torch.manual_seed(0)
    backbone = ProSModel(ProSConfig.from_preset("micro", image_size=32))
    backbone.save_pretrained(root / "backbone")
    ProSImageProcessor.from_model_config(backbone.config).save_pretrained(root / "backbone")
    p["backbone"] = str(root / "backbone")
    shutil.copytree(root / "backbone", root / "truncated")
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    p["truncated"], p["truncated_weights"] = str(root / "truncated"), str(weights)
    shutil.copytree(root / "backbone", root / "other_size")
    config = json.loads((root / "other_size" / "config.json").read_text())
    config.update(hidden_size=32, num_attention_heads=2)  # a config.json of another size next to the weights
    (root / "other_size" / "config.json").write_text(json.dumps(config))
    p["other_size"] = str(root / "other_size")

    images = root / "images"
    (images / "broken").mkdir(parents=True)
    for index in range(4):
        Image.new("RGB", (32, 32), (40 * index, 80, 120)).save(images / f"f{index}.png")
    for name in ("b1.png", "b2.png"):
        (images / "broken" / name).write_bytes(b"not a png")
    p["images"] = str(images)
    (root / "empty").mkdir()
    p["empty_dir"] = str(root / "empty")
    (root / "bad_images").mkdir()
    for index in range(4):
        (root / "bad_images" / f"{index}.png").write_bytes(b"\x89PNG garbage" if index % 2 else b"")
    p["bad_images"] = str(root / "bad_images")
    (root / "a_file.txt").write_text("a file, not a folder")
    p["file"] = str(root / "a_file.txt")
    (root / "junk.txt").write_text("hello")
    p["junk"] = str(root / "junk.txt")
    (root / "readonly").mkdir()
    os.chmod(root / "readonly", 0o500)
    p["readonly"] = str(root / "readonly")

    labelled = datasets.Features(
        {
            "image": datasets.Image(),
            "expression": datasets.Value("int64"),
            "attributes": datasets.List(datasets.Value("int64")),
        }
    )
    datasets.Dataset.from_dict(
        {
            "image": [Image.new("RGB", (32, 32), (20 * i, 60, 90)) for i in range(8)],
            "expression": [i % 2 for i in range(8)],
            "attributes": [[0, 1]] * 8,
        },
        features=labelled,
    ).save_to_disk(str(root / "dataset"))
    p["dataset"] = str(root / "dataset")
    points = datasets.Features(
        {"image": datasets.Image(), "landmarks": datasets.Array2D(shape=(1, 2), dtype="float32")}
    )
    datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (32, 32))] * 2, "landmarks": [[[10, 10]], [[-300, 10]]]}, features=points
    ).save_to_disk(str(root / "landmarks_dataset"))
    p["landmarks_dataset"] = str(root / "landmarks_dataset")

    labels = root / "labels"
    labels.mkdir()
    p["labels_conflict"] = _write_csv(
        labels / "conflict.csv", ["file_name,expression", "f0.png,0", "f0.png,3", "f1.png,1"]
    )
    p["labels_train"] = _write_csv(labels / "train.csv", ["file_name,expression", "f0.png,0", "f1.png,1", "f2.png,0"])
    p["labels_test_shared"] = _write_csv(labels / "test_shared.csv", ["file_name,expression", "f2.png,0", "f3.png,1"])
    p["labels_out_of_range"] = _write_csv(labels / "out_of_range.csv", ["file_name,expression", "f0.png,0", "f1.png,9"])
    p["landmarks_outside"] = _write_csv(
        labels / "landmarks.csv", ["file_name,landmarks", 'f0.png,"10 10 20 20"', 'f1.png,"10 10 5000 -300"']
    )
    p["labels_empty"] = _write_csv(labels / "empty.csv", ["file_name,expression"])
    p["labels_unreadable"] = _write_csv(
        labels / "unreadable.csv", ["file_name,expression", "broken/b1.png,0", "broken/b2.png,1"]
    )
    p["labels_missing_images"] = _write_csv(
        labels / "missing_images.csv", ["file_name,expression", "f0.png,0", "nope.png,1"]
    )

    # output folders that hold another run: a pre-training checkpoint of another configuration, curation shards
    # made with other settings, the task folders of a `finetune.py --task all` run
    checkpoint = root / "pretrain_other_run" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    ProSConfig.from_preset("micro", image_size=32, num_prototypes=32).to_json_file(checkpoint / "config.json")
    (checkpoint / "trainer_state.json").write_text("{}")
    p["pretrain_other_run"] = str(root / "pretrain_other_run")
    shard = root / "curate_other_run" / "shards" / "shard-00000"
    shard.mkdir(parents=True)
    (shard / "done").write_text("")
    (root / "curate_other_run" / "curation_config.json").write_text(json.dumps({"min_score": 0.99}))
    p["curate_other_run"] = str(root / "curate_other_run")
    (root / "finetune_all_run" / "expression").mkdir(parents=True)
    (root / "finetune_all_run" / "expression" / "results.json").write_text("{}")
    p["finetune_all_run"] = str(root / "finetune_all_run")
    yield p
    os.chmod(root / "readonly", 0o700)


def fill(value, paths: dict, out: Path):
    """`value` with its {placeholders} replaced (recursively through lists and dicts)."""
    if isinstance(value, list):
        return [fill(item, paths, out) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, paths, out) for key, item in value.items()}
    return re.sub(r"\{(\w+)\}", lambda m: str(out) if m[1] == "out" else paths[m[1]], value)


def assert_one_line_answer(row, code, message: str, stderr: str, paths: dict, out: Path) -> None:
    assert "Traceback" not in stderr and "Traceback" not in message, stderr[-3000:]
    message = message.strip()
    assert message and "\n" not in message, f"not one line: {message!r}"
    assert code == row["exit"], (code, message)
    assert re.search(row["message"], message), f"{row['message']!r} not in {message!r}"
    named = fill(row["names"], paths, out)
    assert named in message or os.path.basename(named) in message, f"{named!r} is not named in {message!r}"


_MODULES = {}


def example_main(entry: str):
    """`main` of examples/<name>.py (imported once) or of `python -m pros_hf.convert`."""
    if entry.startswith("python -m "):
        return importlib.import_module(entry.split()[-1]).main
    if entry not in _MODULES:
        name = Path(entry).stem
        spec = importlib.util.spec_from_file_location(name, ROOT / entry)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their string annotations through it
        spec.loader.exec_module(module)
        _MODULES[entry] = module
    return _MODULES[entry].main


def _skip_read_only(row):
    if row.get("skip_as_root") and AS_ROOT:
        pytest.skip("running as root: a read-only folder is writable to root, so the row cannot be exercised")


@pytest.mark.parametrize("row", [r for r in ROWS if r["run"] == "in-process"], ids=_row_id)
def test_command_line_rows_in_process(row, paths, tmp_path, capsys, monkeypatch):
    _skip_read_only(row)
    monkeypatch.chdir(tmp_path)  # nothing a row writes lands in the repository
    torch.set_num_threads(1)
    out = tmp_path / "out"
    main = example_main(row["entry"])
    try:
        returned = main(fill(row["argv"], paths, out))
        code, message = (returned if isinstance(returned, int) else 0), None
    except SystemExit as exit_:
        code, message = (1, exit_.code) if isinstance(exit_.code, str) else (exit_.code, None)
    captured = capsys.readouterr()
    if message is None:  # an int exit status: the message is what was printed last
        lines = [line for line in captured.err.splitlines() if line.strip()]
        message = lines[-1] if lines else ""
    assert_one_line_answer(row, code, message, captured.err, paths, out)


@pytest.mark.slow
@pytest.mark.parametrize("row", [r for r in ROWS if r["run"] not in ("in-process", "python")], ids=_row_id)
def test_command_line_rows_in_a_subprocess(row, paths, tmp_path):
    _skip_read_only(row)
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / row["entry"]), *fill(row["argv"], paths, out)]
    if row["run"].startswith("accelerate launch"):
        launcher = [
            "-m",
            "accelerate.commands.launch",
            *row["run"].split()[2:],
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ]
        command = [sys.executable, *launcher, *command[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert_one_line_answer(row, result.returncode, lines[-1] if lines else "", result.stderr, paths, out)


def _python_entry(name: str):
    from transformers import pipeline

    import pros_hf
    from pros_hf import ProSForImageClassification, ProSForLandmarkDetection, ProSModel, load_backbone
    from pros_hf.benchmarks import load_benchmark
    from pros_hf.data import load_pretraining_images
    from pros_hf.finetuning import load_task_data

    assert pros_hf  # registers the pipelines
    return {
        "load_backbone": load_backbone,
        "ProSModel.from_pretrained": ProSModel.from_pretrained,
        "ProSForImageClassification.from_backbone": ProSForImageClassification.from_backbone,
        "ProSForLandmarkDetection.from_backbone": ProSForLandmarkDetection.from_backbone,
        "pipeline": pipeline,
        "load_task_data": load_task_data,
        "load_pretraining_images": load_pretraining_images,
        "load_benchmark": load_benchmark,
    }[name]


@pytest.mark.parametrize("row", [r for r in ROWS if r["run"] == "python"], ids=_row_id)
def test_python_entry_point_rows(row, paths, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the row names the type, checked below by name
        _python_entry(row["call"])(*fill(row["args"], paths, out), **fill(row["kwargs"], paths, out))
    names = [cls.__name__ for cls in type(raised.value).__mro__]
    assert row["raises"] in names, f"{row['raises']} expected, got {type(raised.value).__name__}: {raised.value}"
    assert_one_line_answer({**row, "exit": None}, None, str(raised.value), capsys.readouterr().err, paths, out)


def test_the_matrix_covers_every_entry_point_and_class():
    """At least 60 rows; every entry point of the brief; each skipped/resumed line names a test that exists."""
    entries = {row["entry"] for row in ROWS}
    assert len(ROWS) >= 60
    for entry in (
        "examples/pretrain.py",
        "examples/finetune.py",
        "examples/curate.py",
        "examples/knn_eval.py",
        "examples/factor_sensitivity.py",
        "examples/visualize.py",
        "python -m pros_hf.convert",
        "load_task_data",
        "load_pretraining_images",
        "load_benchmark",
        "ProSModel.from_pretrained",
        "ProSForImageClassification.from_backbone",
        "pipeline",
    ):
        assert entry in entries, entry
    assert {"subprocess", "accelerate launch -q"} <= {row["run"] for row in ROWS}
    for item in MATRIX["handled"]:
        file, name = item["test"].split("::")
        assert f"def {name}(" in (ROOT / file).read_text(), item["test"]


def test_repeated_label_rows_are_dropped_and_counted(paths, tmp_path, caplog):
    """The same image twice with the same label: the repeat is dropped (and counted in a warning naming its line),
    so that a seeded split cannot put the image in both the training and the test set."""
    from pros_hf.finetuning import load_task_data

    rows = ["file_name,expression"] + [f"f{i}.png,{i % 2}" for i in range(4)] + ["f0.png,0", "./f0.png,0"]
    labels = _write_csv(tmp_path / "repeated.csv", rows)
    with caplog.at_level("WARNING"):
        data = load_task_data("expression", image_dir=paths["images"], labels_file=labels, test_fraction=0.5, seed=0)
    assert len(data.train) + len(data.test) == 4
    assert any(
        "dropped 2 row(s)" in r.getMessage() and "line 6 of repeated.csv" in r.getMessage() for r in caplog.records
    )
    import datasets

    def names(split):
        return {os.path.basename(x["path"]) for x in split.cast_column("image", datasets.Image(decode=False))["image"]}

    assert not names(data.train) & names(data.test)


def test_cards_name_data_and_backbones_without_local_paths(paths, tmp_path):
    """A backbone export and a head card given absolute local paths name the data set and the backbone by their
    folders' names; a Hub id stays as it is; `load_task_data` names its source by base names."""
    from pros_hf import ProSConfig, ProSForImageClassification, ProSForPreTraining
    from pros_hf.finetuning import load_task_data
    from pros_hf.hub import head_card
    from pros_hf.training.export import write_backbone_folder

    faces = str(tmp_path / "data" / "faces_train")
    model = ProSForPreTraining(ProSConfig.from_preset("micro", image_size=32, num_prototypes=16))
    folder = write_backbone_folder(model, str(tmp_path / "export"), dataset_name=faces)
    card = (Path(folder) / "README.md").read_text()
    assert "faces_train" in card and str(tmp_path) not in card

    data = load_task_data(
        "expression",
        image_dir=paths["images"],
        labels_file=paths["labels_train"],
        test_labels_file=None,
        test_fraction=0.34,
    )
    assert data.dataset_name == "images (train.csv)"
    head = ProSForImageClassification(ProSConfig.from_preset("micro", image_size=32, num_labels=2))
    results = {"pretrained": {"mean": {"accuracy": 0.5, "macro_f1": 0.4}, "std": {}}}
    for lora in (None, "rank 2 on qkv"):
        text = str(
            head_card(head, "expression", results, base_model=paths["backbone"], dataset=faces, lora_summary=lora)
        )
        assert str(tmp_path) not in text and os.path.dirname(paths["backbone"]) not in text
        assert "**backbone**" in text and "faces_train" in text
    hub = head_card(
        head, "expression", results, base_model="org/pros-vitb", dataset="org/faces", dataset_id="org/faces"
    )
    assert hub.data.base_model == "org/pros-vitb" and hub.data.datasets == ["org/faces"]
