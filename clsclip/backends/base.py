"""What the pipeline needs of a network, whatever runs it (torch modules or ONNX graphs).

`clsclip.backends.torch_backend.TorchBackend` and `clsclip.backends.onnx_runtime.OnnxBackend`
both satisfy `Backend`, so the `Segmenter` facade and the view pipeline never ask which one
they hold (the pattern of ultralytics' ``AutoBackend``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from clsclip.config import AnyConfig
from clsclip.model.scores import ScoringRule


@runtime_checkable
class Backend(Protocol):
    """A segmentation network behind the pipeline's interface.

    Attributes:
        name: ``"torch"`` or ``"onnxruntime"``.
        config: the model's config.
        device: where tensors it returns live.
        precision: the numeric precision it runs at (``"fp32"``, ``"bf16"``, ``"int8"`` ...).
        image_mean, image_std: RGB normalisation of its inputs, in [0, 1] units.
        scoring: how raw scores become class logits: independent (ClsCLIP, CLIPSeg) or
            competing classes and background prompts (the training-free models).
    """

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> AnyConfig: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def precision(self) -> str: ...

    @property
    def image_mean(self) -> tuple[float, float, float]: ...

    @property
    def image_std(self) -> tuple[float, float, float]: ...

    @property
    def scoring(self) -> ScoringRule: ...

    def background_vectors(self) -> torch.Tensor:
        """``B x embed_dim`` (float32, on `device`) vectors every view is also scored against
        when the classes compete (the background prompts); no rows when there are none."""
        ...

    def grid_for(self, image_size: int) -> tuple[int, int]:
        """The ``(h, w)`` grid of logits of a square input of ``image_size`` pixels."""
        ...

    def encode_class_names(self, names: Sequence[str]) -> torch.Tensor:
        """Class vectors ``K x embed_dim`` (float32) on `device`."""
        ...

    def predict_pairs(
        self, pixels: torch.Tensor, text: torch.Tensor, pairs: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        """Raw scores ``P x h' x w'`` of chosen (view, row) pairs of ``V x 3 x S x S`` views
        (independent classes' logits; see `scoring`)."""
        ...

    def predict_logits(
        self, pixels: torch.Tensor, text: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        """Raw scores ``B x K x h' x w'`` of every row for every image."""
        ...

    def inference(self) -> AbstractContextManager[None]:
        """The context the network runs in (no gradients; autocast at reduced precision)."""
        ...

    def to(self, device: str | torch.device) -> None:
        """Move to another device, or raise `ValueError` naming what this backend can use."""
        ...

    def save_pretrained(
        self, folder: str | os.PathLike[str], *, include_backbone: bool | None = None
    ) -> Path:
        """Write the model into ``folder`` so that `clsclip.backends.load_backend` reads it."""
        ...

    def export_onnx(
        self,
        out_dir: str | os.PathLike[str],
        *,
        classes: Sequence[str] | None,
        opset: int | None,
        int8: bool,
    ) -> Path:
        """Write an ONNX export (see `clsclip.backends.onnx_export`)."""
        ...
