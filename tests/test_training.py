"""ProSTrainer on micro models: the self-distillation mechanics, safety stops, export, exact resume, 2 processes."""

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port
from dispatch_counters import HostSyncs
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel

from pros_hf import ProSConfig, ProSModel
from pros_hf.cli import flag_is_on
from pros_hf.data.loading import PretrainingSourceError, load_pretraining_images
from pros_hf.data.synthetic import make_synthetic_faces
from pros_hf.modeling_pros_pretraining import ProSForPreTraining
from pros_hf.training import (
    CheckpointMismatchError,
    NoImagesReadError,
    NonFiniteLossError,
    ProSTrainer,
    ProSTrainingArguments,
    check_checkpoint_matches,
    last_complete_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "pretrain_driver.py"
# flags shared by the subprocess runs: micro model, 32-px crops, a few steps
TINY_RUN = [
    "--num_synthetic_images",
    "48",
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
    "--num_prototypes",
    "32",
    "--logging_steps",
    "2",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
]


@pytest.fixture(scope="module")
def faces():
    return load_pretraining_images(
        make_synthetic_faces(32, image_size=40, seed=0).select_columns(["image"]), image_size=36
    )


def make_trainer(tmp_path, faces, **overrides):
    torch.manual_seed(0)
    model = ProSForPreTraining(ProSConfig.from_preset("micro", num_prototypes=32, **overrides.pop("config", {})))
    defaults = dict(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        num_train_epochs=2,
        global_crop_size=32,
        local_crop_size=16,
        num_local_crops=2,
        logging_steps=2,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        learning_rate=1e-3,
        freeze_prototypes_epochs=1,
        warmup_teacher_temperature_epochs=1,
        teacher_momentum=0.9,
        seed=0,
    )
    args = ProSTrainingArguments(**{**defaults, **overrides})
    return ProSTrainer(model=model, args=args, train_dataset=faces, dataset_name="synthetic test faces")


def test_training_steps_update_teacher_prototypes_and_logs(tmp_path, faces):
    trainer = make_trainer(tmp_path, faces)
    model = trainer.model
    prototypes_at_start = model.prototypes.detach().clone()
    snapshots = {}

    from transformers import TrainerCallback

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots[state.global_step] = model.prototypes.detach().clone()

    trainer.add_callback(Snapshot())
    trainer.train()
    assert trainer.state.global_step == 8  # 32 images / batch 8 x 2 epochs
    # prototypes frozen during the first epoch (4 steps), trained afterwards
    assert torch.equal(snapshots[4], prototypes_at_start)
    assert not torch.equal(snapshots[8], prototypes_at_start)
    # the teacher followed the student, but is not the student
    assert any(not torch.equal(t, s) for t, s in zip(model.teacher.parameters(), model.student.parameters()))
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 4
    for name in (
        "matching_loss",
        "teacher_entropy",
        "student_mean_entropy",
        "active_prototypes",
        "teacher_temperature",
        "teacher_momentum",
        "weight_decay",
    ):
        assert name in logs[-1], name
    assert logs[0]["teacher_temperature"] < logs[-1]["teacher_temperature"] == pytest.approx(0.07)
    assert logs[0]["weight_decay"] < logs[-1]["weight_decay"]
    assert all(math.isfinite(entry["loss"]) for entry in logs)
    # total_flos counts the crops' real work (8 steps of 8 images), not the uint8 source pixels as tokens
    assert trainer.state.total_flos == pytest.approx(64 * model.training_flops_per_image(32, 2, 16, 2))


def test_parameter_groups_exclude_biases_norms_prototypes_and_embeddings(tmp_path, faces):
    trainer = make_trainer(tmp_path, faces)
    decay = set(trainer.get_decay_parameter_names(trainer.model))
    assert "student.encoder.layer.0.attention.qkv.weight" in decay
    assert "student_head.mlp.0.weight" in decay
    for name in (
        "prototypes",
        "student.embeddings.cls_token",
        "student.embeddings.position_embeddings",
        "student.encoder.layer.0.attention.qkv.bias",
        "student.encoder.layer.0.norm1.weight",
    ):
        assert name not in decay, name
    optimizer = trainer.create_optimizer()
    trainable = {id(p) for p in trainer.model.parameters() if p.requires_grad}
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert set(grouped) == trainable and len(grouped) == len(trainable)  # no teacher parameter, none twice


def test_export_writes_a_loadable_teacher_backbone_with_card(tmp_path, faces):
    trainer = make_trainer(tmp_path, faces, num_train_epochs=1)
    trainer.train()
    output_dir = Path(trainer.args.output_dir)
    backbone = AutoModel.from_pretrained(output_dir)
    assert isinstance(backbone, ProSModel)
    teacher = trainer.model.teacher.state_dict()
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, teacher[name]), name
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.library_name == "transformers" and "pros" in card.data.tags
    assert "4 optimizer steps" in card.text
    assert (output_dir / "preprocessor_config.json").exists() and (output_dir / "modeling_pros.py").exists()
    assert json.loads((output_dir / "skip_report.json").read_text())["delivered"] == 32
    with Image.open(output_dir / "training_curves.png") as curves:  # 4 steps logged every 2: curves, no k-NN panel
        curves.verify()
    assert "](training_curves.png)" in card.text  # shown on the model's Hub page


