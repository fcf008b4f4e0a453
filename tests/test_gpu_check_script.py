"""benchmarks/gpu_check.sh, at toy sizes on the CPU: every command it will run on a GPU machine still parses its
flags and produces its figures, so a short GPU run is not lost to a renamed flag."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # whole scripts end to end, minutes of CPU

ROOT = Path(__file__).resolve().parents[1]
TOY = {
    "DEVICE": "cpu",
    "PRESET": "micro",
    "BATCH": "2",
    "NUM_LOCAL": "2",
    "GLOBAL": "32",
    "LOCAL": "16",
    "K": "64",
    "REPEATS": "1",
    "STEPS": "2",
    "WORKERS": "0",
    "IMAGES": "8",
    # the compiled parts traced and run without inductor's code generation (minutes of C++ builds on a CPU);
    # inductor itself is tested on the trainer (tests/test_training.py)
    "COMPILE_BACKEND": "aot_eager",
}


# every part of PARTS=all, in two halves of about equal time that run side by side (one core each)
HALVES = (
    "environment multicrop_device pretrain_step profile compiled_step",
    "pretrain pretrain_compiled syncs backbone augmentation",
)


def test_gpu_check_runs_every_step_at_toy_sizes(tmp_path):
    processes = []
    for parts in HALVES:
        env = {**os.environ, **TOY, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "PARTS": parts}
        # its own process group, so that a timeout stops the benchmarks it started too, not only bash
        processes.append(
            subprocess.Popen(
                ["bash", "benchmarks/gpu_check.sh", str(tmp_path / "out")],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    try:
        outputs = [process.communicate(timeout=900) for process in processes]
    except subprocess.TimeoutExpired:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        raise
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    script = (ROOT / "benchmarks/gpu_check.sh").read_text()
    every_part = script.split('[ "$PARTS" = all ] && PARTS="')[1].split('"')[0].replace("\\\n", " ").split()
    assert sorted(" ".join(HALVES).split()) == sorted(every_part)
    out = tmp_path / "out"
    assert "device cpu" in (out / "environment.txt").read_text()
    step = (out / "pretrain_step.txt").read_text()
    for line in (
        "bf16     ratio: ProS / reference",
        "fp32     ratio: ProS / reference",
        "paired ratios",
        "multi-crop on cpu",
    ):
        assert line in step, line
    assert "train fp32: ViTModel" in (out / "backbone.txt").read_text()
    assert "MultiCropAugmentation bilinear" in (out / "augmentation.txt").read_text()
    for name in ("pretrain", "pretrain_compiled", "syncs"):
        pretrain = (out / f"{name}.txt").read_text()
        assert "train_steady_samples_per_second" in pretrain and "Exported the teacher backbone" in pretrain, name
    assert "equals the CPU" in (out / "multicrop_device.txt").read_text()
    profile = (out / "profile.txt").read_text()
    assert profile.count("% of the wall time") == 2 and "matmul" in profile and "busiest ops" in profile
    assert "compiled: both (regions)" in (out / "compiled_step.txt").read_text()
