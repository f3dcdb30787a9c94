"""Sliding-window inference of the training-free models, as the references run it (mmseg's
``slide_inference`` in ClearCLIP's and NACLIP's segmentors): the windows of a view, their
padding, and the merge of the windows' scores into per-pixel scores of the view.

One owner for the torch model (`clsclip.model.DenseClipModel`) and the onnxruntime backend,
which runs the window network as an ONNX graph and the rest here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Window = tuple[int, int, int, int]
"""A sliding window ``y0, y1, x0, x1`` in pixels of the model input, exclusive end."""


def sliding_windows(height: int, width: int, window: int, stride: int) -> list[Window]:
    """The references' sliding windows over an ``height x width`` input: starts every
    ``stride`` pixels, each window ending at most at the border and moved back to keep its size;
    a side shorter than the window is one window of that side. ``window`` 0: the whole input in
    one pass."""
    if window <= 0:
        return [(0, height, 0, width)]
    rows = max(height - window + stride - 1, 0) // stride + 1
    cols = max(width - window + stride - 1, 0) // stride + 1
    out = []
    for i in range(rows):
        for j in range(cols):
            y1, x1 = min(i * stride + window, height), min(j * stride + window, width)
            out.append((max(y1 - window, 0), y1, max(x1 - window, 0), x1))
    return out


def patch_padding(height: int, width: int, patch: int) -> tuple[int, int, int, int]:
    """ClearCLIP's padding of a window to whole patches: ``(left, right, top, bottom)``, the
    missing pixels split with the smaller half first."""
    across, down = (-width) % patch, (-height) % patch
    return across // 2, across - across // 2, down // 2, down - down // 2


@dataclass(frozen=True)
class SlidingWindows:
    """How a view is covered by windows and how their scores come back to its pixels.

    Attributes:
        window: side of a window in pixels (0: the whole view in one pass).
        stride: pixels between windows.
        patch: the ViT's patch size.
        pad: pad a sliding window to whole patches (ClearCLIP); else the network drops the
            remainder (NACLIP, and every whole-view pass).
        logit_scale: multiplies the merged cosines.
    """

    window: int
    stride: int
    patch: int
    pad: bool
    logit_scale: float

    def places(self, height: int, width: int) -> list[Window]:
        """The windows of an ``height x width`` view (all of one size)."""
        return sliding_windows(height, width, self.window, self.stride)

    def padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` pixels added to a window of that size."""
        if not self.pad or self.window <= 0:
            return (0, 0, 0, 0)
        return patch_padding(height, width, self.patch)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """``(rows, cols)`` of the network's input for a view of that size (a padded window)."""
        y0, y1, x0, x1 = self.places(height, width)[0]
        left, right, top, bottom = self.padding(y1 - y0, x1 - x0)
        return y1 - y0 + top + bottom, x1 - x0 + left + right

    def encode(
        self, pixels: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """``features`` of every window of ``V x 3 x h x w`` views (one call for all):
        ``V x n x T x E`` for the n windows of `places`."""
        places = self.places(pixels.shape[-2], pixels.shape[-1])
        y0, y1, x0, x1 = places[0]
        left, right, top, bottom = self.padding(y1 - y0, x1 - x0)
        crops = torch.cat([pixels[:, :, a:b, c:d] for a, b, c, d in places])
        if left or right or top or bottom:
            crops = F.pad(crops, (left, right, top, bottom))
        out = features(crops)  # (n * V) x T x E, window-major
        views = pixels.shape[0]
        return out.view(len(places), views, *out.shape[1:]).transpose(0, 1).contiguous()

    def merge(self, cosines: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Per-pixel scores ``P x h x w`` of a view of size ``grid`` from its windows' cosines
        ``P x n x T`` (T patches of each window, row-major): each window's map upsampled
        (bilinear, align_corners=False) to its padded pixels and cut, summed over the windows,
        divided by their count per pixel, times the logit scale."""
        height, width = grid
        places = self.places(height, width)
        y0, y1, x0, x1 = places[0]
        left, _, top, _ = self.padding(y1 - y0, x1 - x0)
        size = self.input_size(height, width)
        cells = (size[0] // self.patch, size[1] // self.patch)
        total = cosines.new_zeros(cosines.shape[0], height, width)
        count = cosines.new_zeros(1, height, width)
        for i, (a, b, c, d) in enumerate(places):
            maps = cosines[:, i].reshape(-1, 1, *cells)
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[:, 0]
            total[:, a:b, c:d] += maps[:, top : top + b - a, left : left + d - c]
            count[:, a:b, c:d] += 1
        return total / count * self.logit_scale
