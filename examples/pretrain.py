"""Pre-train a ProS backbone: `accelerate launch examples/pretrain.py [--train_dir DATA] [--output_dir OUT]`.

With no data argument it pre-trains a micro ViT on the embedded synthetic faces, on a CPU, in a few minutes, and
writes the exported teacher backbone (a `ProSModel` folder) to `--output_dir`. Every ProSConfig loss option and every
ProSTrainingArguments schedule is a flag; `--help` lists them with why they matter.

    accelerate launch examples/pretrain.py --train_dir ./curated/dataset --preset vit-s16 \
        --global_crop_size 224 --local_crop_size 96 --per_device_train_batch_size 64 --bf16 --output_dir ./pros-vits
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, set_seed

from pros_hf import ProSConfig, ProSImageProcessor
from pros_hf.cli import flag_is_on, flag_name
from pros_hf.data.loading import load_pretraining_images
from pros_hf.data.synthetic import make_synthetic_faces
from pros_hf.modeling_pros_pretraining import ProSForPreTraining
from pros_hf.training import NoImagesReadError, ProSTrainer, ProSTrainingArguments


logger = logging.getLogger("pretrain")


@dataclass
class ModelArguments:
    preset: str = field(default="micro", metadata={"help": (
        "Backbone size: micro (tests and CPU demos), vit-s16, vit-b16 (the likely paper setting), vit-l16.")})
    model_name_or_path: str | None = field(default=None, metadata={"help": (
        "Start student and teacher from this ProSModel backbone (a folder or Hub id), e.g. converted DINO weights.")})
    num_prototypes: int | None = field(default=None, metadata={"help": (
        "K. DINO uses 65536 on ImageNet; on a few thousand faces a few hundred to a few thousand avoid dead "
        "prototypes. Default: the preset's.")})
    target_mode: str = field(default="center", metadata={"help": (
        "Teacher targets: center (DINO), sinkhorn (balanced by construction, DINOv2) or sharpen (MSN, with me-max).")})
    share_prototypes: bool = field(default=True, metadata={"help": (
        "One prototype matrix for teacher and student (MSN-like, closest to the ProS abstract); False keeps an EMA "
        "copy in the teacher (DINO-like).")})
    student_temperature: float = field(default=0.1, metadata={"help": "tau_s of the student softmax (DINO: 0.1)."})
    teacher_temperature: float = field(default=0.07, metadata={"help": (
        "tau_t after warm-up (DINO: 0.04-0.07). Lower it if the loss sits at ln K (uniform collapse).")})
    warmup_teacher_temperature: float = field(default=0.04, metadata={"help": "tau_t at step 0 (DINO: 0.04)."})
    center_momentum: float = field(default=0.9, metadata={"help": "EMA momentum of the center (center mode)."})
    me_max_weight: float | None = field(default=None, metadata={"help": (
        "Mean-entropy maximisation weight (default 1.0 with sharpen, else 0).")})
    koleo_weight: float = field(default=0.0, metadata={"help": "KoLeo uniformity weight (DINOv2 uses 0.1)."})
    patch_loss_weight: float = field(default=0.0, metadata={"help": (
        "Weight of iBOT's masked patch loss (DINOv2 and iBOT: 1.0; 0 turns it off): the student's masked patches "
        "must match the teacher's, which keeps local content (mouth, brows, landmark positions) in the features.")})
    mask_probability: float = field(default=0.5, metadata={"help": "Fraction of global crops masked (DINOv2: 0.5)."})
    mask_ratio: list[float] = field(default_factory=lambda: [0.1, 0.5], metadata={"help": (
        "Range of the fraction of patches a masked crop hides (iBOT: 0.1 0.5).")})
    drop_path_rate: float | None = field(default=None, metadata={"help": (
        "Stochastic depth of the student (0.1 for ViT-S/B, 0.3-0.4 for ViT-L). Default: the preset's.")})
    head_hidden_size: int | None = field(default=None, metadata={"help": "Projection head width (DINO: 2048)."})
    head_bottleneck_size: int | None = field(default=None, metadata={"help": "Head output size (DINO: 256)."})
    config_overrides: str | None = field(default=None, metadata={"help": (
        "Any other config field of the preset, as transformers' examples take them: 'hidden_size=128,"
        "intermediate_size=512'. Applied last; the config checks the result.")})


@dataclass
class DataArguments:
    train_dir: str | None = field(default=None, metadata={"help": (
        "Pre-training images: an image folder (recursive), a saved datasets folder (e.g. examples/curate.py's "
        "OUTPUT/dataset) or a Hub dataset id. Default: synthetic faces rendered on the fly.")})
    streaming: bool = field(default=False, metadata={"help": (
        "Stream the data (sets larger than memory): sharded across processes and DataLoader workers. Needs "
        "--max_steps.")})
    image_column: str | None = field(default=None, metadata={"help": "Image column of a dataset (auto-detected)."})
    source_image_size: int | None = field(default=None, metadata={"help": (
        "Side every image is resized and center-cropped to in the workers before batched multi-crop on the device. "
        "Default: a little above the global crop (global_crop_size * 8 / 7).")})
    decoded_cache_mb: int = field(default=1024, metadata={"help": (
        "Decoded source images kept in memory (MiB per training process, shared out among its DataLoader workers; "
        "not with --streaming), so that epochs after the first skip decoding. A set of 2,000 images at 224 px "
        "takes 287 MiB. With --dataloader_num_workers the workers persist between epochs (on by default), so each "
        "keeps its share. 0 turns it off.")})
    num_synthetic_images: int = field(default=2000, metadata={"help": "Synthetic faces to render without data."})
    synthetic_image_size: int = field(default=64, metadata={"help": "Side of the rendered synthetic faces."})
    synthetic_num_proc: int | None = field(default=None, metadata={"help": (
        "Processes rendering the synthetic faces (the faces do not depend on it). Default: the CPU cores shared out "
        "among the training processes, at most 16.")})

    def __post_init__(self):
        if self.source_image_size is not None and self.source_image_size < 1:
            raise SystemExit(f"--source_image_size must be a positive number of pixels, got {self.source_image_size}.")
        if self.decoded_cache_mb < 0:
            raise SystemExit(f"--decoded_cache_mb must be >= 0 (0 turns the cache off), got {self.decoded_cache_mb}.")
        if self.synthetic_num_proc is not None and self.synthetic_num_proc < 1:
            raise SystemExit(f"--synthetic_num_proc must be >= 1, got {self.synthetic_num_proc}.")


@dataclass
class KNNArguments:
    knn_dataset: str | None = field(default=None, metadata={"help": (
        "Track DINO's weighted k-NN top-1 of the teacher during training on this labelled set (a save_to_disk "
        "folder with an image column and single-label integer columns, e.g. examples/demo.py's OUTPUT/faces_eval). "
        "The loss value is a poor guide to what the features learn; this is the signal to tune by. The figures are "
        "logged with the loss, kept in trainer_state.json, and the last ones go into the exported model card. "
        "Without --train_dir and --knn_dataset: held-out synthetic faces (--knn_synthetic_images, other people).")})
    knn_synthetic_images: int = field(default=600, metadata={"help": (
        "Held-out synthetic faces rendered for the k-NN when neither --train_dir nor --knn_dataset is given (seed "
        "--seed + 1: other identities than the training faces). 0 turns the k-NN of that run off.")})
    knn_split: str = field(default="train", metadata={"help": "Split to use when --knn_dataset is a DatasetDict."})
    knn_label_columns: list[str] = field(default_factory=lambda: ["expression", "identity"], metadata={"help": (
        "Label columns to classify (the synthetic faces': expression and identity).")})
    knn_eval_steps: int | None = field(default=None, metadata={"help": (
        "Run the k-NN every N optimizer steps (on the main process; the others wait at their next collective). "
        "Default: once, at the end of training.")})
    knn_test_fraction: float = field(default=0.5, metadata={"help": (
        "Share of each class of the first label column used as queries; the rest is the memory bank.")})
    knn_image_column: str = field(default="image", metadata={"help": "Image column of --knn_dataset."})
    knn_seed: int | None = field(default=None, metadata={"help": (
        "Seed of the memory bank / query split (default: --seed). knn_eval.py with the same --seed and --test_fraction "
        "splits the same way, so its figure for the exported backbone equals the last one logged here.")})

    def __post_init__(self):
        if self.knn_eval_steps is not None and self.knn_eval_steps <= 0:
            raise SystemExit(f"--knn_eval_steps must be a positive number of steps, got {self.knn_eval_steps}.")
        if self.knn_synthetic_images < 0:
            raise SystemExit(f"--knn_synthetic_images must be >= 0, got {self.knn_synthetic_images}.")
        if not 0.0 < self.knn_test_fraction < 1.0:
            raise SystemExit(f"--knn_test_fraction must be in (0, 1), got {self.knn_test_fraction}.")


def knn_callback(knn_args: KNNArguments, image_processor, seed: int, synthetic=None):
    """The KNNCallback --knn_dataset asks for (else one on `synthetic`, a labelled dataset, when given), or None.
    Bad data stops here, before any training step."""
    what = (f"--knn_dataset {knn_args.knn_dataset}" if knn_args.knn_dataset is not None
            else f"the held-out synthetic faces (--knn_synthetic_images {knn_args.knn_synthetic_images})")
    if knn_args.knn_dataset is None and synthetic is None:
        return None
    from pros_hf.knn import KNNCallback, load_labelled_dataset

    try:
        if knn_args.knn_dataset is not None:
            dataset = load_labelled_dataset(knn_args.knn_dataset, knn_args.knn_split)
        else:
            dataset = synthetic
        return KNNCallback.from_dataset(
            dataset, knn_args.knn_label_columns, test_fraction=knn_args.knn_test_fraction, seed=seed,
            eval_steps=knn_args.knn_eval_steps, image_processor=image_processor,
            image_column=knn_args.knn_image_column)
    except ValueError as error:
        raise SystemExit(f"{what}: {error}") from None


# Without --train_dir: a small, fast run on the synthetic faces; these replace the defaults --help shows.
NO_DATA_DEFAULTS = {
    "--output_dir": "outputs/pros-micro", "--num_train_epochs": "10", "--per_device_train_batch_size": "64",
    "--global_crop_size": "48", "--local_crop_size": "24", "--num_local_crops": "4", "--learning_rate": "1e-3",
    "--warmup_teacher_temperature_epochs": "3", "--teacher_momentum": "0.99", "--logging_steps": "20",
    "--save_strategy": "epoch", "--save_total_limit": "2", "--report_to": "none", "--dataloader_num_workers": "0",
    "--num_prototypes": "256", "--seed": "0",
}


def default_cpu_demo(argv: list[str]) -> list[str]:
    """With no data argument: a small, fast run on the synthetic faces (unless the user set these flags)."""
    given = {flag_name(arg) for arg in argv if arg.startswith("--")}
    extra = []
    for flag, value in NO_DATA_DEFAULTS.items():
        if flag not in given:
            extra += [flag, value]
    return argv + extra


def build_model(model_args: ModelArguments, training_args: ProSTrainingArguments) -> ProSForPreTraining:
    overrides = {k: v for k, v in {
        "num_prototypes": model_args.num_prototypes, "target_mode": model_args.target_mode,
        "share_prototypes": model_args.share_prototypes, "student_temperature": model_args.student_temperature,
        "teacher_temperature": model_args.teacher_temperature,
        "warmup_teacher_temperature": model_args.warmup_teacher_temperature,
        "center_momentum": model_args.center_momentum, "me_max_weight": model_args.me_max_weight,
        "koleo_weight": model_args.koleo_weight, "drop_path_rate": model_args.drop_path_rate,
        "patch_loss_weight": model_args.patch_loss_weight, "mask_probability": model_args.mask_probability,
        "mask_ratio": model_args.mask_ratio,
        "head_hidden_size": model_args.head_hidden_size, "head_bottleneck_size": model_args.head_bottleneck_size,
    }.items() if v is not None}
    if model_args.model_name_or_path:
        from pros_hf import ProSModel
        from pros_hf.loading import check_model_source

        try:
            check_model_source(model_args.model_name_or_path)
        except (OSError, FileNotFoundError) as error:
            raise SystemExit(f"--model_name_or_path: {error}") from None
        backbone = ProSModel.from_pretrained(model_args.model_name_or_path)
        # trained at --global_crop_size: the export's config and image processor say so, and the position
        # embeddings are resampled to that grid once here (as timm does for a new image size)
        config = ProSConfig(**{**backbone.config.to_dict(), **overrides, "image_size": training_args.global_crop_size})
        if model_args.config_overrides:
            config = apply_config_overrides(config, model_args.config_overrides)
        model = ProSForPreTraining(config)
        state = backbone.state_dict()
        grid = model.student.embeddings.grid_size
        if grid != backbone.embeddings.grid_size:
            logger.info("Position embeddings resampled from a %s to a %s patch grid (--global_crop_size %d)",
                        backbone.embeddings.grid_size, grid, training_args.global_crop_size)
            with torch.no_grad():
                state["embeddings.position_embeddings"] = backbone.embeddings.interpolate_pos_encoding(
                    *grid, torch.float32)
        if model.student.embeddings.mask_token is None:  # a backbone pre-trained with the patch loss, reused without
            state.pop("embeddings.mask_token", None)
        missing, unexpected = model.student.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"embeddings.mask_token"}:
            raise ValueError(f"{model_args.model_name_or_path} does not match the configured backbone: missing "
                             f"{sorted(missing)}, unexpected {sorted(unexpected)}.")
        model.copy_student_to_teacher()
        return model
    config = ProSConfig.from_preset(model_args.preset, image_size=training_args.global_crop_size, **overrides)
    if model_args.config_overrides:
        config = apply_config_overrides(config, model_args.config_overrides)
    return ProSForPreTraining(config)


def apply_config_overrides(config: ProSConfig, overrides: str) -> ProSConfig:
    """`config` with 'key=value,key=value' applied (typed after the current values, by transformers'
    `update_from_string`), rebuilt so that ProSConfig validates the result."""
    known = ProSConfig.field_names()  # flat names, the sections' fields included
    unknown = [item.split("=")[0] for item in overrides.split(",") if item.split("=")[0] not in known]
    if unknown:
        raise SystemExit(f"--config_overrides names unknown ProSConfig fields {unknown}.")
    try:
        config.update_from_string(overrides)
        return ProSConfig(**config.to_dict())
    except ValueError as error:
        raise SystemExit(f"--config_overrides {overrides!r}: {error}") from None


def build_trainer(argv: list[str]) -> tuple[ProSTrainer, str | bool | None]:
    """Parse the flags, load the data, build the model and the trainer; also says what to resume from."""
    epilog = ("Without --train_dir, the flags not given take these values instead of the defaults above: "
              + ", ".join(f"{flag} {value}" for flag, value in NO_DATA_DEFAULTS.items()) + ".")
    parser = HfArgumentParser((ModelArguments, DataArguments, KNNArguments, ProSTrainingArguments), epilog=epilog)
    if not any(flag_name(arg) == "--train_dir" for arg in argv):
        argv = default_cpu_demo(argv)
    cpu_only = not torch.cuda.is_available() and not flag_is_on(argv, "--use_cpu")
    if cpu_only and (int(os.environ.get("WORLD_SIZE", "1")) > 1 or flag_is_on(argv, "--bf16")):
        # several CPU processes (gloo): transformers only forms the group with use_cpu; bf16 on a CPU needs it too
        argv = argv + ["--use_cpu", "true"]
    try:
        model_args, data_args, knn_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # the checks of the training arguments: a message, not a traceback
        raise SystemExit(f"pretrain.py: {error}") from None
    if data_args.streaming and training_args.max_steps <= 0:
        raise SystemExit("pretrain.py: --streaming needs --max_steps (a stream has no length to count epochs in).")
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_seed(training_args.seed)

    source_size = data_args.source_image_size or int(round(training_args.global_crop_size * 8 / 7))
    num_proc = data_args.synthetic_num_proc or min(16, max(1, (os.cpu_count() or 1) // training_args.world_size))
    if data_args.train_dir is None:
        dataset_name = f"synthetic faces ({data_args.num_synthetic_images} images, {data_args.synthetic_image_size} px)"
        source = make_synthetic_faces(data_args.num_synthetic_images, image_size=data_args.synthetic_image_size,
                                      seed=training_args.seed, num_proc=num_proc).select_columns(["image"])
    else:
        dataset_name = data_args.train_dir
        source = data_args.train_dir
    try:
        train_dataset = load_pretraining_images(
            source, image_size=source_size, streaming=data_args.streaming, image_column=data_args.image_column,
            shuffle=data_args.streaming, seed=training_args.seed,
            cache_bytes=0 if data_args.streaming else data_args.decoded_cache_mb << 20)
    except (OSError, ValueError) as error:  # a missing path, an empty folder, an offline Hub id, no image column
        where = f"--train_dir {data_args.train_dir}" if data_args.train_dir else "the synthetic training faces"
        raise SystemExit(f"{where}: {error}") from None
    try:
        model = build_model(model_args, training_args)
    except ValueError as error:
        raise SystemExit(f"pretrain.py: {error}") from None
    logger.info("ProS %s: %.1fM parameters per backbone, %d prototypes, source images %d px, %d x %d + %d x %d crops",
                model_args.preset, sum(p.numel() for p in model.student.parameters()) / 1e6,
                model.config.num_prototypes, source_size, training_args.num_global_crops,
                training_args.global_crop_size, training_args.num_local_crops, training_args.local_crop_size)
    image_processor = ProSImageProcessor.from_model_config(model.config)
    knn_seed = training_args.seed if knn_args.knn_seed is None else knn_args.knn_seed
    held_out = None
    if data_args.train_dir is None and knn_args.knn_dataset is None and knn_args.knn_synthetic_images:
        # the no-data run says whether it learnt: k-NN on faces of other people, rendered like the training ones
        held_out = make_synthetic_faces(knn_args.knn_synthetic_images, image_size=data_args.synthetic_image_size,
                                        seed=training_args.seed + 1, show_progress=False, num_proc=num_proc)
    knn = knn_callback(knn_args, image_processor, knn_seed, held_out)
    try:
        trainer = ProSTrainer(
            model=model, args=training_args, train_dataset=train_dataset, dataset_name=dataset_name,
            image_processor=image_processor, callbacks=[knn] if knn else None,
        )
    except ValueError as error:  # crops that do not fit the model, schedules a stream cannot place
        raise SystemExit(f"pretrain.py: {error}") from None
    if knn is not None:
        knn.trainer = trainer  # its figures then go through trainer.log, to every report_to integration
    # A run restarted with the same --output_dir continues from its last complete checkpoint (after a crash or a
    # kill), provided it was made with the same model configuration.
    resume = training_args.resume_from_checkpoint
    if resume is None:
        resume = last_complete_checkpoint(training_args.output_dir)
    if isinstance(resume, str):
        check_checkpoint_matches(resume, model.config)
    return trainer, resume


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` of `output_dir` that was written to the end (the Trainer writes its
    `trainer_state.json` last); a newer one cut short by a kill is named and passed over."""
    if not os.path.isdir(output_dir):
        return None
    folders = [name for name in os.listdir(output_dir) if name.startswith("checkpoint-") and name[11:].isdigit()]
    for name in sorted(folders, key=lambda folder: int(folder[11:]), reverse=True):
        path = os.path.join(output_dir, name)
        if os.path.isfile(os.path.join(path, "trainer_state.json")):
            return path
        logger.warning("%s was not written to the end (no trainer_state.json; the run was killed while saving it): "
                       "resuming from an earlier checkpoint", path)
    return None


