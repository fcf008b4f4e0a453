"""ProS model configuration.

The backbone fields use transformers' ViT names, so a ViT user reads them without a glossary. The pre-training fields
are the knobs of the prototype self-distillation loss (see REFERENCE.md section 2): each one is explained below with
why it matters, DINO-style. `ProSModel` ignores the pre-training fields; `ProSForPreTraining` reads them.

This file is copied next to the weights by `save_pretrained` (for `trust_remote_code=True` users), so it imports only
transformers.
"""

from transformers import PreTrainedConfig


TARGET_MODES = ("center", "sinkhorn", "sharpen")

# Named sizes. "micro" is the test size: it trains hundreds of steps per minute on two CPU cores.
PRESETS = {
    "micro": dict(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256, image_size=32,
        patch_size=8, head_hidden_size=128, head_bottleneck_size=32, num_prototypes=64, drop_path_rate=0.0,
    ),
    "vit-s16": dict(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, image_size=224,
        patch_size=16,
    ),
    "vit-b16": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, image_size=224,
        patch_size=16,
    ),
    "vit-l16": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, image_size=224,
        patch_size=16, drop_path_rate=0.3,
    ),
}


class ProSConfig(PreTrainedConfig):
    r"""
    Configuration of a ProS ViT backbone (`ProSModel`) and of its prototype self-distillation pre-training
    (`ProSForPreTraining`). Defaults give a ViT-B/16 at 224 px with DINO's pre-training recipe.

    Backbone (transformers' ViT names):
        hidden_size (`int`, 768): token width. num_hidden_layers (`int`, 12): transformer blocks.
        num_attention_heads (`int`, 12): must divide `hidden_size`. intermediate_size (`int`, 3072): MLP width.
        hidden_act (`str`, "gelu"): MLP activation. layer_norm_eps (`float`, 1e-6): DINO/timm ViTs use 1e-6; converted
        checkpoints depend on it. image_size (`int`, 224) and patch_size (`int`, 16): the position-embedding grid is
        `image_size // patch_size` per side; other input sizes are interpolated. num_channels (`int`, 3).
        qkv_bias (`bool`, True). hidden_dropout_prob / attention_probs_dropout_prob (`float`, 0.0): self-distillation
        uses none. drop_path_rate (`float`, 0.1): stochastic depth, linearly increasing over depth; applied to the
        student only (the teacher runs in eval mode); 0.1 for ViT-S/B, higher for ViT-L. initializer_range
        (`float`, 0.02): truncated-normal std of weights, CLS token and position embeddings.

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
        target_mode (`str`, "center"): how teacher targets avoid collapse. "center" subtracts a running mean of the
            teacher scores (DINO); "sinkhorn" balances the batch with Sinkhorn-Knopp (SwAV, DINOv2); "sharpen" raises
            the teacher distribution to the power 1/sharpen_temperature (MSN, pair it with me-max).
        center_momentum (`float`, 0.9): EMA momentum of the center in "center" mode.
        sinkhorn_iterations (`int`, 3): Sinkhorn-Knopp iterations in "sinkhorn" mode.
        sharpen_temperature (`float`, 0.25): T in "sharpen" mode.
        me_max_weight (`float`, None -> 1.0 with "sharpen", else 0.0): weight of mean-entropy maximisation, which
            spreads the batch over the prototypes (MSN).
        koleo_weight (`float`, 0.0): weight of the KoLeo uniformity regulariser on head outputs (DINOv2); needs more
            than one image per process.

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
        head_hidden_size=2048,
        head_bottleneck_size=256,
        head_num_layers=3,
        head_use_bn=False,
        num_prototypes=65536,
        share_prototypes=True,
        student_temperature=0.1,
        teacher_temperature=0.07,
        warmup_teacher_temperature=0.04,
        target_mode="center",
        center_momentum=0.9,
        sinkhorn_iterations=3,
        sharpen_temperature=0.25,
        me_max_weight=None,
        koleo_weight=0.0,
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
        self.head_hidden_size = head_hidden_size
        self.head_bottleneck_size = head_bottleneck_size
        self.head_num_layers = head_num_layers
        self.head_use_bn = head_use_bn
        self.num_prototypes = num_prototypes
        self.share_prototypes = share_prototypes
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.target_mode = target_mode
        self.center_momentum = center_momentum
        self.sinkhorn_iterations = sinkhorn_iterations
        self.sharpen_temperature = sharpen_temperature
        if me_max_weight is None:
            me_max_weight = 1.0 if target_mode == "sharpen" else 0.0
        self.me_max_weight = me_max_weight
        self.koleo_weight = koleo_weight
        super().__init__(**kwargs)
        self._validate()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ProSConfig":
        """A named size ("micro", "vit-s16", "vit-b16", "vit-l16"), with any field overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"Unknown ProS preset {name!r}; valid presets are {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches per side (rows, columns) of the position-embedding grid at `image_size`."""
        height, width = _pair(self.image_size)
        patch_height, patch_width = _pair(self.patch_size)
        return height // patch_height, width // patch_width

    def _validate(self) -> None:
        """Fail at construction, naming the field, instead of deep inside a forward pass."""
        positive_ints = (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_channels",
            "head_hidden_size", "head_bottleneck_size", "head_num_layers", "num_prototypes", "sinkhorn_iterations",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ProSConfig.{name} must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"ProSConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        for name in ("image_size", "patch_size"):
            sides = _pair(getattr(self, name))
            if len(sides) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in sides):
                raise ValueError(f"ProSConfig.{name} must be a positive integer or a pair of them, got "
                                 f"{getattr(self, name)!r}.")
        for side, patch in zip(_pair(self.image_size), _pair(self.patch_size)):
            if side % patch:
                raise ValueError(
                    f"ProSConfig.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})."
                )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"ProSConfig.{name} must be in [0, 1), got {getattr(self, name)!r}.")
        for name in ("layer_norm_eps", "initializer_range", "student_temperature", "teacher_temperature",
                     "warmup_teacher_temperature", "sharpen_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ProSConfig.{name} must be > 0, got {getattr(self, name)!r}.")
        if self.warmup_teacher_temperature > self.teacher_temperature:
            raise ValueError(
                f"ProSConfig.warmup_teacher_temperature ({self.warmup_teacher_temperature}) must not exceed "
                f"teacher_temperature ({self.teacher_temperature}): the warm-up goes from sharp to softer."
            )
        if self.target_mode not in TARGET_MODES:
            raise ValueError(f"ProSConfig.target_mode must be one of {TARGET_MODES}, got {self.target_mode!r}.")
        if not 0.0 <= self.center_momentum < 1.0:
            raise ValueError(f"ProSConfig.center_momentum must be in [0, 1), got {self.center_momentum!r}.")
        for name in ("me_max_weight", "koleo_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"ProSConfig.{name} must be >= 0, got {getattr(self, name)!r}.")


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


__all__ = ["ProSConfig", "PRESETS", "TARGET_MODES"]
