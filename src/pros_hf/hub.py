"""Model cards from the templates in `model_cards/`, and pushing finished folders to the Hub.

Cards are rendered from the model's own config and the figures measured during training, never typed by hand, so a
card cannot claim more than was run.
"""

import os
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .loading import hub_offline

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
    pretraining_config=None,
) -> ModelCard:
    """The card of an exported ProS backbone (`ProSModel`); `evaluation` maps metric names to measured values.

    `pretraining_config`: the pre-training fields the backbone was trained with (the pre-training model's
    `ProSConfig`, or its `ProSPreTrainingConfig` section), for the card's recipe rows: an exported backbone's own
    config carries the backbone's fields only. Without it, the rows come from `model.config`'s section where it has
    one, and read "not recorded" otherwise."""
    config = model.config
    dataset = public_name(dataset) or "unspecified"
    recipe = getattr(pretraining_config, "pretraining_config", pretraining_config)
    if recipe is None:
        recipe = getattr(config, "pretraining_config", None)
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
        datasets=[dataset] if is_hub_id(dataset) else None,  # a local path is named in the text only
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
        **_recipe_rows(recipe),
        **{
            key: getattr(config, key)
            for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "patch_size", "image_size")
        },
    )


def _recipe_rows(recipe) -> dict[str, str]:
    """The pre-training rows of a backbone card, from a `ProSPreTrainingConfig` (None: not recorded)."""
    if recipe is None:
        return dict.fromkeys(("projection_head", "prototypes", "teacher_targets", "patch_loss"), "not recorded")
    return dict(
        projection_head=(
            f"{recipe.head_num_layers} layers, {recipe.head_hidden_size} hidden, "
            f"{recipe.head_bottleneck_size} bottleneck"
        ),
        prototypes=f"{recipe.num_prototypes}, shared between teacher and student: {recipe.share_prototypes}",
        teacher_targets=(
            f"{recipe.target_mode}; student temperature {recipe.student_temperature}, teacher "
            f"temperature {recipe.warmup_teacher_temperature} -> {recipe.teacher_temperature}"
        ),
        patch_loss=(
            f"weight {recipe.patch_loss_weight}, {recipe.mask_probability:g} of the global crops masked, "
            f"{recipe.mask_ratio[0]:g}-{recipe.mask_ratio[1]:g} of their patches"
            if recipe.patch_loss_weight > 0
            else "off"
        ),
    )


# How each task's scalar metrics go into a card's model-index: metric key -> (metric type, display name).
HEAD_METRICS = {
    "expression": {"accuracy": ("accuracy", "top-1 accuracy"), "macro_f1": ("f1", "macro F1")},
    "attributes": {"mean_accuracy": ("accuracy", "mean attribute accuracy")},
    "landmarks": {"nme": ("nme", "NME"), "failure_rate": ("failure_rate", "failure rate"), "auc": ("auc", "AUC")},
}
HEAD_TASK_TYPES = {
    "expression": "image-classification",
    "attributes": "image-classification",
    "landmarks": "keypoint-detection",
}
_TASK_DESCRIPTIONS = {
    "expression": "facial expression recognition",
    "attributes": "facial attribute estimation (multi-label)",
    "landmarks": "facial landmark alignment",
}
_LOWER_IS_BETTER = ("nme", "failure_rate")


