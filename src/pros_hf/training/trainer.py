"""ProSTrainer: prototype self-distillation on transformers' Trainer, composed of callbacks.

What the stock Trainer does is kept (optimizer, lr schedule, gradient accumulation, clipping, mixed precision,
checkpoints with optimizer/scheduler/RNG state, resume, Accelerate's DDP/FSDP/DeepSpeed). The trainer itself adds the
batched multi-crop on the device inside `compute_loss`, the teacher temperature, the parameter groups without decay,
the FLOP count of the crops, the health metrics in the logs and, at the end, the export of the teacher backbone
(`export.py`). The rest is done by the callbacks it installs, each in a public hook:

- `TeacherEMACallback` (`on_optimizer_step`): the EMA update of the teacher, skipped with a skipped optimizer step;
- `PrototypeFreezeCallback`, `WeightDecayScheduleCallback` (`on_pre_optimizer_step`, after clipping);
- `FiniteLossCallback` (`on_step_end` / `on_epoch_end` when a checkpoint is due): the losses checked before it;
- `SkipReportCallback` (`on_save`, `on_train_end`): the skip counts in each checkpoint, summed at the end;
- `CollapseWarningCallback` (`on_log`): the matching loss at ln K for several logs;
- `FinishedRunCallback` (`on_train_begin`): a run resumed at its last step trains nothing;
- `SteadyThroughputCallback` (first in line): the rate after start-up.
"""

import logging

from transformers import Trainer
from transformers.trainer_utils import TrainOutput, has_length

from .. import schedules
from ..augmentation import MultiCropAugmentation
from ..data.loading import collate_pretraining
from ..data.skips import SkipReport
from ..throughput import SteadyThroughputCallback
from .arguments import (
    ProSTrainingArguments,
    arguments_for_trainer,
    check_crops_fit_the_model,
    check_schedules_have_a_length,
)
from .callbacks import (
    PrototypeFreezeCallback,
    TeacherEMACallback,
    WeightDecayScheduleCallback,
    decay_parameter_names,
    schedule_steps,
    unwrap,
)
from .export import latest_knn_results, training_summary, write_backbone_folder
from .health import CollapseWarningCallback, FiniteLossCallback, HealthMetrics
from .resume import FinishedRunCallback, RunAlreadyComplete
from .skips import SkipReportCallback, check_some_images_decode

logger = logging.getLogger(__name__)


def use_regional_compilation(accelerator, regions: bool) -> None:
    """With `--torch_compile`: compile each block apart (accelerate's regional compilation) when `regions`; read when
    the Trainer prepares the model, at the start of `train()`."""
    plugin = accelerator.state.dynamo_plugin
    if hasattr(plugin, "use_regional_compilation"):
        plugin.use_regional_compilation = regions
    elif regions:
        logger.warning(
            "This accelerate has no regional compilation (1.7 and later do): --torch_compile compiles the whole model."
        )


def crop_flops(trainer, inputs) -> int:
    """FLOPs of a micro-batch's forward and backward passes with the teacher, from its crops (summed into
    `state.total_flos`); the Trainer's default would count the uint8 source pixels as tokens, walking every parameter."""
    pixel_values = inputs.get("pixel_values") if hasattr(inputs, "get") else None
    if pixel_values is None:
        return 0
    if trainer._flops_per_image is None:
        crops = trainer.augmentation.config
        sizes = (crops.global_crop_size, crops.n_global_crops, crops.local_crop_size, crops.n_local_crops)
        compiled = bool(trainer.args.torch_compile)
        trainer._flops_per_image = trainer.unwrapped_model.training_flops_per_image(*sizes, compiled=compiled)
    return int(pixel_values.shape[0] * trainer._flops_per_image)


