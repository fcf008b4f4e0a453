"""The result tables of docs/: each equals the rendering of its docs/results/NAME.json, `make_tables.py --check` fails
when one does not (or when a marker or a JSON has no partner), and the benchmarks' --output_json writes what the
renderer reads, in the schema of the JSON files the pages show."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their neighbours
sys.path.insert(0, str(DOCS))

import bench_augmentation  # noqa: E402
import bench_backbone  # noqa: E402
import bench_pretrain_step  # noqa: E402
import bench_stochastic_depth  # noqa: E402
import make_tables  # noqa: E402

STEP_TOY = [
    "--preset",
    "micro",
    "--batch_size",
    "2",
    "--global_size",
    "32",
    "--local_size",
    "16",
    "--num_local",
    "2",
    "--num_prototypes",
    "64",
    "--repeats",
    "1",
    "--precisions",
    "fp32",
]
# dicts whose keys are data (a precision, a mode), not field names: their entries share one schema
DATA_KEYED = {"precisions", "speed", "memory"}
PROVENANCE = {"kind", "command", "machine", "date", "transcribed", "transcribed_note"}


def check(docs: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DOCS / "make_tables.py"), "--check", "--docs", str(docs)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def docs_copy(tmp_path):
    """The pages and results in a temporary folder, for the script to find stale there."""
    copy = tmp_path / "docs"
    copy.mkdir()
    for page in DOCS.glob("*.md"):
        shutil.copy(page, copy / page.name)
    shutil.copytree(DOCS / "results", copy / "results")
    return copy


def test_every_table_of_the_docs_matches_its_json():
    result = check(DOCS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_table_that_differs_from_its_json_is_named_and_regenerated(docs_copy):
    path = docs_copy / "results" / "knn_demo.json"
    result = json.loads(path.read_text())
    result["labels"]["expression"]["top1"] = 42.5
    path.write_text(json.dumps(result))
    stale = check(docs_copy)
    assert stale.returncode == 1
    assert "table 'knn_demo' differs from results/knn_demo.json" in stale.stdout
    assert "factor_sensitivity_demo" not in stale.stdout  # only the stale table is named

    subprocess.run([sys.executable, str(DOCS / "make_tables.py"), "--docs", str(docs_copy)], check=True, timeout=60)
    assert check(docs_copy).returncode == 0
    assert "| expression | 7 | 15.7 | 42.5 |" in (docs_copy / "evaluation.md").read_text()


def test_a_table_edited_by_hand_is_stale(docs_copy):
    page = docs_copy / "performance.md"
    page.write_text(page.read_text().replace("| 436.8 |", "| 500.0 |"))
    stale = check(docs_copy)
    assert stale.returncode == 1 and "table 'augmentation_cpu' differs" in stale.stdout


def test_a_marker_without_json_and_a_json_without_marker_are_named(docs_copy):
    (docs_copy / "results" / "synthetic_cpu.json").unlink()
    shutil.copy(DOCS / "results" / "knn_demo.json", docs_copy / "results" / "knn_orphan.json")
    page = docs_copy / "curation.md"
    page.write_text(page.read_text() + "\n<!-- table: unclosed -->\n")
    stale = check(docs_copy)
    assert stale.returncode == 1
    assert "table 'synthetic_cpu' has no results/synthetic_cpu.json" in stale.stdout
    assert "results/knn_orphan.json has no <!-- table: knn_orphan --> in any page" in stale.stdout
    assert "table 'unclosed' has no closing <!-- /table -->" in stale.stdout


def test_a_json_of_unknown_kind_is_named(docs_copy):
    path = docs_copy / "results" / "synthetic_cpu.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "kind": "no_such_kind"}))
    stale = check(docs_copy)
    assert stale.returncode == 1 and "unknown kind 'no_such_kind'" in stale.stdout


def test_every_transcribed_json_says_so_and_every_page_prints_its_command():
    for path in sorted((DOCS / "results").glob("*.json")):
        result = json.loads(path.read_text())
        assert result["kind"] in make_tables.RENDERERS, path.name
        block = make_tables.render_block(path.stem, result)
        assert block.startswith(f"`{result['command']}`\n"), path.name
        assert ("transcribed" in block) == bool(result.get("transcribed")), path.name


# ---------------------------------------------------------------------------------------------------------------
# --output_json of the benchmarks, at toy sizes


def key_paths(value, path=()) -> set:
    """Every key path of a JSON value; entries of data-keyed dicts as "*", list items as "[]"."""
    paths = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if not path and key in PROVENANCE:
                continue
            step = "*" if path and path[-1] in DATA_KEYED else key
            paths |= {path + (step,)} | key_paths(item, path + (step,))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for item in value:
            paths |= key_paths(item, path + ("[]",))
    return paths


def written(tmp_path, main, argv) -> dict:
    out = tmp_path / "out.json"
    main([*argv, "--output_json", str(out)])
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    "name, main, argv",
    [
        (
            "backbone",
            bench_backbone.main,
            [
                "--preset",
                "micro",
                "--image_size",
                "32",
                "--batch_size",
                "2",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--precisions",
                "fp32",
            ],
        ),
        ("pretrain_step", bench_pretrain_step.main, [*STEP_TOY, "--warmup", "0"]),
        ("stochastic_depth", bench_stochastic_depth.main, [*STEP_TOY, "--drop_path_rates", "0.3", "--warmup", "1"]),
        (
            "augmentation",
            bench_augmentation.main,
            [
                "--batch-size",
                "2",
                "--source-size",
                "40",
                "--global-size",
                "32",
                "--local-size",
                "16",
                "--local-crops",
                "2",
                "--repeats",
                "1",
                "--interpolation",
                "bilinear",
                "--skip",
                "kornia",
            ],
        ),
    ],
)
@pytest.mark.slow
def test_benchmark_output_json_has_the_schema_the_docs_show(tmp_path, capsys, name, main, argv):
    result = written(tmp_path, main, argv)
    assert result["kind"] == name and result["date"] and "torch" in result["machine"]
    assert result["command"].startswith(f"python benchmarks/bench_{name}.py ") and "--output_json" in result["command"]
    assert make_tables.render_block("toy", result).count("\n| ") >= 2  # a header and at least one row
    for path in (DOCS / "results").glob("*.json"):
        shown = json.loads(path.read_text())
        if shown["kind"] == name:
            assert key_paths(shown) == key_paths(result), path.name


@pytest.mark.slow
def test_synthetic_benchmark_output_json_has_the_schema_the_docs_show(tmp_path):
    # a process of its own: the benchmark pins itself to one core
    out = tmp_path / "out.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_synthetic.py"),
            "--num",
            "4",
            "--image_size",
            "64",
            "--repeats",
            "1",
            "--output_json",
            str(out),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert result["kind"] == "synthetic" and len(result["rows"]) == 3
    assert all(row["best_images_per_second"] > 0 for row in result["rows"])
    assert key_paths(json.loads((DOCS / "results" / "synthetic_cpu.json").read_text())) == key_paths(result)
    assert "| arrays (render only) |" in make_tables.render_block("toy", result)


@pytest.mark.parametrize("main", [bench_backbone.main, bench_pretrain_step.main, bench_stochastic_depth.main])
def test_an_output_json_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, main):
    with pytest.raises(SystemExit) as exit_info:
        main(["--output_json", str(tmp_path / "missing" / "out.json")])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--output_json" in captured.err and "does not exist" in captured.err
