"""One entry point for pre-training images: a folder, a saved `datasets` folder, a Hub id, or a `datasets` object.

`load_pretraining_images` returns a torch dataset whose samples are decoded lazily, in DataLoader workers, into one
fixed source size `(3, S, S)` uint8 (augmentation runs later, batched on the accelerator).
Unreadable images never raise: they become skip records that `collate_pretraining` moves into `batch["skipped"]`,
and a `SkipReport` in the main process counts them (workers are separate processes).

Two shapes, because data sets come in two sizes:
- map-style (`streaming=False`): random access, any sampler; sharding across processes is the sampler's job
  (accelerate / `DistributedSampler`), so it is only done here when `rank`/`world_size` are passed.
- streaming (`streaming=True`): a `datasets.IterableDataset` for sets that do not fit in memory. A sampler cannot shard
  it, so each process takes its part here (`split_dataset_by_node`, rank/world size from the arguments, else from
  accelerate's or torch.distributed's state), and DataLoader workers split the shards between them (`datasets` does
  that when it is iterated inside a worker). A folder becomes `IterableDataset.from_generator` over lists of files.
"""

import logging
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasets
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader

from .decoding import (
    DEFAULT_MAX_PIXELS,
    UnreadableImageError,
    check_background,
    check_max_pixels,
    check_min_size,
    check_resample,
    decode_to_array,
    describe_source,
    list_image_files,
)
from .skips import SkipReport

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 256  # the source size random-resized 224-px global crops are cut from
_SAVED_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_IMAGE_COLUMN_NAMES = (
    "image",
    "img",
    "images",
    "picture",
    "photo",
    "path",
    "image_path",
    "file",
    "file_path",
    "filename",
)


class PretrainingSourceError(ValueError):
    """The source cannot be loaded at all (missing path, empty folder, offline Hub id, no image column)."""


# --------------------------------------------------------------------------------------------------------------- #
# Per-sample work (runs in DataLoader workers)
# --------------------------------------------------------------------------------------------------------------- #


