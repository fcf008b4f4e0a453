"""The EMA teacher under FSDP, on two CPU processes (gloo): with the units examples/accelerate_configs/fsdp.yaml
names, update_teacher on the shards equals the EMA of the full parameters, the export holds the whole teacher and
k-NN on the sharded teacher gives the unsharded figures; with the blocks alone update_teacher refuses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import free_port

pytestmark = pytest.mark.slow  # whole scripts end to end, minutes of CPU

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "fsdp_driver.py"


def run_ranks(tmp_path: Path, classes: str) -> list[dict]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(DRIVER),
        str(tmp_path),
        classes,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]


def test_the_fsdp_config_units_give_the_exact_ema_on_shards(tmp_path):
    config = yaml.safe_load((ROOT / "examples" / "accelerate_configs" / "fsdp.yaml").read_text())
    classes = config["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"]
    ranks = run_ranks(tmp_path, classes)
    for record in ranks:
        assert "error" not in record, record["error"]
        assert record["ema_error"] < 1e-6 and record["teacher_moved"] > 1e-4
    assert ranks[0]["teacher_sha256"] == ranks[1]["teacher_sha256"]
    assert ranks[0]["export_error"] == 0.0  # the exported backbone holds the gathered teacher, not a shard
    # k-NN during training runs the teacher's FSDP unit on every rank, and gets the unsharded model's figures
    assert all(record["knn_sharded"] and record["knn_equal"] for record in ranks)


def test_blocks_alone_shard_the_heads_apart_and_update_teacher_says_so(tmp_path):
    for record in run_ranks(tmp_path, "ProSLayer"):
        assert "sharded differently" in record["error"] and "ProSProjectionHead" in record["error"]