def is_hub_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub repository id (org/name) rather than a local path."""
    if not name or os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") != 1:
        return False
    return all(part and all(c.isalnum() or c in "-_." for c in part) for part in name.split("/"))


def public_name(name: str | None) -> str | None:
    """How a card names a data set or a model: a Hub id as it is, a local path by its folder's (or file's) base name
    (a card is published with the model, and an absolute path would publish the user's file-system layout while
    naming nothing a reader can find), any other text as it is."""
    if not name or is_hub_id(name):
        return name
    text = os.fspath(name)
    if os.path.isabs(text) or text.startswith(("./", "../", "~")) or os.path.exists(text):
        return os.path.basename(os.path.normpath(os.path.expanduser(text))) or text
    return text


def _results_table(task: str, results: dict, num_seeds: int) -> str:
    """Markdown rows `metric | pre-trained | random init` from results.json's `runs` entry.

    A run of one seed (its `per_seed` entry, else `num_seeds`) or without a `std` shows the mean alone: no spread."""
    metrics = HEAD_METRICS[task]
    runs = [
        (label, results[key])
        for key, label in (
            ("pretrained", "pre-trained backbone"),
            ("random_init", "random init (same architecture)"),
            ("prior", "labels only (no image)"),
        )
        if key in results
    ]
    header = "| metric | " + " | ".join(label for label, _ in runs) + " |"
    lines = [header, "| --- |" + " --- |" * len(runs)]
    for key, (_, name) in metrics.items():
        arrow = " (lower is better)" if key in _LOWER_IS_BETTER else ""
        cells = []
        for _, run in runs:
            single = len(run["per_seed"]) == 1 if "per_seed" in run else num_seeds == 1
            mean, std = run["mean"].get(key), None if single else (run.get("std") or {}).get(key)
            cells.append("n/a" if mean is None else f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}")
        lines.append(f"| {name}{arrow} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def head_card(
    model,
    task: str,
    results: dict,
    repo_id: str | None = None,
    base_model: str | None = None,
    dataset: str = "unspecified",
    dataset_id: str | None = None,
    num_train: int | str | None = None,
    num_test: int | None = None,
    few_shot: float | None = None,
    seeds: list[int] | None = None,
    mode_summary: str = "full fine-tuning",
    schedule_summary: str = "Not recorded.",
    trainable_parameters: int | None = None,
    lora_summary: str | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """The card of a fine-tuned head (`lora_summary` None) or of its LoRA adapter, with the measured metrics.

    `model`: the plain head model (for an adapter, the merged one). `results`: `{"pretrained": {"mean": {metric:
    value}, "std": {...}}, "random_init": {...}}` as `examples/finetune.py` writes them; the pre-trained means go into
    the `model-index` metadata (`eval_results`), both runs into the card's table. `base_model` goes into the metadata
    when it is a Hub id (a local path is named in the text only).
    """
    from huggingface_hub import EvalResult

    if task not in HEAD_METRICS:
        raise ValueError(f"task must be one of {sorted(HEAD_METRICS)}, got {task!r}.")
    main_run = results.get("pretrained") or results.get("random_init")
    if main_run is None:
        raise ValueError("results need a 'pretrained' (or 'random_init') entry with the measured means.")
    config = model.config
    dataset, base_model = public_name(dataset) or "unspecified", public_name(base_model)
    adapter = lora_summary is not None
    name = (repo_id or f"ProS {task} {'adapter' if adapter else 'head'}").split("/")[-1]
    hub_base = base_model if is_hub_id(base_model) else None
    dataset_type = dataset_id or ("synthetic-faces" if dataset.startswith("synthetic") else "custom")
    split = "test"
    eval_results = []
    for key, (metric_type, metric_name) in HEAD_METRICS[task].items():
        value = main_run["mean"].get(key)
        if value is not None:
            eval_results.append(
                EvalResult(
                    task_type=HEAD_TASK_TYPES[task],
                    task_name=_TASK_DESCRIPTIONS[task],
                    dataset_type=dataset_type,
                    dataset_name=dataset,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=metric_name,
                    metric_value=round(float(value), 6),
                )
            )
    metadata = ModelCardData(
        model_name=name,
        base_model=hub_base,
        library_name="peft" if adapter else "transformers",
        license=license,
        pipeline_tag=HEAD_TASK_TYPES[task],
        tags=["pros", "pros_hf", "face", "vision-transformer", task] + (["lora"] if adapter else []),
        datasets=[dataset_id] if dataset_id else None,
        eval_results=eval_results or None,
    )

    classifier = task != "landmarks"
    model_class = type(model).__name__
    auto_class = "AutoModelForImageClassification" if classifier else "AutoModelForPoseEstimation"
    repo = repo_id or "path/to/this/folder"
    if classifier:
        labels_summary = f"{config.num_labels} labels: {', '.join(str(v) for v in config.id2label.values())}"
        head_description = (
            f"a linear classifier on the {getattr(config, 'classifier_pooling', 'cls')} "
            f"features, {config.problem_type or 'single_label_classification'}"
        )
    else:
        labels_summary = f"{config.num_landmarks} points"
        head_description = f"a {config.landmark_decoder} landmark decoder"
    if adapter:
        usage = (
            "from pros_hf.finetuning import load_adapter_folder\n\n"
            f'model = load_adapter_folder("{repo}")  # base backbone, LoRA and head in one call\n\n'
            "# by hand (the base must be an exported ProSModel folder, not a pre-training checkpoint):\n"
            "from peft import PeftModel\n"
            f"from transformers import AutoConfig, AutoImageProcessor, AutoModel, {auto_class}\n\n"
            f'config = AutoConfig.from_pretrained("{repo}")  # the head\'s labels and shape\n'
            f"base = {auto_class}.from_config(config)\n"
            f'base.pros.load_state_dict(AutoModel.from_pretrained("{base_model or "BASE_BACKBONE"}").state_dict())\n'
            f'model = PeftModel.from_pretrained(base, "{repo}").eval()\n'
            f'processor = AutoImageProcessor.from_pretrained("{repo}")\n'
            "# without pros_hf installed: pass trust_remote_code=True to each from_pretrained / from_config call"
        )
    elif classifier:
        usage = (
            "from transformers import pipeline\n\n"
            f'classify = pipeline("image-classification", model="{repo}", trust_remote_code=True)\n'
            f'classify("face.jpg", top_k={config.num_labels})  # every label\'s '
            f"{'probability' if config.problem_type == 'multi_label_classification' else 'score'}, not the top 5"
        )
    else:
        usage = (
            "from transformers import pipeline\n\n"
            f'landmarks = pipeline("face-landmarks", model="{repo}")  # needs pros_hf (it registers the task)\n'
            'landmarks("face.jpg")  # {"landmarks": [[x, y], ...]} in the image\'s pixels\n\n'
            f'# or, without pros_hf: {auto_class}.from_pretrained("{repo}", trust_remote_code=True)'
        )
    notes = []
    if "random_init" in results and "pretrained" in results:
        notes.append(
            "The random-init column trains the same architecture from random weights with the same recipe "
            "and labels: the gap is what pre-training contributes."
        )
    if "prior" in results:
        notes.append(
            "The labels-only column predicts without the image (the majority class, each attribute's "
            "majority value, or the mean face shape of the same training labels): the floor to beat."
        )
    comparison_note = " ".join(notes)
    seeds = seeds or [0]
    total = sum(p.numel() for p in model.parameters())
    trainable = trainable_parameters if trainable_parameters is not None else total
    fields = dict(
        model_name=name,
        task=task,
        task_description=_TASK_DESCRIPTIONS[task],
        model_class=model_class,
        auto_class=auto_class,
        head_description=head_description,
        base_model=base_model or "a ProS backbone",
        usage=usage,
        dataset=dataset,
        test_summary=f"test set of {num_test} images" if num_test is not None else "test set size not recorded",
        num_train=num_train if num_train is not None else "not recorded",
        spread_summary="1 seed" if len(seeds) == 1 else f"mean ± standard deviation over {len(seeds)} seed(s)",
        seeds=", ".join(str(s) for s in seeds),
        results_table=_results_table(task, results, len(seeds)),
        comparison_note=comparison_note,
        main_run="the pre-trained backbone's runs" if "pretrained" in results else "the runs from random weights",
        labels_summary=labels_summary,
        num_parameters=f"{total / 1e6:.2f}M",
        trainable_summary=f"{trainable:,} ({100 * trainable / total:.2f}%)",
        mode_summary=mode_summary,
        few_shot_summary=f" ({100 * few_shot:g}% of the training labels, drawn per seed)" if few_shot else "",
        schedule_summary=schedule_summary,
        lora_summary=lora_summary or "",
        **{key: getattr(config, key) for key in ("num_hidden_layers", "hidden_size", "patch_size", "image_size")},
    )
    return render_card("adapter" if adapter else "head", metadata, **fields)


def is_offline() -> bool:
    """Whether the Hub is switched off for this process (HF_HUB_OFFLINE, read now rather than at import)."""
    return hub_offline()


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload ProS model",
) -> str:
    """Create `repo_id` if needed and upload `folder` (without checkpoints and logs). Offline: a clear error."""
    if is_offline():
        raise RuntimeError(
            f"Cannot push {folder} to the Hub repository {repo_id!r}: HF_HUB_OFFLINE is set. The folder is complete "
            f"on disk; push it later with `hf upload {repo_id} {folder}` (huggingface_hub's CLI) or by re-running "
            "without HF_HUB_OFFLINE."
        )
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, commit_message=commit_message, ignore_patterns=PUSH_IGNORE_PATTERNS
    )
    return getattr(commit, "commit_url", str(commit))


__all__ = [
    "HEAD_METRICS",
    "backbone_card",
    "head_card",
    "is_hub_id",
    "is_offline",
    "public_name",
    "push_folder",
    "render_card",
]
