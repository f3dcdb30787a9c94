"""Resumable checkpoints, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clsclip.storage.files import write_atomic

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``checkpoint.pt`` through a temporary file and a rename, so a kill mid-write
    leaves the previous checkpoint intact."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_NAME
    write_atomic(path, lambda tmp: torch.save(state, tmp))
    return path


def load_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The last checkpoint in ``folder`` (tensors and plain values only), or None."""
    path = folder / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, do not guess
        raise OSError(f"cannot read checkpoint {path}: {e}; delete it to start afresh") from e
    return state
