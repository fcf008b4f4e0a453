"""ProS model configuration: the backbone's fields, and sections that only one model reads.

`ProSConfig` holds, at the top level, what `ProSModel` reads (transformers' ViT names, so a ViT user reads them
without a glossary), `use_mask_token`, transformers' label fields and `classifier_pooling` (the classification head).
The fields of one model only live in a section, saved in config.json as a nested dict, and only by a model that reads
it:

- `pretraining_config` (`ProSPreTrainingConfig`): projection head, prototypes and loss of `ProSForPreTraining`;
- `landmark_config` (`ProSLandmarkConfig`): decoder and loss of `ProSForLandmarkDetection`.

So an exported backbone or a classification head carries no pre-training knob it ignores, while a pre-training
checkpoint carries every field its loss read. Every field still reads and writes flat: `ProSConfig(num_prototypes=64)`,
`ProSConfig.from_preset("micro", target_mode="sinkhorn")`, `config.num_prototypes`, `config.num_prototypes = 64`
and `from_pretrained(..., num_prototypes=64)`. Reading a field of an absent section gives its default; writing one
creates the section. A flat config.json (every field at the top level, the layout without sections) loads
unchanged: its section fields go into their sections.

The sections are plain dataclasses, not transformers sub-configs: transformers treats a registered sub-config as the
config of a sub-model (it dispatches dtype and attention implementations to it, and warns when no sub-model uses
it), which these are not.

This file is copied next to the weights by `save_pretrained` (for `trust_remote_code=True` users), so it imports only
transformers and the standard library.
"""

import copy
import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field

from transformers import PreTrainedConfig

TARGET_MODES = ("center", "sinkhorn", "sharpen")
CLASSIFIER_POOLINGS = ("cls", "cls_mean")
LANDMARK_DECODERS = ("heatmap", "regression")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# Named sizes. "micro" is the test size: it trains hundreds of steps per minute on two CPU cores.
PRESETS = {
    "micro": dict(
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=256,
        image_size=32,
        patch_size=8,
        head_hidden_size=128,
        head_bottleneck_size=32,
        num_prototypes=64,
        drop_path_rate=0.0,
    ),
    "vit-s16": dict(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        intermediate_size=1536,
        image_size=224,
        patch_size=16,
    ),
    "vit-b16": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=224,
        patch_size=16,
    ),
    "vit-l16": dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        image_size=224,
        patch_size=16,
        drop_path_rate=0.3,
    ),
}


