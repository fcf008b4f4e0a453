"""What `examples/pretrain.py` adds on its command line: the settings of a run without data, the CPU flags that
transformers needs to form a process group, and the k-NN tracking of the teacher.
"""

import os

import torch

from ..cli import flag_is_on, flag_name

# Without --train_dir: a small, fast run on the synthetic faces (a micro ViT on a CPU in minutes). These replace the
# defaults --help shows, for every flag the user did not give.
NO_DATA_DEFAULTS = {
    "--output_dir": "outputs/pros-micro",
    "--num_train_epochs": "10",
    "--per_device_train_batch_size": "64",
    "--global_crop_size": "48",
    "--local_crop_size": "24",
    "--num_local_crops": "4",
    "--learning_rate": "1e-3",
    "--warmup_teacher_temperature_epochs": "3",
    "--teacher_momentum": "0.99",
    "--logging_steps": "20",
    "--save_strategy": "epoch",
    "--save_total_limit": "2",
    "--report_to": "none",
    "--dataloader_num_workers": "0",
    "--num_prototypes": "256",
    "--seed": "0",
}


def default_cpu_demo(argv: list[str]) -> list[str]:
    """`argv` with `NO_DATA_DEFAULTS` appended for the flags it does not give (in any spelling)."""
    given = {flag_name(arg) for arg in argv if arg.startswith("--")}
    extra = []
    for flag, value in NO_DATA_DEFAULTS.items():
        if flag not in given:
            extra += [flag, value]
    return argv + extra


def no_data_epilog() -> str:
    """The --help epilog that lists `NO_DATA_DEFAULTS`."""
    return (
        "Without --train_dir, the flags not given take these values instead of the defaults above: "
        + ", ".join(f"{flag} {value}" for flag, value in NO_DATA_DEFAULTS.items())
        + "."
    )


def with_cpu_flags(argv: list[str]) -> list[str]:
    """`argv` with `--use_cpu true` added where a machine without CUDA needs it: several processes (gloo; transformers
    forms the process group only with use_cpu) or `--bf16` (bf16 autocast on a CPU)."""
    if torch.cuda.is_available() or flag_is_on(argv, "--use_cpu"):
        return argv
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or flag_is_on(argv, "--bf16"):
        return argv + ["--use_cpu", "true"]
    return argv


def knn_tracking_callback(
    source,
    label_columns,
    image_processor,
    seed: int,
    *,
    split: str = "train",
    test_fraction: float = 0.5,
    eval_steps: int | None = None,
    image_column: str = "image",
):
    """A `KNNCallback` that measures the teacher's weighted k-NN top-1 on `source` during training.

    `source`: a labelled dataset, or a `save_to_disk` folder (`split` of a DatasetDict). It is split once, stratified
    on the first label column, with `seed` (as `examples/knn_eval.py --seed` splits it). Bad data (no such folder,
    column or split, too few examples to split) raises `ValueError` here, before any training step."""
    from ..knn import KNNCallback, load_labelled_dataset

    dataset = load_labelled_dataset(os.fspath(source), split) if isinstance(source, (str, os.PathLike)) else source
    return KNNCallback.from_dataset(
        dataset,
        label_columns,
        test_fraction=test_fraction,
        seed=seed,
        eval_steps=eval_steps,
        image_processor=image_processor,
        image_column=image_column,
    )


__all__ = ["NO_DATA_DEFAULTS", "default_cpu_demo", "knn_tracking_callback", "no_data_epilog", "with_cpu_flags"]
