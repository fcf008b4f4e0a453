"""ProSForPreTraining: a student and an EMA teacher ViT matched through learnable prototypes.

The student sees every crop (global and local, one backbone call per resolution); the teacher sees only the global
crops, without gradient, and is always in eval mode. Both map the CLS token through a projection head to an
L2-normalised vector, compare it with K prototypes (cosine similarity) and turn the similarities into distributions:
the student's with a softmax at `student_temperature`, the teacher's by `target_mode` (centering, Sinkhorn-Knopp or
sharpening). The loss is the cross-entropy from each teacher view to every other student view, plus optional me-max
and KoLeo terms, and optionally iBOT's masked patch term (`patch_loss_weight`): some patches of the student's global
crops are masked, and its patch tokens there must match the teacher's for the unmasked crop. After each optimizer
step the trainer calls `update_teacher(momentum)`.

Kept separate from `modeling_pros.py` so that a backbone's or a head's folder holds no pre-training code;
`save_pretrained` copies this file, `modeling_pros.py`, `configuration_pros.py` and `losses.py` next to a pre-training
checkpoint for `trust_remote_code=True` users. The model's config always holds its `pretraining_config` section (built
with the defaults where the config had none), so a checkpoint records every field its loss read.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_pros import ProSConfig
from .losses import (
    centered_teacher_probabilities,
    entropy,
    koleo_loss,
    masked_patch_loss,
    mean_entropy_maximization,
    prototype_matching_loss,
    prototype_scores,
    sharpened_teacher_probabilities,
    sinkhorn_knopp,
    update_center,
)
from .modeling_pros import ProSModel, ProSPreTrainedModel, host_to_device

logger = logging.get_logger(__name__)


@dataclass
class ProSPreTrainingOutput(ModelOutput):
    """Loss and the signals that tell a learning run from a collapsed one (all detached except `loss`).

    A `matching_loss` stuck at ln K means uniform collapse; one near 0 within an epoch means one-hot collapse.
    `teacher_entropy` (mean entropy of the teacher targets), `student_mean_entropy` (entropy of the batch-mean student
    distribution: low when every image lands on the same prototypes) and `active_prototypes` (prototypes that are the
    teacher's argmax for at least one image on this process) tell the two apart.
    """

    loss: torch.FloatTensor | None = None
    matching_loss: torch.FloatTensor | None = None
    me_max_loss: torch.FloatTensor | None = None
    koleo_loss: torch.FloatTensor | None = None
    patch_loss: torch.FloatTensor | None = None
    teacher_entropy: torch.FloatTensor | None = None
    student_mean_entropy: torch.FloatTensor | None = None
    active_prototypes: torch.LongTensor | None = None
    teacher_temperature: torch.FloatTensor | None = None


class ProSProjectionHead(nn.Module):
    """DINO's head without its last layer: MLP `hidden_size -> head_hidden_size ... -> head_bottleneck_size`, GELU,
    optional BatchNorm. The prototypes play the part of DINO's weight-normalised last layer."""

    def __init__(self, config: ProSConfig):
        super().__init__()
        layers = []
        width = config.hidden_size
        for _ in range(config.head_num_layers - 1):
            layers.append(nn.Linear(width, config.head_hidden_size))
            if config.head_use_bn:
                layers.append(nn.BatchNorm1d(config.head_hidden_size))
            layers.append(nn.GELU())
            width = config.head_hidden_size
        layers.append(nn.Linear(width, config.head_bottleneck_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)


class ProSForPreTraining(ProSPreTrainedModel):
    """Student, teacher, heads, prototypes and center. `forward(global_crops, local_crops)` returns the loss."""

    def __init__(self, config: ProSConfig):
        config.ensure_section("pretraining_config")
        super().__init__(config)
        self.student = ProSModel(config)
        self.teacher = ProSModel(config)
        self.student_head = ProSProjectionHead(config)
        self.teacher_head = ProSProjectionHead(config)
        # A plain matrix (not weight_norm, whose state-dict keys change across torch versions), normalised in forward.
        self.prototypes = nn.Parameter(torch.empty(config.num_prototypes, config.head_bottleneck_size))
        if not config.share_prototypes:
            self.teacher_prototypes = nn.Parameter(
                torch.empty(config.num_prototypes, config.head_bottleneck_size), requires_grad=False
            )
        self.register_buffer("center", torch.zeros(1, config.num_prototypes))
        if config.patch_loss_weight > 0:
            self.register_buffer("patch_center", torch.zeros(1, config.num_prototypes))
        self.post_init()
        for parameter in self._teacher_parameters():
            parameter.requires_grad_(False)
        self.copy_student_to_teacher()
        self.train(self.training)  # puts the teacher in eval mode from the start

    # ------------------------------------------------------------------------------------------------------------ #
    # initialisation and the teacher
    # ------------------------------------------------------------------------------------------------------------ #
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        if isinstance(module, ProSForPreTraining):
            init.trunc_normal_(module.prototypes, mean=0.0, std=self.config.initializer_range)
            if hasattr(module, "teacher_prototypes"):
                init.copy_(module.teacher_prototypes, module.prototypes)
            init.zeros_(module.center)
            if hasattr(module, "patch_center"):
                init.zeros_(module.patch_center)

    def _student_parameters(self) -> list[nn.Parameter]:
        parameters = [*self.student.parameters(), *self.student_head.parameters()]
        return parameters if self.config.share_prototypes else parameters + [self.prototypes]

    def _teacher_parameters(self) -> list[nn.Parameter]:
        parameters = [*self.teacher.parameters(), *self.teacher_head.parameters()]
        return parameters if self.config.share_prototypes else parameters + [self.teacher_prototypes]

    def _paired_float_buffers(self):
        student = [b for b in [*self.student.buffers(), *self.student_head.buffers()] if b.is_floating_point()]
        teacher = [b for b in [*self.teacher.buffers(), *self.teacher_head.buffers()] if b.is_floating_point()]
        return student, teacher

    @torch.no_grad()
    def copy_student_to_teacher(self) -> None:
        """Teacher = student, as at the start of training."""
        for teacher, student in zip(self._teacher_parameters(), self._student_parameters()):
            teacher.copy_(student)
        for teacher, student in zip(*reversed(self._paired_float_buffers())):
            teacher.copy_(student)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """`theta_t <- m theta_t + (1 - m) theta_s` with fused `_foreach` ops; call after every optimizer step, on
        every process, on the unwrapped model (a wrapper's copy of the weights may be a shard or a replica)."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"update_teacher: momentum must be in [0, 1], got {momentum}")
        teacher = [p.data for p in self._teacher_parameters()]
        student = [p.data for p in self._student_parameters()]
        self._check_paired_shapes(teacher, student)
        student_buffers, teacher_buffers = self._paired_float_buffers()
        teacher += teacher_buffers
        student += student_buffers
        # teacher + (1 - m) (student - teacher) = m teacher + (1 - m) student in one pass over the weights (mul_ then
        # add_ read and write the teacher twice); exact at m = 0 and m = 1 (torch's lerp uses the nearer endpoint)
        torch._foreach_lerp_(teacher, student, 1.0 - momentum)

    def _check_paired_shapes(self, teacher: list[torch.Tensor], student: list[torch.Tensor]) -> None:
        """Under FSDP each process holds a shard of every parameter: the EMA pairs shards, which match only when
        student and teacher modules are sharded as alike units."""
        for index, (t, s) in enumerate(zip(teacher, student)):
            if t.shape != s.shape:
                names = [f"teacher.{n}" for n, _ in self.teacher.named_parameters()]
                names += [f"teacher_head.{n}" for n, _ in self.teacher_head.named_parameters()] + ["teacher_prototypes"]
                raise ValueError(
                    f"update_teacher: {names[index]} holds shape {tuple(t.shape)} on this process and its student "
                    f"counterpart {tuple(s.shape)}, so the two are sharded differently. Under FSDP, wrap ProSLayer, "
                    "ProSModel and ProSProjectionHead as units (examples/accelerate_configs/fsdp.yaml), so that each "
                    "teacher unit is laid out and sharded like its student unit; separate teacher prototypes "
                    "(share_prototypes=False) cannot be paired under FSDP."
                )

    def train(self, mode: bool = True):
        """The teacher stays in eval mode whatever the rest does (no drop-path, frozen BatchNorm statistics)."""
        super().train(mode)
        self.teacher.eval()
        self.teacher_head.eval()
        return self

    def export_teacher(self, state_dict: dict[str, torch.Tensor] | None = None) -> ProSModel:
        """A standalone `ProSModel` holding the teacher backbone: the product of pre-training.

        `state_dict`: this model's full state dict, where its parameters are sharded (FSDP, DeepSpeed ZeRO-3), as
        `accelerator.get_state_dict` gathers it; its `teacher.` entries are taken. A sharded teacher's own
        `state_dict()` would hold shards."""
        # its own copy of the config with the backbone's fields only: no pre-training section, and no `auto_map` of
        # the pre-training model's saves (it names modeling_pros_pretraining.py, which the backbone's folder does not
        # hold); a teacher built with a mask token keeps it (`use_mask_token`)
        backbone = ProSModel(self.config.to_backbone_config())
        if state_dict is None:
            teacher = self.teacher.state_dict()
        else:
            teacher = {
                name[len("teacher.") :]: value for name, value in state_dict.items() if name.startswith("teacher.")
            }
        backbone.load_state_dict(teacher)
        return backbone.eval()

    # ------------------------------------------------------------------------------------------------------------ #
    # forward
    # ------------------------------------------------------------------------------------------------------------ #
    def _embed(self, backbone: ProSModel, head: ProSProjectionHead, crops: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) crops -> (V, B, d) head outputs, with one backbone call for the whole group."""
        batch_size, num_views = crops.shape[:2]
        features = head(
            backbone(
                crops.flatten(0, 1), pooled_only=True, output_hidden_states=False, output_attentions=False
            ).pooler_output
        )
        return features.view(batch_size, num_views, -1).transpose(0, 1)

    def _embed_masked(
        self,
        backbone: ProSModel,
        head: ProSProjectionHead,
        crops: torch.Tensor,
        bool_masked_pos: torch.Tensor,
        patch_index: torch.Tensor,
        mask_input: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `_embed`, for the global crops with the masked patch loss: the last block runs on every token, and
        the head maps the CLS token and the patch tokens at `bool_masked_pos` (one head call), gathered with
        `patch_index` (`masked_patch_index`). Returns the (G, B, d) CLS features and the (M, d) features of the M
        masked patches. With `mask_input` (the student) those patches are masked in the input; without it (the
        teacher) the whole crop is seen and only read at those patches."""
        batch_size, num_views = crops.shape[:2]
        tokens = backbone(
            crops.flatten(0, 1),
            bool_masked_pos=bool_masked_pos if mask_input else None,
            output_hidden_states=False,
            output_attentions=False,
        ).last_hidden_state
        num_images = tokens.shape[0]
        patches = tokens[:, 1:].flatten(0, 1).index_select(0, patch_index)
        features = head(torch.cat((tokens[:, 0], patches), dim=0))
        cls_features = features[:num_images].view(batch_size, num_views, -1).transpose(0, 1)
        return cls_features, features[num_images:]

    def sample_patch_masks(
        self, num_images: int, num_patches: int, device: torch.device, return_num_masked: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, int]:
        """(num_images, num_patches) bool masks: `round(mask_probability * num_images)` images (at least one),
        chosen at random, each hide a `mask_ratio`-uniform fraction of their patches (at least one), chosen uniformly
        at random; the rest keep every patch. Drawn from torch's global generators, which checkpoints save: how many
        patches each image hides on the CPU, so that their total (returned too with `return_num_masked`) is known
        without waiting for the device, and which ones on `device`."""
        config = self.config
        num_masked_images = max(1, round(config.mask_probability * num_images))
        low, high = config.mask_ratio
        ratios = torch.empty(num_images).uniform_(low, high)
        counts = (ratios * num_patches).round().clamp_(1, num_patches).long()
        chosen = torch.zeros(num_images, dtype=torch.bool)
        chosen[torch.randperm(num_images)[:num_masked_images]] = True
        counts = torch.where(chosen, counts, torch.zeros_like(counts))
        num_masked = int(counts.sum())
        counts = host_to_device(counts, device)
        ranks = torch.rand(num_images, num_patches, device=device).argsort(dim=1).argsort(dim=1)
        masks = ranks < counts.unsqueeze(1)
        return (masks, num_masked) if return_num_masked else masks

    @staticmethod
    def masked_patch_index(bool_masked_pos: torch.Tensor, num_masked: int) -> torch.Tensor:
        """(num_masked,) flat indices `image * num_patches + patch` of the masked patches, in the row-major order of
        `bool_masked_pos.nonzero()`, computed with shapes fixed by `num_masked` (known on the host), where boolean
        indexing would make the host wait for the device to count them."""
        num_images, num_patches = bool_masked_pos.shape
        device = bool_masked_pos.device
        counts = bool_masked_pos.sum(dim=1)
        order = (~bool_masked_pos).to(torch.uint8).argsort(dim=1, stable=True)  # each row's masked patches first
        image = torch.repeat_interleave(torch.arange(num_images, device=device), counts, output_size=num_masked)
        within = torch.arange(num_masked, device=device) - (counts.cumsum(0) - counts)[image]
        return image * num_patches + order[image, within]

    def training_flops_per_image(
        self,
        global_size: int,
        num_global: int = 2,
        local_size: int | None = None,
        num_local: int = 0,
        compiled: bool = False,
    ) -> float:
        """Matrix-multiplication FLOPs (2 per multiply-add) of one image's training step: the student's forward and
        backward over every crop, the teacher's forward over the global crops, heads and prototypes included.

        Counted the way `forward` runs: the last block on the CLS token alone (all tokens still give keys and
        values) unless the masked patch loss needs every token, the head on the expected number of masked patches
        too. A backward pass costs two forwards, except in the patch embedding (its input needs no gradient: one) and
        in attention (2.5: the fused kernels recompute the scores; torch's FlopCounterMode counts it so). With
        stochastic depth, the student's blocks count the expected share of samples they run on, or all of them when
        `compiled` (compiled blocks keep DINO's mask). The Trainer's default estimate (6 x input numel x parameters) would count uint8 source
        pixels as tokens.
        """
        if num_local and not local_size:
            raise ValueError(f"training_flops_per_image: {num_local} local crops need their local_size.")
        config = self.config
        d, m, k, p = config.hidden_size, config.intermediate_size, config.num_prototypes, config.patch_size
        widths = [d] + [config.head_hidden_size] * (config.head_num_layers - 1) + [config.head_bottleneck_size]
        head = 2 * sum(a * b for a, b in zip(widths, widths[1:])) + 2 * config.head_bottleneck_size * k
        patch_loss = config.patch_loss_weight > 0

        depth = config.num_hidden_layers
        # the student's blocks skip the samples stochastic depth drops (ProSLayer): block i runs on 1 - rate_i of
        # them on average; the teacher, in eval mode, on all
        student_keep = [1.0 if compiled else 1.0 - config.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]

        def crops_forward(side: int, count: int, all_tokens: bool, keep: list[float]) -> tuple[float, float, float]:
            """Forward FLOPs of `count` crops of `side` pixels, as (patch embedding, attention, everything else);
            `keep`: the share of samples each block runs on."""
            patches = (side // p) ** 2
            tokens = patches + 1 + config.num_register_tokens
            queries = tokens if all_tokens else 1  # the last block: keys and values from every token
            full, last = sum(keep[:-1]), keep[-1]  # the full blocks together, and the last one
            embedding = 2 * patches * 3 * p * p * d
            attention = 4 * d * tokens * (full * tokens + last * queries)
            heads = 1.0
            if all_tokens:  # the masked patch loss: the head also maps the masked patches
                heads += config.mask_probability * sum(config.mask_ratio) / 2 * patches
            other = (
                2 * tokens * (4 * d * d + 2 * d * m) * full  # qkv, o_proj, MLP of the full blocks
                + last * (2 * tokens * 3 * d * d + 2 * queries * (d * d + 2 * d * m))  # the last block
                + heads * head
            )
            return count * embedding, count * attention, count * other

        global_parts = crops_forward(global_size, num_global, patch_loss, student_keep)
        local_parts = crops_forward(local_size, num_local, False, student_keep) if num_local else (0.0, 0.0, 0.0)
        embedding, attention, other = (g + loc for g, loc in zip(global_parts, local_parts))
        student = 2 * embedding + 3.5 * attention + 3 * other  # forward and backward
        teacher = sum(crops_forward(global_size, num_global, patch_loss, [1.0] * depth))  # forward only
        return float(student + teacher)

    def _teacher_targets(self, scores: torch.Tensor, temperature: float, center: torch.Tensor) -> torch.Tensor:
        mode = self.config.target_mode
        if mode == "center":
            return centered_teacher_probabilities(scores, center, temperature)
        if mode == "sinkhorn":
            flat = scores.reshape(-1, scores.shape[-1])
            return sinkhorn_knopp(flat, temperature, self.config.sinkhorn_iterations).view_as(scores)
        return sharpened_teacher_probabilities(scores, temperature, self.config.sharpen_temperature)

    @staticmethod
    def _count_active_prototypes(targets: torch.Tensor) -> torch.Tensor:
        """Prototypes that are the teacher's argmax for at least one view, as a device tensor: `unique().numel()`
        would force a host sync on every training step."""
        winners = targets.argmax(dim=-1).flatten()
        hit = torch.zeros(targets.shape[-1], dtype=torch.bool, device=targets.device).index_fill_(0, winners, True)
        return hit.sum()

    @staticmethod
    def _check_crops(name: str, crops: torch.Tensor) -> None:
        if not isinstance(crops, torch.Tensor) or crops.ndim != 5:
            shape = tuple(crops.shape) if isinstance(crops, torch.Tensor) else type(crops).__name__
            raise ValueError(
                f"ProSForPreTraining expects {name} of shape (batch, views, 3, height, width), got {shape}."
            )

    def forward(
        self,
        global_crops: torch.Tensor,
        local_crops: torch.Tensor | None = None,
        teacher_temperature: float | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ProSPreTrainingOutput | tuple:
        r"""
        global_crops (`torch.FloatTensor` of shape `(batch, G, 3, H, W)`): seen by the teacher and the student.
        local_crops (`torch.FloatTensor` of shape `(batch, L, 3, h, w)`, *optional*): seen by the student only.
        teacher_temperature (`float`, *optional*): tau_t for this step (the trainer's warm-up schedule); defaults to
            `config.teacher_temperature`.
        """
        self._check_crops("global_crops", global_crops)
        num_global = global_crops.shape[1]
        if local_crops is not None:
            self._check_crops("local_crops", local_crops)
            if local_crops.shape[0] != global_crops.shape[0]:
                raise ValueError(
                    f"global_crops and local_crops must have the same batch size, got {global_crops.shape[0]} and "
                    f"{local_crops.shape[0]}."
                )
            if local_crops.shape[1] == 0:
                local_crops = None
        if num_global + (local_crops.shape[1] if local_crops is not None else 0) < 2:
            raise ValueError("ProSForPreTraining needs at least two views per image (e.g. two global crops).")
        temperature = float(teacher_temperature if teacher_temperature is not None else self.config.teacher_temperature)
        config = self.config

        # student: one backbone call per crop resolution, views first: (V, B, d)
        bool_masked_pos = None
        if config.patch_loss_weight > 0:
            patch_height, patch_width = self.student.embeddings.patch_embeddings.patch_size
            grid = (global_crops.shape[-2] // patch_height) * (global_crops.shape[-1] // patch_width)
            bool_masked_pos, num_masked = self.sample_patch_masks(
                global_crops.shape[0] * num_global, grid, global_crops.device, return_num_masked=True
            )
            patch_index = self.masked_patch_index(bool_masked_pos, num_masked)
            student_features, student_patch_features = self._embed_masked(
                self.student, self.student_head, global_crops, bool_masked_pos, patch_index, mask_input=True
            )
        else:
            student_features = self._embed(self.student, self.student_head, global_crops)
        if local_crops is not None:
            student_features = torch.cat(
                (student_features, self._embed(self.student, self.student_head, local_crops)), dim=0
            )
        student_scores = prototype_scores(student_features, self.prototypes)
        student_log_probabilities = F.log_softmax(student_scores / config.student_temperature, dim=-1)

        # teacher: global crops only, no gradient, eval mode
        with torch.no_grad():
            prototypes = self.prototypes if config.share_prototypes else self.teacher_prototypes
            if bool_masked_pos is not None:
                teacher_features, teacher_patch_features = self._embed_masked(
                    self.teacher, self.teacher_head, global_crops, bool_masked_pos, patch_index, mask_input=False
                )
                teacher_patch_scores = prototype_scores(teacher_patch_features, prototypes.detach())
                patch_targets = self._teacher_targets(teacher_patch_scores, temperature, self.patch_center)
            else:
                teacher_features = self._embed(self.teacher, self.teacher_head, global_crops)
            teacher_scores = prototype_scores(teacher_features, prototypes.detach())
            targets = self._teacher_targets(teacher_scores, temperature, self.center)

        matching_loss = prototype_matching_loss(targets, student_log_probabilities)
        loss = matching_loss
        patch_loss = None
        if bool_masked_pos is not None:
            student_patch_log_probabilities = F.log_softmax(
                prototype_scores(student_patch_features, self.prototypes) / config.student_temperature, dim=-1
            )
            patch_loss = masked_patch_loss(patch_targets, student_patch_log_probabilities, bool_masked_pos)
            loss = loss + config.patch_loss_weight * patch_loss
        student_probabilities = student_log_probabilities.exp()
        me_max_loss = koleo = None
        if config.me_max_weight > 0:
            me_max_loss = mean_entropy_maximization(student_probabilities)
            loss = loss + config.me_max_weight * me_max_loss
        if config.koleo_weight > 0 and student_features.shape[1] < 2:
            # KoLeo spreads a batch's features apart: one image (an epoch's last, short batch) has no neighbour
            logger.warning_once(
                "KoLeo is left out of batches of a single image (it needs a neighbour); the matching "
                "loss still trains on them. Use dataloader_drop_last to avoid such batches."
            )
        elif config.koleo_weight > 0:
            koleo = torch.stack([koleo_loss(view) for view in student_features[:num_global]]).mean()
            loss = loss + config.koleo_weight * koleo

        with torch.no_grad():
            if config.target_mode == "center" and self.training:
                update_center(self.center, teacher_scores, config.center_momentum)
                if bool_masked_pos is not None:
                    update_center(self.patch_center, teacher_patch_scores, config.center_momentum)
            output = ProSPreTrainingOutput(
                loss=loss,
                matching_loss=matching_loss.detach(),
                me_max_loss=me_max_loss.detach() if me_max_loss is not None else None,
                koleo_loss=koleo.detach() if koleo is not None else None,
                patch_loss=patch_loss.detach() if patch_loss is not None else None,
                teacher_entropy=entropy(targets).mean(),
                student_mean_entropy=entropy(student_probabilities.reshape(-1, config.num_prototypes).mean(0)),
                active_prototypes=self._count_active_prototypes(targets),
                teacher_temperature=torch.tensor(temperature),
            )
        return output if return_dict is not False else output.to_tuple()


__all__ = ["ProSForPreTraining", "ProSPreTrainingOutput", "ProSProjectionHead"]
