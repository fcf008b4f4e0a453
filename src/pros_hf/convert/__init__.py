"""Import pre-trained ViT weights as a saved `ProSModel` whose features equal the source model's.

    python -m pros_hf.convert --checkpoint FaRL-Base-Patch16-LAIONFace20M-ep64.pth --output ./pros-from-farl
    python -m pros_hf.convert --checkpoint facebook/dinov2-base --output ./pros-from-dinov2

The format is detected (`sources.FORMATS`): DINO/timm ViT state dicts (`timm_vit`), OpenAI CLIP / open_clip / FaRL
state dicts (`openai_clip`), and transformers CLIP and DINOv2 folders or Hub ids (`transformers_clip`,
`transformers_dinov2`). Each module maps its source's weights onto ProSModel's names and its architecture onto
ProSConfig's fields; anything a ProSModel cannot compute is refused by name rather than dropped, and every error is
one line naming the source.
"""

from .checkpoints import ConversionError
from .command_line import main
from .sources import FORMATS, ConvertedModel, convert_model


def convert_checkpoint(path: str, key: str | None = None, num_attention_heads: int | None = None, **overrides):
    """The `ProSModel` of `convert_model(path, ...)`, without its image processor."""
    return convert_model(path, key=key, num_attention_heads=num_attention_heads, **overrides).model


__all__ = ["FORMATS", "ConversionError", "ConvertedModel", "convert_checkpoint", "convert_model", "main"]
