"""A segmenter's model files: building one from a config or a saved folder (a Hub repo, an
ONNX export), saving, exporting and pushing it, and what it runs on. `clsclip.Segmenter` has
these from `ModelFiles`; they only ever talk to its `Backend`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import torch

from clsclip.backends import load_backend
from clsclip.backends.base import Backend
from clsclip.backends.precision import Precision
from clsclip.backends.torch_backend import TorchBackend
from clsclip.checks import check_class_names, resolve_device
from clsclip.config import AnyConfig
from clsclip.model import SegmentationModel
from clsclip.storage.hub import push_model

_S = TypeVar("_S", bound="ModelFiles")


class ModelFiles:
    """The model side of a segmenter (a mixin: ``backend`` is set by the class that uses it)."""

    backend: Backend

    @classmethod
    def from_config(
        cls: type[_S],
        config: AnyConfig,
        *,
        device: str | torch.device | None = None,
        chunk_size: int = 16,
        cache_dir: str | None = None,
        precision: Precision = "fp32",
    ) -> _S:
        """A fresh model: the backbone from open_clip (``config.pretrained``), the projection and
        decoder randomly initialised. Train it before expecting useful masks."""
        backend = TorchBackend.from_config(
            config, device=resolve_device(device), cache_dir=cache_dir, precision=precision
        )
        return cls(backend, chunk_size=chunk_size)  # type: ignore[call-arg]

    @classmethod
    def from_pretrained(
        cls: type[_S],
        source: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        chunk_size: int = 16,
        precision: Precision = "fp32",
        verify: bool = True,
        backend: str = "torch",
    ) -> _S:
        """Load a saved model from a local folder or a Hugging Face Hub repo.

        Args:
            source: a folder holding ``config.json`` and ``model.safetensors``, or a Hub repo id
                (``"org/name"``, optionally prefixed ``"hf-hub:"``).
            device: where to run; None picks CUDA when available (the CPU for onnxruntime).
            revision, cache_dir, local_files_only, token: passed to huggingface_hub for Hub repos;
                ``cache_dir`` is also where open_clip caches backbone weights.
            chunk_size, precision: see `clsclip.Segmenter`.
            verify: check the CRC-32 of every weight tensor and that ``config.json`` is the one
                the weights were saved with (models saved with checksums carry both).
                ``False`` accepts a config edited by hand; NaN or infinite weights are refused
                either way.
            backend: ``"torch"``, or ``"onnxruntime"`` for a folder written by `export_onnx`
                (``clsclip export``): the same pipeline with onnxruntime sessions in place of
                the torch network (needs ``clsclip[onnx]``; CUDA needs onnxruntime-gpu).

        Raises:
            FileNotFoundError: no such folder, or a file of the model is missing.
            OSError: the Hub cannot provide the model (offline and not cached, unknown repo).
            ValueError: invalid config, or weights that do not match it (listing the keys).
        """
        network = load_backend(
            source,
            backend=backend,
            device=None if device is None else resolve_device(device),
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            precision=precision,
            verify=verify,
        )
        return cls(network, chunk_size=chunk_size)  # type: ignore[call-arg]

    @property
    def config(self) -> AnyConfig:
        """The model's config."""
        return self.backend.config

    @property
    def device(self) -> torch.device:
        """Where the network runs and results' logits live."""
        return self.backend.device

    @property
    def precision(self) -> str:
        """The precision the network runs at."""
        return self.backend.precision

    @property
    def model(self) -> SegmentationModel:
        """The torch network (`RuntimeError` for a segmenter that runs ONNX graphs)."""
        model = getattr(self.backend, "model", None)
        if not isinstance(model, SegmentationModel):
            raise RuntimeError(
                f"this segmenter runs the {self.backend.name} backend, which has no torch model"
            )
        return model

    def export_onnx(
        self,
        out_dir: str | os.PathLike[str],
        *,
        classes: Sequence[str] | None = None,
        opset: int | None = None,
        int8: bool = False,
    ) -> Path:
        """Export the network as ONNX graphs that keep the vocabulary open (text encoder,
        class-independent part, class-dependent part) and a JSON describing the pipeline;
        ``classes`` also stores their vectors; ``int8`` quantises the graphs (onnxruntime's
        dynamic quantisation). Load with ``from_pretrained(dir, backend="onnxruntime")``.
        Needs ``clsclip[onnx]``; see docs/deploy.md."""
        names = check_class_names(classes) if classes is not None else None
        return self.backend.export_onnx(out_dir, classes=names, opset=opset, int8=int8)

    def save_pretrained(
        self, save_directory: str | os.PathLike[str], *, include_backbone: bool | None = None
    ) -> Path:
        """Write the model into a folder (created if needed; returned) that `from_pretrained`
        reads: ``config.json`` and ``model.safetensors`` (torch), or a copy of the export
        (onnxruntime). ``include_backbone``: store the backbone weights too; None (default)
        stores them when open_clip cannot rebuild them (no ``config.pretrained``, or a
        fine-tuned backbone)."""
        return self.backend.save_pretrained(save_directory, include_backbone=include_backbone)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload clsclip model",
    ) -> str:
        """Save the model with a model card and upload it to a Hugging Face Hub repo (created if
        needed); returns the URL of the commit."""
        return push_model(
            self.save_pretrained,
            self.config,
            repo_id,
            private=private,
            token=token,
            revision=revision,
            commit_message=commit_message,
        )

    def _precision_note(self) -> str:
        reason = getattr(self.backend, "precision_reason", "requested")
        return "" if reason == "requested" else f" ({reason})"

    def __repr__(self) -> str:
        config = self.config
        backbone = config.backbone if isinstance(config.backbone, str) else "custom"
        return (
            f"{type(self).__name__}(model={config.MODEL_TYPE!r}, family={config.FAMILY!r}, "
            f"backbone={backbone!r}, image_size={config.image_size}, "
            f"backend={self.backend.name!r}, device={str(self.device)!r}, "
            f"precision={self.precision!r}{self._precision_note()})"
        )
