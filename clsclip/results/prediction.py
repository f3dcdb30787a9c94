"""What the network produced for one image, before any full-resolution work: the whole image's
low-resolution logits, its ClsCLIP+ crops, negatives and calibration (`LowResPrediction`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from clsclip.geometry import Letterbox, Region
from clsclip.proposals.zoom import FUSION_MODES, FusionMode


@dataclass(frozen=True)
class CropLogits:
    """One class's low-resolution logits on one ClsCLIP+ crop.

    Attributes:
        class_index: the class k (0-based) these logits are for.
        region: the crop ``x0, y0, x1, y1`` in pixels of the original image, exclusive end.
        letterbox: where the crop sat inside its square model input.
        logits: float32 ``h' x w'`` on the crop's patch grid.
    """

    class_index: int
    region: Region
    letterbox: Letterbox
    logits: torch.Tensor


@dataclass(frozen=True)
class LowResPrediction:
    """What the network produced for one image, before any full-resolution work.

    Attributes:
        logits: float32 ``K x h' x w'`` foreground logits of the whole image on the patch grid of
            the square input (the letterbox padding included).
        letterbox: where the image sat inside the square input.
        crops: ClsCLIP+ crop logits (empty without proposals).
        fusion: how crops merge with the whole image (see `clsclip.proposals.zoom.ZoomSettings`).
        negatives: float32 ``N x h' x w'`` logits of negative prompts on the whole image's grid
            (None: none); at every pixel where one of class k's negatives is above class k's
            logit, class k is out (logit ``-inf``: probability 0).
        negative_of: the class each negative belongs to (N entries).
        scale, bias: float32 ``K`` calibration of the logits, ``scale * logit + bias``, applied
            after fusion and negatives (None: 1 and 0).
        background: float32 ``h' x w'`` logits of the background on the whole image's grid
            (competing classes with background prompts, `clsclip.model.scores.ScoringRule`;
            None: none): a pixel is in a class's mask only where the class's logit is above
            it as well as above the threshold. Probabilities are not changed by it.
        rows: float32 ``R x h' x w'`` raw scores of every row the competing classes were scored
            from (each class's prompt rows, then the background's), or None. With them the
            full-resolution logits are scored from the rows after the way back, as the
            training-free references do (their softmax follows the upsampling); ``logits`` and
            ``background`` are then the same scoring on the grid, for the image-level scores.
        row_of: the class of each row (-1: background).
        area_threshold: SC-CLIP's ``area_thd``: a class is dropped from the image (empty mask)
            when its share of the pixels the label map gives to classes, before the
            thresholds, is at most this (None: none; see `FullResolution.area_dropped`).
    """

    logits: torch.Tensor
    letterbox: Letterbox
    crops: tuple[CropLogits, ...] = ()
    fusion: FusionMode = "max"
    negatives: torch.Tensor | None = None
    negative_of: tuple[int, ...] = ()
    scale: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    background: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    row_of: tuple[int, ...] = ()
    area_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.logits.ndim != 3:
            raise ValueError(f"logits must be K x h x w, got shape {tuple(self.logits.shape)}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {list(FUSION_MODES)}")
        num_classes = self.logits.shape[0]
        for crop in self.crops:
            if not 0 <= crop.class_index < num_classes:
                raise ValueError(f"crop class {crop.class_index} is not in 0 .. {num_classes - 1}")
        count = 0 if self.negatives is None else int(self.negatives.shape[0])
        if len(self.negative_of) != count or any(
            not 0 <= k < num_classes for k in self.negative_of
        ):
            raise ValueError(
                f"negative_of must name a class in 0 .. {num_classes - 1} for each of the "
                f"{count} negatives, got {list(self.negative_of)}"
            )
        if self.negatives is not None and self.negatives.shape[1:] != self.logits.shape[1:]:
            raise ValueError("negatives must be on the grid of the logits")
        if self.background is not None and self.background.shape != self.logits.shape[1:]:
            raise ValueError("background must be h x w, on the grid of the logits")
        if self.rows is not None:
            if self.rows.ndim != 3 or self.rows.shape[1:] != self.logits.shape[1:]:
                raise ValueError("rows must be R x h x w, on the grid of the logits")
            owners = set(self.row_of)
            if (
                len(self.row_of) != self.rows.shape[0]
                or not owners <= set(range(-1, num_classes))
                or not set(range(num_classes)) <= owners
            ):
                raise ValueError(
                    f"row_of must give each of the {self.rows.shape[0]} rows a class in 0 .. "
                    f"{num_classes - 1} (or -1, background), every class at least one row"
                )
        for name in ("scale", "bias"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (num_classes,):
                raise ValueError(f"{name} must hold one value per class ({num_classes})")

    @classmethod
    def from_probs(cls, probs: np.ndarray, num_classes: int) -> LowResPrediction:
        """Full-resolution probabilities (float ``K x H x W`` in [0, 1]) as logits at their own
        size (no square padding: the way back is the identity)."""
        if probs.ndim != 3 or probs.shape[0] != num_classes:
            raise ValueError(f"probs must be K x H x W with K = {num_classes}, got {probs.shape}")
        _, height, width = probs.shape
        if height == 0 or width == 0:
            raise ValueError(f"probs has zero size: {probs.shape}")
        values = np.clip(probs.astype(np.float64), 0.0, 1.0)
        with np.errstate(divide="ignore"):
            logits = torch.from_numpy((np.log(values) - np.log1p(-values)).astype(np.float32))
        return cls(logits, Letterbox((height, width), (height, width), max(height, width)))

    @property
    def calibrated(self) -> bool:
        return self.scale is not None or self.bias is not None

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[0])

    @property
    def device(self) -> torch.device:
        return self.logits.device

    def to(self, device: str | torch.device) -> LowResPrediction:
        """The same prediction with every tensor on ``device``."""
        crops = tuple(replace(c, logits=c.logits.to(device)) for c in self.crops)

        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(device)

        return replace(self, logits=self.logits.to(device), crops=crops,
                       negatives=move(self.negatives), scale=move(self.scale),
                       bias=move(self.bias), background=move(self.background),
                       rows=move(self.rows))  # fmt: skip

    def with_calibration(
        self, scale: torch.Tensor | None, bias: torch.Tensor | None
    ) -> LowResPrediction:
        """The same output with another calibration (None: none)."""
        device = self.logits.device
        return replace(
            self,
            scale=None if scale is None else scale.to(device, torch.float32),
            bias=None if bias is None else bias.to(device, torch.float32),
        )

    def cell_logits(self) -> torch.Tensor:
        """float32 ``K x h' x w'``: the whole image's logits on the grid with negatives and
        calibration applied (as `FullResolution` applies them per pixel), for image-level
        scores."""
        logits = self.logits.float()
        if self.negatives is not None:
            logits = logits.clone()
            for k, negative in zip(self.negative_of, self.negatives.float(), strict=True):
                logits[k] = torch.where(negative > logits[k], -math.inf, logits[k])
        return calibrate(logits, self.scale, self.bias, range(self.num_classes))


def calibrate(
    logits: torch.Tensor,
    scale: torch.Tensor | None,
    bias: torch.Tensor | None,
    classes: Sequence[int],
) -> torch.Tensor:
    """``scale * logits + bias`` per class (the first axis holds ``classes``)."""
    if scale is None and bias is None:
        return logits
    shape = (len(classes),) + (1,) * (logits.ndim - 1)
    index = torch.as_tensor(list(classes), device=logits.device)
    if scale is not None:
        logits = logits * scale[index].reshape(shape)
    if bias is not None:
        logits = logits + bias[index].reshape(shape)
    return logits
