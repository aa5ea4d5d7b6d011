"""Checkpoint files: atomic writes (a crash mid-save never leaves a truncated ``.ckpt``) and safe reads
(loading never runs code from the file: tensors, numbers, strings and containers only, and config
``_target_``s only from this project's model, data and optimizer classes)."""

import importlib
import inspect
import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ddpm.errors import UserError
from ddpm.io.atomic import atomic_path

# What a checkpoint's config may build: classes from these modules, functions only from SAFE_FUNCTIONS.
SAFE_TARGETS = (
    "ddpm.data.",
    "ddpm.denoisers.",
    "ddpm.diffusion.",
    "ddpm.schedules.",
    "ddpm.module.",
    "ddpm.samplers.",
    "ddpm.callbacks.",
    "ddpm.checkpoint_io.",
    "ddpm.codecs.",
    "ddpm.music.corpus.",
    "ddpm.music.musicvae.",
    "ddpm.music.prepare.",
    "ddpm.music.vae_module.",
    "ddpm.music.vae_training.",
    "torch.optim.",
    "lightning.Trainer",
    "lightning.pytorch.callbacks.",
    "lightning.pytorch.loggers.",
)
SAFE_FUNCTIONS = ("ddpm.schedules.",)  # pure functions of numbers (beta schedules)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, unreadable, unsafe or does not fit its config."""


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True``; every failure becomes a one-line ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file; all mean the same here
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:
            raise CheckpointError(
                f"{path}: refused to load this {what}: unpickling it would call {found.group(1)}, which a file "
                f"written by this project never does; nothing from it was run"
            ) from None
        # torch's own first line advises weights_only=False, the one thing a foreign file must not get: its cause
        unpickler = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(e))
        lines = [x for x in str(e).splitlines() if x.strip()]
        first = unpickler.group(1) if unpickler else (lines[0] if lines else type(e).__name__)
        raise CheckpointError(f"{path} is not a readable {what} (truncated or not a PyTorch file?): {first}") from None


def check_targets(config: Any, path: str | Path, key: str = "") -> None:
    """Every ``_target_`` in ``config`` (a plain dict) names a class (or beta schedule) of this project,
    torch.optim or Lightning: a config from a file must not call arbitrary functions when built."""
    if isinstance(config, list):
        for i, item in enumerate(config):
            check_targets(item, path, f"{key}[{i}]")
        return
    if not isinstance(config, dict):
        return
    target = config.get("_target_")
    if target is not None and not _safe_target(target):
        raise CheckpointError(
            f"{path}: refused: its config builds {key or 'the model'} with _target_={target!r}, which is not a "
            f"class of this project, torch.optim or Lightning"
        )
    for name, value in config.items():
        check_targets(value, path, f"{key}.{name}" if key else str(name))


def _safe_target(target: Any) -> bool:
    if not isinstance(target, str) or not target.startswith(SAFE_TARGETS):
        return False
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return False
    return inspect.isclass(obj) or (inspect.isfunction(obj) and target.startswith(SAFE_FUNCTIONS))


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` onto ``path`` atomically (``ddpm.io.atomic``)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with ``atomic_save`` for writes and ``read_checkpoint`` for reads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None):
        """Resume reads like ``sample.py``: never unpickles code (``weights_only`` is always on)."""
        return read_checkpoint(path)
