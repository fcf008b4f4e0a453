"""ProSTrainer and ProSTrainingArguments: prototype self-distillation on transformers' Trainer.

What the stock Trainer does is kept (optimizer, lr schedule, gradient accumulation, clipping, mixed precision,
checkpoints with optimizer/scheduler/RNG state, resume, Accelerate's DDP/FSDP/DeepSpeed). What self-distillation adds:

- batched multi-crop on the device inside `compute_loss` (the data loader delivers uint8 source images);
- the teacher temperature, teacher momentum and weight decay as pure functions of the global step (`schedules.py`);
- after every optimizer step, the EMA update of the teacher from the unwrapped model, on every process;
- prototype gradients cancelled for the first epoch(s), after clipping (DINO's `freeze_last_layer`);
- no weight decay for biases, norms, prototypes, CLS token and position embeddings;
- health metrics in the logs, a collapse warning, and a hard stop on a non-finite loss, checked at each log and
  before each checkpoint so that no step makes the host wait for the device (the stock Trainer would hide it behind
  `logging_nan_inf_filter`, which is off here for that reason);
- `--torch_compile` by regions (each block apart, the loss eager), and the steady-state rate after start-up;
- at the end, the teacher backbone exported to `output_dir` as a `ProSModel` with its image processor and card.
"""

import json
import logging
import math
import os
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import TrainOutput, get_last_checkpoint, has_length

from . import schedules
from .augmentation import MultiCropAugmentation, MultiCropConfig
from .data.loading import collate_pretraining
from .data.skips import SkipReport
from .hub import backbone_card, push_folder
from .image_processing_pros import ProSImageProcessor
from .throughput import SteadyThroughputCallback
from .training_plots import plot_pretraining_curves


logger = logging.getLogger(__name__)

HEALTH_METRICS = ("matching_loss", "me_max_loss", "koleo_loss", "patch_loss", "teacher_entropy",
                  "student_mean_entropy", "active_prototypes", "teacher_temperature")
NO_DECAY_NAMES = ("prototypes", "cls_token", "position_embeddings", "mask_token")
SKIP_REPORT_NAME = "skip_report.json"  # in the export and in every checkpoint


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training stops; the last checkpoint on disk is the last good state."""


class NoImagesReadError(ValueError):
    """Not one training image could be decoded: a wrong image column or an unreadable set."""


class _RunAlreadyComplete(Exception):
    """Raised at the start of a run resumed from a checkpoint at its last step: transformers' loop would train one
    more step before it checks the step count (it checks after each step), changing a finished run's weights."""


