"""JSON round trips for the augmentation configs (saved with training runs and checkpoints)."""

import dataclasses
from typing import Any


class SerializableConfig:
    """Mixin for config dataclasses: `to_dict()` is JSON-friendly (tuples become lists); `from_dict()` restores an
    equal config and refuses unknown fields by name, so a typo in a saved or hand-written config is not ignored."""

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, config: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; valid fields: {sorted(names)}")
        return cls(**config)


class ConfiguredTransform:
    """Mixin for the augmentation modules: `to_config()` / `from_config()` through their `config_class`, so a trainer
    can save an augmentation next to a checkpoint and rebuild it exactly."""

    config_class = None

    @classmethod
    def _resolve_config(cls, config, overrides: dict[str, Any]):
        """The config to use: `config` (or the defaults) with keyword `overrides` applied."""
        if config is None:
            return cls.config_class(**overrides)
        if not isinstance(config, cls.config_class):
            raise ValueError(f"config must be a {cls.config_class.__name__}, got {type(config).__name__}")
        return cls.config_class(**{**config.to_dict(), **overrides}) if overrides else config

    def to_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config):
        if isinstance(config, cls.config_class):
            return cls(config)
        return cls(cls.config_class.from_dict(dict(config)))
