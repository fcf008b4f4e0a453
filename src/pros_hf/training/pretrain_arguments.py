"""The command-line arguments of examples/pretrain.py beyond `ProSTrainingArguments`: the model, the data and the
k-NN tracking, one dataclass field per flag with the help text `--help` prints (`HfArgumentParser`)."""

from dataclasses import dataclass, field


@dataclass
class ModelArguments:
    preset: str = field(
        default="micro",
        metadata={
            "help": (
                "Backbone size: micro (tests and CPU demos), vit-s16, vit-b16 (the likely paper setting), vit-l16."
            )
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": (
                "Start student and teacher from this backbone (the folder or Hub id of a ProSModel or a pre-training export), "
                "e.g. converted DINO weights."
            )
        },
    )
    num_prototypes: int | None = field(
        default=None,
        metadata={
            "help": (
                "K. DINO uses 65536 on ImageNet; on a few thousand faces a few hundred to a few thousand avoid dead "
                "prototypes. Default: the preset's."
            )
        },
    )
    target_mode: str = field(
        default="sinkhorn",
        metadata={
            "help": (
                "Teacher targets: sinkhorn (balanced by construction, DINOv2; the default, the best in the loss ablation), "
                "center (DINO) or sharpen (MSN, with me-max)."
            )
        },
    )
    share_prototypes: bool = field(
        default=True,
        metadata={
            "help": (
                "One prototype matrix for teacher and student (MSN-like, closest to the ProS abstract); False keeps an EMA "
                "copy in the teacher (DINO-like)."
            )
        },
    )
    student_temperature: float = field(default=0.1, metadata={"help": "tau_s of the student softmax (DINO: 0.1)."})
    teacher_temperature: float = field(
        default=0.07,
        metadata={
            "help": ("tau_t after warm-up (DINO: 0.04-0.07). Lower it if the loss sits at ln K (uniform collapse).")
        },
    )
    warmup_teacher_temperature: float = field(default=0.04, metadata={"help": "tau_t at step 0 (DINO: 0.04)."})
    center_momentum: float = field(default=0.9, metadata={"help": "EMA momentum of the center (center mode)."})
    me_max_weight: float | None = field(
        default=None, metadata={"help": ("Mean-entropy maximisation weight (default 1.0 with sharpen, else 0).")}
    )
    koleo_weight: float = field(default=0.0, metadata={"help": "KoLeo uniformity weight (DINOv2 uses 0.1)."})
    patch_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": (
                "Weight of iBOT's masked patch loss (DINOv2 and iBOT: 1.0; 0 turns it off): the student's masked patches "
                "must match the teacher's, which keeps local content (mouth, brows, landmark positions) in the features."
            )
        },
    )
    mask_probability: float = field(default=0.5, metadata={"help": "Fraction of global crops masked (DINOv2: 0.5)."})
    mask_ratio: list[float] = field(
        default_factory=lambda: [0.1, 0.5],
        metadata={"help": ("Range of the fraction of patches a masked crop hides (iBOT: 0.1 0.5).")},
    )
    drop_path_rate: float | None = field(
        default=None,
        metadata={
            "help": ("Stochastic depth of the student (0.1 for ViT-S/B, 0.3-0.4 for ViT-L). Default: the preset's.")
        },
    )
    head_hidden_size: int | None = field(default=None, metadata={"help": "Projection head width (DINO: 2048)."})
    head_bottleneck_size: int | None = field(default=None, metadata={"help": "Head output size (DINO: 256)."})
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": (
                "Any other config field of the preset, as transformers' examples take them: 'hidden_size=128,"
                "intermediate_size=512'. Applied last; the config checks the result."
            )
        },
    )


