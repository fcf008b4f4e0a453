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

import torch
from transformers import HfArgumentParser, set_seed

from pros_hf import ProSImageProcessor
from pros_hf.cli import check_output_folder, flag_name, parse_flags
from pros_hf.data import load_pretraining_images, make_synthetic_faces
from pros_hf.hub import public_name
from pros_hf.loading import BackboneError
from pros_hf.training import (
    NoImagesReadError,
    ProSTrainer,
    ProSTrainingArguments,
    pretraining_model,
    resume_checkpoint,
    save_train_results,
)
from pros_hf.training.command_line import default_cpu_demo, knn_tracking_callback, no_data_epilog, with_cpu_flags
from pros_hf.training.pretrain_arguments import DataArguments, KNNArguments, ModelArguments

logger = logging.getLogger("pretrain")


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
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, KNNArguments, ProSTrainingArguments), epilog=no_data_epilog()
    )
    if not any(flag_name(arg) == "--train_dir" for arg in argv):
        argv = default_cpu_demo(argv)
    model_args, data_args, knn_args, training_args = parse_flags(parser, with_cpu_flags(argv), "pretrain.py")
    check_output_folder("--output_dir", training_args.output_dir)
    if data_args.streaming and training_args.max_steps <= 0:
        raise SystemExit("pretrain.py: --streaming needs --max_steps (a stream has no length to count epochs in).")
    logging.basicConfig(
        level=logging.INFO if training_args.should_log else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    set_seed(training_args.seed)

    # the model first: a backbone that cannot be used is refused before any image is rendered or read
    model = build_model(model_args, training_args)
    # the source images: resized once to a little above the global crop, then cropped on the device at each step
    source_size = data_args.source_image_size or int(round(training_args.global_crop_size * 8 / 7))
    num_proc = data_args.synthetic_num_proc or min(16, max(1, (os.cpu_count() or 1) // training_args.world_size))
    if data_args.train_dir is None:
        dataset_name = f"synthetic faces ({data_args.num_synthetic_images} images, {data_args.synthetic_image_size} px)"
        source = make_synthetic_faces(
            data_args.num_synthetic_images,
            image_size=data_args.synthetic_image_size,
            seed=training_args.seed,
            num_proc=num_proc,
        ).select_columns(["image"])
    else:
        dataset_name = source = data_args.train_dir
    dataset_name = data_args.dataset_name or public_name(dataset_name)
    try:
        train_dataset = load_pretraining_images(
            source,
            image_size=source_size,
            streaming=data_args.streaming,
            image_column=data_args.image_column,
            shuffle=data_args.streaming,
            seed=training_args.seed,
            cache_bytes=0 if data_args.streaming else data_args.decoded_cache_mb << 20,
        )
    except (OSError, ValueError) as error:  # a missing path, an empty folder, an offline Hub id, no image column
        where = f"--train_dir {data_args.train_dir}" if data_args.train_dir else "the synthetic training faces"
        raise SystemExit(f"{where}: {error}") from None

    logger.info(
        "ProS %s: %.1fM parameters per backbone, %d prototypes, source images %d px, %d x %d + %d x %d crops",
        model_args.preset,
        sum(p.numel() for p in model.student.parameters()) / 1e6,
        model.config.num_prototypes,
        source_size,
        training_args.num_global_crops,
        training_args.global_crop_size,
        training_args.num_local_crops,
        training_args.local_crop_size,
    )
    image_processor = ProSImageProcessor.from_model_config(model.config)

    # the teacher's k-NN: on --knn_dataset, or (without any data flag) on held-out synthetic faces of other people
    knn_source = knn_args.knn_dataset
    if data_args.train_dir is None and knn_source is None and knn_args.knn_synthetic_images:
        knn_source = make_synthetic_faces(
            knn_args.knn_synthetic_images,
            image_size=data_args.synthetic_image_size,
            seed=training_args.seed + 1,
            show_progress=False,
            num_proc=num_proc,
        )
    knn = None
    if knn_source is not None:
        try:
            knn = knn_tracking_callback(
                knn_source,
                knn_args.knn_label_columns,
                image_processor,
                training_args.seed if knn_args.knn_seed is None else knn_args.knn_seed,
                split=knn_args.knn_split,
                test_fraction=knn_args.knn_test_fraction,
                eval_steps=knn_args.knn_eval_steps,
                image_column=knn_args.knn_image_column,
            )
        except ValueError as error:
            what = (
                f"--knn_dataset {knn_args.knn_dataset}"
                if knn_args.knn_dataset is not None
                else f"the held-out synthetic faces (--knn_synthetic_images {knn_args.knn_synthetic_images})"
            )
            raise SystemExit(f"{what}: {error}") from None

    try:
        trainer = ProSTrainer(
            model=model,
            args=training_args,
            train_dataset=train_dataset,
            dataset_name=dataset_name,
            image_processor=image_processor,
            callbacks=[knn] if knn else None,
        )
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
