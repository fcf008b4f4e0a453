"""Frozen features of a backbone in the two views the probes read: pooled (CLS + mean patch token) and tokens (CLS
and every patch token, for spatial targets such as landmarks)."""

import torch
from tqdm.auto import tqdm


def pool_features(hidden: torch.Tensor, view: str) -> torch.Tensor:
    """`hidden` (B, 1 + P, D), the final-norm tokens -> (B, 2D) pooled or (B, (1 + P) D) tokens."""
    if view == "pooled":
        return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1)
    if view == "tokens":
        return hidden.flatten(1)
    raise ValueError(f"view must be 'pooled' or 'tokens', got {view!r}.")


@torch.inference_mode()
def frozen_features(
    model: torch.nn.Module,
    pixel_values: torch.Tensor,
    views=("pooled", "tokens"),
    batch_size: int = 256,
    show_progress: bool = False,
) -> dict[str, torch.Tensor]:
    """The `views` of `model`'s final-norm tokens for every image of `pixel_values` (N, 3, H, W), float32 on the
    CPU; the model runs in eval mode and its mode is restored."""
    was_training = model.training
    model.eval()
    out = {view: [] for view in views}
    try:
        for start in tqdm(
            range(0, len(pixel_values), batch_size), desc="Frozen features", disable=not show_progress, leave=False
        ):
            hidden = model(pixel_values=pixel_values[start : start + batch_size]).last_hidden_state.float()
            for view in views:
                out[view].append(pool_features(hidden, view).cpu())
    finally:
        model.train(was_training)
    return {view: torch.cat(chunks) for view, chunks in out.items()}


__all__ = ["frozen_features", "pool_features"]
