"""Pre-train a ProS backbone: `accelerate launch examples/pretrain.py [--train_dir DATA] [--output_dir OUT]`.

With no data argument it pre-trains a micro ViT on the embedded synthetic faces, on a CPU, in a few minutes, and
writes the exported teacher backbone (a `ProSModel` folder) to `--output_dir`. Every ProSConfig loss option and every
ProSTrainingArguments schedule is a flag; `--help` lists them with why they matter. A run restarted with the same
`--output_dir` continues from its last complete checkpoint (`pros_hf.training.resume`). A bad flag, folder or file
ends the run in one line before any step; `accelerate launch -q` keeps the launcher from printing its own traceback
after that line.

    accelerate launch examples/pretrain.py --train_dir ./curated/dataset --preset vit-s16 \
        --global_crop_size 224 --local_crop_size 96 --per_device_train_batch_size 64 --bf16 --output_dir ./pros-vits
"""

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, set_seed

from pros_hf import ProSImageProcessor
from pros_hf.cli import check_output_folder, flag_name, parse_flags
from pros_hf.data import load_pretraining_images, make_synthetic_faces
from pros_hf.hub import public_name
from pros_hf.loading import BackboneError
from pros_hf.training import (
    NoImagesReadError, ProSTrainer, ProSTrainingArguments, pretraining_model, resume_checkpoint, save_train_results,
)
from pros_hf.training.command_line import default_cpu_demo, knn_tracking_callback, no_data_epilog, with_cpu_flags


logger = logging.getLogger("pretrain")


@dataclass
class ModelArguments:
    preset: str = field(default="micro", metadata={"help": (
        "Backbone size: micro (tests and CPU demos), vit-s16, vit-b16 (the likely paper setting), vit-l16.")})
    model_name_or_path: str | None = field(default=None, metadata={"help": (
        "Start student and teacher from this backbone (the folder or Hub id of a ProSModel or a pre-training export), "
        "e.g. converted DINO weights.")})
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
    dataset_name: str | None = field(default=None, metadata={"help": (
        "How the exported model card names the data (e.g. its Hub id). Default: a --train_dir Hub id as it is, a "
        "local folder by its name; a local path never goes into a card, which is published with the backbone.")})
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
            raise ValueError(f"--source_image_size must be a positive number of pixels, got {self.source_image_size}.")
        if self.decoded_cache_mb < 0:
            raise ValueError(f"--decoded_cache_mb must be >= 0 (0 turns the cache off), got {self.decoded_cache_mb}.")
        if self.synthetic_num_proc is not None and self.synthetic_num_proc < 1:
            raise ValueError(f"--synthetic_num_proc must be >= 1, got {self.synthetic_num_proc}.")


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
            raise ValueError(f"--knn_eval_steps must be a positive number of steps, got {self.knn_eval_steps}.")
        if self.knn_synthetic_images < 0:
            raise ValueError(f"--knn_synthetic_images must be >= 0, got {self.knn_synthetic_images}.")
        if not 0.0 < self.knn_test_fraction < 1.0:
            raise ValueError(f"--knn_test_fraction must be in (0, 1), got {self.knn_test_fraction}.")


def build_model(model_args: ModelArguments, training_args: ProSTrainingArguments):
    """The model the flags describe, for global crops of --global_crop_size; a bad flag ends the run naming it."""
    fields = dataclasses.asdict(model_args)
    source = {name: fields.pop(name) for name in ("preset", "model_name_or_path", "config_overrides")}
    try:
        return pretraining_model(training_args.global_crop_size, **source, **fields)
    except (OSError, BackboneError) as error:  # a missing folder, an uncached Hub id, not a usable ProS backbone
        raise SystemExit(f"--model_name_or_path: {error}") from None
    except ValueError as error:  # config values ProSConfig refuses, a backbone that does not fit them
        raise SystemExit(f"pretrain.py: {error}") from None


