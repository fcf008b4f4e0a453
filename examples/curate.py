"""Face-aware retrieval: curate face-dominant square crops from raw images into a `datasets` folder.

    python examples/curate.py --output /tmp/curated                       # default: scikit-image's real faces
    python examples/curate.py --source ./raw_images --output ./curated --model org/pros-vitb --seeds ./seed_faces

Writes <output>/dataset (load with datasets.load_from_disk), report.json, montage.png, dominance_histogram.png and
resumable shards (rerun the same command after an interruption: finished shards are not recomputed).
"""

import logging
import os
import shutil
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from pros_hf.cli import check_output_folder, parse_flags
from pros_hf.loading import check_model_source
from pros_hf.retrieval import CurationConfig, curate, load_embedding_model, write_demo_images

DEFAULTS = CurationConfig()


@dataclass
class CurateArguments:
    """Every option of face-aware retrieval; the help text says why each default is what it is."""

    output: str = field(metadata={"help": "Output folder: dataset/, shards/, report.json, montage.png, histogram."})
    source: str | None = field(
        default=None,
        metadata={
            "help": "A folder of images, a save_to_disk folder, or a Hub dataset id with an image column. "
            "Default: scikit-image's lfw_subset (100 faces, 100 non-faces) plus astronaut and camera, written "
            "to <output>/demo_source, so the script runs with no data and no network."
        },
    )
    seeds: str | None = field(
        default=None,
        metadata={
            "help": "A folder of seed face images to retrieve around (DINOv2-style curated queries). Default: "
            "the --num_seeds most face-dominant crops of the source itself."
        },
    )
    detector: str = field(
        default=DEFAULTS.detector,
        metadata={
            "help": "Face detector: yunet (accurate, 5 landmarks) or haar (OpenCV cascade: weaker, more "
            "misses on tight crops and more false boxes on scenes).",
            "choices": ["yunet", "haar"],
        },
    )
    min_score: float = field(
        default=DEFAULTS.min_score,
        metadata={
            "help": "Detector confidence in [0, 1]. Lower admits profiles and blur but also face-like "
            "textures, which pre-training would learn as faces; raise to 0.7 on noisy web pools."
        },
    )
    min_face_size: float = field(
        default=DEFAULTS.min_face_size,
        metadata={
            "help": "Shorter side of the face box in original pixels. Smaller faces become interpolation "
            "blur at --crop_size; 16 keeps 25 px LFW crops, use ~64 for real pre-training at 224."
        },
    )
    min_dominance: float = field(
        default=DEFAULTS.min_dominance,
        metadata={
            "help": "Largest face box area / image area. Below it the face is not the dominant region and "
            "the self-distillation crops would be mostly background; 0.2 keeps head-and-shoulders shots."
        },
    )
    margin: float = field(
        default=DEFAULTS.margin,
        metadata={
            "help": "Context around the face on each side, as a fraction of the face side: leaves room for "
            "the multi-crop scale jitter of pre-training. 0 crops the bare box."
        },
    )
    crop_size: int = field(
        default=DEFAULTS.crop_size,
        metadata={"help": "Side of the stored square crops, in pixels; at least the pre-training source size."},
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "Path or Hub id of an AutoModel with pooler_output (e.g. a ProS checkpoint) for the "
            "embeddings. Default: a random-init micro ProSModel (patch-token features), good enough to find "
            "near-duplicates but not for meaningful retrieval."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow --model to run its own code from the Hub (only for trusted repos)."}
    )
    dedup_threshold: float = field(
        default=DEFAULTS.dedup_threshold,
        metadata={
            "help": "Cosine above which two crops count as copies; lower merges distinct photos of a person, "
            "removing the identity variation pre-training needs."
        },
    )
    num_seeds: int = field(
        default=DEFAULTS.num_seeds,
        metadata={"help": "Seed queries when --seeds is not given (the most face-dominant crops)."},
    )
    num_neighbors: int = field(
        default=DEFAULTS.num_neighbors,
        metadata={
            "help": "Neighbours retrieved per seed; the curated set is their union, so seeds x neighbours "
            "bounds its size."
        },
    )
    shard_size: int = field(
        default=DEFAULTS.shard_size,
        metadata={"help": "Source items per shard: bounds memory, and an interruption loses at most one shard."},
    )
    ivf_threshold: int = field(
        default=DEFAULTS.ivf_threshold,
        metadata={"help": "Rows from which the exact FAISS index is replaced by IVF (approximate, sub-linear)."},
    )
    image_column: str = field(default=DEFAULTS.image_column, metadata={"help": "Image column of a dataset --source."})
    split: str = field(default=DEFAULTS.split, metadata={"help": "Split of a dataset --source."})
    push_to_hub: bool = field(
        default=False,
        metadata={
            "help": "Push the curated dataset to the Hub after it is saved locally (needs network and a "
            "login; offline this fails with a clear error and the local copy stays)."
        },
    )
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "Hub repo id for --push_to_hub (default: the --output folder's name)."}
    )


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (args,) = parse_flags(HfArgumentParser(CurateArguments), argv, "curate.py")
    # Every mistake that can be known now is refused now, in one line, before any image is detected or embedded.
    check_output_folder("--output", args.output)
    try:
        config = CurationConfig(
            detector=args.detector,
            min_score=args.min_score,
            min_face_size=args.min_face_size,
            min_dominance=args.min_dominance,
            margin=args.margin,
            crop_size=args.crop_size,
            dedup_threshold=args.dedup_threshold,
            num_seeds=args.num_seeds,
            num_neighbors=args.num_neighbors,
            shard_size=args.shard_size,
            ivf_threshold=args.ivf_threshold,
            image_column=args.image_column,
            split=args.split,
        )
    except ValueError as error:  # the message names the setting, which is also its flag
        raise SystemExit(f"curate.py: {error}") from None
    if args.seeds is not None and not os.path.isdir(args.seeds):
        raise SystemExit(f"--seeds {args.seeds!r} is not a folder of seed face images.")
    processor = None
    model = args.model
    if model is not None:
        try:
            check_model_source(model)  # a missing folder or, offline, an uncached Hub id, named as such
            model, processor = load_embedding_model(model, trust_remote_code=args.trust_remote_code)
        except (OSError, ValueError) as error:
            raise SystemExit(f"--model: {error}") from None
    source = args.source
    if source is not None and os.path.isdir(source) and not os.listdir(source):
        raise SystemExit(
            f"--source {source!r} is an empty folder: give a folder of images, a saved dataset or a Hub dataset id."
        )
    if source is None:
        # written next to the output (not to a temp folder), so that a resumed demo sees the very same files
        source = os.path.join(args.output, "demo_source")
        if not os.path.isdir(source):
            shutil.rmtree(source + ".tmp", ignore_errors=True)
            write_demo_images(source + ".tmp")
            os.replace(source + ".tmp", source)
    try:
        result = curate(
            source,
            args.output,
            config,
            seeds=args.seeds,
            model=model,
            image_processor=processor,
            push_to_hub=(args.hub_dataset_id or os.path.basename(os.path.normpath(args.output)))
            if args.push_to_hub
            else None,
        )
    except (OSError, ValueError) as error:  # a bad --source / --seeds / --image_column, or a resume with new settings
        raise SystemExit(f"curate.py: {error}") from None
    print(result.report.summary())
    print(f"Curated dataset: {result.report.outputs['dataset']} ({len(result.dataset)} crops)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
