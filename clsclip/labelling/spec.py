"""``run.json``: what a labelling run is, so that a resume continues only the same run.

The model's identity (its config's hash and its weights' checksum, or the Hub revision it was
read from), the classes, prompt templates, threshold, input geometry, formats, proposals,
precision, backend and the clsclip version. Two runs with the same description give the same
outputs for the same image.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clsclip.config import ModelConfig
from clsclip.version import __version__


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(path: Path | None) -> str:
    """A checksum of a weights file: the sha256 of the per-tensor CRC-32s stored in its
    metadata (cheap), else of the file's bytes; ``"none"`` for a config-only model."""
    if path is None:
        return "none"
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        from clsclip.storage.weights import CHECKSUMS_KEY

        try:
            with safe_open(os.fspath(path), framework="pt") as f:
                stored = (f.metadata() or {}).get(CHECKSUMS_KEY)
        except Exception:  # unreadable: the loader already reported it; hash the bytes
            stored = None
        if stored:
            return "crc32s:" + hashlib.sha256(stored.encode("utf-8")).hexdigest()
    return "sha256:" + _file_sha256(path)


def model_identity(source: str, *, backend: str, revision: str | None = None) -> dict[str, Any]:
    """What identifies a model: its source, its config's hash, its weights' checksum, and for
    a Hub repo the commit its files came from (they are cached: no download happens here)."""
    from clsclip.backends.onnx_format import ONNX_CONFIG
    from clsclip.storage.hub import resolve_model_files
    from clsclip.storage.weights import config_digest

    if backend == "onnxruntime":
        return {"source": source, "onnx_sha256": _file_sha256(Path(source) / ONNX_CONFIG)}
    files = resolve_model_files(source, revision=revision)
    identity: dict[str, Any] = {
        "source": source,
        "config_sha256": config_digest(files.config_data),
        "weights": weights_identity(files.weights),
    }
    parts = files.config.parts
    if "snapshots" in parts:  # huggingface_hub's cache: .../snapshots/<commit>/config.json
        identity["hub_revision"] = parts[parts.index("snapshots") + 1]
    return identity


def run_spec(
    *,
    model: dict[str, Any],
    config: ModelConfig,
    classes: Sequence[Any],
    threshold: float,
    formats: Sequence[str],
    instances: bool,
    proposals: dict[str, Any],
    precision: str,
    backend: str,
    max_image_pixels: int | None,
    base: Path,
    min_score: float | None = None,
    video: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The description ``run.json`` holds (see the module's docstring); ``video``: how the
    run's videos are read and written (only in a run that has videos)."""
    spec = {
        "clsclip_version": __version__,
        "model": model,
        "model_type": config.MODEL_TYPE,
        "classes": list(classes),
        "prompt_templates": list(config.prompt_templates),
        "threshold": threshold,
        "min_score": min_score,
        "image_size": config.image_size,
        "resize_mode": config.resize_mode,
        "formats": sorted(formats),
        "instances": instances,
        "proposals": proposals,
        "precision": precision,
        "backend": backend,
        "max_image_pixels": max_image_pixels,
        "inputs_base": os.fspath(base),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if video is not None:
        spec["video"] = video
    return spec


def proposals_identity(
    kind: str, *, boxes: Path | None = None, yolo_model: str = "", yolo_conf: float = 0.0
) -> dict[str, Any]:
    """The proposal source of a run: none, YOLO (weights name and confidence) or a boxes file
    (its content's hash)."""
    if boxes is not None:
        return {"kind": "boxes", "sha256": _file_sha256(boxes)}
    if kind == "yolo":
        return {"kind": "yolo", "model": yolo_model, "conf": yolo_conf}
    return {"kind": "none"}
