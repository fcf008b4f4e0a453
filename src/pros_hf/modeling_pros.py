"""ProS models: the ViT backbone whose teacher copy is the product of pre-training.

Written the way transformers' own `models/vit` and `models/dinov2` are (classes prefixed with the model name, each
submodule takes the whole config, initialisation only in `_init_weights`), with two deliberate differences:

- one fused `qkv` projection instead of three: one matmul instead of three per block, and the layout of DINO/timm
  checkpoints, which then convert without reshuffling (`pros_hf.convert`);
- outputs are collected explicitly instead of through transformers' private output-capturing decorators, which
  change between minor versions.

`save_pretrained` copies this file and `configuration_pros.py` to the Hub for `trust_remote_code=True` users who do
not have the package: it must import nothing but torch, transformers and its own relative imports.
"""

import re

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_pros import ProSConfig, pair


class ProSPatchEmbeddings(nn.Module):
    """Non-overlapping `patch_size` patches projected to `hidden_size` (a strided convolution, as in ViT)."""

    def __init__(self, config: ProSConfig):
        super().__init__()
        self.patch_size = pair(config.patch_size)
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class ProSEmbeddings(nn.Module):
    """CLS token + patch embeddings + learnable position embeddings, interpolated for other input sizes; then the
    register tokens, if any, between the CLS token and the patches (DINOv2 with registers), without position."""

    def __init__(self, config: ProSConfig):
        super().__init__()
        self.config = config
        self.grid_size = config.grid_size
        self.patch_embeddings = ProSPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        num_positions = self.grid_size[0] * self.grid_size[1] + 1
        self.position_embeddings = nn.Parameter(torch.zeros(1, num_positions, config.hidden_size))
        # replaces the patches `bool_masked_pos` marks (ViT's and Dinov2's `use_mask_token`); the masked patch loss of
        # pre-training needs one, in the student and (to pair their weights for the EMA) in the teacher
        has_mask_token = config.use_mask_token or config.patch_loss_weight > 0
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if has_mask_token else None
        num_registers = config.num_register_tokens
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_registers, config.hidden_size)) if num_registers > 0 else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def interpolate_pos_encoding(self, grid_height: int, grid_width: int, dtype: torch.dtype) -> torch.Tensor:
        """Position embeddings for a `grid_height x grid_width` patch grid.

        Resampled bicubically to that exact grid (not by a scale factor, which rounds differently across versions),
        in float32, since bicubic resampling in half precision shifts the embeddings; antialiased where
        `config.interpolate_antialias` says so (the resampling DINOv2-with-registers was trained with).
        """
        if (grid_height, grid_width) == self.grid_size:
            return (
                self.position_embeddings
                if self.position_embeddings.dtype == dtype
                else self.position_embeddings.to(dtype)
            )
        cls_position = self.position_embeddings[:, :1]
        patch_positions = self.position_embeddings[:, 1:]
        dim = patch_positions.shape[-1]
        patch_positions = patch_positions.reshape(1, *self.grid_size, dim).permute(0, 3, 1, 2)
        patch_positions = nn.functional.interpolate(
            patch_positions.float(),
            size=(grid_height, grid_width),
            mode="bicubic",
            align_corners=False,
            antialias=self.config.interpolate_antialias,
        )
        patch_positions = patch_positions.permute(0, 2, 3, 1).reshape(1, grid_height * grid_width, dim)
        return torch.cat((cls_position.float(), patch_positions), dim=1).to(dtype)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        height, width = pixel_values.shape[-2:]
        patch_height, patch_width = self.patch_embeddings.patch_size
        embeddings = self.patch_embeddings(pixel_values)
        if bool_masked_pos is not None:
            mask_token = self.mask_token.to(embeddings.dtype)
            embeddings = torch.where(bool_masked_pos.unsqueeze(-1), mask_token, embeddings)
        cls_token = self.cls_token if self.cls_token.dtype == embeddings.dtype else self.cls_token.to(embeddings.dtype)
        cls_tokens = cls_token.expand(embeddings.shape[0], -1, -1)
        embeddings = torch.cat((cls_tokens, embeddings), dim=1)
        embeddings = embeddings + self.interpolate_pos_encoding(
            height // patch_height, width // patch_width, embeddings.dtype
        )
        if self.register_tokens is not None:
            registers = self.register_tokens.to(embeddings.dtype).expand(embeddings.shape[0], -1, -1)
            embeddings = torch.cat((embeddings[:, :1], registers, embeddings[:, 1:]), dim=1)
        return self.dropout(embeddings)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Plain softmax attention; the reference implementation and the one that can return attention maps."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class ProSAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection, dispatched through transformers' attention interface.

    `config._attn_implementation` picks the kernel ("sdpa" by default, "eager", or any registered one), looked up on
    every call through `ALL_ATTENTION_FUNCTIONS.get_interface`, as transformers' ViT does: that is what lets
    `model.set_attn_implementation(...)` switch a built model. When attention maps are requested the eager path is used
    for that call, since fused kernels do not return them.
    """

    def __init__(self, config: ProSConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False, num_queries: int | None = None):
        """`num_queries`: attend from the first `num_queries` tokens only (all tokens still give keys and values)."""
        batch_size, seq_len, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, seq_len, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if num_queries is not None:
            query = query[:, :, :num_queries]

        if output_attentions:
            attention_interface = eager_attention_forward
        else:
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            None,
            scaling=self.scaling,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            is_causal=False,
        )
        attn_output = self.o_proj(attn_output.reshape(batch_size, query.shape[2], -1))
        return attn_output, (attn_weights if output_attentions else None)


class ProSMLP(nn.Module):
    def __init__(self, config: ProSConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # one expression, so the wide activation is freed as soon as fc2 has consumed it
        return self.dropout(self.fc2(self.activation_fn(self.fc1(hidden_states))))


class ProSLayerScale(nn.Module):
    """A learnable per-channel scale of a residual branch (DINOv2's and CaiT's layer scale); `lambda1` as DINOv2's."""

    def __init__(self, config: ProSConfig):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.ones(config.hidden_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states * self.lambda1


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a whole residual branch per sample (Huang et al., 2016), rescaling the kept ones."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    mask = hidden_states.new_empty(shape).bernoulli_(keep_prob)
    return hidden_states * mask.div_(keep_prob)


def kept_samples(batch_size: int, drop_prob: float, device: torch.device) -> torch.Tensor | None:
    """Stochastic depth's draw for one residual branch: the indices of the samples that keep it, each with
    probability `1 - drop_prob` as in `drop_path`, or None when all of them do. Drawn on the CPU, from torch's global
    generator (which checkpoints save), so that the host knows how many without waiting for the device."""
    kept = (torch.rand(batch_size) >= drop_prob).nonzero().flatten()
    return None if len(kept) == batch_size else host_to_device(kept, device)


def host_to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A small CPU tensor drawn on the host, on `device` without making the host wait: a pageable copy to a GPU
    waits for the GPU's queue, one from pinned memory does not."""
    on_gpu = torch.device(device).type == "cuda"
    return (tensor.pin_memory() if on_gpu else tensor).to(device, non_blocking=on_gpu)


def add_kept_branch(
    residual: torch.Tensor, branch, branch_input: torch.Tensor, kept: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """`residual + branch(branch_input) * mask * scale` for the 0/1 mask of `kept` (see `kept_samples`), with the
    branch run on the kept samples only: the dropped ones add nothing, so their work is skipped."""
    if kept is None:
        return residual + branch(branch_input) * scale
    if kept.numel() == 0:  # none keeps it: one sample's branch, times 0, so that every parameter still gets a gradient
        return residual + (branch(branch_input[:1]) * 0.0).sum().to(residual.dtype)  # (times 0 first: a half sum
        # of a whole branch can overflow to inf, and inf * 0 is NaN)
    output = branch(branch_input.index_select(0, kept)).to(residual.dtype)
    return residual.index_add(0, kept, output, alpha=scale)


class ProSLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block (DINO's `Block`): x + attn(norm1(x)), then x + mlp(norm2(x)); with layer scale
    (`config.layerscale_value`), each branch is scaled per channel first (DINOv2's block)."""

    def __init__(self, config: ProSConfig, layer_index: int = 0):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ProSAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ProSMLP(config)
        has_layer_scale = config.layerscale_value is not None
        self.layer_scale1 = ProSLayerScale(config) if has_layer_scale else None
        self.layer_scale2 = ProSLayerScale(config) if has_layer_scale else None
        # DINO's linearly increasing stochastic depth: 0 for the first block, drop_path_rate for the last.
        depth = config.num_hidden_layers
        self.drop_path_rate = config.drop_path_rate * layer_index / max(depth - 1, 1)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False, num_queries: int | None = None):
        """`num_queries`: compute the block's output for the first `num_queries` tokens only (see ProSModel)."""
        if self.training and self.drop_path_rate > 0 and not output_attentions and not torch.compiler.is_compiling():
            return self._forward_kept_samples(hidden_states, num_queries), None
        attn_output, attn_weights = self.attention(
            self.norm1(hidden_states), output_attentions=output_attentions, num_queries=num_queries
        )
        if num_queries is not None:
            hidden_states = hidden_states[:, :num_queries]
        hidden_states = hidden_states + drop_path(self._scaled(attn_output, 1), self.drop_path_rate, self.training)
        del attn_output  # not kept alive through the MLP: one residual-stream tensor less at the peak
        mlp_output = drop_path(self._scaled(self.mlp(self.norm2(hidden_states)), 2), self.drop_path_rate, self.training)
        return hidden_states + mlp_output, attn_weights

    def _scaled(self, branch_output: torch.Tensor, branch: int) -> torch.Tensor:
        """A residual branch's output times its layer scale (`branch` 1: attention, 2: MLP), if the block has one."""
        layer_scale = self.layer_scale1 if branch == 1 else self.layer_scale2
        return branch_output if layer_scale is None else layer_scale(branch_output)

    def _forward_kept_samples(self, hidden_states: torch.Tensor, num_queries: int | None) -> torch.Tensor:
        """Training with stochastic depth: each branch runs only on the samples that keep it (DINOv2's
        `drop_add_residual_stochastic_depth`, with DINO's per-sample draws), which saves `drop_path_rate` of the
        branch's work on average: the same outputs and gradients as `drop_path`'s mask, without computing what the
        mask zeroes. Compiled blocks keep the mask (fixed shapes compile once)."""
        batch_size, device = hidden_states.shape[0], hidden_states.device
        scale = 1.0 / (1.0 - self.drop_path_rate)
        residual = hidden_states if num_queries is None else hidden_states[:, :num_queries]

        def attention(tokens):
            return self._scaled(self.attention(self.norm1(tokens), num_queries=num_queries)[0], 1)

        hidden_states = add_kept_branch(
            residual, attention, hidden_states, kept_samples(batch_size, self.drop_path_rate, device), scale
        )
        return add_kept_branch(
            hidden_states,
            lambda tokens: self._scaled(self.mlp(self.norm2(tokens)), 2),
            hidden_states,
            kept_samples(batch_size, self.drop_path_rate, device),
            scale,
        )


class ProSEncoder(nn.Module):
    def __init__(self, config: ProSConfig):
        super().__init__()
        self.layer = nn.ModuleList([ProSLayer(config, index) for index in range(config.num_hidden_layers)])

    def forward(self, hidden_states, output_attentions=False, output_hidden_states=False, pooled_only=False):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        last = len(self.layer) - 1
        for index, layer in enumerate(self.layer):
            num_queries = 1 if pooled_only and index == last else None
            hidden_states, attn_weights = layer(
                hidden_states, output_attentions=output_attentions, num_queries=num_queries
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (attn_weights,)
        return hidden_states, all_hidden_states, all_attentions


class ProSPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading logic shared by every ProS model."""

    config_class = ProSConfig
    config: ProSConfig
    base_model_prefix = "pros"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ProSEmbeddings", "ProSLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: ProSConfig, *inputs, **kwargs):
        if isinstance(config, ProSConfig):
            config._validate()  # fields assigned after construction (`config.num_attention_heads = 5`) too
        super().__init__(config, *inputs, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        """All initialisation lives here: transformers 5.x builds models on the meta device and calls this for every
        tensor that was not loaded from a checkpoint, so weights set up in a module's `__init__` would be lost."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ProSEmbeddings):
            init.trunc_normal_(module.cls_token, mean=0.0, std=std)
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
            if module.mask_token is not None:
                init.zeros_(module.mask_token)
            if module.register_tokens is not None:  # random, not DINOv2's zeros: identical registers stay identical
                init.trunc_normal_(module.register_tokens, mean=0.0, std=std)
        elif isinstance(module, ProSLayerScale):
            init.constant_(module.lambda1, self.config.layerscale_value)

    def get_layer_id(self, parameter_name: str) -> int:
        """Depth of a parameter for layer-wise learning-rate decay (BEiT, DINOv2): 0 for the embeddings (patch
        projection, CLS, register and mask tokens, position embeddings, the pre-norm), `i + 1` for block `i`,
        `num_hidden_layers + 1` for the final norm and everything after it (task heads). Takes names as `named_parameters()` gives them, with any prefix
        (`pros.`, PEFT's `base_model.model.`)."""
        match = re.search(r"(?:^|\.)encoder\.layer\.(\d+)\.", parameter_name)
        if match:
            return int(match.group(1)) + 1
        if re.search(r"(?:^|\.)(?:embeddings|pre_layernorm)\.", parameter_name):
            return 0
        return self.config.num_hidden_layers + 1

    def backbone_parameter_names(self) -> list[str]:
        """Names (as `named_parameters()` gives them) of the backbone's parameters; the others belong to the task
        head. A `ProSModel` is all backbone."""
        backbone = getattr(self, self.base_model_prefix, None)
        if backbone is None:
            return [name for name, _ in self.named_parameters()]
        return [f"{self.base_model_prefix}.{name}" for name, _ in backbone.named_parameters()]


class ProSModel(ProSPreTrainedModel):
    """The ProS ViT backbone: what pre-training exports (the teacher) and what downstream heads fine-tune.

    `pooler_output` is the final-norm CLS token, the image representation used by k-NN evaluation, retrieval and
    the classification heads. `last_hidden_state` is the final norm of every token (CLS first, then the patch grid in
    row-major order), as in ViT and DINOv2. Imported CLIP weights keep this layout: CLIP's `post_layernorm` becomes
    the final norm, so `pooler_output` equals `CLIPVisionModel`'s, and the patch tokens are normalised by it too,
    where `CLIPVisionModel.last_hidden_state` is not; CLIP's un-normalised tokens are `hidden_states[-1]`.
    """

    def __init__(self, config: ProSConfig, use_mask_token: bool = False):
        r"""
        use_mask_token (`bool`, *optional*, defaults to `False`):
            Build a mask token for `bool_masked_pos`, as `ProSConfig(use_mask_token=True)` does; recorded in the
            config, so that the saved model loads back with it.
        """
        super().__init__(config)
        if use_mask_token:
            config.use_mask_token = True
        self.embeddings = ProSEmbeddings(config)
        # CLIP's `ln_pre`: part of the embeddings for `hidden_states[0]` and layer-wise learning-rate decay
        self.pre_layernorm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.use_pre_layernorm else None
        )
        self.encoder = ProSEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> ProSPatchEmbeddings:
        return self.embeddings.patch_embeddings

    def _check_pixel_values(self, pixel_values) -> None:
        """Catch the inputs a user gets wrong before torch reports them from inside a convolution."""
        if pixel_values is None:
            raise ValueError("ProSModel needs `pixel_values` of shape (batch, channels, height, width).")
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(
                f"ProSModel expects `pixel_values` as a torch.Tensor, got {type(pixel_values).__name__}; "
                "run images through ProSImageProcessor(..., return_tensors='pt') first."
            )
        if not pixel_values.is_floating_point():
            raise TypeError(
                f"ProSModel expects normalised floating-point `pixel_values`, got dtype {pixel_values.dtype}; "
                "uint8 images must go through ProSImageProcessor or MultiCropAugmentation first."
            )
        if pixel_values.ndim != 4:
            raise ValueError(
                f"ProSModel expects `pixel_values` of shape (batch, channels, height, width), got shape "
                f"{tuple(pixel_values.shape)}."
            )
        if pixel_values.shape[0] == 0:
            raise ValueError(f"ProSModel got an empty batch (`pixel_values` of shape {tuple(pixel_values.shape)}).")
        if pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"ProSModel expects {self.config.num_channels} channels (config.num_channels), got "
                f"{pixel_values.shape[1]} in `pixel_values` of shape {tuple(pixel_values.shape)}."
            )
        patch_height, patch_width = pair(self.config.patch_size)
        height, width = pixel_values.shape[-2:]
        if height % patch_height or width % patch_width or height == 0 or width == 0:
            raise ValueError(
                f"ProSModel needs image sides that are positive multiples of the patch size "
                f"{(patch_height, patch_width)}, got {height}x{width}; resize or crop the input."
            )

    def _check_bool_masked_pos(self, bool_masked_pos, pixel_values) -> None:
        if self.embeddings.mask_token is None:
            raise ValueError(
                "`bool_masked_pos` needs a mask token: build the model with `use_mask_token=True` "
                "(`ProSConfig(use_mask_token=True)` or `ProSModel(config, use_mask_token=True)`); "
                "pre-training with patch_loss_weight > 0 builds one."
            )
        patch_height, patch_width = pair(self.config.patch_size)
        num_patches = (pixel_values.shape[-2] // patch_height) * (pixel_values.shape[-1] // patch_width)
        if bool_masked_pos.dtype != torch.bool or tuple(bool_masked_pos.shape) != (pixel_values.shape[0], num_patches):
            raise ValueError(
                f"`bool_masked_pos` must be a bool tensor of shape (batch, num_patches) = "
                f"{(pixel_values.shape[0], num_patches)}, got {bool_masked_pos.dtype} "
                f"{tuple(bool_masked_pos.shape)}."
            )

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        pooled_only: bool = False,
        bool_masked_pos: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Normalised images; any height and width that are multiples of `patch_size` (position embeddings are
            interpolated).
        output_attentions (`bool`, *optional*): return each block's attention maps (computed with eager attention),
            over every token: CLS, the register tokens if any, then the patches.
        output_hidden_states (`bool`, *optional*): return the embeddings (after the pre-norm, if any) and each
            block's output (before the final norm), `num_hidden_layers + 1` tensors.
        pooled_only (`bool`, *optional*, defaults to `False`): compute only what `pooler_output` needs. The last
            block's patch-token outputs feed nothing but `last_hidden_state`, so its attention is computed for the CLS
            query alone and its output projection and MLP for the CLS token alone (the qkv projection still runs on
            every token, which supplies the keys and values): the same `pooler_output`, about 3/4 of one block's
            work less. Pre-training uses it, since its loss sees the CLS token only. `last_hidden_state` then holds the CLS token alone, shape (batch, 1, hidden).
        bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_patches)`, *optional*): patches whose
            embedding is replaced by the mask token, in row-major grid order; needs a model with a mask token
            (`use_mask_token=True`, or pre-training with `patch_loss_weight > 0`).
        """
        self._check_pixel_values(pixel_values)
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pooled_only and (output_hidden_states or output_attentions):
            raise ValueError(
                "`pooled_only=True` skips the last block's patch tokens; it cannot also return "
                "`hidden_states` or `attentions`."
            )

        weight = self.embeddings.patch_embeddings.projection.weight
        if pixel_values.dtype != weight.dtype and not torch.is_autocast_enabled(pixel_values.device.type):
            pixel_values = pixel_values.to(weight.dtype)
        if bool_masked_pos is not None:
            self._check_bool_masked_pos(bool_masked_pos, pixel_values)
        embeddings = self.embeddings(pixel_values, bool_masked_pos)
        if self.pre_layernorm is not None:
            embeddings = self.pre_layernorm(embeddings)
        hidden_states, all_hidden_states, all_attentions = self.encoder(
            embeddings,
            output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states),
            pooled_only=pooled_only,
        )
        sequence_output = self.layernorm(hidden_states)
        pooled_output = sequence_output[:, 0]
        if self.embeddings.register_tokens is not None and not pooled_only:
            sequence_output = self._without_registers(sequence_output)
            if all_hidden_states is not None:
                all_hidden_states = tuple(self._without_registers(states) for states in all_hidden_states)
        if not return_dict:
            extras = tuple(value for value in (all_hidden_states, all_attentions) if value is not None)
            return (sequence_output, pooled_output) + extras
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )

    def _without_registers(self, tokens: torch.Tensor) -> torch.Tensor:
        """The CLS token and the patch tokens: every consumer of the outputs (heads, patch loss, retrieval) reads
        `tokens[:, 1:]` as the patch grid, and DINOv2 discards the registers' outputs as well."""
        return torch.cat((tokens[:, :1], tokens[:, 1 + self.config.num_register_tokens :]), dim=1)


__all__ = ["ProSPreTrainedModel", "ProSModel"]
