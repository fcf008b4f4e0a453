"""The benchmarks' flags and figures, in-process and at toy sizes: a flag that cannot work ends in argparse's usage
error naming it before any model is built, the view counts other than DINO's run, and the CPU memory figure counts
only what a step allocates."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the scripts import their neighbours

import bench_augmentation  # noqa: E402
import bench_backbone  # noqa: E402
import bench_pretrain_step  # noqa: E402
import bench_stochastic_depth  # noqa: E402
import bench_synthetic  # noqa: E402
import profile_pretrain_step  # noqa: E402
from memory import LiveTensorMemory  # noqa: E402

STEP_TOY = [
    "--preset",
    "micro",
    "--batch_size",
    "2",
    "--global_size",
    "32",
    "--local_size",
    "16",
    "--num_prototypes",
    "64",
    "--repeats",
    "1",
    "--warmup",
    "0",
    "--precisions",
    "fp32",
]
AUGMENTATION_TOY = [
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
]


def usage_error(capsys, main, argv):
    """The message of the argparse error `main(argv)` ends in (exit status 2, nothing run)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "", captured.out  # nothing was printed, so nothing was measured
    return captured.err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------------------------
# memory.py


def test_an_in_place_op_on_an_existing_tensor_allocates_nothing():
    buffer = torch.zeros(1024, 1024)  # 4 MiB from before the step, not listed as existing
    with LiveTensorMemory() as tracker:
        buffer.mul_(0.5)
        view = buffer[:10]
        torch.add(buffer[0], 1.0, out=buffer[1])
    assert tracker.peak == 0 and view.shape == (10, 1024)
    with LiveTensorMemory() as tracker:
        fresh = buffer * 2  # a new 4 MiB storage is counted
        fresh.add_(1.0)  # in place on it: still one storage
    assert tracker.peak == buffer.nbytes and tracker.live == buffer.nbytes


def test_non_fused_adamw_state_is_not_counted_as_step_memory():
    # DINO's torch.optim.AdamW (per-tensor loop) returns its state from in-place ops (exp_avg.lerp_, mul_); the fused
    # kernel returns nothing. Only the loop's real temporaries (sqrt and the division of exp_avg_sq) may count.
    weight = torch.nn.Parameter(torch.randn(256, 256))
    size = weight.nbytes
    peaks = {}
    for fused in (False, True):
        optimizer = torch.optim.AdamW([weight], lr=1e-3, **({"fused": True} if fused else {}))
        weight.grad = torch.randn_like(weight)
        optimizer.step()  # the state exists before the measured step, as in the benchmark
        with LiveTensorMemory() as tracker:
            optimizer.step()
        peaks[fused] = tracker.peak
    assert peaks[True] == 0
    assert peaks[False] <= 2 * size, peaks[False] / size  # counting the state gave 4x and more


# ---------------------------------------------------------------------------------------------------------------
# flags refused before any work


@pytest.mark.parametrize(
    "main, argv, flag",
    [
        (bench_pretrain_step.main, ["--repeats", "0"], "--repeats"),
        (bench_pretrain_step.main, ["--batch_size", "0"], "--batch_size"),
        (bench_pretrain_step.main, ["--num_local", "-1"], "--num_local"),
        (bench_pretrain_step.main, ["--num_global", "0"], "--num_global"),
        (bench_pretrain_step.main, ["--num_global", "1", "--num_local", "0"], "--num_global + --num_local"),
        (profile_pretrain_step.main, ["--steps", "0"], "--steps"),
        (profile_pretrain_step.main, ["--batch_size", "0"], "--batch_size"),
        (bench_backbone.main, ["--repeats", "0"], "--repeats"),
        (bench_backbone.main, ["--batch_size", "0"], "--batch_size"),
        (bench_augmentation.main, ["--repeats", "0"], "--repeats"),
        (bench_augmentation.main, ["--global-crops", "0", "--skip", "pil", "kornia"], "--global-crops"),
        (bench_synthetic.main, ["--repeats", "0"], "--repeats"),
        (bench_synthetic.main, ["--num", "0"], "--num"),
    ],
)
def test_flags_that_cannot_work_are_refused_by_name(capsys, main, argv, flag):
    assert flag in usage_error(capsys, main, argv)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "main", [bench_pretrain_step.main, profile_pretrain_step.main, bench_backbone.main, bench_augmentation.main]
)
def test_a_device_this_machine_lacks_is_refused_by_name(capsys, main):
    message = usage_error(capsys, main, ["--device", "cuda"])
    assert "--device 'cuda' cannot be used on this machine" in message


# ---------------------------------------------------------------------------------------------------------------
# view counts other than DINO's 2 global + N local


@pytest.mark.slow
def test_pretrain_step_runs_other_global_counts_and_no_local_crops(capsys):
    # 3 global views needs DINO's probabilities extended (--with_augmentation); 0 local views needs the reference
    # to skip the empty resolution (ViTModel fails on an empty batch)
    bench_pretrain_step.main([*STEP_TOY, "--num_global", "3", "--num_local", "0", "--with_augmentation"])
    out = capsys.readouterr().out
    assert "3x32 + 0x16 crops" in out and "fp32    memory: reference" in out and "multi-crop on cpu" in out


@pytest.mark.parametrize("global_crops", ["1", "3"])
def test_augmentation_benchmark_runs_other_global_counts(capsys, global_crops):
    bench_augmentation.main([*AUGMENTATION_TOY, "--global-crops", global_crops, "--skip", "pil", "kornia"])
    assert "MultiCropAugmentation bilinear" in capsys.readouterr().out


def test_augmentation_benchmark_runs_without_local_crops(capsys):
    bench_augmentation.main([*AUGMENTATION_TOY, "--local-crops", "0", "--skip", "kornia"])
    captured = capsys.readouterr()
    assert "PIL per image" in captured.out and "output shapes differ" not in captured.err


def test_stochastic_depth_benchmark_runs_both_sides_and_refuses_bad_rates(capsys):
    toy = [arg for arg in STEP_TOY if arg not in ("--warmup", "0")]
    bench_stochastic_depth.main([*toy, "--num_local", "2", "--drop_path_rates", "0.3", "--warmup", "1"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("drop_path_rate 0.30 fp32: mask") and "skip" in line and "ratio" in line
    assert "--drop_path_rates" in usage_error(capsys, bench_stochastic_depth.main, [*toy, "--drop_path_rates", "1.0"])
    assert "--repeats" in usage_error(capsys, bench_stochastic_depth.main, [*toy, "--repeats", "0"])


def test_tensors_made_from_python_data_during_the_step_are_counted():
    """torch.tensor / as_tensor go through lift_fresh, which returns its argument: that storage is new all the same."""
    with LiveTensorMemory() as tracker:
        made = torch.tensor([0.0] * (1 << 18))  # 1 MiB
    assert tracker.peak == made.untyped_storage().nbytes() == 1 << 20
