"""What the batch entry points give back: `TensorSegmentation` (`Segmenter.segment_torch`)
and `ImageOutcome` (`Segmenter.segment_many`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from PIL import Image

from clsclip.geometry import Letterbox
from clsclip.results.prediction import LowResPrediction
from clsclip.results.result import SegmentationResult


@dataclass(frozen=True)
class TensorSegmentation:
    """What `Segmenter.segment_torch` returns: a batch of same-size images, on the device.

    Attributes:
        class_names: the K queried names.
        label_maps: int32 ``B x H x W`` on the model's device: 0 background, k + 1 where class k
            is above the threshold and has the largest logit.
        low_res_logits: float32 ``B x K x h' x w'`` on the patch grid of the square input.
        letterbox: where every image sat inside the square input.
        threshold: the probability threshold of the classes without their own.
        class_thresholds: the classes' own thresholds, by name.
        scale, bias: float32 ``K`` calibration of the logits (None: none).
        background: float32 ``B x h' x w'`` background logits of competing classes (None:
            none; see `LowResPrediction.background`).
        rows, row_of: float32 ``B x R x h' x w'`` raw rows of competing classes and the class
            of each (see `LowResPrediction.rows`).
        area_threshold: see `LowResPrediction.area_threshold`.
    """

    class_names: list[str]
    label_maps: torch.Tensor
    low_res_logits: torch.Tensor
    letterbox: Letterbox
    threshold: float
    class_thresholds: Mapping[str, float] = field(default_factory=dict)
    scale: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    background: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    row_of: tuple[int, ...] = ()
    area_threshold: float | None = None

    def result(self, index: int, image: Image.Image | None = None) -> SegmentationResult:
        """Image ``index`` as a `SegmentationResult` (masks, probabilities, summary, drawing),
        with the same thresholds and calibration as the label maps."""
        floor = None if self.background is None else self.background[index]
        rows = None if self.rows is None else self.rows[index]
        prediction = LowResPrediction(self.low_res_logits[index], self.letterbox,
                                      scale=self.scale, bias=self.bias, background=floor,
                                      rows=rows, row_of=self.row_of,
                                      area_threshold=self.area_threshold)  # fmt: skip
        return SegmentationResult(list(self.class_names), prediction, self.threshold, image,
                                  class_thresholds=self.class_thresholds)  # fmt: skip


@dataclass
class ImageOutcome:
    """What `Segmenter.segment_many` yields for each input, in input order.

    Attributes:
        index: position in the input sequence.
        source: the file path, when the input was one.
        result: the segmentation, or None when the image failed.
        error: ``"ErrorType: message"`` for a failed image, else None.
    """

    index: int
    source: str | None
    result: SegmentationResult | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