def check_checkpoint_matches(checkpoint: str, config: ProSConfig) -> None:
    """Refuse, naming the fields, to resume a checkpoint of another model configuration (torch would report a
    size mismatch from deep inside load_state_dict)."""
    path = os.path.join(checkpoint, "config.json")
    if not os.path.isfile(path):
        return
    saved = ProSConfig.from_json_file(path)  # flat or with sections: both layouts load
    fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
              "patch_size", "num_prototypes", "head_hidden_size", "head_bottleneck_size", "head_num_layers",
              "share_prototypes", "patch_loss_weight")
    differ = [f"{name} {getattr(saved, name)} -> {getattr(config, name)}" for name in fields
              if getattr(saved, name) != getattr(config, name)]
    if differ:
        raise SystemExit(
            f"pretrain.py: {checkpoint} was trained with another configuration ({'; '.join(differ)}). Resuming "
            "continues a run with the flags it was started with: use a new --output_dir for a new run, or "
            "remove the old checkpoints."
        )


def written_at(results: str, step: int, epoch: float) -> bool:
    """Whether train_results.json was written at this optimizer step (a file that records only the epoch must match
    the epoch)."""
    try:
        with open(results) as handle:
            recorded = json.load(handle)
    except (OSError, ValueError):
        return False
    if "global_step" in recorded:
        return recorded["global_step"] == step
    return isinstance(recorded.get("epoch"), (int, float)) and abs(recorded["epoch"] - epoch) < 1e-9


