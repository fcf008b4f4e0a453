"""The end product of pre-training: the EMA teacher as a `ProSModel` folder, ready for `AutoModel.from_pretrained`.

The folder holds the weights with the modeling code (for `trust_remote_code=True` users), the image processor at the
training resolution, a model card (architecture, recipe, the last k-NN figures), `training_curves.png` and the skip
report; `push_to` uploads it as it is on disk.
"""

import json
import logging
import os

from ..hub import backbone_card, push_folder
from ..image_processing_pros import ProSImageProcessor
from ..training_plots import plot_pretraining_curves
from .skips import SKIP_REPORT_NAME

logger = logging.getLogger(__name__)


def training_summary(args, state) -> str:
    """The recipe in one sentence, for the model card."""
    return (
        f"{state.global_step} optimizer steps, {state.num_train_epochs} epoch(s), batch "
        f"{args.per_device_train_batch_size} per device x {args.world_size} process(es) x "
        f"{args.gradient_accumulation_steps} accumulation; lr {args.learning_rate}, {args.num_global_crops} x "
        f"{args.global_crop_size} px + {args.num_local_crops} x {args.local_crop_size} px crops."
    )


def latest_knn_results(callbacks) -> dict[str, float] | None:
    """The last figures of a `KNNCallback` among `callbacks` (on the main process), for the model card."""
    from ..knn import KNNCallback

    for callback in callbacks:
        if isinstance(callback, KNNCallback) and callback.latest:
            return dict(callback.latest)
    return None


def write_backbone_folder(
    model,
    output_dir: str,
    *,
    state_dict=None,
    image_processor: ProSImageProcessor | None = None,
    summary: str = "Not recorded.",
    log_history=(),
    dataset_name: str = "unspecified",
    evaluation: dict[str, float] | None = None,
    skip_summary: dict | None = None,
    push: bool = False,
    repo_id: str | None = None,
    token: str | None = None,
    private: bool | None = None,
) -> str:
    """Write the teacher of `model` (a `ProSForPreTraining`) to `output_dir` as a `ProSModel` folder.

    `state_dict`: the full state dict of `model` when its weights are sharded (FSDP, DeepSpeed), gathered by the
    caller. `image_processor`: default, the one the model config implies. `log_history`: the Trainer's, drawn into
    `training_curves.png` (left out for a run too short to have logged a step). `push` uploads the finished folder to
    the Hub repository `repo_id` (default: the folder's name), which the card then names."""
    backbone = model.export_teacher(state_dict)
    os.makedirs(output_dir, exist_ok=True)
    backbone.save_pretrained(output_dir)
    (image_processor or ProSImageProcessor.from_model_config(model.config)).save_pretrained(output_dir)
    try:
        plot_pretraining_curves(
            log_history, os.path.join(output_dir, "training_curves.png"), num_prototypes=model.config.num_prototypes
        )
        summary += (
            "\n\n![Losses against ln K, entropies, prototypes in use, schedules and k-NN over the optimizer "
            "steps](training_curves.png)"
        )
    except ValueError as error:  # a run too short to have logged a step
        logger.info("No training_curves.png: %s", error)
    backbone_card(
        backbone,
        repo_id=repo_id if push else None,
        dataset=dataset_name,
        training_summary=summary,
        evaluation=evaluation,
        pretraining_config=model.config,
    ).save(os.path.join(output_dir, "README.md"))
    with open(os.path.join(output_dir, SKIP_REPORT_NAME), "w") as handle:
        json.dump(skip_summary or {}, handle, indent=2)
    if push:
        url = push_folder(
            output_dir, repo_id or os.path.basename(os.path.abspath(output_dir)), token=token, private=private
        )
        logger.info("Pushed the backbone to %s", url)
    return output_dir


__all__ = ["latest_knn_results", "training_summary", "write_backbone_folder"]
