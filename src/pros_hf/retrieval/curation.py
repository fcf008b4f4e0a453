"""Face-aware retrieval, end to end: detect -> threshold -> crop -> embed (in resumable shards) -> merge -> index ->
dedup -> retrieve around seed faces -> save the curated ``datasets`` folder, its report and figures.

Output layout (``output_dir``)::

    curation_config.json     settings that shaped the shards (a resume with other settings is refused)
    shards/shard-00003/      one saved dataset per ``shard_size`` source items, + stats.json, rejected/*.png, done
    dataset/                 the curated set (``datasets.load_from_disk``): image, source, box, detector_score, ...
    report.json              counts at every stage; montage.png; dominance_histogram.png

The reconstruction follows DINOv2's LVD-142M curation (embed, dedup, retrieve around curated queries) with a face
detector in front, as described for ProS.
"""

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..data.decoding import UnreadableImageError, list_image_files, open_image_rgb
from ..hub import is_offline
from .detectors import FaceDetector, get_face_detector
from .dominance import PAD_MODES, FaceThresholds, crop_square_face, select_face
from .embedding import ImageEmbedder
from .index import IndexSettings, add_embedding_index, find_near_duplicates, retrieve_around_queries
from .report import CurationReport, DetectionCounts, save_dominance_histogram, save_montage, write_json
from .sources import open_source

logger = logging.getLogger(__name__)

DONE_MARKER = "done"
SHARD_FORMAT = "shard-{:05d}"


