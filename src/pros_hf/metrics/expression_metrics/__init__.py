"""The evaluate module script of this folder; `pros_hf.metrics.load_metric` loads it by path."""