def test_non_finite_loss_stops_with_the_step(tmp_path, faces):
    trainer = make_trainer(tmp_path, faces)
    with torch.no_grad():
        trainer.model.student.embeddings.cls_token.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="optimizer step 0"):
        trainer.train()


def test_a_non_finite_loss_is_caught_before_the_next_checkpoint(tmp_path, faces):
    """The loss is checked at logs and checkpoints, not at every step (no host sync mid-step): a NaN at step 3 stops
    the run at step 4's checkpoint, which is not written; step 2's checkpoint is the last good state."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    trainer = make_trainer(tmp_path, faces, logging_steps=100, save_strategy="steps", save_steps=2)

    class Poison(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 3:
                with torch.no_grad():
                    trainer.model.student.embeddings.cls_token.fill_(float("nan"))

    trainer.add_callback(Poison())
    with pytest.raises(NonFiniteLossError, match=r"optimizer step 3 \(found at step 4\)"):
        trainer.train()
    run = Path(trainer.args.output_dir)
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    weights = load_file(run / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


def test_a_training_step_never_makes_the_host_wait_for_the_device(tmp_path, faces):
    """From the start of a step to its end (forward, loss, health metrics, backward, clipping, AdamW, the EMA and
    the schedules) nothing reads a device value back on the host, so on a GPU the host keeps queueing work ahead;
    the loss is checked at logs and checkpoints only. The multi-crop, whose draws and index subsets are on the CPU by
    design, is left out (its device copies are counted in test_augmentation.py)."""
    from torch.utils._python_dispatch import _disable_current_modes
    from transformers import TrainerCallback

    trainer = make_trainer(tmp_path, faces, logging_steps=100)
    augmentation = trainer.augmentation

    class UncountedAugmentation(torch.nn.Module):
        config = augmentation.config

        def forward(self, images):
            with _disable_current_modes():
                return augmentation(images)

    trainer.augmentation = UncountedAugmentation()
    syncs = HostSyncs()

    class CountDuringSteps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            syncs.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            syncs.__exit__(None, None, None)

    trainer.add_callback(CountDuringSteps())
    trainer.train()
    assert trainer.state.global_step == 8
    assert not syncs.ops, f"host syncs inside steps: {dict(syncs.ops)}, first from:\n{syncs.callers[0]}"
    # the stock per-step NaN filter is one of them: ProSTrainingArguments turns it off
    trainer = make_trainer(tmp_path, faces, logging_steps=100, logging_nan_inf_filter=True)
    trainer.augmentation = UncountedAugmentation()
    syncs = HostSyncs()
    trainer.add_callback(CountDuringSteps())
    trainer.train()
    assert syncs.ops["aten._local_scalar_dense.default"] >= 8


@pytest.mark.slow
def test_torch_compile_compiles_each_block_and_trains_like_eager(tmp_path, faces):
    """--torch_compile compiles regions (each block, each other submodule; the loss stays eager), keeps the state
    dict's names, and two steps end with the teacher that eager steps give."""
    # global crops only: each crop size is a shape inductor compiles for again, which on 2 CPU cores costs minutes
    run = dict(max_steps=2, logging_steps=1, num_local_crops=0)
    eager = make_trainer(tmp_path / "eager", faces, **run)
    eager.train()
    compiled = make_trainer(tmp_path / "compiled", faces, torch_compile=True, **run)
    compiled.train()
    assert compiled.accelerator.state.dynamo_plugin.use_regional_compilation
    compiled_blocks = [
        module
        for module in compiled.model_wrapped.modules()
        if isinstance(module, torch._dynamo.eval_frame.OptimizedModule)
    ]
    assert any(isinstance(module._orig_mod, type(eager.model.student.encoder.layer[0])) for module in compiled_blocks)
    losses = [
        [entry["loss"] for entry in trainer.state.log_history if "loss" in entry] for trainer in (eager, compiled)
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    expected = eager.model.teacher.state_dict()
    teacher = compiled.unwrapped_model.teacher.state_dict()
    assert list(teacher) == list(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(teacher[name], tensor, rtol=1e-4, atol=1e-6)


def test_steady_throughput_counts_the_steps_after_the_start_up(tmp_path, faces):
    """8 steps of 8 images: timed from the end of step 2 (a quarter of the run) to the end, 6 steps x 8 images."""
    readings = iter([100.0, 103.0])
    trainer = make_trainer(tmp_path, faces)
    trainer.throughput.clock = lambda: next(readings)
    result = trainer.train()
    assert trainer.state.global_step == 8
    assert result.metrics["train_steady_samples_per_second"] == pytest.approx(6 * 8 / 3.0)
    assert trainer.state.log_history[-1]["train_steady_samples_per_second"] == pytest.approx(16.0)
    assert trainer.throughput.skip_steps(8) == 2 and trainer.throughput.skip_steps(1000) == 10
    assert trainer.throughput.skip_steps(1) == 1


def test_steady_throughput_stops_at_the_last_step(tmp_path, faces):
    """Time spent by later callbacks at a step's end, or after the last step (a final k-NN evaluation), is not
    counted: the clock reads first at each step's end and stops at the last one."""
    from transformers import TrainerCallback

    now = [0.0]

    class SlowCallbacks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            now[0] += 1.0  # one second of "step" per step, seen after the throughput callback has read the clock

        def on_train_end(self, args, state, control, **kwargs):
            now[0] += 100.0

    trainer = make_trainer(tmp_path, faces)
    trainer.add_callback(SlowCallbacks())
    trainer.throughput.clock = lambda: now[0]
    result = trainer.train()
    # read at the end of step 2 (1 s elapsed) and of step 8 (7 s): 6 steps x 8 images in 6 s
    assert result.metrics["train_steady_samples_per_second"] == pytest.approx(8.0)


def test_pretrain_example_refuses_bad_arguments_and_its_help_gives_the_no_data_defaults(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("pretrain_example", ROOT / "examples" / "pretrain.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with pytest.raises(SystemExit, match="--synthetic_num_proc must be >= 1, got -2"):
        example.main(["--synthetic_num_proc", "-2", "--output_dir", str(tmp_path / "run")])
    # transformers' own checks of the training arguments end in their message, not a traceback
    with pytest.raises(SystemExit, match="pretrain.py: At most one of fp16 and bf16"):
        example.main(["--fp16", "--bf16", "--output_dir", str(tmp_path / "run")])
    with pytest.raises(SystemExit, match="^the synthetic training faces: image_column 'foo' not in"):  # no --train_dir
        example.main(
            [
                "--image_column",
                "foo",
                "--num_synthetic_images",
                "8",
                "--knn_synthetic_images",
                "0",
                "--output_dir",
                str(tmp_path / "run"),
            ]
        )
    with pytest.raises(SystemExit):
        example.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Without --train_dir, the flags not given take these values" in help_text
    assert "--global_crop_size 48" in help_text and "--per_device_train_batch_size 64" in help_text


@pytest.mark.slow
def test_collapse_warning(tmp_path, faces, caplog):
    trainer = make_trainer(tmp_path, faces, collapse_tolerance=1.0, collapse_patience=2)
    with caplog.at_level(logging.WARNING, logger="pros_hf.training"):
        trainer.train()
    assert any("ln K" in record.getMessage() for record in caplog.records)
    quiet = make_trainer(tmp_path, faces, collapse_tolerance=1e-9, collapse_patience=2)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pros_hf.training"):
        quiet.train()
    assert not any("ln K" in record.getMessage() for record in caplog.records)


def test_gradient_accumulation_scales_the_loss(tmp_path, faces):
    # sinkhorn targets keep no state between calls (the center would move), so both calls see the same targets
    trainer = make_trainer(tmp_path, faces, gradient_accumulation_steps=2, config={"target_mode": "sinkhorn"})
    trainer.create_optimizer()
    batch = trainer.data_collator([faces[i] for i in range(8)])
    torch.manual_seed(3)
    full = trainer.compute_loss(trainer.model, dict(batch)).detach()
    trainer.model.zero_grad()
    torch.manual_seed(3)
    trainer.current_gradient_accumulation_steps = 2
    returned = trainer.training_step(trainer.model, dict(batch))
    torch.testing.assert_close(returned, full / 2)


def test_bad_arguments(tmp_path, faces):
    with pytest.raises(ValueError, match="remove_unused_columns"):
        make_trainer(tmp_path, faces, remove_unused_columns=True)
    with pytest.raises(ValueError, match="augmentation_overrides"):
        ProSTrainingArguments(output_dir=str(tmp_path), augmentation_overrides="[1, 2]").multicrop_config()
    with pytest.raises(ValueError, match="interpolation"):
        ProSTrainingArguments(
            output_dir=str(tmp_path), augmentation_overrides='{"interpolation": "lanczos"}'
        ).multicrop_config()


def test_schedule_and_crop_arguments_fail_before_training(tmp_path, faces):
    """Values that used to fail mid-run (a momentum above 1 at step 8), train wrongly in silence (a negative weight
    decay) or fail at the first step from inside torch (a crop that is not a whole number of patches)."""
    for field, value in (
        ("teacher_momentum_end", 1.01),
        ("teacher_momentum", 1.5),
        ("weight_decay_end", -5.0),
        ("freeze_prototypes_epochs", -1.0),
        ("warmup_teacher_temperature_steps", -2),
        ("global_crop_size", -48),
    ):
        with pytest.raises(ValueError, match=f"--{field}"):
            ProSTrainingArguments(output_dir=str(tmp_path), **{field: value})
    with pytest.raises(ValueError, match="not valid JSON"):
        ProSTrainingArguments(output_dir=str(tmp_path), augmentation_overrides="{bad")
    with pytest.raises(ValueError, match="--local_crop_size 20 is not a multiple of the model's patch size 8"):
        make_trainer(tmp_path, faces, local_crop_size=20)
    # three global views: DINO's two per-view blur/solarize probabilities are extended, not refused
    crops = ProSTrainingArguments(output_dir=str(tmp_path), num_global_crops=3).multicrop_config()
    assert crops.global_blur_p == (1.0, 0.1, 0.1) and crops.global_solarize_p == (0.0, 0.2, 0.2)


def test_streamed_data_needs_its_schedules_in_steps(tmp_path):
    """A stream has no epoch length: the epoch-based warm-up and freeze would come out as 0 steps in silence."""
    stream = load_pretraining_images(
        make_synthetic_faces(16, image_size=40, seed=0).select_columns(["image"]), image_size=36, streaming=True
    )
    with pytest.raises(ValueError, match="--warmup_teacher_temperature_steps and --freeze_prototypes_steps"):
        make_trainer(tmp_path, stream, max_steps=4)
    trainer = make_trainer(tmp_path, stream, max_steps=4, warmup_teacher_temperature_steps=3, freeze_prototypes_steps=2)
    trainer.train()
    assert (trainer.warmup_temperature_steps, trainer.freeze_prototype_steps) == (3, 2)
    temperatures = [entry["teacher_temperature"] for entry in trainer.state.log_history if "loss" in entry]
    assert temperatures[0] < temperatures[-1]


def test_unreadable_training_images_stop_the_run(tmp_path):
    """Every image failing to decode used to train on empty batches to the end and succeed."""
    (tmp_path / "bad").mkdir()
    for index in range(24):
        (tmp_path / "bad" / f"{index}.png").write_bytes(b"not a png")
    with pytest.raises(PretrainingSourceError, match="none of the 16 images tried from .*bad.* could be read"):
        load_pretraining_images(tmp_path / "bad", image_size=36)  # refused as it is loaded
    bad = load_pretraining_images(tmp_path / "bad", image_size=36, check_decodable=False)  # as a dataset built by hand
    with pytest.raises(NoImagesReadError, match="No training image could be read: Image loading: 0 delivered"):
        make_trainer(tmp_path, bad, max_steps=4).train()


@pytest.mark.slow
def test_resuming_a_finished_run_trains_no_further_and_keeps_every_count(tmp_path, faces):
    """transformers checks the step count after a step, so a run resumed at its last step used to take one more;
    the skip counts of the run before the checkpoint come back with it."""
    first = make_trainer(tmp_path, faces, max_steps=4, save_strategy="steps", save_steps=4)
    first.train()
    weights = {name: tensor.clone() for name, tensor in first.model.state_dict().items()}
    assert first.skip_summary["delivered"] == 32
    again = make_trainer(tmp_path, faces, max_steps=4, save_strategy="steps", save_steps=4)
    again.train(resume_from_checkpoint=tmp_path / "run" / "checkpoint-4")  # a Path, as a user may pass it
    assert again.state.global_step == 4 and again.steps_this_run == 0
    for name, tensor in again.model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    assert again.skip_summary["delivered"] == 32  # restored from the checkpoint, not 0


def test_pretrain_example_reads_hyphenated_flags_and_finds_complete_checkpoints(tmp_path):
    example = load_pretrain_example()
    extended = example.default_cpu_demo(["--output-dir", "mine", "--per-device-train-batch-size=8"])
    assert "--output_dir" not in extended and "--per_device_train_batch_size" not in extended
    assert "--num_prototypes" in extended  # defaults the user did not give still apply
    assert flag_is_on(["--bf16=True"], "--bf16") and flag_is_on(["--bf16"], "--bf16")
    assert not flag_is_on(["--bf16", "false"], "--bf16")
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    # checkpoint-6 was cut short by a kill while saving: the newest complete one is taken
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-4")
    ProSConfig.from_preset("micro", num_prototypes=64).save_pretrained(tmp_path / "checkpoint-4")
    with pytest.raises(CheckpointMismatchError, match="another configuration \\(num_prototypes 64 -> 128\\)"):
        check_checkpoint_matches(str(tmp_path / "checkpoint-4"), ProSConfig.from_preset("micro", num_prototypes=128))


def test_pretrain_example_refuses_to_resume_a_checkpoint_of_another_configuration(tmp_path):
    """A rerun into an --output_dir whose last checkpoint holds another model stops before training, naming the
    fields that differ, instead of a size mismatch from inside load_state_dict."""
    example = load_pretrain_example()
    checkpoint = tmp_path / "run" / "checkpoint-4"
    ProSConfig.from_preset("micro", image_size=32, num_prototypes=64).save_pretrained(checkpoint)
    (checkpoint / "trainer_state.json").write_text("{}")
    with pytest.raises(
        SystemExit,
        match=r"^pretrain.py: .*checkpoint-4 was trained with another configuration "
        r"\(num_prototypes 64 -> 32\)",
    ):
        example.build_trainer(
            [*TINY_RUN, "--num_local_crops", "0", "--knn_synthetic_images", "0", "--output_dir", str(tmp_path / "run")]
        )


def test_pretrain_example_from_a_backbone_applies_overrides_and_the_crop_size(tmp_path):
    example = load_pretrain_example()
    torch.manual_seed(0)
    ProSModel(ProSConfig.from_preset("micro", image_size=32)).save_pretrained(tmp_path / "backbone")
    model_args = example.ModelArguments(
        model_name_or_path=str(tmp_path / "backbone"), num_prototypes=32, config_overrides="head_num_layers=2"
    )
    training_args = ProSTrainingArguments(output_dir=str(tmp_path / "run"), global_crop_size=48)
    model = example.build_model(model_args, training_args)
    assert model.config.head_num_layers == 2 and model.config.image_size == 48
    assert model.student.embeddings.position_embeddings.shape[1] == 1 + 6 * 6  # resampled from 4 x 4
    assert torch.equal(model.teacher.embeddings.position_embeddings, model.student.embeddings.position_embeddings)
    with pytest.raises(SystemExit, match="--model_name_or_path: No model folder"):
        example.build_model(example.ModelArguments(model_name_or_path=str(tmp_path / "nope")), training_args)


@pytest.mark.slow
def test_pretrain_example_never_keeps_figures_of_another_run(tmp_path):
    """A rerun that trains nothing keeps train_results.json only when it was written at the same step: a run killed
    between its last checkpoint and its figures must not inherit an earlier, shorter run's."""
    example = load_pretrain_example()
    flags = [*TINY_RUN, "--num_local_crops", "0", "--knn_synthetic_images", "0", "--output_dir", str(tmp_path)]
    example.main([*flags, "--max_steps", "2"])
    shorter = (tmp_path / "train_results.json").read_text()
    example.main([*flags, "--max_steps", "4"])
    finished = json.loads((tmp_path / "train_results.json").read_text())
    assert finished["global_step"] == 4 and "train_runtime" in finished
    example.main([*flags, "--max_steps", "4"])  # nothing left to train: the run's own figures stay
    assert json.loads((tmp_path / "train_results.json").read_text()) == finished
    (tmp_path / "train_results.json").write_text(shorter)  # as if killed before writing its own
    example.main([*flags, "--max_steps", "4"])
    replaced = json.loads((tmp_path / "train_results.json").read_text())
    assert replaced["global_step"] == 4 and "train_runtime" not in replaced and "note" in replaced


def load_pretrain_example():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pretrain_example", ROOT / "examples" / "pretrain.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def run_driver(record_dir, output_dir, extra=(), env_extra=None, wait=True):
    env = {**os.environ, **(env_extra or {})}
    command = [sys.executable, str(DRIVER), str(record_dir), "--output_dir", str(output_dir), *TINY_RUN, *extra]
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path):
    """Train 12 steps straight; separately SIGKILL a run after its step-8 checkpoint and restart it: same weights."""
    flags = ["--max_steps", "12", "--save_steps", "4", "--save_strategy", "steps", "--seed", "3"]
    straight = run_driver(tmp_path / "rec-a", tmp_path / "a", flags)
    assert straight.returncode == 0, straight.stderr[-3000:]

    process = run_driver(tmp_path / "rec-b", tmp_path / "b", flags, {"PROS_DRIVER_HOLD_AFTER_SAVE": "8"}, wait=False)
    marker = tmp_path / "rec-b" / "held-8"
    deadline = time.time() + 300
    while not marker.exists():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline, "the run never reached its step-8 checkpoint"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "b" / "model.safetensors").exists()  # it really died before the end
    assert (tmp_path / "b" / "checkpoint-8").is_dir()

    resumed = run_driver(tmp_path / "rec-b", tmp_path / "b", flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (json.loads((tmp_path / rec / "rank-0.json").read_text()) for rec in ("rec-a", "rec-b"))
    assert a["global_step"] == b["global_step"] == 12
    assert a["teacher_sha256"] == b["teacher_sha256"]
    assert a["center"] == b["center"]
    exported_a, exported_b = (
        load_file(tmp_path / "a" / "model.safetensors"),
        load_file(tmp_path / "b" / "model.safetensors"),
    )
    for name, tensor in exported_a.items():
        assert torch.equal(tensor, exported_b[name]), name
    final_a = load_file(tmp_path / "a" / "checkpoint-12" / "model.safetensors")
    final_b = load_file(tmp_path / "b" / "checkpoint-12" / "model.safetensors")
    for name, tensor in final_a.items():  # student, teacher, prototypes and center
        assert torch.equal(tensor, final_b[name]), name


@pytest.mark.slow
def test_two_processes_keep_identical_teachers_and_all_reduce(tmp_path):
    """2 CPU processes (gloo) under accelerate launch: teachers identical; center and me-max statistics global."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(DRIVER),
        str(tmp_path / "rec"),
        "--output_dir",
        str(tmp_path / "out"),
        *TINY_RUN,
        "--max_steps",
        "4",
        "--me_max_weight",
        "0.5",
        "--ddp_broadcast_buffers",
        "false",
        "--save_strategy",
        "no",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "rec" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["teacher_sha256"] == ranks[1]["teacher_sha256"]
    assert ranks[0]["teacher_student_differ"]
    # the ranks saw different images (different matching losses) ...
    assert ranks[0]["last_metrics"]["matching_loss"] != ranks[1]["last_metrics"]["matching_loss"]
    # ... yet the center (buffers are not broadcast here) and the me-max term were computed on the global batch
    assert ranks[0]["center"] == ranks[1]["center"]
    assert ranks[0]["last_metrics"]["me_max_loss"] == pytest.approx(ranks[1]["last_metrics"]["me_max_loss"], rel=1e-6)
    # the image counts of skip_report.json are the run's, not the main process's alone: 4 steps x 8 x 2 processes
    assert [r["own_images"] for r in ranks] == [32, 32] and [r["all_images"] for r in ranks] == [64, 64]


def test_push_to_hub_offline_keeps_the_export_and_says_why(tmp_path, faces):
    trainer = make_trainer(tmp_path, faces, num_train_epochs=1, push_to_hub=True, hub_model_id="org/pros-test")
    assert trainer.args.push_to_hub is False  # the stock checkpoint pushes are replaced by the backbone push
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        trainer.train()
    card = ModelCard.load(Path(trainer.args.output_dir) / "README.md")
    assert "org/pros-test" in card.text  # the folder that would be pushed is complete on disk
    assert (Path(trainer.args.output_dir) / "model.safetensors").exists()


def test_weight_decay_schedule_reaches_the_decay_groups_even_from_zero(tmp_path, faces):
    """The decayed groups are found by their parameters, not by a non-zero starting decay."""
    trainer = make_trainer(tmp_path, faces, num_train_epochs=1, weight_decay=0.0, weight_decay_end=0.2)
    trainer.train()
    groups = trainer.decay_groups()
    assert len(groups) == 1 and groups[0]["weight_decay"] > 0.1
    no_decay = [g for g in trainer.optimizer.param_groups if g not in groups]
    assert no_decay and all(g["weight_decay"] == 0.0 for g in no_decay)
    assert any(p is trainer.model.prototypes for g in no_decay for p in g["params"])
