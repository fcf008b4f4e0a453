"""The pieces of the prototype matching loss, each small, pure and tested.

Every function works in float32 whatever the autocast state: softmax over tens of thousands of prototypes, Sinkhorn
iterations and entropies lose too much in bf16/fp16. Collective operations run only when a process group exists, so a
single-process run never touches `torch.distributed`.

`modeling_pros_pretraining.py` imports this file relatively, so it is copied next to a pre-training checkpoint's
weights (for `trust_remote_code=True` users): torch only.
"""

import functools
import math

import torch
import torch.distributed as dist
from torch.nn import functional as F


def _fp32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype == torch.float32 else tensor.float()


def _autocast_off(function):
    """Run `function` with autocast disabled on its tensors' device, so its matmuls and reductions stay in fp32."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        tensor = next((value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)), None)
        device_type = tensor.device.type if tensor is not None else "cpu"
        if not torch.amp.is_autocast_available(device_type):  # e.g. "meta": shapes only, nothing to keep in fp32
            return function(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return function(*args, **kwargs)

    return wrapper


def distributed_world_size() -> int:
    """Processes in the default group; 1 when there is none (a plain single-process run)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (in place) when a process group exists; identity otherwise."""
    if distributed_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over processes (in place) when a process group exists; identity otherwise."""
    world_size = distributed_world_size()
    if world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(world_size)
    return tensor


class _CosineScores(torch.autograd.Function):
    """`(z_n @ P^T) / |p_k|` with a hand-written backward.

    Autograd's backward of the prototype norm makes three passes over the (K, d) prototype matrix (divide, multiply,
    accumulate); this one makes one (`addcmul_`), which matters with K = 65,536: normalising the prototypes was the
    most expensive elementwise work of a step. The gradient is the exact gradient of the cosine (tested against
    autograd with gradcheck).
    """

    @staticmethod
    def forward(ctx, features, prototypes):
        inverse_norms = torch.linalg.vector_norm(prototypes, dim=-1).clamp_min(1e-12).reciprocal()
        scores = (features @ prototypes.t()).mul_(inverse_norms)
        ctx.save_for_backward(features, prototypes, inverse_norms, scores)
        return scores

    @staticmethod
    def backward(ctx, grad_scores):
        features, prototypes, inverse_norms, scores = ctx.saved_tensors
        grad_raw = grad_scores * inverse_norms  # d loss / d (z . p_k)
        grad_features = grad_raw @ prototypes if ctx.needs_input_grad[0] else None
        grad_prototypes = None
        if ctx.needs_input_grad[1]:
            # d/dp_k of (z . p_k)/|p_k| = z/|p_k| - (z . p_k) p_k/|p_k|^3: the second term is p_k times one scalar per k
            radial = (grad_scores * scores).sum(dim=0).mul_(inverse_norms.square())
            grad_prototypes = (grad_raw.t() @ features).addcmul_(prototypes, radial.unsqueeze(1), value=-1.0)
        return grad_features, grad_prototypes


@_autocast_off
def prototype_scores(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarities `s_k = z . p_k` between features (..., d) and prototypes (K, d) -> (..., K)."""
    leading = features.shape[:-1]
    features = F.normalize(_fp32(features), dim=-1).reshape(-1, features.shape[-1])
    prototypes = _fp32(prototypes)
    if torch.is_grad_enabled() and (features.requires_grad or prototypes.requires_grad):
        scores = _CosineScores.apply(features, prototypes)
    else:
        inverse_norms = torch.linalg.vector_norm(prototypes, dim=-1).clamp_min(1e-12).reciprocal()
        scores = (features @ prototypes.t()).mul_(inverse_norms)
    return scores.reshape(*leading, prototypes.shape[0])


@_autocast_off
def entropy(probabilities: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy (nats) along `dim`; 0 log 0 taken as 0."""
    probabilities = _fp32(probabilities)
    return -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim)


@_autocast_off
def centered_teacher_probabilities(scores: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """DINO's teacher targets: `softmax((s - c) / tau_t)`. The center `c` removes the dominant direction that would
    otherwise let one prototype win for every image; the low temperature sharpens, and the two balance each other."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.softmax((_fp32(scores) - _fp32(center)) / temperature, dim=-1)


@torch.no_grad()
@_autocast_off
def sinkhorn_knopp(scores: torch.Tensor, temperature: float, iterations: int = 3) -> torch.Tensor:
    """Sinkhorn-Knopp targets (SwAV, DINOv2): rows of `exp(s / tau)` rescaled so that, over the whole global batch,
    every prototype receives the same mass and every sample sums to one. Returns (B, K) with rows summing to 1.

    The balancing makes collapse impossible by construction; the batch sums are all-reduced, so the constraint holds
    for the global batch in multi-process runs.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    scores = _fp32(scores)
    # subtract the global max before exp: the result is unchanged (it is normalised) and exp cannot overflow
    shift = scores.max().detach().clone()
    if distributed_world_size() > 1:
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    q = torch.exp((scores - shift) / temperature).t()  # (K, B)
    num_prototypes = q.shape[0]
    batch_size = torch.tensor(q.shape[1], device=q.device, dtype=torch.float32)
    all_reduce_sum(batch_size)
    q /= all_reduce_sum(q.sum()).clamp_min(1e-30)
    for _ in range(iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True)).clamp_min(1e-30)  # each prototype: total mass 1/K
        q /= num_prototypes
        q /= q.sum(dim=0, keepdim=True).clamp_min(1e-30)  # each sample: total mass 1/B
        q /= batch_size
    return (q * batch_size).t()


