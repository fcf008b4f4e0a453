"""The downstream metrics as local evaluate modules, loaded by path so that they work offline.

Why: ``evaluate.load("accuracy")`` fetches its script from the Hub, which fails offline and in CI. Each folder here
holds one self-contained evaluate script of the same name (``landmark_nme/landmark_nme.py``), which
``evaluate.load(folder)`` imports without touching the network (evaluate 0.4 resolves an existing local path before
any Hub lookup). Loading copies the script into ``$HF_MODULES_CACHE`` (``$HF_HOME/modules``) and creates the metric's
data folder under ``cache_dir`` (default ``$HF_HOME/metrics``); nothing else is written.

>>> from pros_hf.metrics import load_metric
>>> load_metric("landmark_nme").compute(predictions=..., references=..., normalization="inter_ocular")
"""

import os

__all__ = ["METRICS", "load_metric", "metric_path"]

METRICS = ("landmark_nme", "attribute_accuracy", "expression_metrics")


def metric_path(name: str) -> str:
    """The folder of metric ``name``, for ``evaluate.load(metric_path(name))``."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; valid names are {', '.join(METRICS)}.")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of metric ``name`` by path (offline-safe); ``kwargs`` go to ``evaluate.load``.

    ``keep_in_memory`` defaults to True, so that ``compute`` keeps predictions in memory instead of writing Arrow cache
    files; pass ``keep_in_memory=False`` (with ``num_process``/``process_id``) for evaluate's distributed gathering.
    """
    import evaluate  # a few seconds to import; only when a metric is loaded

    if kwargs.get("num_process", 1) == 1:
        kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(metric_path(name), **kwargs)