@dataclass
class ProSTrainingArguments(TrainingArguments):
    """`TrainingArguments` with DINO's recipe as defaults, plus the self-distillation schedules and the crops."""

    # --- defaults changed from TrainingArguments ---------------------------------------------------------------- #
    learning_rate: float = field(default=5e-4, metadata={"help": (
        "Peak AdamW learning rate. DINO scales it with the total batch: 5e-4 * batch / 256. Too high a value is the "
        "most common cause of early collapse.")})
    weight_decay: float = field(default=0.04, metadata={"help": (
        "Weight decay at step 0; it grows along a cosine to --weight_decay_end (DINO). Not applied to biases, norms, "
        "prototypes, the CLS token and position embeddings.")})
    max_grad_norm: float = field(default=3.0, metadata={"help": (
        "Gradient clipping (DINO: 3.0). Self-distillation has rare large gradients early on; clipping keeps the "
        "student from jumping away from its teacher.")})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "DINO: linear warm-up then cosine decay."})
    warmup_steps: float = field(default=0.1, metadata={"help": (
        "Learning-rate warm-up; below 1, a fraction of the training steps (DINO: 10 of 100 epochs).")})
    remove_unused_columns: bool = field(default=False, metadata={"help": (
        "Must stay False: the images are consumed by the multi-crop inside compute_loss, not by the model's "
        "forward signature, and removing them would leave nothing to train on.")})
    logging_nan_inf_filter: bool = field(default=False, metadata={"help": (
        "Off: ProSTrainer stops on a non-finite loss (checked at each log and checkpoint) rather than hiding it from "
        "the logs, and the stock filter makes the host wait for the device after every step.")})
    dataloader_persistent_workers: bool | None = field(default=None, metadata={"help": (
        "Keep the DataLoader workers between epochs; by default on whenever there are workers (short synthetic or "
        "few-shot epochs would otherwise restart every worker every few dozen steps).")})
    torch_compile_regions: bool = field(default=True, metadata={"help": (
        "With --torch_compile: compile each transformer block and each other submodule apart (accelerate's regional "
        "compilation) rather than the whole model. One compiled block serves every layer of the student and the "
        "teacher and compiles in seconds, and the loss stays eager: compiled whole, it would recompile for every new "
        "teacher temperature of the warm-up.")})
    # --- self-distillation ------------------------------------------------------------------------------------ #
    weight_decay_end: float = field(default=0.4, metadata={"help": (
        "Weight decay at the end of training (DINO: 0.4). Strong late regularisation smooths the final features.")})
    teacher_momentum: float = field(default=0.996, metadata={"help": (
        "EMA momentum of the teacher at step 0, raised along a cosine to --teacher_momentum_end. Use 0.9995 or higher "
        "for small batches (< 256): with few images per step a fast teacher follows the student's noise.")})
    teacher_momentum_end: float = field(default=1.0, metadata={"help": "Final EMA momentum (DINO: 1.0)."})
    warmup_teacher_temperature_epochs: float = field(default=30.0, metadata={"help": (
        "Epochs over which the teacher temperature rises from config.warmup_teacher_temperature to "
        "config.teacher_temperature (DINO: 30 of 100). Capped at the length of training. A sharp teacher early on "
        "keeps the random-init features from collapsing to uniform targets.")})
    freeze_prototypes_epochs: float = field(default=1.0, metadata={"help": (
        "Epochs during which prototype gradients are cancelled (DINO's freeze_last_layer: 1). Moving prototypes "
        "before the backbone has structure chases noise; raise it if the loss collapses early.")})
    warmup_teacher_temperature_steps: int | None = field(default=None, metadata={"help": (
        "The teacher-temperature warm-up in optimizer steps instead of epochs (overrides "
        "--warmup_teacher_temperature_epochs). A streamed dataset has no epoch length: give the schedules in steps.")})
    freeze_prototypes_steps: int | None = field(default=None, metadata={"help": (
        "The prototype freeze in optimizer steps instead of epochs (overrides --freeze_prototypes_epochs).")})
    num_global_crops: int = field(default=2, metadata={"help": "Global crops per image (teacher and student)."})
    num_local_crops: int = field(default=6, metadata={"help": (
        "Local crops per image (student only; DINO: 6-10). Each costs about (local/global size)^2 of a global "
        "view; 0 turns multi-crop off.")})
    global_crop_size: int = field(default=224, metadata={"help": "Side of a global crop (the backbone resolution)."})
    local_crop_size: int = field(default=96, metadata={"help": "Side of a local crop (an eye or a mouth on a face)."})
    global_crop_scale: list[float] = field(default_factory=lambda: [0.4, 1.0], metadata={"help": (
        "Area range of global crops (DINO: 0.4 1.0). On face-dominant images 0.4 keeps most of the face.")})
    local_crop_scale: list[float] = field(default_factory=lambda: [0.05, 0.4], metadata={"help": (
        "Area range of local crops (DINO: 0.05 0.4). Keep its maximum at or below the global minimum.")})
    augmentation_overrides: str | None = field(default=None, metadata={"help": (
        "JSON object of further MultiCropConfig fields (colour jitter, blur, solarize, interpolation, ...), e.g. "
        "'{\"hue\": 0.05, \"interpolation\": \"bilinear\"}'.")})
    collapse_tolerance: float = field(default=0.01, metadata={"help": (
        "A logged matching loss within this relative distance of ln K counts as collapsed (uniform targets).")})
    collapse_patience: int = field(default=3, metadata={"help": (
        "Warn after this many consecutive collapsed logs. The loss value alone is a poor guide otherwise: "
        "monitor k-NN accuracy (examples/knn_eval.py, KNNCallback).")})

    def __post_init__(self):
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
        for name in ("weight_decay", "weight_decay_end", "warmup_teacher_temperature_epochs",
                     "freeze_prototypes_epochs"):
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
            raise ValueError(f"--augmentation_overrides is not valid JSON ({error}): "
                             f"{self.augmentation_overrides!r}") from None
        if not isinstance(overrides, dict):
            raise ValueError(f"--augmentation_overrides must be a JSON object, got {self.augmentation_overrides!r}")
        fields = {
            "n_global_crops": self.num_global_crops, "n_local_crops": self.num_local_crops,
            "global_crop_size": self.global_crop_size, "local_crop_size": self.local_crop_size,
            "global_crop_scale": tuple(self.global_crop_scale), "local_crop_scale": tuple(self.local_crop_scale),
        }
        # DINO's per-view blur/solarize probabilities are for two global views: extended to any number of them
        fields.update(MultiCropConfig.dino_global_probabilities(self.num_global_crops))
        try:
            return MultiCropConfig.from_dict({**fields, **overrides})
        except (TypeError, ValueError) as error:
            raise ValueError(f"crop settings (the crop flags and --augmentation_overrides): {error}") from None


