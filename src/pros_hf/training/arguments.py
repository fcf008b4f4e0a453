"""`ProSTrainingArguments`: `TrainingArguments` with DINO's recipe as defaults, the self-distillation schedules and the
crops, each explained in its help text; and the checks that hold them against a model and a dataset before a step runs.
"""

import copy
import json
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import has_length

from ..augmentation import MultiCropConfig
from ..validation import check_training_numbers


@dataclass
class ProSTrainingArguments(TrainingArguments):
    """`TrainingArguments` with DINO's recipe as defaults, plus the self-distillation schedules and the crops."""

    # --- defaults changed from TrainingArguments ---------------------------------------------------------------- #
    learning_rate: float = field(
        default=5e-4,
        metadata={
            "help": (
                "Peak AdamW learning rate. DINO scales it with the total batch: 5e-4 * batch / 256. Too high a value is the "
                "most common cause of early collapse."
            )
        },
    )
    weight_decay: float = field(
        default=0.04,
        metadata={
            "help": (
                "Weight decay at step 0; it grows along a cosine to --weight_decay_end (DINO). Not applied to biases, norms, "
                "prototypes, the CLS token and position embeddings."
            )
        },
    )
    max_grad_norm: float = field(
        default=3.0,
        metadata={
            "help": (
                "Gradient clipping (DINO: 3.0). Self-distillation has rare large gradients early on; clipping keeps the "
                "student from jumping away from its teacher."
            )
        },
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "DINO: linear warm-up then cosine decay."})
    warmup_steps: float = field(
        default=0.1,
        metadata={
            "help": ("Learning-rate warm-up; below 1, a fraction of the training steps (DINO: 10 of 100 epochs).")
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={
            "help": (
                "Must stay False: the images are consumed by the multi-crop inside compute_loss, not by the model's "
                "forward signature, and removing them would leave nothing to train on."
            )
        },
    )
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={
            "help": (
                "Off: ProSTrainer stops on a non-finite loss (checked at each log and checkpoint) rather than hiding it from "
                "the logs, and the stock filter makes the host wait for the device after every step."
            )
        },
    )
    dataloader_persistent_workers: bool | None = field(
        default=None,
        metadata={
            "help": (
                "Keep the DataLoader workers between epochs; by default on whenever there are workers (short synthetic or "
                "few-shot epochs would otherwise restart every worker every few dozen steps)."
            )
        },
    )
    torch_compile_regions: bool = field(
        default=True,
        metadata={
            "help": (
                "With --torch_compile: compile each transformer block and each other submodule apart (accelerate's regional "
                "compilation) rather than the whole model. One compiled block serves every layer of the student and the "
                "teacher and compiles in seconds, and the loss stays eager: compiled whole, it would recompile for every new "
                "teacher temperature of the warm-up."
            )
        },
    )
    # --- self-distillation ------------------------------------------------------------------------------------ #
    weight_decay_end: float = field(
        default=0.4,
        metadata={
            "help": (
                "Weight decay at the end of training (DINO: 0.4). Strong late regularisation smooths the final features."
            )
        },
    )
    teacher_momentum: float = field(
        default=0.996,
        metadata={
            "help": (
                "EMA momentum of the teacher at step 0, raised along a cosine to --teacher_momentum_end. Use 0.9995 or higher "
                "for small batches (< 256): with few images per step a fast teacher follows the student's noise."
            )
        },
    )
    teacher_momentum_end: float = field(default=1.0, metadata={"help": "Final EMA momentum (DINO: 1.0)."})
    warmup_teacher_temperature_epochs: float = field(
        default=30.0,
        metadata={
            "help": (
                "Epochs over which the teacher temperature rises from config.warmup_teacher_temperature to "
                "config.teacher_temperature (DINO: 30 of 100). Capped at the length of training. A sharp teacher early on "
                "keeps the random-init features from collapsing to uniform targets."
            )
        },
    )
    freeze_prototypes_epochs: float = field(
        default=1.0,
        metadata={
            "help": (
                "Epochs during which prototype gradients are cancelled (DINO's freeze_last_layer: 1). Moving prototypes "
                "before the backbone has structure chases noise; raise it if the loss collapses early."
            )
        },
    )
    warmup_teacher_temperature_steps: int | None = field(
        default=None,
        metadata={
            "help": (
                "The teacher-temperature warm-up in optimizer steps instead of epochs (overrides "
                "--warmup_teacher_temperature_epochs). A streamed dataset has no epoch length: give the schedules in steps."
            )
        },
    )
    freeze_prototypes_steps: int | None = field(
        default=None,
        metadata={
            "help": (
                "The prototype freeze in optimizer steps instead of epochs (overrides --freeze_prototypes_epochs)."
            )
        },
    )
    num_global_crops: int = field(default=2, metadata={"help": "Global crops per image (teacher and student)."})
    num_local_crops: int = field(
        default=6,
        metadata={
            "help": (
                "Local crops per image (student only; DINO: 6-10). Each costs about (local/global size)^2 of a global "
                "view; 0 turns multi-crop off."
            )
        },
    )
    global_crop_size: int = field(default=224, metadata={"help": "Side of a global crop (the backbone resolution)."})
    local_crop_size: int = field(default=96, metadata={"help": "Side of a local crop (an eye or a mouth on a face)."})
    global_crop_scale: list[float] = field(
        default_factory=lambda: [0.4, 1.0],
        metadata={
            "help": ("Area range of global crops (DINO: 0.4 1.0). On face-dominant images 0.4 keeps most of the face.")
        },
    )
    local_crop_scale: list[float] = field(
        default_factory=lambda: [0.05, 0.4],
        metadata={
            "help": ("Area range of local crops (DINO: 0.05 0.4). Keep its maximum at or below the global minimum.")
        },
    )
    augmentation_overrides: str | None = field(
        default=None,
        metadata={
            "help": (
                "JSON object of further MultiCropConfig fields (colour jitter, blur, solarize, interpolation, ...), e.g. "
                '\'{"hue": 0.05, "interpolation": "bilinear"}\'.'
            )
        },
    )
    collapse_tolerance: float = field(
        default=0.01,
        metadata={
            "help": (
                "A logged matching loss within this relative distance of ln K counts as collapsed (uniform targets)."
            )
        },
    )
    collapse_patience: int = field(
        default=3,
        metadata={
            "help": (
                "Warn after this many consecutive collapsed logs. The loss value alone is a poor guide otherwise: "
                "monitor k-NN accuracy (examples/knn_eval.py, KNNCallback)."
            )
        },
    )

    def __post_init__(self):
        check_training_numbers(self)  # every number finite, the optimizer's and the loop's in range
        self._check_self_distillation_fields()
        self.multicrop_config()  # the crops are checked now, not at the first training step
        if self.dataloader_persistent_workers is None:
            self.dataloader_persistent_workers = self.dataloader_num_workers > 0
        if self.accelerator_config is None and self.dataloader_pin_memory and torch.cuda.is_available():
            # batches come from pinned memory: their copy to the GPU need not make the host wait for it
            self.accelerator_config = {"non_blocking": True}
        super().__post_init__()

    def _check_self_distillation_fields(self) -> None:
        """Schedules and crop counts that would otherwise fail mid-run (a momentum above 1 at step 8) or silently
        misbehave (a negative weight decay)."""
        for name in ("teacher_momentum", "teacher_momentum_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name} must be in [0, 1] (an EMA momentum), got {getattr(self, name)}.")
        for name in (
            "weight_decay",
            "weight_decay_end",
            "warmup_teacher_temperature_epochs",
            "freeze_prototypes_epochs",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}.")
        for name in ("warmup_teacher_temperature_steps", "freeze_prototypes_steps", "num_local_crops"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name} must be >= 0, got {value}.")
        if self.num_global_crops < 1:
            raise ValueError(f"--num_global_crops must be >= 1, got {self.num_global_crops}.")
        for name in ("global_crop_size", "local_crop_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be a positive number of pixels, got {getattr(self, name)}.")

    def multicrop_config(self) -> MultiCropConfig:
        try:
            overrides = json.loads(self.augmentation_overrides) if self.augmentation_overrides else {}
        except json.JSONDecodeError as error:
            raise ValueError(
                f"--augmentation_overrides is not valid JSON ({error}): {self.augmentation_overrides!r}"
            ) from None
        if not isinstance(overrides, dict):
            raise ValueError(f"--augmentation_overrides must be a JSON object, got {self.augmentation_overrides!r}")
        fields = {
            "n_global_crops": self.num_global_crops,
            "n_local_crops": self.num_local_crops,
            "global_crop_size": self.global_crop_size,
            "local_crop_size": self.local_crop_size,
            "global_crop_scale": tuple(self.global_crop_scale),
            "local_crop_scale": tuple(self.local_crop_scale),
        }
        # DINO's per-view blur/solarize probabilities are for two global views: extended to any number of them
        fields.update(MultiCropConfig.dino_global_probabilities(self.num_global_crops))
        try:
            return MultiCropConfig.from_dict({**fields, **overrides})
        except (TypeError, ValueError) as error:
            raise ValueError(f"crop settings (the crop flags and --augmentation_overrides): {error}") from None


