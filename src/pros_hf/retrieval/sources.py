"""Where curation reads images from: a folder of files, or a ``datasets`` dataset (saved folder or Hub id).

A source is an ordered, indexable list of raw items (path or ``{"bytes", "path"}`` dict) that are decoded only when a
shard needs them, so a source larger than memory is never held at once; the order is deterministic, which is what
makes shards resumable.
"""

import os
from collections.abc import Iterator
from typing import Any

from ..data.decoding import list_image_files


class FolderSource:
    """Image files under ``root`` (recursive, by extension, sorted); the id of an item is its path under ``root``."""

    def __init__(self, root: str, recursive: bool = True):
        self.root = os.path.abspath(root)
        self.paths = list_image_files(self.root, recursive=recursive)
        self.other_files = self._count_other_files(recursive) - len(self.paths)

    def _count_other_files(self, recursive: bool) -> int:
        """Visible files of any extension, so that files skipped for their extension are reported too."""
        total = 0
        for _dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
            total += sum(1 for name in filenames if not name.startswith("."))
        return total

    def __len__(self) -> int:
        return len(self.paths)

    def items(self, start: int, stop: int) -> Iterator[tuple[str, Any]]:
        for path in self.paths[start:stop]:
            yield os.path.relpath(path, self.root), path

    def describe(self) -> dict:
        return {
            "type": "folder",
            "root": self.root,
            "num_items": len(self),
            "non_image_files_skipped": self.other_files,
        }


class DatasetSource:
    """The image column of a ``datasets.Dataset``, read undecoded (bytes) so that bad images reach safe decoding.

    The id of an item is the file path stored with the image when there is one, else ``"<name>[<row>]"``.
    """

    def __init__(self, dataset, name: str, image_column: str = "image"):
        import datasets

        if image_column not in dataset.column_names:
            raise ValueError(
                f"The dataset {name!r} has no column {image_column!r}; its columns are {dataset.column_names}. "
                f"Pass the image column's name (--image_column)."
            )
        feature = dataset.features[image_column]
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        elif not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string", "binary")):
            raise ValueError(
                f"Column {image_column!r} of {name!r} is {feature}; curation needs an Image column, file paths "
                f"(string) or encoded bytes (binary)."
            )
        self.dataset = dataset.select_columns([image_column])
        self.name = name
        self.image_column = image_column

    def __len__(self) -> int:
        return len(self.dataset)

    def items(self, start: int, stop: int) -> Iterator[tuple[str, Any]]:
        batch = self.dataset[start:stop][self.image_column]
        for offset, value in enumerate(batch):
            path = value.get("path") if isinstance(value, dict) else (value if isinstance(value, str) else None)
            yield (path or f"{self.name}[{start + offset}]"), value

    def describe(self) -> dict:
        return {"type": "dataset", "name": self.name, "image_column": self.image_column, "num_items": len(self)}


def open_source(source: str, image_column: str = "image", split: str = "train"):
    """A folder of images, a ``save_to_disk`` folder, or a Hub dataset id (``load_dataset(source, split=split)``)."""
    import datasets

    if os.path.isdir(source):
        is_saved_dataset = any(
            os.path.isfile(os.path.join(source, name)) for name in ("state.json", "dataset_dict.json")
        )
        if not is_saved_dataset:
            return FolderSource(source)
        loaded = datasets.load_from_disk(source)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{source!r} has splits {sorted(loaded)}; no split {split!r} (--split).")
            loaded = loaded[split]
        return DatasetSource(loaded, name=os.path.basename(os.path.normpath(source)), image_column=image_column)
    if os.path.exists(source):
        raise ValueError(f"--source {source!r} is a file; give a folder of images, a saved dataset or a Hub id.")
    try:
        loaded = datasets.load_dataset(source, split=split)
    except Exception as error:  # offline, unknown id, no such split: say what was tried
        raise ValueError(
            f"--source {source!r} is neither a folder nor a loadable dataset ({type(error).__name__}: {error})."
        ) from error
    return DatasetSource(loaded, name=source, image_column=image_column)


def describe_source_spec(source: str | None) -> str:
    return os.path.abspath(source) if source and os.path.exists(source) else str(source)
