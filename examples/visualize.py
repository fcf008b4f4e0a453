"""DINO-style attention maps: where the last block's CLS token looks, per head and averaged, overlaid on faces.

    python examples/visualize.py --output attention.png                     # random-init micro model
    python examples/visualize.py --model ./pros-vits --num_images 6 --output attention.png

A pre-trained ProS teacher should attend to the face and its parts (eyes, mouth, hair line), with heads specialising;
a random-init model gives diffuse, input-independent-looking maps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser

from pros_hf import ProSConfig, ProSImageProcessor, ProSModel
from pros_hf.knn import load_backbone_and_processor
from pros_hf.visualization import cls_attention_maps, denormalize, save_attention_figure

logger = logging.getLogger("visualize")


@dataclass
class VisualizeArguments:
    model: str | None = field(
        default=None,
        metadata={"help": "A saved ProSModel folder or Hub id, or a ProSForPreTraining checkpoint (its teacher is "
                          "shown). Default: a random-init 'micro' ProSModel, to see what 'not learned' looks like."},
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "A folder written by datasets' save_to_disk with an image column. Default: synthetic "
                          "faces."},
    )
    split: str = field(default="train", metadata={"help": "Split to use when --dataset is a DatasetDict."})
    image_column: str = field(default="image", metadata={"help": "Column holding the (PIL) images."})
    num_images: int = field(default=4, metadata={"help": "Images to show, one row each."})
    image_size: int = field(
        default=64,
        metadata={"help": "Side of the synthetic faces and the default model's input. Attention maps have one cell "
                          "per patch, so a larger input gives finer maps (e.g. 128 px = 16x16 cells with patch 8)."},
    )
    layer: int = field(default=-1, metadata={"help": "Block whose attention is shown; DINO shows the last (-1)."})
    upsample: str = field(
        default="nearest",
        metadata={"help": "'nearest' keeps one block per patch (honest about the resolution, as DINO shows it); "
                          "'bilinear' smooths."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the synthetic faces and the random-init model."})
    output: str = field(default="attention_maps.png", metadata={"help": "PNG file to write."})


def main(argv=None) -> str:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (args,) = HfArgumentParser(VisualizeArguments).parse_args_into_dataclasses(args=argv)
    if args.num_images <= 0:
        raise ValueError(f"--num_images must be positive, got {args.num_images}.")

    if args.model is None:
        torch.manual_seed(args.seed)
        model = ProSModel(ProSConfig.from_preset("micro", image_size=args.image_size)).eval()
        processor = ProSImageProcessor.from_model_config(model.config)
        name = "random-init micro ProSModel"
    else:
        try:
            model, processor = load_backbone_and_processor(args.model)
        except OSError as error:  # a missing folder, or a Hub id that cannot be reached
            raise SystemExit(f"--model: {error}") from None
        name = args.model

    if args.dataset is None:
        from pros_hf.data.synthetic import make_synthetic_faces

        dataset = make_synthetic_faces(args.num_images, image_size=args.image_size, seed=args.seed)
    else:
        import datasets

        dataset = datasets.load_from_disk(args.dataset)
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[args.split]
        dataset = dataset.select(range(min(args.num_images, len(dataset))))
    images = [image.convert("RGB") for image in dataset[args.image_column]]

    pixel_values = processor(images, return_tensors="pt")["pixel_values"]
    maps = cls_attention_maps(model, pixel_values, layer=args.layer)
    layer = args.layer % model.config.num_hidden_layers
    title = f"CLS attention, block {layer}: {name}"
    save_attention_figure(denormalize(pixel_values, processor.image_mean, processor.image_std), maps, args.output,
                          upsample=args.upsample, title=title)  # fmt: skip
    heads, grid_h, grid_w = maps.shape[1:]
    print(f"wrote {args.output} ({len(images)} images x {heads} heads, {grid_h}x{grid_w} patches)")
    return args.output


if __name__ == "__main__":
    main()
