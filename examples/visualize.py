"""DINO-style attention maps: where the last block's CLS token looks, per head and averaged, overlaid on faces.

    python examples/visualize.py --output attention.png                     # random-init micro model
    python examples/visualize.py --model ./pros-vits --num_images 6 --output attention.png

A pre-trained ProS teacher should attend to the face and its parts (eyes, mouth, hair line), with heads specialising;
a random-init model gives diffuse, input-independent-looking maps.
"""

import logging
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser

from pros_hf import ProSConfig, ProSImageProcessor, ProSModel
from pros_hf.cli import parse_flags
from pros_hf.data.decoding import UnreadableImageError, open_image_rgb
from pros_hf.knn import load_backbone_and_processor, load_labelled_dataset
from pros_hf.knn.features import check_image_column
from pros_hf.visualization import cls_attention_maps, denormalize, figure_path, save_attention_figure

logger = logging.getLogger("visualize")


@dataclass
class VisualizeArguments:
    model: str | None = field(
        default=None,
        metadata={
            "help": "A saved ProSModel folder or Hub id, or a ProSForPreTraining checkpoint (its teacher is "
            "shown). Default: a random-init 'micro' ProSModel, to see what 'not learned' looks like."
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "A folder written by datasets' save_to_disk with an image column. Default: synthetic faces."},
    )
    split: str = field(default="train", metadata={"help": "Split to use when --dataset is a DatasetDict."})
    image_column: str = field(default="image", metadata={"help": "Column holding the (PIL) images."})
    num_images: int = field(default=4, metadata={"help": "Images to show, one row each."})
    image_size: int = field(
        default=64,
        metadata={
            "help": "Side of the synthetic faces and the default model's input. Attention maps have one cell "
            "per patch, so a larger input gives finer maps (e.g. 128 px = 16x16 cells with patch 8)."
        },
    )
    layer: int = field(default=-1, metadata={"help": "Block whose attention is shown; DINO shows the last (-1)."})
    upsample: str = field(
        default="nearest",
        metadata={
            "help": "'nearest' keeps one block per patch (honest about the resolution, as DINO shows it); "
            "'bilinear' or 'bicubic' smooth.",
            "choices": ["nearest", "bilinear", "bicubic"],
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the synthetic faces and the random-init model."})
    output: str = field(
        default="attention_maps.png",
        metadata={
            "help": "Figure file to write (.png unless another matplotlib extension is given; added when none is)."
        },
    )


def _load_images(args) -> list:
    """The first --num_images images of --dataset (default: synthetic faces), decoded as training decodes them."""
    if args.dataset is None:
        from pros_hf.data.synthetic import make_synthetic_faces

        try:
            return list(make_synthetic_faces(args.num_images, image_size=args.image_size, seed=args.seed)["image"])
        except ValueError as error:  # checked before any face is rendered
            raise SystemExit(f"visualize.py: {error}") from None
    import datasets

    try:  # a missing folder or --split, an image column that does not exist or holds no images: one line each
        dataset = load_labelled_dataset(args.dataset, args.split)
        check_image_column(dataset, args.image_column)
    except ValueError as error:
        raise SystemExit(f"--dataset: {error}") from None
    column = dataset.select(range(min(args.num_images, len(dataset)))).select_columns([args.image_column])
    feature = column.features[args.image_column]
    if isinstance(feature, datasets.Image) and feature.decode:  # raw bytes: datasets' decoder stops at a bad file
        column = column.cast_column(args.image_column, datasets.Image(decode=False))
    images = []
    for row, source in enumerate(column[args.image_column]):
        try:  # convert("RGB") would show 16-bit greyscale as white and float images as black
            images.append(open_image_rgb(source))
        except UnreadableImageError as error:
            logger.warning("Skipping row %d of %s: %s", row, args.dataset, error)
    if not images:
        raise SystemExit(f"--dataset {args.dataset!r}: none of its first {len(column)} images could be decoded.")
    return images


def main(argv=None) -> str:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (args,) = parse_flags(HfArgumentParser(VisualizeArguments), argv, "visualize.py")
    # Mistakes that can be known before loading and running the model are refused first, in one line.
    if args.num_images <= 0:
        raise SystemExit(f"--num_images must be positive, got {args.num_images}.")
    try:
        output = figure_path(args.output)  # adds .png to a bare name: the path printed is the file written
    except ValueError as error:  # its messages start with "output"
        raise SystemExit(f"--{error}") from None

    if args.model is None:
        torch.manual_seed(args.seed)
        try:
            model = ProSModel(ProSConfig.from_preset("micro", image_size=args.image_size)).eval()
        except ValueError as error:  # e.g. an --image_size that is not a multiple of the patch size
            raise SystemExit(f"--image_size: {error}") from None
        processor = ProSImageProcessor.from_model_config(model.config)
        name = "random-init micro ProSModel"
    else:
        try:
            model, processor = load_backbone_and_processor(args.model)
        except (OSError, ValueError) as error:  # a missing folder, a Hub id that cannot be reached, not a ProS model
            raise SystemExit(f"--model: {error}") from None
        name = args.model
    depth = model.config.num_hidden_layers
    if not -depth <= args.layer < depth:
        raise SystemExit(f"--layer {args.layer} is not a block of this {depth}-block model: use 0..{depth - 1}, or "
                         f"-1..-{depth} from the last.")  # fmt: skip

    images = _load_images(args)
    pixel_values = processor(images, return_tensors="pt")["pixel_values"]
    maps = cls_attention_maps(model, pixel_values, layer=args.layer)
    layer = args.layer % depth
    title = f"CLS attention, block {layer}: {name}"
    output = save_attention_figure(denormalize(pixel_values, processor.image_mean, processor.image_std), maps, output,
                                   upsample=args.upsample, title=title)  # fmt: skip
    heads, grid_h, grid_w = maps.shape[1:]
    print(f"wrote {output} ({len(images)} images x {heads} heads, {grid_h}x{grid_w} patches)")
    return output


if __name__ == "__main__":
    main()