def arguments_for_trainer(args: ProSTrainingArguments) -> ProSTrainingArguments:
    """The copy of `args` a `ProSTrainer` runs with; the caller's object is left as it was given.

    On the copy, the stock Hub push is off (the trainer pushes the exported teacher backbone instead of checkpoints,
    from the `push_to_hub` of `args`), and so is memory pinning without a GPU (nothing to pin for; torch would warn on
    every epoch)."""
    if not isinstance(args, ProSTrainingArguments):
        raise TypeError("ProSTrainer needs ProSTrainingArguments (it reads the self-distillation schedules).")
    if args.remove_unused_columns:
        raise ValueError("ProSTrainingArguments.remove_unused_columns must be False: it would drop the images.")
    args = copy.copy(args)
    args.push_to_hub = False
    if args.dataloader_pin_memory and not torch.cuda.is_available():
        args.dataloader_pin_memory = False
    return args


def check_crops_fit_the_model(model, crops: MultiCropConfig) -> None:
    """Crop sides must be whole numbers of patches: caught when the trainer is built, naming the flag, not at the
    first step from inside the patch embedding."""
    model = model.module if hasattr(model, "module") else model
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "patch_size"):
        return
    patch = config.patch_size if isinstance(config.patch_size, int) else max(config.patch_size)
    sizes = [("--global_crop_size", crops.global_crop_size)]
    if crops.n_local_crops:
        sizes.append(("--local_crop_size", crops.local_crop_size))
    for flag, size in sizes:
        if size % patch:
            raise ValueError(
                f"{flag} {size} is not a multiple of the model's patch size {patch}: the backbone "
                f"cuts crops into {patch}-px patches; use e.g. {max(patch, size // patch * patch)}."
            )