def _decode_sample(source: Any, image_size: int, decode_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Decode one image into a sample dict; a bad image becomes a skip record instead of an exception."""
    try:
        pixel_values = decode_to_array(source, image_size, return_tensor=True, **decode_kwargs)
        return {"pixel_values": pixel_values, "source": None, "reason": None, "image_size": image_size}
    except UnreadableImageError as e:
        logger.debug("Skipping %s", e)
        return {
            "pixel_values": None,
            "source": e.source or describe_source(source),
            "reason": e.reason,
            "image_size": image_size,
        }
    except Exception as e:  # a decoder bug on one odd file must not end a week-long run: count it, show it
        logger.debug("Unexpected error decoding %s", describe_source(source), exc_info=True)
        return {
            "pixel_values": None,
            "source": describe_source(source),
            "reason": f"unexpected error ({type(e).__name__})",
            "image_size": image_size,
        }


def collate_pretraining(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good samples, pass the skipped ones on as records.

    Returns `{"pixel_values": uint8 (B, 3, S, S), "skipped": [(source, reason), ...]}`; B may be 0 when every sample
    was bad (shape `(0, 3, S, S)`): the consumer skips such a batch (`SkipReport.update` returns 0).
    """
    good = [s["pixel_values"] for s in samples if s["pixel_values"] is not None]
    skipped = [(s["source"], s["reason"]) for s in samples if s["pixel_values"] is None]
    if good:
        pixel_values = torch.stack(good)
    else:
        size = samples[0]["image_size"] if samples else 0
        pixel_values = torch.empty((0, 3, size, size), dtype=torch.uint8)
    return {"pixel_values": pixel_values, "skipped": skipped}


class _DecodingMixin:
    def _init_decoding(self, image_column, image_size, max_pixels, min_size, resample, background):
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        # Checked here, at construction: in a worker, a bad setting raises on every image, and `_decode_sample` would
        # count each one as a skipped image ("unexpected error (ValueError)") instead of stopping.
        check_max_pixels(max_pixels)
        check_min_size(min_size)
        check_resample(resample)
        self.image_column = image_column
        self.image_size = image_size
        self.decode_kwargs = {
            "max_pixels": max_pixels,
            "min_size": min_size,
            "resample": resample,
            "background": check_background(background),
        }

    def _decode_row(self, row: Any) -> dict[str, Any]:
        if self.image_column is None:
            source = row
        else:
            try:
                source = row[self.image_column]
            except KeyError:
                # A streaming dataset without declared features has no column names to check at construction:
                # its rows show them only now. Say which column is missing, and which there are.
                raise PretrainingSourceError(
                    f"image_column {self.image_column!r} is not in this dataset's rows; a row has the columns "
                    f"{sorted(row)}: pass image_column= one of them."
                ) from None
        return _decode_sample(source, self.image_size, self.decode_kwargs)


class PretrainingImageDataset(_DecodingMixin, torch.utils.data.Dataset):
    """Map-style: random access to a `datasets.Dataset` whose `image_column` holds paths or `{"bytes", "path"}`.

    Why a cache: pre-training reads every image once per epoch, for hundreds of epochs, and decoding plus resizing
    is the same work each time (14% of the demo's step on a CPU). Decoded samples are kept, in the order they are
    first read, until `cache_bytes` is spent; rows past the budget are decoded on every read, as without a cache.
    `cache_bytes` is the budget of the process that owns the dataset. DataLoader workers each keep their own cache
    with an equal share of it, and must live across epochs (`persistent_workers=True`) for it to last. A shuffled
    sampler sends an index to a different worker each epoch, so with workers the cache only pays off once each of
    them holds most of the data: it suits sets that fit the budget, and few workers. Skip records of bad images are
    kept too: a bad file is reported every epoch, but opened once.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        image_column: str,
        image_size: int = DEFAULT_IMAGE_SIZE,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        min_size: int | None = None,
        resample: str = "bicubic",
        background: Sequence[int] = (255, 255, 255),
        cache_bytes: int = 0,
    ):
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise ValueError(f"cache_bytes must be an int >= 0 (0: no cache), got {cache_bytes!r}")
        self.dataset = dataset
        self._init_decoding(image_column, image_size, max_pixels, min_size, resample, background)
        self.cache_bytes = cache_bytes
        self._cache: dict[int, dict[str, Any]] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        sample = self._cache.get(index)
        if sample is None:
            sample = self._decode_row(self.dataset[index])
            if sample["source"] is not None and not SkipReport.is_named(sample["source"]):
                sample["source"] = f"row {index} {sample['source']}"  # a name, so that a re-read is not recounted
            pixels = sample["pixel_values"]
            size = pixels.numel() * pixels.element_size() if pixels is not None else 0
            if self.cache_bytes and self._cached_bytes + size <= self._budget():
                self._cache[index] = sample
                self._cached_bytes += size
        return dict(sample)  # a fresh dict: a consumer that edits it cannot change the cached one

    def _budget(self) -> int:
        worker = torch.utils.data.get_worker_info()
        return self.cache_bytes // (worker.num_workers if worker is not None else 1)


class PretrainingImageIterableDataset(_DecodingMixin, torch.utils.data.IterableDataset):
    """Streaming: decodes the rows of a `datasets.IterableDataset`; DataLoader workers split its shards."""

    def __init__(
        self,
        dataset: datasets.IterableDataset,
        image_column: str | None,
        image_size: int = DEFAULT_IMAGE_SIZE,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        min_size: int | None = None,
        resample: str = "bicubic",
        background: Sequence[int] = (255, 255, 255),
    ):
        self.dataset = dataset
        self._init_decoding(image_column, image_size, max_pixels, min_size, resample, background)

    @property
    def num_shards(self) -> int:
        """Upper bound on useful DataLoader workers: a worker gets whole shards, extra workers stay idle."""
        return self.dataset.num_shards

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle shards and buffer per epoch (when `shuffle=True`); the HF Trainer calls this."""
        self.dataset.set_epoch(epoch)

    def __iter__(self):
        # Iterating a datasets.IterableDataset inside a DataLoader worker gives this worker only its shards.
        for row in self.dataset:
            yield self._decode_row(row)


# --------------------------------------------------------------------------------------------------------------- #
# Sources
# --------------------------------------------------------------------------------------------------------------- #


def _iter_file_shards(shards: list[list[str]]):
    """Generator for `IterableDataset.from_generator`: `datasets` splits the `shards` list between workers/nodes."""
    for shard in shards:
        for path in shard:
            yield {"image": path}


def _chunk(items: Sequence[str], num_chunks: int) -> list[list[str]]:
    """Contiguous, near-equal chunks (contiguous keeps a folder's files together: better disk locality)."""
    num_chunks = max(1, min(num_chunks, len(items)))
    bounds = [round(i * len(items) / num_chunks) for i in range(num_chunks + 1)]
    return [list(items[bounds[i] : bounds[i + 1]]) for i in range(num_chunks)]


def _is_saved_dataset(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, m)) for m in _SAVED_DATASET_MARKERS)


