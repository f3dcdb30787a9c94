"""Saving and strictly loading model weights as safetensors."""

from __future__ import annotations

import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from clsclip.model import SegmentationModel

WEIGHTS_NAME = "model.safetensors"
BACKBONE_PREFIX = "backbone."
_MAX_LISTED = 20


def trained_state_dict(
    model: SegmentationModel, *, include_backbone: bool
) -> dict[str, torch.Tensor]:
    """The model's tensors to save: navigator and decoder, plus the backbone when asked."""
    state = model.state_dict()
    if not include_backbone:
        state = {k: v for k, v in state.items() if not k.startswith(BACKBONE_PREFIX)}
    # safetensors refuses views and shared storage; contiguous copies are what gets written.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(
    model: SegmentationModel, path: str | os.PathLike[str], *, include_backbone: bool
) -> None:
    """Write the model's weights to a safetensors file (metadata records what it holds)."""
    contents = "full" if include_backbone else "trained-parts"
    save_file(
        trained_state_dict(model, include_backbone=include_backbone),
        os.fspath(path),
        metadata={"format": "pt", "clsclip_contents": contents},
    )
    # safetensors creates files readable by their owner only; give them the usual mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def file_has_backbone(path: str | os.PathLike[str]) -> bool:
    """Whether a weights file holds the backbone (``backbone.*`` keys)."""
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:  # safetensors raises its own SafetensorError for corrupt files
        raise OSError(f"cannot read weights file {os.fspath(path)!r}: {e}") from e
    return any(key.startswith(BACKBONE_PREFIX) for key in keys)


def load_weights(model: SegmentationModel, path: str | os.PathLike[str]) -> None:
    """Load a safetensors file into ``model`` strictly.

    A file without ``backbone.*`` keys must match the navigator and decoder exactly (the backbone
    then comes from open_clip); one with them must match the whole model. Any missing or
    unexpected key, or a shape mismatch, raises a `ValueError` that lists them.
    """
    from safetensors.torch import load_file

    try:
        loaded = load_file(os.fspath(path), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError for corrupt files
        raise OSError(f"cannot read weights file {os.fspath(path)!r}: {e}") from e
    has_backbone = any(key.startswith(BACKBONE_PREFIX) for key in loaded)
    expected = model.state_dict()
    if not has_backbone:
        expected = {k: v for k, v in expected.items() if not k.startswith(BACKBONE_PREFIX)}
    _check_keys(expected, loaded, os.fspath(path))
    model.load_state_dict(loaded, strict=has_backbone)


def load_transformers_clipseg(model: SegmentationModel, path: str | os.PathLike[str]) -> None:
    """Load a transformers CLIPSeg checkpoint (safetensors, or ``pytorch_model.bin`` read with
    ``weights_only=True``) into a `ClipSegModel` built from the converted config, strictly."""
    from clsclip.model.clipseg_convert import state_dict_from_transformers

    name = os.fspath(path)
    try:
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            hf = load_file(name, device="cpu")
        else:
            hf = torch.load(name, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or pickle content that weights_only refuses
        raise OSError(f"cannot read weights file {name!r}: {e}") from e
    if not isinstance(hf, dict):
        raise ValueError(f"{name!r} does not hold a state dict")
    state = state_dict_from_transformers(hf)
    _check_keys(model.state_dict(), state, name)
    model.load_state_dict(state, strict=True)


def _check_keys(
    expected: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor], path: str
) -> None:
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    mismatched = sorted(
        f"{k}: file {tuple(loaded[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(loaded)
        if loaded[k].shape != expected[k].shape
    )
    problems = []
    for title, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ):
        if keys:
            listed = ", ".join(keys[:_MAX_LISTED])
            more = f" ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
            problems.append(f"{len(keys)} {title}: {listed}{more}")
    if problems:
        raise ValueError(
            f"weights in {path!r} do not match the model built from config.json; "
            + "; ".join(problems)
        )