@_autocast_off
def sharpened_teacher_probabilities(scores: torch.Tensor, temperature: float, sharpen_temperature: float):
    """MSN's targets: `softmax(s / tau)^(1 / T)`, renormalised. T < 1 sharpens; pair with me-max against collapse."""
    if temperature <= 0 or sharpen_temperature <= 0:
        raise ValueError(f"temperatures must be > 0, got {temperature} and {sharpen_temperature}")
    probabilities = F.softmax(_fp32(scores) / temperature, dim=-1) ** (1.0 / sharpen_temperature)
    return probabilities / probabilities.sum(dim=-1, keepdim=True)


@_autocast_off
def prototype_matching_loss(
    teacher_probabilities: torch.Tensor, student_log_probabilities: torch.Tensor
) -> torch.Tensor:
    """The ProS matching loss: mean over (teacher view g, student view v), v != g, of H(q_t(g), q_s(v)).

    teacher_probabilities: (G, B, K), the teacher's targets for the G global views.
    student_log_probabilities: (V, B, K), the student's log-distributions for all V views; its first G views are
        the same crops as the teacher's, in the same order, and are not matched with themselves.
    """
    num_global, num_views = teacher_probabilities.shape[0], student_log_probabilities.shape[0]
    if num_views < num_global:
        raise ValueError(f"the student must see at least the {num_global} global views, got {num_views} views")
    if num_views == 1:
        raise ValueError("the matching loss needs at least two views: one global view has no other view to match")
    teacher_probabilities = _fp32(teacher_probabilities)
    student_log_probabilities = _fp32(student_log_probabilities)
    # cross[g, v] = mean over the batch of -sum_k q_t(g) log q_s(v); one einsum instead of G x V small products
    cross = -torch.einsum("gbk,vbk->gv", teacher_probabilities, student_log_probabilities)
    cross = cross / teacher_probabilities.shape[1]
    same_view = torch.eye(num_global, num_views, dtype=torch.bool, device=cross.device)
    # a masked sum over the known number of pairs: masked_select would make the host wait for the device
    return cross.masked_fill(same_view, 0.0).sum() / (num_global * num_views - num_global)


@_autocast_off
def masked_patch_loss(
    teacher_probabilities: torch.Tensor, student_log_probabilities: torch.Tensor, bool_masked_pos: torch.Tensor
) -> torch.Tensor:
    """iBOT's masked patch term: H(q_t, q_s) averaged over the masked patches of each image, then over the images
    that have any (so an image with few masked patches counts as much as one with many, as in iBOT and DINOv2).

    teacher_probabilities, student_log_probabilities: (M, K) for the M masked patches, in the row-major order of
        `bool_masked_pos[bool_masked_pos]`.
    bool_masked_pos: (N, P), which patches of the N images were masked.
    """
    per_image = bool_masked_pos.sum(dim=1)
    num_masked = teacher_probabilities.shape[0]
    # checked where it is free: on an accelerator, reading the count would make the host wait for the device
    if bool_masked_pos.device.type == "cpu" and int(per_image.sum()) != num_masked:
        raise ValueError(
            f"masked_patch_loss got {num_masked} patch distributions for {int(per_image.sum())} masked patches"
        )
    masked_images = (per_image > 0).sum().clamp_min(1)
    weights = (1.0 / per_image.clamp_min(1).float()).repeat_interleave(per_image, output_size=num_masked)
    weights = weights / masked_images
    cross = -(_fp32(teacher_probabilities) * _fp32(student_log_probabilities)).sum(dim=-1)
    return (cross * weights).sum()


@_autocast_off
def mean_entropy_maximization(student_probabilities: torch.Tensor) -> torch.Tensor:
    """MSN's me-max regulariser, `log K - H(mean q_s)` >= 0: zero when the batch uses every prototype equally.

    The batch mean is all-reduced (with gradient flowing through the local part), so the regulariser sees the global
    batch as MSN's does.
    """
    probabilities = _fp32(student_probabilities).reshape(-1, student_probabilities.shape[-1])
    mean = probabilities.mean(dim=0)
    world_size = distributed_world_size()
    if world_size > 1:
        total = mean.detach().clone()
        all_reduce_sum(total)
        mean = mean / world_size + (total - mean.detach()) / world_size
    return math.log(probabilities.shape[-1]) - entropy(mean)


@_autocast_off
def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """DINOv2's KoLeo regulariser: `-mean log(distance to the nearest other sample)` of L2-normalised features.
    It spreads features uniformly; it needs at least two samples per process."""
    if features.shape[0] < 2:
        raise ValueError("koleo_loss needs at least two samples per process (it compares each with its neighbours)")
    features = F.normalize(_fp32(features), dim=-1)
    with torch.no_grad():
        similarities = features @ features.t()
        similarities.fill_diagonal_(-2.0)
        nearest = similarities.argmax(dim=1)
    distances = (features - features[nearest]).norm(dim=-1)
    return -torch.log(distances + eps).mean()


@torch.no_grad()
@_autocast_off
def update_center(center: torch.Tensor, teacher_scores: torch.Tensor, momentum: float) -> None:
    """`c <- m c + (1 - m) mean_batch(s_t)` in place, the batch mean all-reduced across processes (DINO)."""
    batch_mean = _fp32(teacher_scores).reshape(-1, teacher_scores.shape[-1]).mean(dim=0, keepdim=True)
    all_reduce_mean(batch_mean)
    center.mul_(momentum).add_(batch_mean.to(center.dtype), alpha=1.0 - momentum)


__all__ = [
    "all_reduce_mean",
    "all_reduce_sum",
    "centered_teacher_probabilities",
    "distributed_world_size",
    "entropy",
    "koleo_loss",
    "masked_patch_loss",
    "mean_entropy_maximization",
    "prototype_matching_loss",
    "prototype_scores",
    "sharpened_teacher_probabilities",
    "sinkhorn_knopp",
    "update_center",
]
