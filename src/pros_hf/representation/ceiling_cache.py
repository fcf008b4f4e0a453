"""A cache of supervised ceilings, keyed by every setting that made them.

The ceiling of a task (the architecture trained end to end with every training label) costs more than the probes it
bounds, yet does not depend on the backbone being evaluated. `examples/demo.py` and
`examples/evaluate_representation.py` keep it in the output folder and reuse it on a rerun, but only when it was made
exactly the same way: the settings (architecture, data recipe, training recipe, seed, library version) are stored
beside the results and compared in full, so a changed setting means a new ceiling rather than a stale one.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def settings_key(settings: dict) -> str:
    """A short stable digest of `settings` (JSON with sorted keys), for file names."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CeilingCache:
    """JSON files `<folder>/<name>.json` holding `{"settings": ..., "results": ...}`."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        if not name or any(sep in name for sep in ("/", "\\")) or name.startswith("."):
            raise ValueError(f"a ceiling name must be a plain file name, got {name!r}.")
        return self.folder / f"{name}.json"

    def get(self, name: str, settings: dict) -> dict | None:
        """The cached results of `name` when they were made with exactly `settings`, else None (a mismatch is
        logged with the fields that differ)."""
        path = self.path(name)
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            logger.warning("Ignoring the unreadable ceiling cache %s (%s); it will be recomputed.", path, error)
            return None
        saved = stored.get("settings") if isinstance(stored, dict) else None
        wanted = json.loads(json.dumps(settings, sort_keys=True, default=str))
        if saved != wanted:
            changed = sorted(k for k in set(wanted) | set(saved or {}) if (saved or {}).get(k) != wanted.get(k))
            logger.info(
                "The cached ceiling %s was made with other settings (%s); it will be recomputed.",
                path,
                ", ".join(changed) or "format",
            )
            return None
        return stored.get("results")

    def put(self, name: str, settings: dict, results: dict) -> Path:
        """Store `results` with `settings` (written to a temporary file, then renamed: a kill leaves no half file)."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"settings": json.loads(json.dumps(settings, sort_keys=True, default=str)), "results": results}
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        os.replace(tmp, path)
        return path


__all__ = ["CeilingCache", "settings_key"]