def pair(value) -> tuple:
    """`image_size` / `patch_size` as (height, width): an int is square, a list or tuple gives both sides."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


# --------------------------------------------------------------------------------------------------------------------
# field checks: a wrong value fails when the config is built, naming the field, not inside a forward pass


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_numbers(owner: str, values: dict) -> None:
    for name, value in values.items():
        if not _is_number(value):
            raise ValueError(f"{owner}.{name} must be a number, got {value!r} ({type(value).__name__}).")


def _check_positive_ints(owner: str, values: dict) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}.")


def _check_bools(owner: str, values: dict) -> None:
    for name, value in values.items():
        if not isinstance(value, bool):
            raise ValueError(f"{owner}.{name} must be True or False, got {value!r}.")


def _check_choice(owner: str, name: str, value, options: tuple) -> None:
    if value not in options:
        raise ValueError(f"{owner}.{name} must be one of {options}, got {value!r}.")


def _fields(obj, names: tuple[str, ...]) -> dict:
    return {name: getattr(obj, name) for name in names}


# --------------------------------------------------------------------------------------------------------------------
# sections


@dataclass
class ProSPreTrainingConfig:
    r"""
    The fields only `ProSForPreTraining` reads: projection head, prototypes and the prototype self-distillation loss.
    Defaults give DINO's recipe. Given flat to `ProSConfig` (`ProSConfig(num_prototypes=8192)`), they land here.

    Projection head and prototypes:
        head_hidden_size (`int`, 2048) and head_bottleneck_size (`int`, 256): the head is an MLP
            `hidden_size -> head_hidden_size (x head_num_layers - 1) -> head_bottleneck_size`; its L2-normalised output
            is compared with the prototypes. A narrow bottleneck keeps the prototype matrix cheap.
        head_num_layers (`int`, 3): DINO uses 3.
        head_use_bn (`bool`, False): BatchNorm in the head. Off by default: it needs synchronised statistics across
            processes and DINO found it unnecessary for ViTs.
        num_prototypes (`int`, 65536): K. More prototypes give finer clusters but need more data; on small or
            homogeneous sets (a few thousand faces) a few thousand prototypes avoid many dead ones.
        share_prototypes (`bool`, True): one prototype matrix for teacher and student (MSN-like, the closest reading of
            the ProS abstract). False keeps an EMA copy in the teacher head (DINO-like).

    Prototype matching loss:
        student_temperature (`float`, 0.1): tau_s of the student softmax.
        teacher_temperature (`float`, 0.07): tau_t after warm-up. Lower is sharper; too high a value lets the teacher
            collapse to uniform outputs (loss stuck at ln K).
        warmup_teacher_temperature (`float`, 0.04): tau_t at the start of training; the trainer warms it up linearly to
            `teacher_temperature`. Must not exceed `teacher_temperature`.
        target_mode (`str`, "sinkhorn"): how teacher targets avoid collapse. "sinkhorn" balances the batch over the
            prototypes with Sinkhorn-Knopp (SwAV, DINOv2); "center" subtracts a running mean of the teacher scores
            (DINO); "sharpen" raises the teacher distribution to the power 1/sharpen_temperature (MSN, pair it with
            me-max). Sinkhorn is the default because it closed the most of the random-to-supervised gap in the loss
            ablation (examples/ablate_targets.py, 3 seeds; docs/evaluation.md), and with centering the teacher of a
            short run settles on a few prototypes while Sinkhorn keeps most of them in use.
        center_momentum (`float`, 0.9): EMA momentum of the center in "center" mode.
        sinkhorn_iterations (`int`, 3): Sinkhorn-Knopp iterations in "sinkhorn" mode.
        sharpen_temperature (`float`, 0.25): T in "sharpen" mode.
        me_max_weight (`float`, None -> 1.0 with "sharpen", else 0.0): weight of mean-entropy maximisation, which
            spreads the batch over the prototypes (MSN).
        koleo_weight (`float`, 0.0): weight of the KoLeo uniformity regulariser on head outputs (DINOv2); needs more
            than one image per process.

    Masked patch loss (iBOT, DINOv2), off by default:
        patch_loss_weight (`float`, 0.0): weight of the masked patch loss. > 0 masks some patches of the student's
            global crops (a learnable mask token replaces their embeddings) and asks the student's patch tokens there
            to match the teacher's distributions over the same prototypes for the unmasked crop (same projection
            head, the targets made by `target_mode`). The CLS loss alone rewards what every crop of a face shares
            (identity, colours); the patch loss also rewards the local content a face's parts hold (mouth, brows,
            the points landmarks need). DINOv2 and iBOT use 1.0. Costs the last block's full output for the global
            crops and adds a mask token to both backbones (the exported teacher keeps it: `use_mask_token`).
        mask_probability (`float`, 0.5): fraction of the global crops that are masked (DINOv2: 0.5); the others
            keep every patch.
        mask_ratio (`list`, [0.1, 0.5]): each masked crop hides a fraction of its patches drawn uniformly from this
            range (iBOT's 0.3 +- 0.2), chosen uniformly at random among the patches.
    """

    head_hidden_size: int = 2048
    head_bottleneck_size: int = 256
    head_num_layers: int = 3
    head_use_bn: bool = False
    num_prototypes: int = 65536
    share_prototypes: bool = True
    student_temperature: float = 0.1
    teacher_temperature: float = 0.07
    warmup_teacher_temperature: float = 0.04
    target_mode: str = "sinkhorn"
    center_momentum: float = 0.9
    sinkhorn_iterations: int = 3
    sharpen_temperature: float = 0.25
    me_max_weight: float | None = None
    koleo_weight: float = 0.0
    patch_loss_weight: float = 0.0
    mask_probability: float = 0.5
    mask_ratio: list[float] = field(default_factory=lambda: [0.1, 0.5])

    def __post_init__(self):
        if self.me_max_weight is None:
            self.me_max_weight = 1.0 if self.target_mode == "sharpen" else 0.0
        if isinstance(self.mask_ratio, tuple):
            self.mask_ratio = list(self.mask_ratio)
        self.validate()

    def validate(self) -> None:
        owner = type(self).__name__
        _check_bools(owner, _fields(self, ("head_use_bn", "share_prototypes")))
        _check_positive_ints(
            owner,
            _fields(
                self,
                (
                    "head_hidden_size",
                    "head_bottleneck_size",
                    "head_num_layers",
                    "num_prototypes",
                    "sinkhorn_iterations",
                ),
            ),
        )
        _check_numbers(
            owner,
            _fields(
                self,
                (
                    "student_temperature",
                    "teacher_temperature",
                    "warmup_teacher_temperature",
                    "center_momentum",
                    "sharpen_temperature",
                    "me_max_weight",
                    "koleo_weight",
                    "patch_loss_weight",
                    "mask_probability",
                ),
            ),
        )
        for name in ("student_temperature", "teacher_temperature", "warmup_teacher_temperature", "sharpen_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{owner}.{name} must be > 0, got {getattr(self, name)!r}.")
        if self.warmup_teacher_temperature > self.teacher_temperature:
            raise ValueError(
                f"{owner}.warmup_teacher_temperature ({self.warmup_teacher_temperature}) must not exceed "
                f"teacher_temperature ({self.teacher_temperature}): the warm-up goes from sharp to softer."
            )
        _check_choice(owner, "target_mode", self.target_mode, TARGET_MODES)
        if not 0.0 <= self.center_momentum < 1.0:
            raise ValueError(f"{owner}.center_momentum must be in [0, 1), got {self.center_momentum!r}.")
        for name in ("me_max_weight", "koleo_weight", "patch_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{owner}.{name} must be >= 0, got {getattr(self, name)!r}.")
        if not 0.0 < self.mask_probability <= 1.0:
            raise ValueError(f"{owner}.mask_probability must be in (0, 1], got {self.mask_probability!r}.")
        ratio = self.mask_ratio
        if (
            not isinstance(ratio, list)
            or len(ratio) != 2
            or not all(_is_number(v) for v in ratio)
            or not 0.0 < ratio[0] <= ratio[1] < 1.0
        ):
            raise ValueError(f"{owner}.mask_ratio must be [low, high] with 0 < low <= high < 1, got {ratio!r}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ProSLandmarkConfig:
    r"""
    The fields only `ProSForLandmarkDetection` reads. Given flat to `ProSConfig` (`ProSConfig(num_landmarks=98)`),
    they land here.

        num_landmarks (`int`, 68): points per face (300W 68, WFLW 98, AFLW-19 19).
        landmark_decoder (`str`, "heatmap"): "heatmap" decodes features of several blocks to one heatmap per point and
            takes its soft-argmax (FaRL, VitPose): precise and translation-equivariant. "regression" maps the pooled
            features (CLS + mean patch) through an MLP to the coordinates directly: cheaper, less precise.
        landmark_feature_layers (`list`, [1/3, 1/2, 2/3, 1.0]): which `hidden_states` feed the heatmap decoder. A
            float in (0, 1] is a fraction of the depth (`hidden_states[max(1, int(f * num_hidden_layers + 0.5))]`), so
            the default works at any depth and gives FaRL's blocks 3/5/7/11 (0-based) on a 12-block ViT; an int is an
            index into `hidden_states` (0 the embeddings, i the output of block i-1, negative from the end). Mid-depth
            blocks keep the spatial detail the last ones trade for semantics. Checked against `num_hidden_layers`
            when the model is built.
        landmark_decoder_hidden_size (`int`, 256): channels of the heatmap decoder (and of the regression MLP).
        landmark_heatmap_scale_factor (`int`, 4): heatmaps are this many times finer than the patch grid (VitPose's
            simple decoder upsamples 4x): a 224 px / 16 px-patch input gives 56x56 heatmaps.
        landmark_heatmap_sigma (`float`, 2.0): standard deviation, in heatmap cells, of the Gaussian each predicted
            heatmap is pulled towards (VitPose and mmpose use 2 at 4x upsampling).
        landmark_heatmap_loss_weight (`float`, 0.1): weight of the heatmap term, KL(Gaussian target || spatial
            softmax of the heatmap) (DSNT, Nibali et al. 2018), added to the L1 loss on the normalised coordinates.
            The coordinate loss alone accepts any heatmap whose mean is right (multi-modal or smeared ones too); the
            KL term keeps them unimodal. It is ~1.5 nats at the start against an L1 of ~0.1, so a weight near 1 lets
            it dominate and slows the coordinates down; 0.1 keeps the two comparable. 0 trains on coordinates only.
    """

    num_landmarks: int = 68
    landmark_decoder: str = "heatmap"
    landmark_feature_layers: list[int | float] = field(default_factory=lambda: [1 / 3, 1 / 2, 2 / 3, 1.0])
    landmark_decoder_hidden_size: int = 256
    landmark_heatmap_scale_factor: int = 4
    landmark_heatmap_sigma: float = 2.0
    landmark_heatmap_loss_weight: float = 0.1

    def __post_init__(self):
        if isinstance(self.landmark_feature_layers, tuple):
            self.landmark_feature_layers = list(self.landmark_feature_layers)
        self.validate()

    def validate(self) -> None:
        owner = type(self).__name__
        _check_choice(owner, "landmark_decoder", self.landmark_decoder, LANDMARK_DECODERS)
        _check_positive_ints(
            owner, _fields(self, ("num_landmarks", "landmark_decoder_hidden_size", "landmark_heatmap_scale_factor"))
        )
        _check_numbers(owner, _fields(self, ("landmark_heatmap_sigma", "landmark_heatmap_loss_weight")))
        if not self.landmark_heatmap_sigma > 0:
            raise ValueError(f"{owner}.landmark_heatmap_sigma must be > 0, got {self.landmark_heatmap_sigma!r}.")
        if self.landmark_heatmap_loss_weight < 0:
            raise ValueError(
                f"{owner}.landmark_heatmap_loss_weight must be >= 0, got {self.landmark_heatmap_loss_weight!r}."
            )
        layers = self.landmark_feature_layers
        if (
            not isinstance(layers, list)
            or not layers
            or any(not _is_number(v) or (isinstance(v, float) and not 0 < v <= 1) for v in layers)
        ):
            raise ValueError(
                f"{owner}.landmark_feature_layers must be a non-empty list of fractions of the depth in (0, 1] "
                f"(floats) or hidden_states indices (ints), got {layers!r}."
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# section attribute of ProSConfig -> its class; and each section field -> its section attribute
SECTIONS = {"pretraining_config": ProSPreTrainingConfig, "landmark_config": ProSLandmarkConfig}
_SECTION_OF_FIELD = {f.name: key for key, section in SECTIONS.items() for f in dataclasses.fields(section)}


class ProSConfig(PreTrainedConfig):
    r"""
    Configuration of the ProS ViT backbone (`ProSModel`) and of the models built on it. Defaults give a ViT-B/16 at
    224 px with DINO's pre-training recipe. The pre-training and landmark fields are documented on their sections,
    `ProSPreTrainingConfig` and `ProSLandmarkConfig`; they are given and read flat, like the fields below (see the
    module docstring).

    Backbone (transformers' ViT names):
        hidden_size (`int`, 768): token width. num_hidden_layers (`int`, 12): transformer blocks.
        num_attention_heads (`int`, 12): must divide `hidden_size` (refused at construction, where `ViTConfig` accepts
        it and the model fails later). intermediate_size (`int`, 3072): MLP width.
        hidden_act (`str`, "gelu"): MLP activation, any of transformers' `ACT2FN` ("quick_gelu" for OpenAI CLIP and
        FaRL). layer_norm_eps (`float`, 1e-6): DINO/timm ViTs and DINOv2 use 1e-6, CLIP 1e-5; converted checkpoints
        depend on it. image_size (`int`, 224) and patch_size (`int`, 16): the position-embedding grid is
        `image_size // patch_size` per side; other input sizes are interpolated. num_channels (`int`, 3).
        qkv_bias (`bool`, True). hidden_dropout_prob / attention_probs_dropout_prob (`float`, 0.0): self-distillation
        uses none. drop_path_rate (`float`, 0.1): stochastic depth, linearly increasing over depth; applied to the
        student only (the teacher runs in eval mode); 0.1 for ViT-S/B, higher for ViT-L. initializer_range
        (`float`, 0.02): truncated-normal std of weights, CLS token and position embeddings.
        use_mask_token (`bool`, False): give the backbone a learnable mask token, so that `forward(bool_masked_pos=...)`
        replaces those patches' embeddings with it (as ViT's and Dinov2's `use_mask_token`). Pre-training with the
        masked patch loss (`patch_loss_weight > 0`) builds one whatever this says, and its exported teacher keeps it.

    Imported architectures (`python -m pros_hf.convert`); the defaults give DINO's plain ViT:
        use_pre_layernorm (`bool`, False): a LayerNorm on the embeddings before the first block (CLIP's `ln_pre` /
            `pre_layrnorm`); CLIP's weights were trained with it and compute something else without it.
        layerscale_value (`float`, None): a learnable per-channel scale on each residual branch (DINOv2's, CaiT's
            layer scale), initialised to this value; None builds none. Small values (1e-5 for DINOv2 training) keep
            deep ViTs stable early in training.
        num_register_tokens (`int`, 0): learnable tokens without position embedding inserted after the CLS token
            (DINOv2 with registers, Darcet et al. 2024); they give the model scratch space that would otherwise be
            taken from background patches (the artefacts in their attention maps). Their outputs are not returned:
            `last_hidden_state` and `hidden_states` hold the CLS token and the patch grid only, whatever this is.
        interpolate_antialias (`bool`, False): antialiased bicubic resampling of the position embeddings for other
            input sizes, as DINOv2-with-registers does; plain bicubic (DINO, DINOv2, CLIP) otherwise.

    Classification head (`ProSForImageClassification`; `num_labels`, `id2label`, `label2id` and `problem_type` are
    transformers' standard fields, and giving only one of `id2label` / `label2id` fills the other):
        classifier_pooling (`str`, "cls"): what the linear classifier sees. "cls" is the final-norm CLS token, the
            representation pre-training shaped (ViT, DINO linear probes). "cls_mean" concatenates it with the mean of
            the patch tokens (as `Dinov2ForImageClassification`): usually a little better for local cues (glasses,
            mouth open) at twice the classifier width.

    Sections (None where absent; a model that reads one creates it with its defaults):
        pretraining_config (`ProSPreTrainingConfig` or `dict`, *optional*): `ProSForPreTraining`'s fields.
        landmark_config (`ProSLandmarkConfig` or `dict`, *optional*): `ProSForLandmarkDetection`'s fields.

    Example:
    ```python
    >>> from pros_hf import ProSConfig, ProSModel
    >>> config = ProSConfig.from_preset("vit-s16")
    >>> model = ProSModel(config)
    ```
    """

    model_type = "pros"

    def __init__(
        self,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        image_size=224,
        patch_size=16,
        num_channels=3,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        drop_path_rate=0.1,
        initializer_range=0.02,
        use_mask_token=False,
        use_pre_layernorm=False,
        layerscale_value=None,
        num_register_tokens=0,
        interpolate_antialias=False,
        classifier_pooling="cls",
        pretraining_config=None,
        landmark_config=None,
        **kwargs,
    ):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.qkv_bias = qkv_bias
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.drop_path_rate = drop_path_rate
        self.initializer_range = initializer_range
        self.use_mask_token = use_mask_token
        self.use_pre_layernorm = use_pre_layernorm
        self.layerscale_value = layerscale_value
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.classifier_pooling = classifier_pooling
        given = {"pretraining_config": pretraining_config, "landmark_config": landmark_config}
        for key, section_class in SECTIONS.items():
            # flat fields (keyword arguments, or a flat config.json) override those of a nested section
            flat = {name: kwargs.pop(name) for name in _section_field_names(section_class) if name in kwargs}
            self.__dict__[key] = _build_section(section_class, given[key], flat)
        kwargs = _normalise_label_maps(kwargs)
        super().__init__(**kwargs)
        self.sync_label_maps()
        self._validate()

    # ----------------------------------------------------------------------------------------------------------------
    # flat access to the section fields

    def __getattr__(self, name):
        """A section field read flat: from its section, or its default where the section is absent. Only called for
        names that are no attribute of the config itself."""
        key = _SECTION_OF_FIELD.get(name)
        if key is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        section = self.__dict__.get(key)
        return getattr(section if section is not None else SECTIONS[key](), name)

    def __setattr__(self, name, value):
        """A section field written flat goes into its section, which is created with its defaults if absent; a
        section given as a dict (as `from_pretrained(..., pretraining_config={...})` sets it) becomes one."""
        if name in SECTIONS and value is not None:
            value = _build_section(SECTIONS[name], value, {})
        key = _SECTION_OF_FIELD.get(name)
        if key is None:
            super().__setattr__(name, value)
            return
        setattr(self.ensure_section(key), name, value)

    def ensure_section(self, key: str):
        """The section `key` ("pretraining_config" or "landmark_config"), created with its defaults if absent: a
        model that reads a section calls this, so that its saved config.json holds every field it was built with."""
        if self.__dict__.get(key) is None:
            self.__dict__[key] = SECTIONS[key]()
        return self.__dict__[key]

    def to_dict(self) -> dict:
        """transformers' `to_dict`, with each present section as a nested dict and absent sections left out."""
        output = super().to_dict()
        for key in SECTIONS:
            section = output.pop(key, None)
            if section is not None:
                output[key] = section if isinstance(section, dict) else section.to_dict()
        return output

    def to_backbone_config(self) -> "ProSConfig":
        """A copy with what a backbone reads only: no section, no `architectures` / `auto_map` of the model it was
        saved with, and `use_mask_token` set where the backbone has a mask token (built for the masked patch loss),
        so that its weights load back. What `ProSForPreTraining.export_teacher` and the heads' `from_backbone` save.
        """
        config = copy.deepcopy(self)
        config.use_mask_token = bool(self.use_mask_token or self.patch_loss_weight > 0)
        for key in SECTIONS:
            config.__dict__[key] = None
        config.architectures = None
        config.__dict__.pop("auto_map", None)
        return config

    # ----------------------------------------------------------------------------------------------------------------
    # construction and loading

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ProSConfig":
        """A named size ("micro", "vit-s16", "vit-b16", "vit-l16"), with any field overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"Unknown ProS preset {name!r}; valid presets are {sorted(PRESETS)}.")
        cls.check_field_names(overrides, f"ProSConfig.from_preset({name!r})")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """transformers' `from_dict` (behind every `from_pretrained`), with three changes:

        - label arguments replace the saved label maps: `num_labels=5` on a saved 3-label head gives 5 fresh labels
          and `id2label=...` new names, as for transformers' own classifiers (`num_labels` equal to the saved count
          keeps the saved names);
        - the fields set by keyword are validated like the constructor's: transformers sets them after construction,
          so `num_attention_heads=5` would otherwise fail only inside the forward pass;
        - a section given as a dict (`pretraining_config={"num_prototypes": 16}`) updates the saved section's fields,
          as transformers updates a sub-config given as a dict.

        A config of another `model_type` (a ViT, CLIP or DINOv2 folder) is refused: transformers would only log a
        warning and `ProSModel.from_pretrained` would then start from random weights."""
        model_type = config_dict.get("model_type")
        if model_type not in (None, "", cls.model_type):
            raise ValueError(
                f"This config has model_type {model_type!r}, not {cls.model_type!r}: its weights are not a ProS model's "
                "and would not be loaded. Convert them first: python -m pros_hf.convert --checkpoint FOLDER_OR_ID "
                "--output NEW_FOLDER."
            )
        for key, section_class in SECTIONS.items():
            if isinstance(kwargs.get(key), dict):
                _build_section(section_class, kwargs[key], {})  # unknown field names are refused here
                kwargs.update(kwargs.pop(key))  # then set flat: the saved section keeps its other fields
        labels = {key: kwargs.pop(key) for key in _LABEL_ARGUMENTS if key in kwargs}
        saved = config_dict.get("id2label")
        keep_saved = set(labels) == {"num_labels"} and saved is not None and len(saved) == labels["num_labels"]
        if labels and not keep_saved:
            config_dict = {key: value for key, value in config_dict.items() if key not in _LABEL_ARGUMENTS}
            config_dict.update(labels)
        result = super().from_dict(config_dict, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        config.sync_label_maps()
        config._validate()
        return result

    @classmethod
    def field_names(cls) -> set[str]:
        """Every keyword a ProSConfig understands: its own fields, its sections' fields, transformers' common ones
        and `num_labels`."""
        own = set(inspect.signature(cls.__init__).parameters) | set(_SECTION_OF_FIELD)
        common = set(inspect.signature(PreTrainedConfig.__init__).parameters) | set(PreTrainedConfig().to_dict())
        extra = {"num_labels", "attn_implementation", "torch_dtype", "output_attentions", "name_or_path", "auto_map"}
        return (own | common | extra) - {"self", "kwargs"}

    @classmethod
    def check_field_names(cls, fields, where: str) -> None:
        """Refuse keyword names that are no config field (transformers would store a misspelt `hidden_sise` and
        ignore it), suggesting the closest field."""
        known = cls.field_names()
        for name in fields:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else "."
                raise ValueError(f"{where}: {name!r} is not a ProSConfig field{hint}")

    # ----------------------------------------------------------------------------------------------------------------
    # derived values

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches per side (rows, columns) of the position-embedding grid at `image_size`."""
        height, width = pair(self.image_size)
        patch_height, patch_width = pair(self.patch_size)
        return height // patch_height, width // patch_width

    def sync_label_maps(self) -> None:
        """Make `id2label` and `label2id` describe the same labels. transformers fills only `id2label` from
        `num_labels`, and `from_pretrained(..., id2label=...)` sets it after construction, leaving a stale `label2id`;
        the heads call this when they are built."""
        id2label = {int(index): name for index, name in (self.id2label or {}).items()}
        label2id = _int_ids(self.label2id or {})
        if len(set(id2label.values())) != len(id2label):
            raise ValueError(f"ProSConfig.id2label must name each label once, got {id2label}.")
        if sorted(id2label) != list(range(len(id2label))):
            raise ValueError(
                f"ProSConfig label ids must be 0 .. {len(id2label) - 1}, one per output of the head, got ids "
                f"{sorted(id2label)} ({id2label}); number the labels from 0 without gaps."
            )
        inverse = {name: index for index, name in id2label.items()}
        if label2id == inverse:
            self.label2id = label2id
            return
        default_names = all(str(name).startswith("LABEL_") for name in id2label.values())
        if label2id and default_names and sorted(label2id.values()) == list(range(len(label2id))):
            self.id2label = {index: name for name, index in label2id.items()}  # only label2id was given
            self.label2id = label2id
        elif not label2id or all(str(name).startswith("LABEL_") for name in label2id):
            self.label2id = inverse  # only id2label (or num_labels) was given
        else:
            raise ValueError(f"ProSConfig.id2label {id2label} and label2id {label2id} describe different labels.")

    def landmark_hidden_state_indices(self) -> list[int]:
        """`landmark_feature_layers` as sorted, distinct indices into `hidden_states` (0 .. num_hidden_layers)."""
        depth = self.num_hidden_layers
        indices = []
        for layer in self.landmark_feature_layers:
            if isinstance(layer, float):
                index = max(1, int(layer * depth + 0.5))
            elif -(depth + 1) <= layer <= depth:
                index = layer % (depth + 1)
            else:
                raise ValueError(
                    f"ProSConfig.landmark_feature_layers has index {layer}, but a {depth}-block model has "
                    f"hidden_states 0..{depth} (or {-(depth + 1)}..-1); use fractions of the depth such as 0.5 to "
                    f"be independent of it."
                )
            indices.append(index)
        return sorted(set(indices))

    def _validate(self) -> None:
        """Fail at construction (and after `from_pretrained`'s keyword overrides), naming the field, instead of deep
        inside a forward pass."""
        owner = type(self).__name__
        _check_numbers(
            owner,
            _fields(
                self,
                (
                    "layer_norm_eps",
                    "hidden_dropout_prob",
                    "attention_probs_dropout_prob",
                    "drop_path_rate",
                    "initializer_range",
                ),
            ),
        )
        _check_bools(owner, _fields(self, ("qkv_bias", "use_mask_token", "use_pre_layernorm", "interpolate_antialias")))
        if self.layerscale_value is not None and not (_is_number(self.layerscale_value) and self.layerscale_value > 0):
            raise ValueError(
                f"ProSConfig.layerscale_value must be None (no layer scale) or a number > 0, got "
                f"{self.layerscale_value!r}."
            )
        registers = self.num_register_tokens
        if not isinstance(registers, int) or isinstance(registers, bool) or registers < 0:
            raise ValueError(f"ProSConfig.num_register_tokens must be an integer >= 0, got {registers!r}.")
        from transformers.activations import ACT2FN  # here: reading a config alone needs no torch

        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"ProSConfig.hidden_act must be one of transformers' activations, e.g. 'gelu', "
                f"'gelu_new', 'quick_gelu', 'relu', 'silu'; got {self.hidden_act!r}."
            )
        _check_positive_ints(
            owner,
            _fields(
                self, ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_channels")
            ),
        )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"ProSConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        for name in ("image_size", "patch_size"):
            sides = pair(getattr(self, name))
            if len(sides) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in sides):
                raise ValueError(
                    f"ProSConfig.{name} must be a positive integer or a pair of them, got {getattr(self, name)!r}."
                )
        for side, patch in zip(pair(self.image_size), pair(self.patch_size)):
            if side % patch:
                raise ValueError(
                    f"ProSConfig.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})."
                )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"ProSConfig.{name} must be in [0, 1), got {getattr(self, name)!r}.")
        for name in ("layer_norm_eps", "initializer_range"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ProSConfig.{name} must be > 0, got {getattr(self, name)!r}.")
        _check_choice(owner, "classifier_pooling", self.classifier_pooling, CLASSIFIER_POOLINGS)
        _check_choice(owner, "problem_type", self.problem_type, (None, *PROBLEM_TYPES))
        for key, section_class in SECTIONS.items():
            section = self.__dict__.get(key)
            if section is not None and not isinstance(section, section_class):
                raise ValueError(f"ProSConfig.{key} must be a {section_class.__name__}, got {type(section).__name__}.")
            if section is not None:
                section.validate()  # fields written after construction too


def _section_field_names(section_class) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(section_class))