class _SelfDistillationCallback(TrainerCallback):
    """The per-step mechanics that must sit between clipping, the optimizer step and the next step."""

    def __init__(self, trainer: "ProSTrainer"):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        """The schedule lengths in steps, once the Trainer knows the length of the run."""
        trainer = self.trainer
        trainer.steps_this_run = 0
        if 0 < state.max_steps <= state.global_step:
            raise _RunAlreadyComplete()
        trainer.warmup_temperature_steps = trainer._schedule_steps(args.warmup_teacher_temperature_steps,
                                                                   args.warmup_teacher_temperature_epochs)
        trainer.freeze_prototype_steps = trainer._schedule_steps(args.freeze_prototypes_steps,
                                                                 args.freeze_prototypes_epochs)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        trainer = self.trainer
        step = state.global_step
        model = trainer.unwrapped_model
        if schedules.prototypes_frozen(step, trainer.freeze_prototype_steps) and model.prototypes.grad is not None:
            model.prototypes.grad.zero_()
        decay = schedules.weight_decay(step, state.max_steps, args.weight_decay, args.weight_decay_end)
        for group in trainer.decay_groups():
            group["weight_decay"] = decay

    def on_optimizer_step(self, args, state, control, **kwargs):
        trainer = self.trainer
        if getattr(trainer.accelerator, "optimizer_step_was_skipped", False):
            return  # fp16 overflow: the student did not move, neither does the teacher
        momentum = schedules.teacher_momentum(state.global_step, state.max_steps, args.teacher_momentum,
                                              args.teacher_momentum_end)
        trainer.unwrapped_model.update_teacher(momentum)
        trainer.steps_this_run += 1
        trainer.last_teacher_momentum = momentum