def _looks_like_path(source: str) -> bool:
    """A Hub id is `name` or `namespace/name`; anything else that does not exist is a missing local path."""
    if os.path.isabs(source) or source.startswith((".", "~")) or "\\" in source:
        return True
    return source.count("/") > 1 or os.path.splitext(source)[1].lower() in {".jpg", ".png", ".json", ".arrow"}


def _offline() -> bool:
    return bool(
        getattr(datasets.config, "HF_HUB_OFFLINE", False) or getattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    )


def _load_hub(repo_id: str, split: str, streaming: bool):
    try:
        return datasets.load_dataset(repo_id, split=split, streaming=streaming)
    except (ConnectionError, OSError, FileNotFoundError, ValueError) as e:
        if _offline():
            raise PretrainingSourceError(
                f"{repo_id!r} is not a local path, and the Hugging Face Hub is offline (HF_HUB_OFFLINE=1 or "
                f"HF_DATASETS_OFFLINE=1) with no cached copy of this dataset under {datasets.config.HF_DATASETS_CACHE}. "
                "Fix: unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE to download it, run once online to cache it, "
                "or pass a local image folder or a `save_to_disk` folder instead."
            ) from None
        raise PretrainingSourceError(
            f"Could not load {repo_id!r}: it is not a local path and loading it from the Hub failed "
            f"({type(e).__name__}: {e})."
        ) from e


def _pick_split(ds: Any, split: str | None, source: str):
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in ds:
            raise PretrainingSourceError(f"Split {split!r} not in {source!r}; valid splits: {sorted(ds)}")
        return ds[split]
    return ds


def _find_image_column(ds: Any, image_column: str | None, source: str) -> str:
    features = ds.features
    columns = list(features) if features is not None else list(getattr(ds, "column_names", None) or [])
    if image_column is not None:
        if columns and image_column not in columns:
            raise ValueError(f"image_column {image_column!r} not in {source!r}; valid columns: {columns}")
        if features is not None and not _can_hold_images(features[image_column]):
            raise PretrainingSourceError(
                f"image_column {image_column!r} of {source!r} holds {features[image_column]}, not images: it must be an "
                "Image feature, image paths (strings) or encoded image bytes."
            )
        return image_column
    if features is not None:
        for name, feature in features.items():
            if isinstance(feature, datasets.Image):
                return name
    for name in _IMAGE_COLUMN_NAMES:
        if name in columns:
            return name
    raise PretrainingSourceError(
        f"Cannot tell which column of {source!r} holds the images; pass image_column= one of {columns}"
    )


def _can_hold_images(feature: Any) -> bool:
    """What `decoding.open_image_rgb` can read: an Image feature, paths or bytes, or `{"bytes", "path"}` dicts."""
    if isinstance(feature, datasets.Image):
        return True
    if isinstance(feature, datasets.Value):
        return feature.dtype in ("string", "large_string", "binary", "large_binary")
    if isinstance(feature, dict):
        return bool({"bytes", "path"} & set(feature))
    return False


def _prepare_columns(ds: Any, column: str):
    """Keep only the image column, undecoded: `datasets`' own decoder would raise on a bad file mid-epoch."""
    if ds.features is not None:
        ds = ds.select_columns([column])
        if isinstance(ds.features[column], datasets.Image) and ds.features[column].decode:
            ds = ds.cast_column(column, datasets.Image(decode=False))
    return ds