def check_schedules_have_a_length(args: ProSTrainingArguments, train_dataset) -> None:
    """A streamed dataset has no epoch length, so epoch-based schedules cannot be placed: ask for steps rather than
    let them come out as zero steps (no temperature warm-up, no prototype freeze) without a word."""
    if train_dataset is None or has_length(train_dataset):
        return
    missing = [
        f"--{name}_steps"
        for name, epochs, steps in (
            (
                "warmup_teacher_temperature",
                args.warmup_teacher_temperature_epochs,
                args.warmup_teacher_temperature_steps,
            ),
            ("freeze_prototypes", args.freeze_prototypes_epochs, args.freeze_prototypes_steps),
        )
        if epochs > 0 and steps is None
    ]
    if missing:
        total = args.max_steps if args.max_steps > 0 else 0
        raise ValueError(
            f"The training data is streamed, so an epoch has no length in steps: give {' and '.join(missing)} "
            f"(DINO's proportions of a {total}-step run: --warmup_teacher_temperature_steps {int(0.3 * total)} "
            f"--freeze_prototypes_steps {int(0.01 * total)}), or set the *_epochs flags to 0."
        )


__all__ = [
    "ProSTrainingArguments",
    "arguments_for_trainer",
    "check_crops_fit_the_model",
    "check_schedules_have_a_length",
]