@dataclass
class DataArguments:
    train_dir: str | None = field(
        default=None,
        metadata={
            "help": (
                "Pre-training images: an image folder (recursive), a saved datasets folder (e.g. examples/curate.py's "
                "OUTPUT/dataset) or a Hub dataset id. Default: synthetic faces rendered on the fly."
            )
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": (
                "Stream the data (sets larger than memory): sharded across processes and DataLoader workers. Needs "
                "--max_steps."
            )
        },
    )
    image_column: str | None = field(default=None, metadata={"help": "Image column of a dataset (auto-detected)."})
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": (
                "How the exported model card names the data (e.g. its Hub id). Default: a --train_dir Hub id as it is, a "
                "local folder by its name; a local path never goes into a card, which is published with the backbone."
            )
        },
    )
    source_image_size: int | None = field(
        default=None,
        metadata={
            "help": (
                "Side every image is resized and center-cropped to in the workers before batched multi-crop on the device. "
                "Default: a little above the global crop (global_crop_size * 8 / 7)."
            )
        },
    )
    decoded_cache_mb: int = field(
        default=1024,
        metadata={
            "help": (
                "Decoded source images kept in memory (MiB per training process, shared out among its DataLoader workers; "
                "not with --streaming), so that epochs after the first skip decoding. A set of 2,000 images at 224 px "
                "takes 287 MiB. With --dataloader_num_workers the workers persist between epochs (on by default), so each "
                "keeps its share. 0 turns it off."
            )
        },
    )
    num_synthetic_images: int = field(default=2000, metadata={"help": "Synthetic faces to render without data."})
    synthetic_image_size: int = field(default=64, metadata={"help": "Side of the rendered synthetic faces."})
    synthetic_num_proc: int | None = field(
        default=None,
        metadata={
            "help": (
                "Processes rendering the synthetic faces (the faces do not depend on it). Default: the CPU cores shared out "
                "among the training processes, at most 16."
            )
        },
    )

    def __post_init__(self):
        if self.source_image_size is not None and self.source_image_size < 1:
            raise ValueError(f"--source_image_size must be a positive number of pixels, got {self.source_image_size}.")
        if self.decoded_cache_mb < 0:
            raise ValueError(f"--decoded_cache_mb must be >= 0 (0 turns the cache off), got {self.decoded_cache_mb}.")
        if self.synthetic_num_proc is not None and self.synthetic_num_proc < 1:
            raise ValueError(f"--synthetic_num_proc must be >= 1, got {self.synthetic_num_proc}.")


@dataclass
class KNNArguments:
    knn_dataset: str | None = field(
        default=None,
        metadata={
            "help": (
                "Track DINO's weighted k-NN top-1 of the teacher during training on this labelled set (a save_to_disk "
                "folder with an image column and single-label integer columns, e.g. examples/demo.py's OUTPUT/faces_eval). "
                "The loss value is a poor guide to what the features learn; this is the signal to tune by. The figures are "
                "logged with the loss, kept in trainer_state.json, and the last ones go into the exported model card. "
                "Without --train_dir and --knn_dataset: held-out synthetic faces (--knn_synthetic_images, other people)."
            )
        },
    )
    knn_synthetic_images: int = field(
        default=600,
        metadata={
            "help": (
                "Held-out synthetic faces rendered for the k-NN when neither --train_dir nor --knn_dataset is given (seed "
                "--seed + 1: other identities than the training faces). 0 turns the k-NN of that run off."
            )
        },
    )
    knn_split: str = field(default="train", metadata={"help": "Split to use when --knn_dataset is a DatasetDict."})
    knn_label_columns: list[str] = field(
        default_factory=lambda: ["expression", "identity"],
        metadata={"help": ("Label columns to classify (the synthetic faces': expression and identity).")},
    )
    knn_eval_steps: int | None = field(
        default=None,
        metadata={
            "help": (
                "Run the k-NN every N optimizer steps (on the main process; the others wait at their next collective). "
                "Default: once, at the end of training."
            )
        },
    )
    knn_test_fraction: float = field(
        default=0.5,
        metadata={
            "help": ("Share of each class of the first label column used as queries; the rest is the memory bank.")
        },
    )
    knn_image_column: str = field(default="image", metadata={"help": "Image column of --knn_dataset."})
    knn_seed: int | None = field(
        default=None,
        metadata={
            "help": (
                "Seed of the memory bank / query split (default: --seed). knn_eval.py with the same --seed and --test_fraction "
                "splits the same way, so its figure for the exported backbone equals the last one logged here."
            )
        },
    )

    def __post_init__(self):
        if self.knn_eval_steps is not None and self.knn_eval_steps <= 0:
            raise ValueError(f"--knn_eval_steps must be a positive number of steps, got {self.knn_eval_steps}.")
        if self.knn_synthetic_images < 0:
            raise ValueError(f"--knn_synthetic_images must be >= 0, got {self.knn_synthetic_images}.")
        if not 0.0 < self.knn_test_fraction < 1.0:
            raise ValueError(f"--knn_test_fraction must be in (0, 1), got {self.knn_test_fraction}.")


__all__ = ["DataArguments", "KNNArguments", "ModelArguments"]