def write_json(path: str, content: dict) -> None:
    with open(path, "w") as handle:
        json.dump(content, handle, indent=2)


def finish(trainer) -> None:
    """Wait for every process, then close the process group. A process that leaves while rank 0 still writes the
    export tears gloo down under its feet, and can abort ("terminate called without an active exception")."""
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


def main(argv: list[str] | None = None) -> int:
    trainer, resume = build_trainer(list(sys.argv[1:] if argv is None else argv))
    if resume:
        logger.info("Resuming from %s", "the last checkpoint" if resume is True else resume)
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except NoImagesReadError as error:
        raise SystemExit(f"pretrain.py: {error}") from None
    output_dir = trainer.args.output_dir
    if trainer.is_world_process_zero():
        results = os.path.join(output_dir, "train_results.json")
        step = trainer.state.global_step
        skipped = (trainer.skip_summary or {}).get("skipped", 0)
        if trainer.steps_this_run == 0:  # resumed at its last step: nothing trained now
            print(f"{output_dir} had already trained to step {step}; re-exported it")
            if not written_at(results, step, trainer.state.epoch):  # killed before its figures: none to keep
                write_json(results, {"global_step": step, "epoch": trainer.state.epoch, "skipped_images": skipped,
                                     "note": "resumed at its last step; the run that trained it was stopped before "
                                             "it recorded its figures"})
        else:
            write_json(results, {**result.metrics, "global_step": step, "skipped_images": skipped})
        print(f"Exported the teacher backbone to {output_dir} (AutoModel.from_pretrained({output_dir!r}))")
    finish(trainer)
    return 0


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    sys.exit(main())