def resolve_node(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """This process's `(rank, world_size)`: the arguments, else accelerate's state, else torch.distributed, else (0, 1).

    accelerate is consulted only if its state was already initialised (creating it here could start a process group).
    """
    if (rank is None) != (world_size is None):
        raise ValueError(f"pass both rank and world_size, or neither; got rank={rank}, world_size={world_size}")
    if rank is None:
        rank, world_size = 0, 1
        try:
            from accelerate.state import PartialState

            if PartialState._shared_state:  # initialised by an Accelerator / PartialState in this process
                state = PartialState()
                rank, world_size = state.process_index, state.num_processes
        except ImportError:
            pass
        if world_size == 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"need 0 <= rank < world_size with world_size >= 1, got rank={rank}, world_size={world_size}")
    return rank, world_size


def load_pretraining_images(
    source: Any,
    image_size: int = DEFAULT_IMAGE_SIZE,
    *,
    streaming: bool = False,
    split: str | None = "train",
    image_column: str | None = None,
    recursive: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int | None = None,
    resample: str = "bicubic",
    background: Sequence[int] = (255, 255, 255),
    rank: int | None = None,
    world_size: int | None = None,
    num_shards: int = 256,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer_size: int = 1000,
    cache_bytes: int = 0,
    check_decodable: bool = True,
) -> PretrainingImageDataset | PretrainingImageIterableDataset:
    """Pre-training images from any source, as a torch dataset of lazily decoded `(3, S, S)` uint8 samples.

    Args:
        source: an image folder (recursive, any common format), a `save_to_disk` folder, a Hub dataset id, or a
            `datasets.Dataset` / `IterableDataset` / `DatasetDict` object.
        image_size: the fixed source size S every image is resized (shorter side) and center-cropped to.
        streaming: return an iterable dataset (data larger than memory; sharded per process and per worker).
        split: which split of a dataset dict / Hub dataset.
        image_column: the column holding images (a `datasets.Image` feature, paths, or `{"bytes", "path"}`);
            found automatically when None.
        max_pixels, min_size, resample, background: per-image policy, see `decoding.open_image_rgb` and
            `decoding.resize_center_crop`. Images below `min_size` are skipped with reason "too small".
        rank, world_size: this process's share. Streaming: auto-detected when None. Map-style: only applied when
            given (a distributed sampler shards map-style data; doing both would keep 1/world_size**2).
        num_shards: streaming folder / saved dataset: how many shards to cut, the most DataLoader workers x
            processes that can share the data (more than the number of workers, so they stay busy).
        shuffle, seed, shuffle_buffer_size: streaming only: shard order + buffer shuffle, reseeded by `set_epoch`
            (map-style data is shuffled by the DataLoader's sampler).
        cache_bytes: map-style only: decoded samples kept in memory so that later epochs skip decoding, shared out
            among DataLoader workers (`PretrainingImageDataset`); 0 (the default) keeps none.
        check_decodable: map-style only: decode up to 16 images spread over the set and refuse it when none decodes
            (`check_some_decode`).

    Raises:
        FileNotFoundError: a local path that does not exist.
        PretrainingSourceError: an empty folder, an offline or unknown Hub id, an unknown split, no image column, a
            set of which no sampled image decodes.
        ValueError: a bad image_size, max_pixels, min_size, resample or background (here, not per image).
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    decode = {
        "image_size": image_size,
        "max_pixels": max_pixels,
        "min_size": min_size,
        "resample": resample,
        "background": background,
    }
    hf_types = (datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict, datasets.IterableDatasetDict)
    name = type(source).__name__ if isinstance(source, hf_types) else describe_source(source)

    if isinstance(source, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(source))
        if os.path.isdir(path) and _is_saved_dataset(path):
            ds = _pick_split(datasets.load_from_disk(path), split, name)
        elif os.path.isdir(path):
            if image_column not in (None, "image"):
                raise PretrainingSourceError(
                    f"{path!r} is a folder of image files, which has no columns: "
                    f"image_column={image_column!r} applies to datasets only."
                )
            files = list_image_files(path, recursive=recursive)
            if not files:
                raise PretrainingSourceError(f"No image files found in folder {path!r} (recursive={recursive}).")
            logger.info("Found %d image files under %s", len(files), path)
            if streaming:
                ds = datasets.IterableDataset.from_generator(
                    _iter_file_shards,
                    gen_kwargs={"shards": _chunk(files, num_shards)},
                    features=datasets.Features({"image": datasets.Value("string")}),
                )
            else:
                ds = datasets.Dataset.from_dict({"image": files})
            image_column = "image"
        elif os.path.exists(path):
            raise PretrainingSourceError(
                f"{path!r} is a file; expected a folder of images, a `save_to_disk` folder or a Hub dataset id."
            )
        elif _looks_like_path(os.fspath(source)):
            raise FileNotFoundError(f"Pre-training image source does not exist: {path!r}")
        else:
            ds = _load_hub(os.fspath(source), split, streaming)
            ds = _pick_split(ds, split, name)
    elif isinstance(source, hf_types):
        ds = _pick_split(source, split, name)
    else:
        raise ValueError(
            f"source must be a folder path, a save_to_disk folder, a Hub dataset id or a datasets "
            f"Dataset/IterableDataset/DatasetDict, got {type(source).__name__}"
        )

    image_column = _find_image_column(ds, image_column, name)
    ds = _prepare_columns(ds, image_column)

    if streaming:
        if isinstance(ds, datasets.Dataset):
            ds = ds.to_iterable_dataset(num_shards=max(1, min(num_shards, len(ds))))
        if shuffle:
            ds = ds.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
        node_rank, node_world = resolve_node(rank, world_size)
        if node_world > 1:
            ds = split_dataset_by_node(ds, rank=node_rank, world_size=node_world)
        return PretrainingImageIterableDataset(ds, image_column, **decode)

    if isinstance(ds, datasets.IterableDataset):
        raise ValueError(f"{name!r} is a streaming dataset: pass streaming=True")
    if rank is not None or world_size is not None:
        node_rank, node_world = resolve_node(rank, world_size)
        if node_world > 1:
            ds = split_dataset_by_node(ds, rank=node_rank, world_size=node_world)
    dataset = PretrainingImageDataset(ds, image_column, cache_bytes=cache_bytes, **decode)
    if check_decodable:
        check_some_decode(dataset, name)
    return dataset


PROBE_IMAGES = 16


def check_some_decode(dataset: PretrainingImageDataset, name: str, probes: int = PROBE_IMAGES) -> None:
    """Decode up to `probes` images spread over `dataset`; when not one decodes, raise `PretrainingSourceError`
    naming the source and why. A folder of unreadable files, or a column of something else, is refused here, before
    a model is trained on empty batches and a checkpoint is written. The decoded images stay in the cache."""
    if not len(dataset):
        raise PretrainingSourceError(f"{name!r} holds no images.")
    count = min(probes, len(dataset))
    indices = sorted({round(i * (len(dataset) - 1) / max(1, count - 1)) for i in range(count)})
    failures = []
    for index in indices:
        sample = dataset[index]
        if sample["pixel_values"] is not None:
            return
        failures.append((sample["source"], sample["reason"]))
    reasons = Counter(reason for _, reason in failures)
    listed = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    raise PretrainingSourceError(
        f"none of the {len(failures)} images tried from {name!r} could be read ({listed}; e.g. {failures[0][0]}): "
        "check the folder, or that the image column holds images, image paths or image bytes."
    )


def make_pretraining_dataloader(
    dataset: PretrainingImageDataset | PretrainingImageIterableDataset,
    batch_size: int,
    *,
    num_workers: int = 0,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int | None = None,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader whose batches are `{"pixel_values": uint8 (B, 3, S, S), "skipped": [...]}`.

    Consume it through a `SkipReport` (`for batch in report.track(loader)`, or `report.update(batch)` per batch and
    skip batches with B == 0). `shuffle` applies to map-style data only (streaming data shuffles itself).
    """
    streaming = isinstance(dataset, torch.utils.data.IterableDataset)
    if streaming and shuffle:
        raise ValueError(
            "shuffle=True needs a map-style dataset; for streaming pass shuffle=True to load_pretraining_images instead"
        )
    if streaming and num_workers > getattr(dataset, "num_shards", num_workers):
        logger.warning(
            "num_workers=%d > num_shards=%d: the extra workers will stay idle", num_workers, dataset.num_shards
        )
    generator = None
    if shuffle and seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed)
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_pretraining,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=generator,
        **kwargs,
    )


__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "PROBE_IMAGES",
    "PretrainingImageDataset",
    "PretrainingImageIterableDataset",
    "PretrainingSourceError",
    "SkipReport",
    "check_some_decode",
    "collate_pretraining",
    "load_pretraining_images",
    "make_pretraining_dataloader",
    "resolve_node",
]
