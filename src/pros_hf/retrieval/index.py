"""FAISS index over an embedding column (through ``datasets``), neighbour search, near-duplicate removal.

Vectors are L2-normalised, so inner product = cosine. Below ``ivf_threshold`` rows the index is exact (``Flat``);
above it, an inverted-file index (``IVF{nlist},Flat``) keeps search sub-linear at the cost of a training pass and
approximate recall (``nprobe`` lists are visited per query).
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

INDEX_NAME = "embedding"


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError('The embedding index needs faiss: pip install "pros-hf[retrieval]"') from error
    return faiss


@dataclass(frozen=True)
class IndexSettings:
    """How the index is built.

    Args:
        ivf_threshold: rows from which an IVF index replaces the exact one. Exact search costs N x N / 2 dot products
            for dedup: fine at 100k rows (seconds), hours at 10M. Below a few hundred rows per list IVF recall drops
            for nothing, hence a high default.
        nlist: IVF lists; default ~4 * sqrt(N) (FAISS's guideline), capped so each list gets >= 39 training points.
        nprobe: lists visited per query: recall vs speed. 16 of ~1000 lists finds >90% of true neighbours on
            clustered data; raise it when dedup must be near-exhaustive.
        train_size: vectors (a random sample) used to train the IVF quantizer; FAISS needs >= 39 * nlist.
        seed: sampling seed for the training vectors.
    """

    ivf_threshold: int = 100_000
    nlist: int | None = None
    nprobe: int = 16
    train_size: int = 100_000
    seed: int = 0

    def __post_init__(self):
        if self.ivf_threshold < 1 or self.nprobe < 1 or self.train_size < 1:
            raise ValueError(f"ivf_threshold, nprobe and train_size must be >= 1; got {self}.")
        if self.nlist is not None and self.nlist < 1:
            raise ValueError(f"nlist must be >= 1 or None; got {self.nlist}.")


def choose_nlist(num_rows: int, requested: int | None = None) -> int:
    """IVF list count: the request, or ~4 sqrt(N); never more than N / 39 (FAISS's minimum points per list)."""
    nlist = requested if requested is not None else int(round(4 * math.sqrt(num_rows)))
    return max(1, min(nlist, num_rows // 39))


def add_embedding_index(dataset, settings: IndexSettings = IndexSettings(), column: str = "embedding") -> str:
    """Add a FAISS inner-product index named ``"embedding"`` to ``dataset`` (in place); returns its factory string.

    The IVF quantizer is trained on a random sample (``datasets``' own ``train_size`` takes the first rows, which in a
    sharded folder are one directory's worth of similar images) and handed over as ``custom_index``.
    """
    faiss = _import_faiss()
    num_rows = len(dataset)
    if num_rows == 0:
        raise ValueError("Cannot index an empty dataset: no image passed the face thresholds.")
    if num_rows < settings.ivf_threshold:
        dataset.add_faiss_index(column=column, index_name=INDEX_NAME, metric_type=faiss.METRIC_INNER_PRODUCT)
        return "Flat"
    nlist = choose_nlist(num_rows, settings.nlist)
    factory = f"IVF{nlist},Flat"
    dim = len(dataset[0][column])
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(rng.choice(num_rows, size=min(num_rows, max(settings.train_size, 39 * nlist)), replace=False))
    vectors = np.asarray(dataset.select(sample).with_format("numpy")[column], dtype=np.float32)
    index.train(vectors)
    faiss.extract_index_ivf(index).nprobe = min(settings.nprobe, nlist)
    dataset.add_faiss_index(column=column, index_name=INDEX_NAME, custom_index=index)
    logger.info("Built %s index on %d rows (nprobe=%d)", factory, num_rows, min(settings.nprobe, nlist))
    return factory


def search_neighbors(dataset, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices), each (Q, k'), k' = min(k, rows); indices are -1 where IVF found fewer than k'."""
    k = min(int(k), len(dataset))
    if k < 1 or len(queries) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    result = dataset.search_batch(INDEX_NAME, np.ascontiguousarray(queries, dtype=np.float32), k=k)
    return np.asarray(result.total_scores, dtype=np.float32), np.asarray(result.total_indices, dtype=np.int64)


def find_near_duplicates(
    dataset,
    threshold: float = 0.95,
    num_neighbors: int = 16,
    priority: Sequence[float] | None = None,
    column: str = "embedding",
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy near-duplicate removal on an indexed ``dataset``; returns (keep mask, duplicate_of index or -1).

    Rows are visited by decreasing ``priority`` (e.g. face dominance: of a group of copies the most face-dominant one
    survives), ties by row order; a row is dropped when one of its ``num_neighbors`` nearest neighbours with cosine >
    ``threshold`` is already kept. Copies beyond the ``num_neighbors`` nearest are missed, so use a ``num_neighbors``
    above the largest expected group of copies.

    ``threshold``: cosine above which two crops count as the same picture. 0.95 (DINOv2's copy-detection setting is
    of this order) catches re-encodes, resizes and small crops/noise; lower it and distinct photos of one person
    start to merge, which removes exactly the identity variation pre-training needs. Copies are compared as crops,
    so the detector's jitter counts: at 100+ px sources copies score > 0.98 with the default random-init model, but
    at 25 px a sub-pixel box shift moves the crop by ~5% and copies can fall to 0.8-0.95 (measured on LFW).
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine in [-1, 1]; got {threshold}.")
    num_rows = len(dataset)
    order = np.arange(num_rows)
    if priority is not None:
        priority = np.asarray(priority, dtype=np.float64)
        if priority.shape != (num_rows,):
            raise ValueError(f"priority needs one value per row ({num_rows}); got shape {priority.shape}.")
        order = np.lexsort((np.arange(num_rows), -priority))
    rank = np.empty(num_rows, dtype=np.int64)
    rank[order] = np.arange(num_rows)

    duplicate_candidates: dict[int, np.ndarray] = {}  # sparse: most rows have no copy
    vectors = dataset.with_format("numpy", columns=[column])
    for start in range(0, num_rows, batch_size):
        queries = np.asarray(vectors[start : start + batch_size][column], dtype=np.float32)
        scores, indices = search_neighbors(dataset, queries, num_neighbors + 1)  # +1: a row finds itself
        for offset in range(len(queries)):
            row = start + offset
            close = indices[offset][(scores[offset] > threshold) & (indices[offset] >= 0)]
            close = close[close != row]
            winners = close[rank[close] < rank[row]]  # only higher-priority rows can win
            if len(winners):
                duplicate_candidates[row] = winners

    keep = np.ones(num_rows, dtype=bool)
    duplicate_of = np.full(num_rows, -1, dtype=np.int64)
    for row in order:
        for other in duplicate_candidates.get(row, ()):
            if keep[other]:
                keep[row] = False
                duplicate_of[row] = other
                break
    return keep, duplicate_of


def retrieve_around_queries(dataset, queries: np.ndarray, num_neighbors: int, min_similarity: float = -1.0):
    """Sorted unique row indices among the ``num_neighbors`` nearest of any query with cosine >= ``min_similarity``."""
    scores, indices = search_neighbors(dataset, queries, num_neighbors)
    chosen = indices[(indices >= 0) & (scores >= min_similarity)]
    return np.unique(chosen)