@dataclass
class CurationConfig:
    """Every setting of a curation run; the face/crop ones are documented on :class:`FaceThresholds` and
    :func:`crop_square_face`, the index ones on :class:`IndexSettings`.

    Args:
        detector / detector_kwargs: back-end name ("yunet", "haar") and its constructor arguments.
        shard_size: source items per shard. A shard's crops are held in memory before being written (~38 KB each at
            112 px), and an interrupted run redoes at most one shard.
        max_pixels: decoded images larger than this are refused as decompression bombs (counted, not fatal).
        dedup_threshold / dedup_neighbors: see :func:`find_near_duplicates`.
        num_seeds: seed queries when no seed folder is given: the most face-dominant curated crops, the closest thing
            to hand-picked face examples an unlabelled pool has.
        num_neighbors: neighbours retrieved per seed (DINOv2 retrieves a fixed k per query); the curated set is their
            union, so num_seeds x num_neighbors bounds its size.
        min_similarity: neighbours less similar than this cosine to their seed are not retrieved (-1: no floor).
        keep_embeddings: keep the embedding column in the curated set (its size grows by 4 bytes x dimension).
        montage_samples: samples per section of the montage.
    """

    detector: str = "yunet"
    detector_kwargs: dict = field(default_factory=dict)
    min_score: float = 0.5
    min_face_size: float = 16.0
    min_dominance: float = 0.2
    margin: float = 0.25
    crop_size: int = 112
    pad_mode: str = "edge"
    shard_size: int = 1000
    max_pixels: int = 64_000_000
    image_column: str = "image"
    split: str = "train"
    embed_batch_size: int = 64
    dedup_threshold: float = 0.95
    dedup_neighbors: int = 16
    num_seeds: int = 100
    num_neighbors: int = 64
    min_similarity: float = -1.0
    ivf_threshold: int = 100_000
    ivf_nlist: int | None = None
    ivf_nprobe: int = 16
    keep_embeddings: bool = False
    montage_samples: int = 16
    show_progress: bool = True

    def __post_init__(self):
        # Every setting is checked here, before any file is written or image detected: a bad value found later (at the
        # first crop, or at dedup after every shard) would cost the whole run.
        FaceThresholds(self.min_score, self.min_face_size, self.min_dominance)  # validates
        IndexSettings(self.ivf_threshold, self.ivf_nlist, self.ivf_nprobe)
        for name in ("crop_size", "shard_size", "embed_batch_size", "num_seeds", "num_neighbors", "dedup_neighbors",
                     "max_pixels"):  # fmt: skip
            if name == "max_pixels" and self.max_pixels is None:  # no limit of our own (open_image_rgb's None)
                continue
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if not self.margin >= 0:  # also refuses NaN
            raise ValueError(f"margin must be >= 0 (a fraction of the face side); got {self.margin}.")
        for name in ("dedup_threshold", "min_similarity"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a cosine in [-1, 1]; got {getattr(self, name)}.")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"Unknown pad_mode {self.pad_mode!r}; valid: {', '.join(PAD_MODES)}.")
        if self.montage_samples < 0:
            raise ValueError(f"montage_samples must be >= 0; got {self.montage_samples}.")

    @property
    def thresholds(self) -> FaceThresholds:
        return FaceThresholds(self.min_score, self.min_face_size, self.min_dominance)

    @property
    def index_settings(self) -> IndexSettings:
        return IndexSettings(ivf_threshold=self.ivf_threshold, nlist=self.ivf_nlist, nprobe=self.ivf_nprobe)

    def shard_signature(self) -> dict:
        """The settings that change what a shard holds: a resume must use the same ones."""
        keys = (
            "detector",
            "detector_kwargs",
            "min_score",
            "min_face_size",
            "min_dominance",
            "margin",
            "crop_size",
            "pad_mode",
            "shard_size",
            "max_pixels",
            "image_column",
            "split",
        )
        return {key: getattr(self, key) for key in keys}


@dataclass
class CurationResult:
    """``dataset`` is None when the run stopped early (``max_shards``); ``report`` holds the counts so far."""

    dataset: Any
    report: CurationReport
    output_dir: str
    complete: bool
    shards_computed: int
    shards_reused: int


class _ShardWork:
    """What one shard needs, built once per run (no module-level state)."""

    def __init__(self, config: CurationConfig, detector: FaceDetector, embedder: ImageEmbedder):
        self.config = config
        self.detector = detector
        self.embedder = embedder
        self.thresholds = config.thresholds

    def decide(self, raw: Any):
        """Decode and detect one item: (status or unreadable reason, RGB array or None, FaceDecision or None)."""
        try:
            image = np.asarray(open_image_rgb(raw, max_pixels=self.config.max_pixels))
        except UnreadableImageError as error:
            return error.reason, None, None
        decision = select_face(self.detector.detect(image), image.shape[1], image.shape[0], self.thresholds)
        return decision.status, image, decision

    def crop(self, image: np.ndarray, box) -> np.ndarray:
        c = self.config
        return crop_square_face(image, box, margin=c.margin, size=c.crop_size, pad_mode=c.pad_mode)


def _thumbnail(image: np.ndarray, side: int = 96) -> np.ndarray:
    from PIL import Image

    thumb = Image.fromarray(image)
    thumb.thumbnail((side, side))
    return np.asarray(thumb)


def _shard_features(with_embedding: bool):
    import datasets

    features = {
        "image": datasets.Image(),
        "source": datasets.Value("string"),
        "box": datasets.List(datasets.Value("float32"), length=4),
        "detector_score": datasets.Value("float32"),
        "dominance": datasets.Value("float32"),
        "landmarks": datasets.List(datasets.Value("float32")),
    }
    if with_embedding:
        features["embedding"] = datasets.List(datasets.Value("float32"))
    return datasets.Features(features)


def process_shard(work: _ShardWork, items, shard_dir: str, progress=None) -> DetectionCounts:
    """Detect, threshold, crop and embed one shard's items and write them to ``shard_dir`` (atomically, + marker).

    Every item is counted in the returned :class:`DetectionCounts`; a few rejected ones are saved as thumbnails
    (``rejected/``) for the montage.
    """
    import datasets
    from PIL import Image

    config = work.config
    counts = DetectionCounts()
    rows = {name: [] for name in ("image", "source", "box", "detector_score", "dominance", "landmarks")}
    crops, rejected, shown = [], [], {}  # up to montage_samples thumbnails per rejection reason
    for source_id, raw in items:
        status, image, decision = work.decide(raw)
        if progress is not None:
            progress.update(1)
        if decision is None:
            counts.add_unreadable(status)
            if shown.setdefault("unreadable", 0) < config.montage_samples:
                shown["unreadable"] += 1
                rejected.append((None, f"unreadable: {status}", source_id))
            continue
        counts.add_decision(decision.status, decision.dominance, decision.face is not None)
        if not decision.kept:
            if shown.setdefault(decision.status, 0) < config.montage_samples:
                shown[decision.status] += 1
                rejected.append((_thumbnail(image), f"{decision.status} ({decision.dominance:.2f})", source_id))
            continue
        face = decision.face
        crop = work.crop(image, face.box)
        crops.append(crop)
        rows["image"].append(Image.fromarray(crop))
        rows["source"].append(str(source_id))
        rows["box"].append([float(v) for v in face.box])
        rows["detector_score"].append(float(face.score))
        rows["dominance"].append(float(decision.dominance))
        rows["landmarks"].append([float(v) for point in (face.landmarks or ()) for v in point])
    rows["embedding"] = [row for row in work.embedder.embed(crops, desc="Embedding shard")] if crops else []

    temporary = shard_dir + ".tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    shutil.rmtree(shard_dir, ignore_errors=True)  # a half-written shard from an interrupted run
    os.makedirs(os.path.join(temporary, "rejected"), exist_ok=True)
    if crops:  # datasets cannot reload a saved empty dataset: a shard without faces has no data/ folder
        shard = datasets.Dataset.from_dict(rows, features=_shard_features(with_embedding=True))
        shard.save_to_disk(os.path.join(temporary, "data"))
    samples = []
    for number, (thumb, caption, source_id) in enumerate(rejected):
        path = None
        if thumb is not None:
            path = os.path.join("rejected", f"{number:03d}.png")
            Image.fromarray(thumb).save(os.path.join(temporary, path))
        samples.append({"image": path, "caption": caption, "source": str(source_id)})
    write_json(os.path.join(temporary, "stats.json"), {"counts": asdict(counts), "rejected_samples": samples})
    os.replace(temporary, shard_dir)
    with open(os.path.join(shard_dir, DONE_MARKER), "w", encoding="utf-8") as marker:
        marker.write("complete\n")  # written last: its presence means every file above is whole
    return counts


def _load_shard_stats(shard_dir: str) -> tuple[DetectionCounts, list]:
    with open(os.path.join(shard_dir, "stats.json"), encoding="utf-8") as file:
        stats = json.load(file)
    return DetectionCounts.from_dict(stats["counts"]), stats["rejected_samples"]


def _check_or_write_signature(path: str, signature: dict, shards_root: str) -> None:
    """Refuse to mix shards made with other settings; record the settings of the shards about to be made.

    Only finished shards (with a ``done`` marker) hold results: without one, nothing can be mixed, so the settings are
    simply overwritten (a run that failed before finishing a shard, e.g. on a bad setting, must not block its rerun).
    """
    signature = json.loads(json.dumps(signature, default=str))  # normalise tuples etc. as JSON would
    finished = [name for name in sorted(os.listdir(shards_root))
                if os.path.isfile(os.path.join(shards_root, name, DONE_MARKER))]  # fmt: skip
    if finished and os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            previous = json.load(file)
        if previous != signature:
            changed = sorted(k for k in set(previous) | set(signature) if previous.get(k) != signature.get(k))
            raise ValueError(
                f"{shards_root!r} holds {len(finished)} finished shards made with other settings (changed: "
                f"{', '.join(changed)}; the settings they were made with are in {path!r}). Resume with the same "
                f"settings, use a new --output, or delete {shards_root!r} to start over."
            )
        return
    write_json(path, signature)


def embed_seed_folder(folder: str, work: _ShardWork) -> tuple[np.ndarray, dict]:
    """Embeddings of the largest confident face of every seed image, and counts (seen / unreadable / no face)."""
    paths = list_image_files(folder)  # FileNotFoundError / NotADirectoryError name the folder
    if not paths:
        raise ValueError(f"The seed folder {folder!r} holds no image files; retrieval needs at least one seed face.")
    counts = {"source": os.path.abspath(folder), "seen": len(paths), "unreadable": 0, "without_face": 0, "used": 0}
    crops = []
    for path in paths:
        status, image, decision = work.decide(path)
        if decision is None:
            counts["unreadable"] += 1
        elif decision.face is None or decision.status == "below_score":
            counts["without_face"] += 1
        else:  # a seed is the user's choice: size and dominance thresholds do not apply to it
            crops.append(work.crop(image, decision.face.box))
    counts["used"] = len(crops)
    if not crops:
        raise ValueError(
            f"None of the {len(paths)} seed images in {folder!r} has a face above min_score={work.config.min_score} "
            f"({counts['unreadable']} unreadable); retrieval needs at least one seed face."
        )
    return work.embedder.embed(crops, desc="Embedding seeds"), counts


def push_curated_dataset(dataset, repo_id: str, private: bool | None = None) -> None:
    """``dataset.push_to_hub(repo_id)``, with a clear error when offline (the local copy is already saved)."""
    if is_offline():
        raise RuntimeError(
            f"Cannot push the curated dataset to {repo_id!r}: HF_HUB_OFFLINE is set. The dataset is saved locally; "
            f"push it later with datasets.load_from_disk(...).push_to_hub({repo_id!r}) while online."
        )
    try:
        dataset.push_to_hub(repo_id, private=private)
    except Exception as error:
        raise RuntimeError(
            f"Pushing the curated dataset to {repo_id!r} failed ({type(error).__name__}: {error}). Check the network "
            f"and `hf auth login`; the dataset is saved locally."
        ) from error


def curate(
    source: str,
    output_dir: str,
    config: CurationConfig | None = None,
    seeds: str | None = None,
    model: Any = None,
    image_processor: Any = None,
    embedder: ImageEmbedder | None = None,
    detector: FaceDetector | None = None,
    max_shards: int | None = None,
    on_shard_done: Callable[[int], None] | None = None,
    push_to_hub: str | None = None,
) -> CurationResult:
    """Curate face-dominant crops from ``source`` into ``output_dir`` (see the module docstring for the layout).

    Args:
        source: a folder of images, a ``save_to_disk`` folder, or a Hub dataset id (with an image column).
        seeds: a folder of seed face images to retrieve around; default: the ``num_seeds`` most face-dominant crops.
        model / image_processor: the embedding model (an ``AutoModel``, a path / Hub id, or None for a random-init
            micro ProSModel, fit for dedup only: pass a pre-trained model for retrieval quality).
        embedder / detector: ready-made instances (override ``model`` and ``config.detector``).
        max_shards: compute at most this many new shards, then stop before merging (``complete=False``); a later call
            resumes. Finished shards (those with a ``done`` marker) are never recomputed.
        on_shard_done: called with the shard number after each newly written shard.
        push_to_hub: a Hub repo id to push the curated set to, after everything is saved locally.
    """
    config = config or CurationConfig()
    os.makedirs(output_dir, exist_ok=True)
    shards_root = os.path.join(output_dir, "shards")
    os.makedirs(shards_root, exist_ok=True)

    image_source = open_source(source, image_column=config.image_column, split=config.split)
    detector = detector or get_face_detector(config.detector, **config.detector_kwargs)
    if embedder is None:
        embedder = ImageEmbedder(
            model=model,
            image_processor=image_processor,
            batch_size=config.embed_batch_size,
            show_progress=config.show_progress,
        )
    described = {k: v for k, v in image_source.describe().items() if k != "non_image_files_skipped"}
    root = described.get("root")
    if root and os.path.commonpath([os.path.abspath(root), os.path.abspath(output_dir)]) == os.path.abspath(output_dir):
        # a source inside the output folder (the demo's) moves with it: recorded relative, so a moved or copied
        # folder still resumes
        described["root"] = os.path.relpath(os.path.abspath(root), os.path.abspath(output_dir))
    signature = {
        **config.shard_signature(),
        # the items and their order decide the shards; counts such as skipped non-image files do not
        "source": described,
        "detector_repr": repr(detector),
        "embedder": embedder.describe(),
    }
    _check_or_write_signature(os.path.join(output_dir, "curation_config.json"), signature, shards_root)
    work = _ShardWork(config, detector, embedder)
    # Seeds are few: embed them now, so that a seed folder without a face fails before the source is processed.
    seed_queries = embed_seed_folder(seeds, work) if seeds is not None else None

    num_items = len(image_source)
    num_shards = -(-num_items // config.shard_size)
    shard_dirs = [os.path.join(shards_root, SHARD_FORMAT.format(i)) for i in range(num_shards)]
    report = CurationReport(source=image_source.describe(), config=asdict(config))
    samples_by_reason: dict[str, list] = {}
    computed = reused = 0
    progress = tqdm(total=num_items, desc="Detecting faces", unit="img", disable=not config.show_progress)
    for number, shard_dir in enumerate(shard_dirs):
        start, stop = number * config.shard_size, min(num_items, (number + 1) * config.shard_size)
        if os.path.isfile(os.path.join(shard_dir, DONE_MARKER)):
            reused += 1
            progress.update(stop - start)
        else:
            if max_shards is not None and computed >= max_shards:
                progress.close()
                logger.info("Stopped after %d new shards (max_shards); rerun to resume.", computed)
                report.shards = {"total": num_shards, "computed": computed, "reused": reused}
                return CurationResult(None, report, output_dir, False, computed, reused)
            process_shard(work, image_source.items(start, stop), shard_dir, progress=progress)
            computed += 1
            if on_shard_done is not None:
                on_shard_done(number)
        counts, samples = _load_shard_stats(shard_dir)
        report.detection.merge(counts)
        for sample in samples:
            reason_samples = samples_by_reason.setdefault(sample["caption"].split(" ")[0], [])
            if len(reason_samples) < config.montage_samples:
                reason_samples.append(
                    (os.path.join(shard_dir, sample["image"]) if sample["image"] else None, sample["caption"])
                )
    progress.close()
    rejected_samples = _interleave(samples_by_reason, config.montage_samples)
    report.shards = {"total": num_shards, "computed": computed, "reused": reused}

    dataset = _merge_shards(shard_dirs)
    dataset, duplicates = _deduplicate(dataset, config, report)
    rejected_samples = rejected_samples + duplicates
    dataset = _retrieve(dataset, config, report, seed_queries)

    if not config.keep_embeddings:
        dataset = dataset.remove_columns("embedding")
    dataset_dir = os.path.join(output_dir, "dataset")
    temporary = dataset_dir + ".tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    # An empty dataset saved with the default sharding has no data file, and load_from_disk fails on it; one
    # (empty) shard reloads as an empty dataset.
    dataset.save_to_disk(temporary, num_shards=None if len(dataset) else 1)
    shutil.rmtree(dataset_dir, ignore_errors=True)
    os.replace(temporary, dataset_dir)
    dataset = _load_from_disk(dataset_dir)

    kept_samples = [
        (np.asarray(row["image"].convert("RGB")), f"{os.path.basename(row['source'])} {row['dominance']:.2f}")
        for row in dataset.select(range(min(len(dataset), config.montage_samples)))
    ]
    outputs = {
        "dataset": dataset_dir,
        "report": os.path.join(output_dir, "report.json"),
        "montage": os.path.join(output_dir, "montage.png"),
        "dominance_histogram": os.path.join(output_dir, "dominance_histogram.png"),
    }
    report.outputs = outputs
    save_montage(kept_samples, rejected_samples, outputs["montage"])
    save_dominance_histogram(report.detection, config.min_dominance, outputs["dominance_histogram"])
    report.save(outputs["report"])
    errors = report.consistency_errors()
    if errors:  # a bug, not a user error: say so loudly, the report is written for inspection
        raise RuntimeError(f"Curation counts do not add up: {errors}; see {outputs['report']}.")
    logger.info("%s", report.summary())
    if push_to_hub:
        push_curated_dataset(dataset, push_to_hub)
    return CurationResult(dataset, report, output_dir, True, computed, reused)


def _interleave(samples_by_reason: dict[str, list], limit: int) -> list:
    """Up to ``limit`` (image, caption) samples taken round-robin over reasons, so every reason shows."""
    from PIL import Image

    chosen, position = [], 0
    while len(chosen) < limit and any(position < len(v) for v in samples_by_reason.values()):
        for reason in sorted(samples_by_reason):
            if position < len(samples_by_reason[reason]) and len(chosen) < limit:
                path, caption = samples_by_reason[reason][position]
                image = None
                if path is not None:
                    with Image.open(path) as thumb:
                        image = np.asarray(thumb.convert("RGB"))
                chosen.append((image, caption))
        position += 1
    return chosen


def _load_from_disk(path: str):
    import datasets

    return datasets.load_from_disk(path)


def _merge_shards(shard_dirs: list[str]):
    """All shards as one memory-mapped dataset (nothing is loaded into RAM by concatenation)."""
    import datasets

    data_dirs = [os.path.join(shard_dir, "data") for shard_dir in shard_dirs]
    parts = [_load_from_disk(data_dir) for data_dir in data_dirs if os.path.isdir(data_dir)]
    if not parts:
        return datasets.Dataset.from_dict({k: [] for k in _shard_features(True)}, features=_shard_features(True))
    return datasets.concatenate_datasets(parts)


def _deduplicate(dataset, config: CurationConfig, report: CurationReport):
    """Drop near-duplicates (the most face-dominant copy survives); returns the rest and a few montage samples."""
    if len(dataset) == 0:
        report.index_type = "none (no face kept)"
        return dataset, []
    report.index_type = add_embedding_index(dataset, config.index_settings)
    dominance = np.asarray(dataset.with_format("numpy", columns=["dominance"])["dominance"])
    keep, duplicate_of = find_near_duplicates(
        dataset, threshold=config.dedup_threshold, num_neighbors=config.dedup_neighbors, priority=dominance
    )
    dataset.drop_index("embedding")
    report.duplicates_removed = int((~keep).sum())
    report.kept_after_dedup = int(keep.sum())
    samples = []
    for row in np.flatnonzero(~keep)[:4]:
        image = np.asarray(dataset[int(row)]["image"].convert("RGB"))
        samples.append((image, f"duplicate of #{int(duplicate_of[row])}"))
    return dataset.select(np.flatnonzero(keep)), samples


def _retrieve(dataset, config: CurationConfig, report: CurationReport, seed_queries: tuple[np.ndarray, dict] | None):
    """Keep the union of the neighbours of the seed queries (``seed_queries``: :func:`embed_seed_folder`'s output)."""
    if seed_queries is not None:
        queries, report.seeds = seed_queries
    if len(dataset) == 0:
        if seed_queries is None:
            report.seeds = {"source": "most_dominant", "used": 0}
        return dataset
    if seed_queries is None:
        dominance = np.asarray(dataset.with_format("numpy", columns=["dominance"])["dominance"])
        top = np.argsort(-dominance, kind="stable")[: config.num_seeds]
        queries = np.asarray(dataset.select(np.sort(top)).with_format("numpy", columns=["embedding"])["embedding"])
        report.seeds = {"source": "most_dominant", "used": int(len(top))}
    add_embedding_index(dataset, config.index_settings)
    chosen = retrieve_around_queries(dataset, queries, config.num_neighbors, config.min_similarity)
    dataset.drop_index("embedding")
    report.retrieved = int(len(chosen))
    report.not_retrieved = len(dataset) - report.retrieved
    report.kept_final = report.retrieved
    return dataset.select(chosen)
