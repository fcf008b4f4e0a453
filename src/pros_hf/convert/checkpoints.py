"""What every source format shares: the conversion error, reading a weights file safely, descending through wrapper
prefixes, and loading renamed weights into a `ProSModel` with nothing left out on either side."""

import logging
import pickle
import re

import torch

from ..configuration_pros import ProSConfig
from ..modeling_pros import ProSModel

logger = logging.getLogger(__name__)

WEIGHT_FILE_EXTENSIONS = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
# wrappers around a backbone's keys in training checkpoints: DDP's `module.`, DINO's `backbone.` / `teacher.`, ...
PREFIXES = ("module.", "backbone.", "teacher.", "student.", "encoder.", "model.")
CHECKPOINT_ENTRIES = ("teacher", "model", "state_dict", "student", "backbone")


class ConversionError(ValueError):
    """The source cannot be converted (unknown format, unreadable file, weights that do not fit). Its message is one
    line: the command line prints it as the whole error."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def first_line(error: BaseException) -> str:
    """An exception's message for a one-line error: its first non-empty line (torch's and transformers' run to many)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def load_state_dict(path: str, key: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, read without running pickled code, from the training checkpoint's backbone
    entry (`key`, or the first of `CHECKPOINT_ENTRIES` present) where the file holds no tensors at its top level."""
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            checkpoint = load_file(path)
        except (SafetensorError, OSError) as error:
            raise ConversionError(
                f"cannot be read as safetensors (truncated or not a safetensors file: {first_line(error)})."
            ) from None
    else:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # what weights_only refuses: pickled Python objects
            raise ConversionError(
                f"Refusing to load it: it cannot be read with torch.load(weights_only=True) ({first_line(error)}). "
                "It may hold pickled Python objects, which could run arbitrary code. Save only its state dict "
                "(`torch.save(checkpoint['teacher'], 'weights.pth')`) from code you trust, or use safetensors."
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as error:  # cut off, or not torch
            reason = "not a pickle or zip archive" if isinstance(error, (KeyError, IndexError)) else first_line(error)
            raise ConversionError(
                f"cannot be read by torch.load (truncated, or not a PyTorch checkpoint: {reason})."
            ) from None
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"holds a {type(checkpoint).__name__}, not a state dict.")
    if key is not None:
        if key not in checkpoint:
            raise ConversionError(f"has no entry {key!r}; its entries are {sorted(checkpoint)[:20]}.")
        checkpoint = checkpoint[key]
        if not isinstance(checkpoint, dict):
            raise ConversionError(f"its entry {key!r} holds a {type(checkpoint).__name__}, not a state dict.")
    elif not any(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        entry = next((name for name in CHECKPOINT_ENTRIES if isinstance(checkpoint.get(name), dict)), None)
        if entry is None:
            raise ConversionError(
                f"holds no tensors at its top level and none of the entries {CHECKPOINT_ENTRIES}; pass --key to pick "
                f"one of {sorted(checkpoint)[:20]}."
            )
        logger.info("Using the %r entry of %s", entry, path)
        checkpoint = checkpoint[entry]
    return {name: value for name, value in checkpoint.items() if isinstance(value, torch.Tensor)}


def strip_prefixes(state_dict: dict[str, torch.Tensor], anchors: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Descend through wrapper prefixes (DDP's `module.`, DINO's `backbone.`, ...) until one of the `anchors` keys
    appears.

    At each level only the keys under the prefix are kept: DINO checkpoints hold `module.backbone.*` beside
    `module.head.*`, and the projection head is not part of the backbone.
    """
    while not any(anchor in state_dict for anchor in anchors):
        for prefix in PREFIXES:
            kept = {name[len(prefix) :]: value for name, value in state_dict.items() if name.startswith(prefix)}
            if kept:
                dropped = len(state_dict) - len(kept)
                if dropped:
                    logger.info("Keeping the %d keys under %r, dropping %d others", len(kept), prefix, dropped)
                state_dict = kept
                break
        else:
            break
    return state_dict


def map_keys(
    state_dict: dict[str, torch.Tensor], top_keys: dict[str, str], block_key: re.Pattern, block_keys: dict[str, str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a source's keys to ProSModel's: whole names by `top_keys`; the keys of block `i` (`block_key` matches
    them, its groups the index and the rest of the name) by `block_keys`, which maps the rest, or the rest's module
    with `.weight` / `.bias` following, to a name under `encoder.layer.{i}.`. Returns the renamed tensors and the
    names neither map covers."""
    renamed, unknown = {}, []
    for name, value in state_dict.items():
        match = block_key.match(name)
        if name in top_keys:
            renamed[top_keys[name]] = value
        elif match is None:
            unknown.append(name)
        else:
            index, rest = match.groups()
            module, _, kind = rest.rpartition(".")
            if rest in block_keys:
                renamed[f"encoder.layer.{index}.{block_keys[rest]}"] = value
            elif module in block_keys:
                renamed[f"encoder.layer.{index}.{block_keys[module]}.{kind}"] = value
            else:
                unknown.append(name)
    return renamed, unknown


def unknown_keys_error(unknown: list[str], what: str) -> ConversionError:
    """Keys no ProSModel parameter takes: refused by name, since dropping them would change the model's output."""
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    return ConversionError(f"keys that {what} does not have: {unknown[:10]}{more}.")


def build_model(config: ProSConfig, state_dict: dict[str, torch.Tensor], hint: str = "") -> ProSModel:
    """A `ProSModel` of `config` holding exactly `state_dict` (every parameter given, every tensor used, every shape
    right), in eval mode."""
    model = ProSModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    if missing:
        raise ConversionError(f"the checkpoint lacks weights for {missing[:10]}.")
    unexpected = sorted(set(state_dict) - set(expected))
    if unexpected:
        raise ConversionError(f"weights without a place in the model: {unexpected[:10]}.")
    mismatched = [
        f"{name}: {tuple(value.shape)} vs {tuple(expected[name].shape)}"
        for name, value in state_dict.items()
        if value.shape != expected[name].shape
    ]
    if mismatched:
        raise ConversionError(f"shape mismatches{hint}: {mismatched[:5]}")
    model.load_state_dict({name: value.to(expected[name].dtype) for name, value in state_dict.items()}, strict=True)
    return model.eval()