class ProSTrainer(Trainer):
    """Trainer for `ProSForPreTraining` on batches of uint8 source images (`{"pixel_values": (B, 3, S, S)}`)."""

    def __init__(self, model=None, args: ProSTrainingArguments = None, augmentation: MultiCropAugmentation = None,
                 image_processor: ProSImageProcessor | None = None, dataset_name: str = "unspecified", **kwargs):
        if args is None:
            args = ProSTrainingArguments(output_dir="pros-pretraining")
        if not isinstance(args, ProSTrainingArguments):
            raise TypeError("ProSTrainer needs ProSTrainingArguments (it reads the self-distillation schedules).")
        if args.remove_unused_columns:
            raise ValueError("ProSTrainingArguments.remove_unused_columns must be False: it would drop the images.")
        # The Hub push is done by export_backbone (the teacher as a ProSModel), not by the stock checkpoint pushes.
        self.push_backbone_to_hub = args.push_to_hub
        args.push_to_hub = False
        kwargs.setdefault("data_collator", collate_pretraining)
        if args.dataloader_pin_memory and not torch.cuda.is_available():
            args.dataloader_pin_memory = False  # nothing to pin for; torch would warn on every epoch
        super().__init__(model=model, args=args, **kwargs)
        if args.torch_compile:  # read when the Trainer prepares the model, at the start of train()
            plugin = self.accelerator.state.dynamo_plugin
            if hasattr(plugin, "use_regional_compilation"):
                plugin.use_regional_compilation = args.torch_compile_regions
            elif args.torch_compile_regions:
                logger.warning("This accelerate has no regional compilation (1.7 and later do): --torch_compile "
                               "compiles the whole model.")
        self.model_accepts_loss_kwargs = False  # the loss is a per-batch mean: let the Trainer scale it for GA
        self.loss_is_scaled_for_ga = False
        self.augmentation = augmentation or MultiCropAugmentation(args.multicrop_config())
        self._check_crops_fit_the_model()
        self._check_schedules_have_a_length()
        self.image_processor = image_processor
        self.dataset_name = dataset_name
        self.skip_report = SkipReport()
        self.freeze_prototype_steps = 0
        self.warmup_temperature_steps = 0
        self.last_teacher_momentum = None
        self._metric_sums: dict[str, torch.Tensor] = {}
        self._metric_counts: dict[str, int] = {}
        self.last_metrics: dict[str, torch.Tensor] = {}
        self._decay_groups = None
        self._metric_count = 0
        self._unchecked_losses: list[tuple[int, torch.Tensor]] = []  # (optimizer step, loss on the device)
        self._collapsed_logs = 0
        self._flops_per_image = None  # set on the first step, from the model and the crops
        self.steps_this_run = 0  # optimizer steps taken by this call of train() (0: resumed at its last step)
        self.skip_summary: dict | None = None  # the skip report of every process, after train()
        self.add_callback(_SelfDistillationCallback(self))
        self.throughput = SteadyThroughputCallback()
        # first in line, so that its clock reads before other callbacks' work at a step's end (a k-NN evaluation)
        self.callback_handler.callbacks.insert(0, self.throughput)

    # --------------------------------------------------------------------------------------------------------- #
    @property
    def unwrapped_model(self):
        return self.accelerator.unwrap_model(self.model)

    def _epoch_steps(self, epochs: float) -> int:
        """Optimizer steps in `epochs` epochs of this run (the schedules are defined per epoch, like DINO's)."""
        num_epochs = max(float(self.state.num_train_epochs or 1), 1e-9)
        steps_per_epoch = self.state.max_steps / num_epochs
        return min(int(round(epochs * steps_per_epoch)), self.state.max_steps)

    def _schedule_steps(self, steps: int | None, epochs: float) -> int:
        """A schedule's length in optimizer steps: `steps` when given, else `epochs` converted; at most the run."""
        return min(steps, self.state.max_steps) if steps is not None else self._epoch_steps(epochs)

    def _check_crops_fit_the_model(self) -> None:
        """Crop sides must be whole numbers of patches: caught here, naming the flag, not at the first step."""
        model = self.model.module if hasattr(self.model, "module") else self.model
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "patch_size"):
            return
        patch = config.patch_size if isinstance(config.patch_size, int) else max(config.patch_size)
        crops = self.augmentation.config
        sizes = [("--global_crop_size", crops.global_crop_size)]
        if crops.n_local_crops:
            sizes.append(("--local_crop_size", crops.local_crop_size))
        for flag, size in sizes:
            if size % patch:
                raise ValueError(f"{flag} {size} is not a multiple of the model's patch size {patch}: the backbone "
                                 f"cuts crops into {patch}-px patches; use e.g. {max(patch, size // patch * patch)}.")

    def _check_schedules_have_a_length(self) -> None:
        """A streamed dataset has no epoch length, so epoch-based schedules cannot be placed: ask for steps rather
        than let them collapse to zero steps (no temperature warm-up, no prototype freeze) without a word."""
        if self.train_dataset is None or has_length(self.train_dataset):
            return
        args = self.args
        missing = [f"--{name}_steps" for name, epochs, steps in (
            ("warmup_teacher_temperature", args.warmup_teacher_temperature_epochs, args.warmup_teacher_temperature_steps),
            ("freeze_prototypes", args.freeze_prototypes_epochs, args.freeze_prototypes_steps),
        ) if epochs > 0 and steps is None]
        if missing:
            total = args.max_steps if args.max_steps > 0 else 0
            raise ValueError(
                f"The training data is streamed, so an epoch has no length in steps: give {' and '.join(missing)} "
                f"(DINO's proportions of a {total}-step run: --warmup_teacher_temperature_steps {int(0.3 * total)} "
                f"--freeze_prototypes_steps {int(0.01 * total)}), or set the *_epochs flags to 0."
            )

    def get_decay_parameter_names(self, model) -> list[str]:
        """DINO's rule (no decay for 1-D tensors: biases, norms) plus prototypes, CLS token and position embeddings."""
        return [name for name, parameter in model.named_parameters()
                if parameter.ndim > 1 and not any(key in name for key in NO_DECAY_NAMES)]

    def decay_groups(self) -> list[dict]:
        """The optimizer's parameter groups that hold weight-decayed parameters (the Trainer builds them from
        `get_decay_parameter_names`); found by parameter identity, so they are right whatever their current decay."""
        if self.optimizer is None:
            return []
        if self._decay_groups is None or self._decay_groups[0] is not self.optimizer:  # found once per optimizer
            model = self.unwrapped_model
            names = set(self.get_decay_parameter_names(model))
            decayed = {id(p) for name, p in model.named_parameters() if name in names}
            groups = [g for g in self.optimizer.param_groups if g["params"] and id(g["params"][0]) in decayed]
            self._decay_groups = (self.optimizer, groups)
        return self._decay_groups[1]

    def current_teacher_temperature(self) -> float:
        config = self.unwrapped_model.config
        return schedules.teacher_temperature(self.state.global_step, self.warmup_temperature_steps,
                                             config.warmup_teacher_temperature, config.teacher_temperature)

    def floating_point_ops(self, inputs) -> int:
        """FLOPs of this micro-batch's forward and backward passes, teacher included (the Trainer sums them into
        `state.total_flos`), from the crops the augmentation makes. The default would count the uint8 source pixels
        as tokens and walk every parameter on every step."""
        pixel_values = inputs.get("pixel_values") if hasattr(inputs, "get") else None
        if pixel_values is None:
            return 0
        if self._flops_per_image is None:
            crops = self.augmentation.config
            self._flops_per_image = self.unwrapped_model.training_flops_per_image(
                crops.global_crop_size, crops.n_global_crops, crops.local_crop_size, crops.n_local_crops,
                compiled=bool(self.args.torch_compile))
        return int(pixel_values.shape[0] * self._flops_per_image)

    # --------------------------------------------------------------------------------------------------------- #
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "pixel_values" not in inputs:
            raise ValueError(f"ProSTrainer expects batches with 'pixel_values' (uint8 source images), got "
                             f"{sorted(inputs)}; use pros_hf.data.load_pretraining_images and collate_pretraining.")
        if model.training:
            self.skip_report.update(inputs)
        pixel_values = inputs["pixel_values"]
        if pixel_values.shape[0] == 0 and model.training:
            self._check_some_images_decode()
        if pixel_values.shape[0] == 0:  # every image of this batch was unreadable: a zero step, kept in the graph
            loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return (loss, None) if return_outputs else loss
        global_crops, local_crops = self.augmentation(pixel_values)
        outputs = model(
            global_crops=global_crops,
            local_crops=local_crops if local_crops.shape[1] > 0 else None,
            teacher_temperature=self.current_teacher_temperature(),
        )
        loss = outputs.loss
        # in training, checked at the next log or checkpoint: a host sync here, between the forward and the backward
        # pass, would leave the GPU idle while the backward kernels are launched, on every step
        self._unchecked_losses.append((self.state.global_step, loss.detach()))
        if model.training:
            self._accumulate_metrics(outputs)
        else:  # evaluation: no backward pass to keep fed
            self.check_losses_finite()
        return (loss, outputs) if return_outputs else loss

    def _check_some_images_decode(self, at_least: int = 16) -> None:
        """Stop when not one image has decoded after `at_least` attempts (or a whole batch, if larger): a wrong
        image column or an unreadable set would otherwise train on empty batches to the end, and succeed."""
        report = self.skip_report
        if report.delivered == 0 and report.skipped >= max(at_least, self.args.per_device_train_batch_size):
            raise NoImagesReadError(f"No training image could be read: {report.format()}. Check --train_dir / "
                             "--image_column: the column must hold images, image paths or image bytes.")

    def check_losses_finite(self) -> None:
        """Raise `NonFiniteLossError`, naming the first step whose loss was NaN or infinite, among the losses since
        the last check. Runs before every log and every checkpoint, and at the end of training (one host sync each),
        so a checkpoint is never written after a bad step: the last one on disk is the last good state."""
        if not self._unchecked_losses:
            return
        steps, losses = zip(*self._unchecked_losses)
        self._unchecked_losses = []
        values = torch.stack([loss.float().reshape(()) for loss in losses]).cpu()
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            first = int(bad[0])
            raise NonFiniteLossError(
                f"The ProS loss is {values[first].item()} at optimizer step {steps[first]} (found at step "
                f"{self.state.global_step}). Training stops here; the last checkpoint in {self.args.output_dir} is "
                "the last good state. Usual causes: too high a learning rate, fp16 overflow (prefer bf16), or too "
                "low a teacher temperature."
            )

    def _save_checkpoint(self, model, trial, *args, **kwargs):
        self.check_losses_finite()
        # the skip counts of every process go with the checkpoint, so that a resumed run reports the whole run's
        summary = self.gathered_skip_summary()
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, SKIP_REPORT_NAME), "w") as handle:
                json.dump(summary, handle, indent=2)
        return super()._save_checkpoint(model, trial, *args, **kwargs)

    def _restore_skip_report(self, checkpoint: str | bool | None) -> None:
        """The skip counts saved with the checkpoint a run resumes from, onto the main process (they hold every
        process's counts of the run before it)."""
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        path = os.path.join(checkpoint, SKIP_REPORT_NAME) if isinstance(checkpoint, (str, os.PathLike)) else None
        if self.is_world_process_zero() and path and os.path.isfile(path):
            with open(path) as handle:
                self.skip_report.merge(SkipReport.from_summary(json.load(handle)))

    def gathered_skip_summary(self) -> dict:
        """This run's skip report summed over the processes (a collective: every process must call it)."""
        summaries = [self.skip_report.summary()]
        if self.args.world_size > 1:
            from accelerate.utils import gather_object

            summaries = gather_object(summaries)
        report = SkipReport.from_summary(summaries[0])
        for other in summaries[1:]:
            report.merge(SkipReport.from_summary(other))
        return report.summary()

    def _accumulate_metrics(self, outputs) -> None:
        """Sum the health metrics on the device (no host sync per step); `log` turns them into averages, each over
        the steps that had it (KoLeo leaves out a batch of one image)."""
        self.last_metrics = {}
        for name in HEALTH_METRICS:
            value = getattr(outputs, name, None)
            if value is not None:
                value = value.detach().float()
                self.last_metrics[name] = value
                self._metric_sums[name] = self._metric_sums.get(name, 0.0) + value
                self._metric_counts[name] = self._metric_counts.get(name, 0) + 1
        self._metric_count += 1

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        self.check_losses_finite()
        if "loss" in logs and self._metric_count:
            averages = {name: (total / self._metric_counts[name]).item() for name, total in self._metric_sums.items()}
            logs.update(averages)
            if self.last_teacher_momentum is not None:
                logs["teacher_momentum"] = self.last_teacher_momentum
            groups = self.decay_groups()
            if groups:
                logs["weight_decay"] = groups[0]["weight_decay"]
            self._metric_sums, self._metric_counts, self._metric_count = {}, {}, 0
            self._check_collapse(averages.get("matching_loss"))
        super().log(logs, *args, **kwargs)

    def _check_collapse(self, matching_loss: float | None) -> None:
        if matching_loss is None:
            return
        log_k = math.log(self.unwrapped_model.config.num_prototypes)
        if abs(matching_loss - log_k) <= self.args.collapse_tolerance * log_k:
            self._collapsed_logs += 1
        else:
            self._collapsed_logs = 0
        if self._collapsed_logs == self.args.collapse_patience:
            logger.warning(
                "The matching loss has stayed at ln K = %.3f for %d logs (step %d): the teacher targets look uniform "
                "(collapse). Try a lower teacher temperature, a higher teacher momentum, fewer prototypes for small "
                "data, more --freeze_prototypes_epochs, or a lower learning rate.",
                log_k, self._collapsed_logs, self.state.global_step,
            )

    # --------------------------------------------------------------------------------------------------------- #
    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """Train, report skipped images and the steady-state rate, then export the teacher backbone to `output_dir`.
        A run resumed from the checkpoint of its last step trains no further and exports that checkpoint's teacher."""
        self._restore_skip_report(resume_from_checkpoint)
        try:
            result = super().train(resume_from_checkpoint, *args, **kwargs)
        except _RunAlreadyComplete:
            logger.info("The checkpoint is at the run's last step (%d): nothing left to train", self.state.global_step)
            # the end of a run without its steps: callbacks close their progress bars, a k-NN callback measures
            # the checkpoint's teacher for the card
            self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)
            result = TrainOutput(self.state.global_step, 0.0, {})
        self.check_losses_finite()
        if self.throughput.samples_per_second is not None:
            # the rate after the start-up steps (see throughput.py): what a long run gets, unlike the Trainer's
            steady = {"train_steady_samples_per_second": round(self.throughput.samples_per_second, 3)}
            result.metrics.update(steady)
            self.log(steady)
        self.skip_summary = self.gathered_skip_summary()
        if self.skip_summary["skipped"]:
            logger.warning("Images skipped during training: %s",
                           SkipReport.from_summary(self.skip_summary).format())
        if self.skip_summary["total"] and not self.skip_summary["delivered"]:
            raise NoImagesReadError(
                f"No training image could be read: {SkipReport.from_summary(self.skip_summary).format()}.")
        self.export_backbone(self.args.output_dir, evaluation=self.last_knn_results())
        return result

    def last_knn_results(self) -> dict[str, float] | None:
        """The last figures of a `KNNCallback` among the callbacks (main process), for the exported model card."""
        from .knn import KNNCallback

        for callback in self.callback_handler.callbacks:
            if isinstance(callback, KNNCallback) and callback.latest:
                return dict(callback.latest)
        return None

    def export_backbone(self, output_dir: str, evaluation: dict[str, float] | None = None) -> str:
        """Write the teacher as a `ProSModel` folder (weights, code for trust_remote_code, image processor, card)."""
        self.accelerator.wait_for_everyone()
        state = None
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            # every process takes part: the full weights are gathered from the shards onto the main process
            state = self.accelerator.get_state_dict(self.model_wrapped)
        if self.is_world_process_zero():
            model = self.unwrapped_model
            backbone = model.export_teacher(state)
            os.makedirs(output_dir, exist_ok=True)
            backbone.save_pretrained(output_dir)
            processor = self.image_processor or ProSImageProcessor.from_model_config(model.config)
            processor.save_pretrained(output_dir)
            repo_id = self.args.hub_model_id if self.push_backbone_to_hub else None
            summary = (
                f"{self.state.global_step} optimizer steps, {self.state.num_train_epochs} epoch(s), batch "
                f"{self.args.per_device_train_batch_size} per device x {self.args.world_size} process(es) x "
                f"{self.args.gradient_accumulation_steps} accumulation; lr {self.args.learning_rate}, "
                f"{self.args.num_global_crops} x {self.args.global_crop_size} px + {self.args.num_local_crops} x "
                f"{self.args.local_crop_size} px crops."
            )
            try:
                plot_pretraining_curves(self.state.log_history, os.path.join(output_dir, "training_curves.png"),
                                        num_prototypes=model.config.num_prototypes)
                summary += ("\n\n![Losses against ln K, entropies, prototypes in use, schedules and k-NN over the "
                            "optimizer steps](training_curves.png)")
            except ValueError as error:  # a run too short to have logged a step
                logger.info("No training_curves.png: %s", error)
            backbone_card(backbone, repo_id=repo_id, dataset=self.dataset_name, training_summary=summary,
                          evaluation=evaluation, pretraining_config=model.config).save(
                os.path.join(output_dir, "README.md"))
            with open(os.path.join(output_dir, SKIP_REPORT_NAME), "w") as handle:
                json.dump(self.skip_summary or self.skip_report.summary(), handle, indent=2)
            if self.push_backbone_to_hub:
                repo = self.args.hub_model_id or os.path.basename(os.path.abspath(output_dir))
                url = push_folder(output_dir, repo, token=self.args.hub_token,
                                  private=getattr(self.args, "hub_private_repo", None))
                logger.info("Pushed the backbone to %s", url)
        self.accelerator.wait_for_everyone()
        return output_dir


__all__ = ["NoImagesReadError", "NonFiniteLossError", "ProSTrainer", "ProSTrainingArguments"]
