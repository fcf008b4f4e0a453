"""The model a pre-training run starts from: a preset, or the weights of a ProS backbone (e.g. converted DINO weights)
at the run's crop size, with config fields set on top.
"""

import logging

import torch

from ..configuration_pros import ProSConfig
from ..modeling_pros_pretraining import ProSForPreTraining

logger = logging.getLogger(__name__)


def apply_config_overrides(config: ProSConfig, overrides: str) -> ProSConfig:
    """`config` with `overrides` ('key=value,key=value', transformers' examples' `--config_overrides`) applied, each
    typed after the current value by `update_from_string`, and rebuilt so that ProSConfig checks the result."""
    known = ProSConfig.field_names()  # flat names, the sections' fields included
    unknown = [item.split("=")[0] for item in overrides.split(",") if item.split("=")[0] not in known]
    if unknown:
        raise ValueError(f"config_overrides names unknown ProSConfig fields {unknown}.")
    try:
        config.update_from_string(overrides)
        return ProSConfig(**config.to_dict())
    except ValueError as error:
        raise ValueError(f"config_overrides {overrides!r}: {error}") from None


def pretraining_model(
    image_size: int,
    preset: str = "micro",
    model_name_or_path: str | None = None,
    config_overrides: str | None = None,
    **config_fields,
) -> ProSForPreTraining:
    """A `ProSForPreTraining` for global crops of `image_size` pixels.

    Without `model_name_or_path`: the `preset` with `config_fields` (those given as None are left out). With it: the
    configuration of that backbone (a `ProSModel` folder or Hub id, or a pre-training export) with `config_fields` on
    top, student and teacher starting from its weights. The backbone's position embeddings are resampled once to the
    patch grid of `image_size` (as timm does for a new image size), so that the exported config and image processor
    state the resolution it was trained at. `config_overrides` ('key=value,...') are applied last.

    Raises `OSError` for a backbone that cannot be found and `ValueError` for settings ProSConfig refuses or a backbone
    that does not fit the configuration."""
    fields = {name: value for name, value in config_fields.items() if value is not None}
    if model_name_or_path is None:
        config = ProSConfig.from_preset(preset, image_size=image_size, **fields)
        return ProSForPreTraining(apply_config_overrides(config, config_overrides) if config_overrides else config)
    from .. import load_backbone

    backbone = load_backbone(model_name_or_path)
    config = ProSConfig(**{**backbone.config.to_dict(), **fields, "image_size": image_size})
    model = ProSForPreTraining(apply_config_overrides(config, config_overrides) if config_overrides else config)
    state = backbone.state_dict()
    grid = model.student.embeddings.grid_size
    if grid != backbone.embeddings.grid_size:
        logger.info(
            "Position embeddings resampled from a %s to a %s patch grid (global crops of %d px)",
            backbone.embeddings.grid_size,
            grid,
            image_size,
        )
        with torch.no_grad():
            state["embeddings.position_embeddings"] = backbone.embeddings.interpolate_pos_encoding(*grid, torch.float32)
    if model.student.embeddings.mask_token is None:  # a backbone pre-trained with the patch loss, reused without
        state.pop("embeddings.mask_token", None)
    missing, unexpected = model.student.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"embeddings.mask_token"}:
        raise ValueError(
            f"{model_name_or_path} does not match the configured backbone: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}."
        )
    model.copy_student_to_teacher()
    return model


__all__ = ["apply_config_overrides", "pretraining_model"]
