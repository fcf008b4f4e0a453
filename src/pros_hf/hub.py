"""Model cards from the templates in `model_cards/`, and pushing finished folders to the Hub.

Cards are rendered from the model's own config and the figures measured during training, never typed by hand, so a
card cannot claim more than was run.
"""

import os
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData


TEMPLATES = Path(__file__).parent / "model_cards"
PUSH_IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.log", "trainer_state.json"]


def render_card(template: str, metadata: ModelCardData, **fields) -> ModelCard:
    """Fill `model_cards/<template>.md` with `fields` and a YAML header from `metadata`."""
    path = TEMPLATES / f"{template}.md"
    if not path.is_file():
        available = sorted(p.stem for p in TEMPLATES.glob("*.md"))
        raise ValueError(f"No model card template {template!r}; available: {available}")
    text = path.read_text(encoding="utf-8").format(metadata=metadata.to_yaml(), **fields)
    return ModelCard(text)


def backbone_card(
    model,
    repo_id: str | None = None,
    dataset: str = "unspecified",
    training_summary: str = "Not recorded.",
    evaluation: dict[str, float] | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """The card of an exported ProS backbone (`ProSModel`); `evaluation` maps metric names to measured values."""
    config = model.config
    evaluation = evaluation or {}
    if evaluation:
        rows = "\n".join(f"| {name} | {value:.2f} |" for name, value in evaluation.items())
        evaluation_summary = f"Measured at the end of pre-training:\n\n| metric | value |\n| --- | --- |\n{rows}"
    else:
        evaluation_summary = "No evaluation was recorded for this export."
    metadata = ModelCardData(
        library_name="transformers",
        license=license,
        pipeline_tag="image-feature-extraction",
        tags=["pros", "pros_hf", "self-supervised", "face", "vision-transformer"],
        datasets=[dataset] if dataset and "/" in dataset else None,
    )
    return render_card(
        "backbone",
        metadata,
        model_name=(repo_id or "ProS backbone").split("/")[-1],
        repo_id=repo_id or "path/to/this/folder",
        dataset=dataset,
        num_parameters=f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M",
        training_summary=training_summary,
        evaluation_summary=evaluation_summary,
        **{key: getattr(config, key) for key in (
            "num_hidden_layers", "hidden_size", "num_attention_heads", "patch_size", "image_size", "head_num_layers",
            "head_hidden_size", "head_bottleneck_size", "num_prototypes", "share_prototypes", "target_mode",
            "student_temperature", "warmup_teacher_temperature", "teacher_temperature")},
    )


def is_offline() -> bool:
    """Whether the Hub is switched off for this process (HF_HUB_OFFLINE, read now rather than at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or value in ("1", "ON", "YES", "TRUE")


def push_folder(folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool | None = None,
                commit_message: str = "Upload ProS model") -> str:
    """Create `repo_id` if needed and upload `folder` (without checkpoints and logs). Offline: a clear error."""
    if is_offline():
        raise RuntimeError(
            f"Cannot push {folder} to the Hub repository {repo_id!r}: HF_HUB_OFFLINE is set. The folder is complete "
            "on disk; push it later with `huggingface-cli upload` or by re-running without HF_HUB_OFFLINE."
        )
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message,
                               ignore_patterns=PUSH_IGNORE_PATTERNS)
    return getattr(commit, "commit_url", str(commit))


__all__ = ["backbone_card", "is_offline", "push_folder", "render_card"]
