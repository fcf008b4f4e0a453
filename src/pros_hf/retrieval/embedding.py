"""L2-normalised image embeddings from any transformers vision model, for the index, dedup and retrieval.

Works with any ``AutoModel`` (or plain callable ``nn.Module``) whose output has ``pooler_output`` (ProSModel, ViT,
DINOv2, ...). Pixels are prepared by the model's image processor when one is given, else by a plain torch
resize + mean/std normalisation (ImageNet statistics by default, the ones ProS pre-training uses).
"""

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..image_processing_pros import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

POOLINGS = ("pooler", "patch_tokens")


def random_init_embedding_model(image_size: int = 32, seed: int = 0):
    """A micro ``ProSModel`` at random init: the default when no model is given (no download, no training).

    Only useful for dedup-level similarity (near-copies, resized or re-encoded versions of the same picture), and only
    with ``pooling="patch_tokens"``: its pooled CLS token puts every aligned face at cosine > 0.95 of another (measured:
    100 of LFW's 100 faces), which would make dedup delete distinct people. For retrieval quality, pass a pre-trained
    model (e.g. a ProS checkpoint) instead. ``image_size=32`` gives 16 patch tokens x 64 = 1024-d vectors.
    """
    from ..configuration_pros import ProSConfig
    from ..modeling_pros import ProSModel

    generator_state = torch.random.get_rng_state()
    try:  # a fixed seed gives the same "random" embedding space on every run, so resumed shards stay comparable
        torch.manual_seed(seed)
        model = ProSModel(ProSConfig.from_preset("micro", image_size=image_size))
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def load_embedding_model(name_or_path: str, trust_remote_code: bool = False):
    """``AutoModel`` and, when the checkpoint has one, its ``AutoImageProcessor`` (else None: mean/std is used)."""
    from transformers import AutoImageProcessor, AutoModel

    import pros_hf  # noqa: F401  (registers the ProS Auto classes)

    model = AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        logger.info("No image processor for %s (%s); using mean/std normalisation.", name_or_path, error)
        processor = None
    return model.eval(), processor


class ImageEmbedder:
    """Batched, L2-normalised embeddings of RGB uint8 crops.

    Args:
        model: a model, a path / Hub id for ``AutoModel``, or None for :func:`random_init_embedding_model`.
        image_processor: called as ``image_processor(images, return_tensors="pt")["pixel_values"]`` when given.
        image_size: side the crops are resized to without a processor (default: ``model.config.image_size``, else
            224).
        image_mean, image_std: normalisation without a processor; must match what the model was trained with.
        pooling: "pooler" (``pooler_output``, the model's image representation: the right choice for a trained
            model) or "patch_tokens" (all tokens but the first, flattened: keeps the spatial layout, the only
            discriminative choice for a random-init model). Default: "pooler", or "patch_tokens" when ``model`` is
            None.
        batch_size: crops per forward pass.
        show_progress: tqdm bar over batches.
    """

    def __init__(
        self,
        model: Any = None,
        image_processor: Any = None,
        image_size: int | None = None,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        pooling: str | None = None,
        batch_size: int = 64,
        show_progress: bool = True,
        trust_remote_code: bool = False,
    ):
        if pooling is None:
            pooling = "patch_tokens" if model is None else "pooler"
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        if len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0:
            raise ValueError(f"image_mean and image_std need 3 values, std > 0; got {image_mean}, {image_std}.")
        if model is None:
            model = random_init_embedding_model()
        elif isinstance(model, str):
            model, loaded_processor = load_embedding_model(model, trust_remote_code=trust_remote_code)
            image_processor = image_processor if image_processor is not None else loaded_processor
        self.model = model.eval() if hasattr(model, "eval") else model
        self.image_processor = image_processor
        config_size = getattr(getattr(model, "config", None), "image_size", None)
        if isinstance(config_size, (tuple, list)):
            config_size = config_size[0]
        self.image_size = int(image_size or config_size or 224)
        self.mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.pooling = pooling
        self.batch_size = int(batch_size)
        self.show_progress = show_progress

    @property
    def device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except (AttributeError, StopIteration):
            return torch.device("cpu")

    def describe(self) -> dict:
        """What determines the embedding space (saved with the curation config so a resume can check it)."""
        return {
            "model": type(self.model).__name__,
            "name_or_path": getattr(getattr(self.model, "config", None), "_name_or_path", None),
            "pooling": self.pooling,
            "image_size": self.image_size,
            "image_processor": type(self.image_processor).__name__ if self.image_processor is not None else None,
        }

    def _pixel_values(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        if self.image_processor is not None:
            return self.image_processor(list(images), return_tensors="pt")["pixel_values"]
        batch = torch.from_numpy(np.stack([np.asarray(image, dtype=np.uint8) for image in images]))
        batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
        if batch.shape[-2:] != (self.image_size, self.image_size):
            batch = F.interpolate(
                batch, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            )
        return (batch - self.mean) / self.std

    def _pool(self, output) -> torch.Tensor:
        if self.pooling == "pooler":
            pooled = getattr(output, "pooler_output", None)
            if pooled is None:
                raise ValueError(
                    f"{type(self.model).__name__} returned no pooler_output; use a model with a pooler "
                    f"(ProSModel, ViTModel, Dinov2Model) or pooling='patch_tokens'."
                )
            return pooled.flatten(1)
        tokens = getattr(output, "last_hidden_state", None)
        if tokens is None or tokens.ndim != 3:
            raise ValueError("pooling='patch_tokens' needs a last_hidden_state (B, tokens, hidden) output.")
        return tokens[:, 1:].flatten(1)

    @torch.inference_mode()
    def embed(self, images: Sequence[np.ndarray], desc: str = "Embedding") -> np.ndarray:
        """(N, D) float32 unit vectors for RGB uint8 (H, W, 3) images; an empty input gives (0, 0)."""
        chunks = []
        starts = range(0, len(images), self.batch_size)
        for start in tqdm(starts, desc=desc, unit="batch", disable=not self.show_progress or len(starts) < 2):
            pixel_values = self._pixel_values(images[start : start + self.batch_size]).to(self.device)
            pooled = self._pool(self.model(pixel_values=pixel_values)).float()
            chunks.append(F.normalize(pooled, dim=1).cpu().numpy())
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    __call__ = embed
