"""The network as torch modules: built from a config or read from a model folder, at a chosen
precision on a chosen device."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from clsclip.backends.precision import (
    Precision,
    autocast,
    check_precision,
    quantize_backbone,
    resolve_precision,
    uses_converted_weights,
)
from clsclip.checks import resolve_device
from clsclip.config import CONFIG_TYPES, AnyConfig, config_from_dict
from clsclip.model import (
    ClipSegModel,
    ClsClipModel,
    DenseClipModel,
    SegmentationModel,
    build_model,
)
from clsclip.model.clipseg_convert import state_dict_from_transformers
from clsclip.model.scores import ScoringRule
from clsclip.storage.folder import save_model_folder
from clsclip.storage.hub import resolve_model_files
from clsclip.storage.weights import (
    check_keys,
    config_digest,
    file_has_backbone,
    load_weights,
    read_state_dict,
)

logger = logging.getLogger(__name__)


@dataclass
class _Placement:
    """Where a network is: one object for every backend that shares the network."""

    device: torch.device


class TorchBackend:
    """A `SegmentationModel` on a device, at a precision (see `clsclip.backends.base.Backend`).

    Args:
        model: the network, as built by `clsclip.model.build_model`.
        config: the config it was built from.
        device: where it runs (a resolved `torch.device`).
        precision: ``"fp32"``; ``"bf16"`` / ``"fp16"`` (CUDA autocast; on a CPU with AMX or
            AVX-512 BF16, ``"bf16"`` converts the weights, in place); ``"int8"`` (CPU: the
            backbone's linear layers dynamically quantised, in place); ``"auto"`` (see
            `clsclip.backends.precision.resolve_precision`).
    """

    name = "torch"

    def __init__(
        self,
        model: SegmentationModel,
        config: AnyConfig,
        *,
        device: torch.device,
        precision: Precision = "fp32",
    ) -> None:
        if not isinstance(model, SegmentationModel):
            raise TypeError(
                f"model must be a clsclip SegmentationModel, got {type(model).__name__}"
            )
        check_config(config)
        self.config = config
        self._placement = _Placement(device)  # shared by copies that share the model
        self.model = model.to(device).eval()
        self.precision: Precision
        self.precision, self.precision_reason = resolve_precision(precision, device)
        if self.precision == "int8":
            quantize_backbone(self.model)
        self._dtype = torch.float32
        if self.precision == "fp32" and _dtype_of(self.model) == torch.float64:
            self._dtype = torch.float64  # a float64 model (reference checks) runs in float64
        if uses_converted_weights(self.precision, device):
            self.model.to(torch.bfloat16)
            self._dtype = torch.bfloat16
        if self.precision != "fp32":
            logger.info("running at %s (%s)", self.precision, self.precision_reason)

    @classmethod
    def from_config(
        cls,
        config: AnyConfig,
        *,
        device: torch.device,
        cache_dir: str | None = None,
        precision: Precision = "fp32",
    ) -> TorchBackend:
        """A fresh model: the backbone from open_clip, the trainable parts random."""
        check_config(config)
        return cls(
            build_model(config, cache_dir=cache_dir), config, device=device, precision=precision
        )

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str],
        *,
        device: torch.device,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        precision: Precision = "fp32",
        verify: bool = True,
    ) -> TorchBackend:
        """The model of a local folder or Hub repo (see `Segmenter.from_pretrained`)."""
        resolve_precision(precision, device)  # a refused precision fails before anything is read
        model, config = load_model_folder(
            source,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            verify=verify,
        )
        return cls(model, config, device=device, precision=precision)

    @property
    def scoring(self) -> ScoringRule:
        """How raw scores become class logits (independent, or competing classes)."""
        return self.model.scoring

    def background_vectors(self) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.background_vectors(self.device).float()

    @property
    def image_mean(self) -> tuple[float, float, float]:
        return self.model.image_mean

    @property
    def image_std(self) -> tuple[float, float, float]:
        return self.model.image_std

    def grid_for(self, image_size: int) -> tuple[int, int]:
        return self.model.grid_for(image_size)

    def encode_class_names(self, names: Sequence[str]) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.encode_class_names(list(names)).float()

    def predict_pairs(
        self, pixels: torch.Tensor, text: torch.Tensor, pairs: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        """Inputs cast to the network's dtype (bf16 weights on the CPU), logits in float32."""
        pixels, text = pixels.to(self._dtype), text.to(self._dtype)
        return self.model.predict_pairs(pixels, text, pairs, chunk_size=chunk_size).float()

    def predict_logits(
        self, pixels: torch.Tensor, text: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        pixels, text = pixels.to(self._dtype), text.to(self._dtype)
        return self.model.predict_logits(pixels, text, chunk_size=chunk_size).float()

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        with torch.inference_mode(), autocast(self.precision, self.device):
            yield

    @property
    def device(self) -> torch.device:
        return self._placement.device

    def to(self, device: str | torch.device) -> None:
        """Move the network; every backend that shares it (`copy.copy`, as a calibrated
        segmenter's) moves with it, and knows."""
        target = resolve_device(device)
        check_precision(self.precision, target)
        self.model.to(target)
        self._placement.device = target

    def save_pretrained(
        self, folder: str | os.PathLike[str], *, include_backbone: bool | None = None
    ) -> Path:
        """``config.json`` and ``model.safetensors``; the backbone is stored when open_clip
        cannot rebuild it (``include_backbone=None``: no pretrained tag, or fine-tuned)."""
        if self.precision == "int8" or self._dtype == torch.bfloat16:
            raise RuntimeError(
                f"a {self.precision} segmenter whose weights were converted cannot be saved "
                "(the conversion lost precision): save the fp32 model, and choose "
                f"precision={self.precision!r} when loading it"
            )
        if include_backbone is None:
            include_backbone = self.config.pretrained is None or any(
                p.requires_grad for p in self.model.backbone.parameters()
            )
        return save_model_folder(
            self.model, self.config, Path(folder), include_backbone=include_backbone
        )

    def export_onnx(
        self,
        out_dir: str | os.PathLike[str],
        *,
        classes: Sequence[str] | None,
        opset: int | None,
        int8: bool,
    ) -> Path:
        from clsclip.backends.onnx_export import OPSET, export_onnx

        if self.precision == "int8" or self._dtype == torch.bfloat16:
            raise RuntimeError(
                f"export the fp32 model: a {self.precision} one (converted weights) cannot be "
                "exported"
            )
        if not isinstance(self.model, (ClsClipModel, ClipSegModel, DenseClipModel)):
            raise TypeError(f"cannot export a {type(self.model).__name__}")
        model = copy.deepcopy(self.model)
        return export_onnx(
            model, self.config, Path(out_dir), classes=classes, opset=opset or OPSET, int8=int8
        )


def _dtype_of(model: torch.nn.Module) -> torch.dtype:
    first = next(model.parameters(), None)
    return torch.float32 if first is None else first.dtype


def check_config(config: object) -> None:
    """`TypeError` unless ``config`` is one of clsclip's model configs."""
    if not isinstance(config, CONFIG_TYPES):
        names = ", ".join(c.__name__ for c in CONFIG_TYPES)
        raise TypeError(f"config must be one of {names}; got {type(config).__name__}")


def load_model_folder(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    verify: bool = True,
) -> tuple[SegmentationModel, AnyConfig]:
    """The model and config of a local folder or Hub repo: clsclip's own format, or a
    transformers CLIPSeg checkpoint (converted)."""
    files = resolve_model_files(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    config = config_from_dict(files.config_data)
    if files.weights is None:  # a config-only folder: open_clip's pretrained backbone
        if config.pretrained is None:
            raise FileNotFoundError(
                f"{source} has no model.safetensors and its config names no pretrained weights "
                "(pretrained is null): the backbone would be random"
            )
        model = build_model(config, cache_dir=cache_dir)
        logger.info("built %s model %s from its config", config.FAMILY, source)
        return model, config
    if files.config_data.get("model_type") == "clipseg":  # a transformers checkpoint: convert it
        model = build_model(config, load_backbone_weights=False)
        state = state_dict_from_transformers(read_state_dict(files.weights))
        check_keys(model.state_dict(), state, os.fspath(files.weights))
        model.load_state_dict(state, strict=True)
        logger.info("converted transformers CLIPSeg checkpoint %s", source)
        return model, config
    has_backbone = file_has_backbone(files.weights)
    if not has_backbone and config.pretrained is None:
        raise ValueError(
            f"{files.weights} holds no backbone weights and config.pretrained is None, so the "
            "backbone would be random; save the model with include_backbone=True"
        )
    model = build_model(config, load_backbone_weights=not has_backbone, cache_dir=cache_dir)
    load_weights(model, files.weights, config_hash=config_digest(files.config_data), verify=verify)
    logger.info("loaded clsclip model from %s", source)
    return model, config
