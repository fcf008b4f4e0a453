"""`python -m pros_hf.convert`: a source model in, a ProSModel folder (weights, config, image processor) out."""

import argparse
import logging
import sys

from .checkpoints import ConversionError
from .sources import FORMATS, convert_model


def build_parser() -> argparse.ArgumentParser:
    formats = "; ".join(f"{name}: {description}" for name, description in FORMATS.items())
    parser = argparse.ArgumentParser(
        prog="python -m pros_hf.convert",
        description="Import ViT weights as a ProSModel folder whose features equal the source model's.",
    )
    parser.add_argument("--checkpoint", required=True, help=f"The source; its format is detected. {formats}.")
    parser.add_argument("--output", required=True, help="Folder to write the ProSModel and its image processor to.")
    parser.add_argument(
        "--key",
        default=None,
        help="Entry of a training checkpoint file to use (default: the first of teacher, model, "
        "state_dict, student, backbone that is present).",
    )
    parser.add_argument(
        "--num_attention_heads",
        type=int,
        default=None,
        help="Heads per block of a weights file; not stored in the weights. Default hidden_size/64, the rule of "
        "DINO (ViT-S 6, ViT-B 12, ViT-L 16) and of OpenAI's CLIP.",
    )
    parser.add_argument(
        "--layer_norm_eps",
        type=float,
        default=None,
        help="Default: the source's (DINO/timm 1e-6, CLIP 1e-5; a transformers config states its own).",
    )
    parser.add_argument(
        "--hidden_act",
        default=None,
        help="MLP activation of a weights file; not stored in the weights. Default: 'gelu' for "
        "DINO/timm, 'quick_gelu' for OpenAI CLIP and FaRL; open_clip's LAION models need 'gelu'.",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {
        name: value
        for name, value in (("layer_norm_eps", args.layer_norm_eps), ("hidden_act", args.hidden_act))
        if value is not None
    }
    try:
        converted = convert_model(
            args.checkpoint, key=args.key, num_attention_heads=args.num_attention_heads, **overrides
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        converted.save_pretrained(args.output)
    except OSError as error:
        print(f"error: cannot write {args.output}: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    model = converted.model
    print(
        f"Wrote {type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
        f"from a {converted.source_format} source) to {args.output}"
    )
    return 0