def _build_section(section_class, given, flat: dict):
    """A section from what the constructor got: a section instance or a dict (nested in config.json), and flat
    fields, which win. None when neither holds anything."""
    if given is None and not flat:
        return None
    if isinstance(given, section_class):
        given = given.to_dict()
    elif given is None:
        given = {}
    elif not isinstance(given, dict):
        raise ValueError(
            f"A ProSConfig section must be a {section_class.__name__} or a dict, got {type(given).__name__}."
        )
    values = {**given, **flat}
    unknown = sorted(set(values) - set(_section_field_names(section_class)))
    if unknown:
        raise ValueError(
            f"{section_class.__name__} has no field {unknown[0]!r}; its fields are "
            f"{list(_section_field_names(section_class))}."
        )
    return section_class(**values)


_LABEL_ARGUMENTS = ("num_labels", "id2label", "label2id")


def _int_ids(label2id: dict) -> dict:
    """`label2id` with integer ids: transformers' common tests (and some saved configs) give them as strings."""
    try:
        return {name: int(index) for name, index in label2id.items()}
    except (TypeError, ValueError):
        raise ValueError(f"ProSConfig.label2id must map label names to integer ids, got {label2id}.") from None


def _normalise_label_maps(kwargs: dict) -> dict:
    """Integer ids in `label2id` (as transformers makes the keys of `id2label` integers), `id2label` filled from a
    lone `label2id` (transformers ignores one), and a `num_labels` that contradicts the label names refused instead
    of transformers' warning that keeps the names."""
    id2label, label2id = kwargs.get("id2label"), kwargs.get("label2id")
    num_labels = kwargs.get("num_labels")
    if num_labels is not None and (not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 0):
        # 0 is transformers' way to a classifier without a classification layer (the pooled features as logits)
        raise ValueError(f"ProSConfig.num_labels must be an integer >= 0, got {num_labels!r}.")
    if label2id is not None:
        kwargs["label2id"] = label2id = _int_ids(label2id)
    if label2id is not None and id2label is None:
        kwargs["id2label"] = id2label = {index: name for name, index in label2id.items()}
    if num_labels is not None and id2label is not None and len(id2label) != num_labels:
        raise ValueError(
            f"ProSConfig.num_labels={num_labels} contradicts the {len(id2label)} labels of id2label/label2id; "
            "give the label names alone (num_labels follows from them)."
        )
    return kwargs


__all__ = [
    "ProSConfig",
    "ProSLandmarkConfig",
    "ProSPreTrainingConfig",
    "PRESETS",
    "TARGET_MODES",
    "CLASSIFIER_POOLINGS",
    "LANDMARK_DECODERS",
    "PROBLEM_TYPES",
]