class ProSTrainer(Trainer):
    """Trainer for `ProSForPreTraining` on batches of uint8 source images (`{"pixel_values": (B, 3, S, S)}`), with a
    copy of `args` (a `ProSTrainingArguments`; the caller's are left as given). `augmentation` (a `MultiCropAugmentation`)
    defaults to the multi-crop of `args`; `image_processor` and `dataset_name` (for the card) go into the export."""

    def __init__(self, model=None, args=None, augmentation=None, image_processor=None, dataset_name=None, **kwargs):
        given = args if args is not None else ProSTrainingArguments(output_dir="pros-pretraining")
        args = arguments_for_trainer(given)
        kwargs.setdefault("data_collator", collate_pretraining)
        super().__init__(model=model, args=args, **kwargs)
        if args.torch_compile:
            use_regional_compilation(self.accelerator, args.torch_compile_regions)
        self.model_accepts_loss_kwargs = self.loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer scales it
        self.augmentation = augmentation or MultiCropAugmentation(args.multicrop_config())
        check_crops_fit_the_model(self.model, self.augmentation.config)
        check_schedules_have_a_length(args, self.train_dataset)
        self.image_processor, self.dataset_name = image_processor, dataset_name or "unspecified"
        self.push_backbone_to_hub = given.push_to_hub  # the teacher backbone is pushed, not the checkpoints
        self.health, self.skip_report, self.skip_summary = HealthMetrics(), SkipReport(), None  # summary: after train
        self._flops_per_image = None  # set on the first step, from the model and the crops
        self.throughput = SteadyThroughputCallback()  # first in line: it reads the clock before others work (k-NN)
        self.callback_handler.callbacks.insert(0, self.throughput)
        self.finished_run, self.loss_check = FinishedRunCallback(), FiniteLossCallback()
        self.teacher_ema, self.prototype_freeze = TeacherEMACallback(), PrototypeFreezeCallback()
        self.weight_decay_schedule = WeightDecayScheduleCallback(decay_parameter_names)
        self.skips = SkipReportCallback(self.skip_report)
        own = (self.finished_run, self.loss_check, self.teacher_ema, self.prototype_freeze, self.weight_decay_schedule)
        for callback in (*own, self.skips, CollapseWarningCallback()):
            self.add_callback(callback)

    @property
    def unwrapped_model(self):
        return unwrap(self.model)

    @property
    def last_metrics(self) -> dict:  # the health metrics of the last training step, on the device
        return self.health.last

    @property
    def steps_this_run(self) -> int:  # optimizer steps taken by the last train() (0: resumed at its last step)
        return self.finished_run.steps_taken(self.state)

    @property
    def warmup_temperature_steps(self) -> int:
        args = self.args
        return schedule_steps(self.state, args.warmup_teacher_temperature_steps, args.warmup_teacher_temperature_epochs)

    @property
    def freeze_prototype_steps(self) -> int:
        return self.prototype_freeze.freeze_steps

    def get_decay_parameter_names(self, model) -> list[str]:
        return decay_parameter_names(model)

    def decay_groups(self) -> list[dict]:  # the optimizer's parameter groups with weight decay
        return self.weight_decay_schedule.decay_groups(self.optimizer, self.model)

    def current_teacher_temperature(self) -> float:
        config, step = self.unwrapped_model.config, self.state.global_step
        temperatures = (config.warmup_teacher_temperature, config.teacher_temperature)
        return schedules.teacher_temperature(step, self.warmup_temperature_steps, *temperatures)

    def floating_point_ops(self, inputs) -> int:
        """FLOPs of this micro-batch's passes with the teacher, from its crops (`crop_flops`)."""
        return crop_flops(self, inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "pixel_values" not in inputs:
            raise ValueError(
                f"ProSTrainer expects batches with 'pixel_values' (uint8 source images), got "
                f"{sorted(inputs)}; use pros_hf.data.load_pretraining_images and collate_pretraining."
            )
        pixel_values = inputs["pixel_values"]
        if model.training:
            self.skip_report.update(inputs)
            if pixel_values.shape[0] == 0:
                share = -(-len(self.train_dataset) // self.args.world_size) if has_length(self.train_dataset) else None
                check_some_images_decode(self.skip_report, self.args.per_device_train_batch_size, num_images=share)
        if pixel_values.shape[0] == 0:  # every image of this batch was unreadable: a zero step, kept in the graph
            loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return (loss, None) if return_outputs else loss
        global_crops, local_crops = self.augmentation(pixel_values)
        local_crops = local_crops if local_crops.shape[1] > 0 else None
        outputs = model(
            global_crops=global_crops, local_crops=local_crops, teacher_temperature=self.current_teacher_temperature()
        )
        # checked at the next log or checkpoint: a host sync here would leave the GPU idle before every backward pass
        self.loss_check.record(self.state.global_step, outputs.loss)
        if model.training:
            self.health.add(outputs)
        else:  # evaluation: no backward pass to keep fed
            self.check_losses_finite()
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def check_losses_finite(self) -> None:
        """Raise `NonFiniteLossError` if a loss since the last check was NaN or infinite (one host sync)."""
        self.loss_check.check(self.args, self.state)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Checks the losses; a training log gets the health metrics since the last one, momentum and weight decay."""
        self.check_losses_finite()
        averages = self.health.pop_averages() if "loss" in logs else {}
        if averages:
            momentum, decay = self.teacher_ema.last_momentum, self.weight_decay_schedule.last_decay
            scheduled = {"teacher_momentum": momentum, "weight_decay": decay}
            logs.update(averages, **{name: value for name, value in scheduled.items() if value is not None})
        super().log(logs, *args, **kwargs)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """Train, then export the teacher to `output_dir`; resumed at its last step, export without training."""
        self.skips.restore(resume_from_checkpoint, self.args, self.is_world_process_zero())
        try:
            result = super().train(resume_from_checkpoint, *args, **kwargs)
        except RunAlreadyComplete:
            logger.info("The checkpoint is at the run's last step (%d): nothing left to train", self.state.global_step)
            # the end of a run without steps: progress bars close, skips are summed, a k-NN callback measures
            self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)
            result = TrainOutput(self.state.global_step, 0.0, {})
        self.skip_summary = self.skips.summary
        self.check_losses_finite()
        if self.throughput.samples_per_second is not None:
            # the rate after the start-up steps (see throughput.py): what a long run gets, unlike the Trainer's
            steady = {"train_steady_samples_per_second": round(self.throughput.samples_per_second, 3)}
            result.metrics.update(steady)
            self.log(steady)
        self.export_backbone(self.args.output_dir, evaluation=latest_knn_results(self.callback_handler.callbacks))
        return result

    def export_backbone(self, output_dir: str, evaluation: dict[str, float] | None = None) -> str:
        """Write the teacher as a `ProSModel` folder (`export.write_backbone_folder`) from the main process; under
        FSDP or DeepSpeed every process takes part, as the full weights are gathered from the shards."""
        self.accelerator.wait_for_everyone()
        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
        state = self.accelerator.get_state_dict(self.model_wrapped) if sharded else None
        if self.is_world_process_zero():
            args, skips = self.args, self.skip_summary or self.skip_report.summary()
            card = dict(summary=training_summary(args, self.state), log_history=self.state.log_history)
            card.update(dataset_name=self.dataset_name, evaluation=evaluation, skip_summary=skips)
            card["image_processor"] = self.image_processor
            hub = dict(push=self.push_backbone_to_hub, repo_id=args.hub_model_id, token=args.hub_token)
            hub["private"] = getattr(args, "hub_private_repo", None)
            write_backbone_folder(self.unwrapped_model, output_dir, state_dict=state, **card, **hub)
        self.accelerator.wait_for_everyone()
        return output_dir