def build_trainer(argv: list[str]) -> tuple[ProSTrainer, str | bool | None]:
    """Parse the flags, load the data, build the model and the trainer; also says what to resume from."""
    parser = HfArgumentParser((ModelArguments, DataArguments, KNNArguments, ProSTrainingArguments),
                              epilog=no_data_epilog())
    if not any(flag_name(arg) == "--train_dir" for arg in argv):
        argv = default_cpu_demo(argv)
    model_args, data_args, knn_args, training_args = parse_flags(parser, with_cpu_flags(argv), "pretrain.py")
    check_output_folder("--output_dir", training_args.output_dir)
    if data_args.streaming and training_args.max_steps <= 0:
        raise SystemExit("pretrain.py: --streaming needs --max_steps (a stream has no length to count epochs in).")
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_seed(training_args.seed)

    # the model first: a backbone that cannot be used is refused before any image is rendered or read
    model = build_model(model_args, training_args)
    # the source images: resized once to a little above the global crop, then cropped on the device at each step
    source_size = data_args.source_image_size or int(round(training_args.global_crop_size * 8 / 7))
    num_proc = data_args.synthetic_num_proc or min(16, max(1, (os.cpu_count() or 1) // training_args.world_size))
    if data_args.train_dir is None:
        dataset_name = f"synthetic faces ({data_args.num_synthetic_images} images, {data_args.synthetic_image_size} px)"
        source = make_synthetic_faces(data_args.num_synthetic_images, image_size=data_args.synthetic_image_size,
                                      seed=training_args.seed, num_proc=num_proc).select_columns(["image"])
    else:
        dataset_name = source = data_args.train_dir
    dataset_name = data_args.dataset_name or public_name(dataset_name)
    try:
        train_dataset = load_pretraining_images(
            source, image_size=source_size, streaming=data_args.streaming, image_column=data_args.image_column,
            shuffle=data_args.streaming, seed=training_args.seed,
            cache_bytes=0 if data_args.streaming else data_args.decoded_cache_mb << 20)
    except (OSError, ValueError) as error:  # a missing path, an empty folder, an offline Hub id, no image column
        where = f"--train_dir {data_args.train_dir}" if data_args.train_dir else "the synthetic training faces"
        raise SystemExit(f"{where}: {error}") from None

    logger.info("ProS %s: %.1fM parameters per backbone, %d prototypes, source images %d px, %d x %d + %d x %d crops",
                model_args.preset, sum(p.numel() for p in model.student.parameters()) / 1e6,
                model.config.num_prototypes, source_size, training_args.num_global_crops,
                training_args.global_crop_size, training_args.num_local_crops, training_args.local_crop_size)
    image_processor = ProSImageProcessor.from_model_config(model.config)

    # the teacher's k-NN: on --knn_dataset, or (without any data flag) on held-out synthetic faces of other people
    knn_source = knn_args.knn_dataset
    if data_args.train_dir is None and knn_source is None and knn_args.knn_synthetic_images:
        knn_source = make_synthetic_faces(knn_args.knn_synthetic_images, image_size=data_args.synthetic_image_size,
                                          seed=training_args.seed + 1, show_progress=False, num_proc=num_proc)
    knn = None
    if knn_source is not None:
        try:
            knn = knn_tracking_callback(
                knn_source, knn_args.knn_label_columns, image_processor,
                training_args.seed if knn_args.knn_seed is None else knn_args.knn_seed, split=knn_args.knn_split,
                test_fraction=knn_args.knn_test_fraction, eval_steps=knn_args.knn_eval_steps,
                image_column=knn_args.knn_image_column)
        except ValueError as error:
            what = (f"--knn_dataset {knn_args.knn_dataset}" if knn_args.knn_dataset is not None
                    else f"the held-out synthetic faces (--knn_synthetic_images {knn_args.knn_synthetic_images})")
            raise SystemExit(f"{what}: {error}") from None

    try:
        trainer = ProSTrainer(model=model, args=training_args, train_dataset=train_dataset, dataset_name=dataset_name,
                              image_processor=image_processor, callbacks=[knn] if knn else None)
        # a restarted run continues from the last complete checkpoint in --output_dir, of the same configuration
        resume = resume_checkpoint(training_args.output_dir, model.config, training_args.resume_from_checkpoint)
    except ValueError as error:  # crops that do not fit the model, schedules a stream cannot place, another config
        raise SystemExit(f"pretrain.py: {error}") from None
    if knn is not None:
        knn.trainer = trainer  # its figures then go through trainer.log, to every report_to integration
    return trainer, resume


def finish(trainer: ProSTrainer) -> None:
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
        save_train_results(trainer, result)  # kept as it was when a finished run is rerun
        if trainer.steps_this_run == 0:
            print(f"{output_dir} had already trained to step {trainer.state.global_step}; re-exported it")
        print(f"Exported the teacher backbone to {output_dir} (AutoModel.from_pretrained({output_dir!r}))")
    finish(trainer)
    return 0


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    sys.exit(main())
