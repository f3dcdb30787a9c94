"""Saving and strictly loading model weights as safetensors."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

BACKBONE_PREFIX = "backbone."
_MAX_LISTED = 20
CHECKSUMS_KEY = "clsclip_crc32"
CONFIG_HASH_KEY = "clsclip_config_sha256"


def config_digest(config_data: Mapping[str, Any]) -> str:
    """sha256 of a config file's content (key order and spacing do not matter)."""
    canonical = json.dumps(config_data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def tensor_checksum(tensor: torch.Tensor) -> str:
    """CRC-32 of a tensor's bytes (hex): detects bit flips and truncation of the stored data."""
    data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    return f"{zlib.crc32(data.data):08x}"


def trained_state_dict(model: nn.Module, *, include_backbone: bool) -> dict[str, torch.Tensor]:
    """The model's tensors to save: navigator and decoder, plus the backbone when asked."""
    state = model.state_dict()
    if not include_backbone:
        state = {k: v for k, v in state.items() if not k.startswith(BACKBONE_PREFIX)}
    # safetensors refuses views and shared storage; contiguous copies are what gets written.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    include_backbone: bool,
    config_hash: str | None = None,
) -> None:
    """Write the model's weights to a safetensors file.

    The metadata records what it holds, a CRC-32 of every tensor (verified on load), and
    ``config_hash`` (`config_digest` of the config file saved beside it), so that weights and
    a config from different saves are never loaded together.
    """
    contents = "full" if include_backbone else "trained-parts"
    state = trained_state_dict(model, include_backbone=include_backbone)
    check_finite(state, os.fspath(path), writing=True)
    metadata = {
        "format": "pt",
        "clsclip_contents": contents,
        CHECKSUMS_KEY: json.dumps({k: tensor_checksum(v) for k, v in sorted(state.items())}),
    }
    if config_hash is not None:
        metadata[CONFIG_HASH_KEY] = config_hash
    save_file(state, os.fspath(path), metadata=metadata)
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


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    config_hash: str | None = None,
    verify: bool = True,
) -> None:
    """Load a safetensors file into ``model`` strictly.

    A file without ``backbone.*`` keys must match the navigator and decoder exactly (the backbone
    then comes from open_clip); one with them must match the whole model. Any missing or
    unexpected key, or a shape mismatch, raises a `ValueError` that lists them; so does a tensor
    with NaN or infinite values. With ``verify``, the tensors' stored CRC-32s and the stored
    config hash (against ``config_hash``, the `config_digest` of the config being used) are
    checked when the file has them (files saved before checksums were introduced have neither).
    """
    name = os.fspath(path)
    try:
        with safe_open(name, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            loaded = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as e:  # safetensors raises its own SafetensorError for corrupt files
        raise OSError(f"cannot read weights file {name!r}: {e}") from e
    if verify:
        _check_config_hash(metadata, config_hash, name)
        _check_checksums(metadata, loaded, name)
    check_finite(loaded, name)
    has_backbone = any(key.startswith(BACKBONE_PREFIX) for key in loaded)
    expected = model.state_dict()
    if not has_backbone:
        expected = {k: v for k, v in expected.items() if not k.startswith(BACKBONE_PREFIX)}
    check_keys(expected, loaded, os.fspath(path))
    model.load_state_dict(loaded, strict=has_backbone)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, or of a ``pytorch_model.bin`` read with
    ``weights_only=True`` (transformers checkpoints); `OSError` / `ValueError` naming the file."""
    name = os.fspath(path)
    try:
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(name, device="cpu")
        else:
            state = torch.load(name, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or pickle content that weights_only refuses
        raise OSError(f"cannot read weights file {name!r}: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"{name!r} does not hold a state dict")
    return state


def check_finite(tensors: Mapping[str, torch.Tensor], path: str, *, writing: bool = False) -> None:
    """`ValueError` naming the first floating-point tensor with NaN or infinite values (when
    ``writing``: refusing to save it, so that a diverged model never reaches a file)."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            if writing:
                raise ValueError(
                    f"refusing to save {path!r}: tensor {key!r} has {bad} NaN or infinite "
                    f"value(s) of {tensor.numel()} (a diverged model)"
                )
            raise ValueError(
                f"weights in {path!r} are corrupt: tensor {key!r} has {bad} NaN or infinite "
                f"value(s) of {tensor.numel()}"
            )


def _check_checksums(
    metadata: Mapping[str, str], loaded: Mapping[str, torch.Tensor], path: str
) -> None:
    if CHECKSUMS_KEY not in metadata:
        return
    try:
        stored = json.loads(metadata[CHECKSUMS_KEY])
    except json.JSONDecodeError as e:
        raise ValueError(f"weights in {path!r} have unreadable checksums: {e}") from e
    for key in sorted(set(stored) & set(loaded)):
        if tensor_checksum(loaded[key]) != stored[key]:
            raise ValueError(
                f"weights in {path!r} are corrupt: tensor {key!r} does not match the checksum "
                "saved with it (a damaged or modified file); download or save it again"
            )


def _check_config_hash(metadata: Mapping[str, str], config_hash: str | None, path: str) -> None:
    stored = metadata.get(CONFIG_HASH_KEY)
    if stored is None or config_hash is None or stored == config_hash:
        return
    raise ValueError(
        f"weights in {path!r} were saved with another config.json than the one beside them (an "
        "interrupted save, or files mixed from two models); load them with the config they "
        "were saved with, or, if config.json was edited on purpose, pass verify=False and "
        "save the model again"
    )


def check_keys(
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
