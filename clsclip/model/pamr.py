"""Pixel-adaptive mask refinement (PAMR; Araslanov & Roth, "Single-Stage Semantic Segmentation
from Image Labels", CVPR 2020), as NACLIP applies it to the training-free scores.

Each pixel's affinity to its 8 neighbours at each dilation comes from the image alone: the
colour distance to the neighbour, divided by a tenth of the local standard deviation (over the
3 x 3 neighbourhoods of every dilation, the pixel included), averaged over the colour channels,
turned into weights by a softmax over the neighbours. Each iteration replaces every score map
by the affinity-weighted mean of its neighbours' values; borders replicate the edge pixels.
Written here from that description; `tests/model/test_pamr.py` checks it against a separate
transcription of the published module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""The 8 neighbours, row-major (the order of the reference's kernels)."""

CHUNK_BYTES = 64 * 2**20
"""Working set of the score maps refined at once (``maps x neighbours x H x W`` floats)."""


def _neighbours(
    x: torch.Tensor, dilation: int, offsets: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    """``N x C x H x W`` -> ``N x C x len(offsets) x H x W``: the values at each offset times
    ``dilation``, the borders replicated."""
    height, width = x.shape[-2:]
    padded = F.pad(x, [dilation] * 4, mode="replicate")
    return torch.stack(
        [
            padded[..., dilation + dy * dilation : dilation + dy * dilation + height,
                   dilation + dx * dilation : dilation + dx * dilation + width]
            for dy, dx in offsets
        ],
        dim=2,
    )  # fmt: skip


def pamr_affinity(image: torch.Tensor, dilations: tuple[int, ...]) -> torch.Tensor:
    """``1 x 3 x H x W`` image -> ``1 x 1 x (8 * len(dilations)) x H x W`` weights of each
    pixel's neighbours (summing to 1 over the neighbours)."""
    centre = ((0, 0),)
    local = torch.cat([_neighbours(image, d, centre + _OFFSETS) for d in dilations], dim=2)
    spread = local.std(dim=2, keepdim=True)
    distance = torch.cat([(image[:, :, None] - _neighbours(image, d, _OFFSETS)).abs()
                          for d in dilations], dim=2)  # fmt: skip
    logits = (-distance / (1e-8 + 0.1 * spread)).mean(dim=1, keepdim=True)
    return torch.softmax(logits, dim=2)


@dataclass(frozen=True)
class Pamr:
    """PAMR with ``steps`` iterations over neighbours at ``dilations`` (NACLIP: 10, (8, 16))."""

    steps: int = 10
    dilations: tuple[int, ...] = (8, 16)

    def __call__(self, image: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Refine score maps ``C x H x W`` with the image ``3 x H x W`` (same size, any
        normalisation): ``C x H x W``. The maps are refined in chunks, each independent."""
        if self.steps == 0:
            return scores
        affinity = pamr_affinity(image[None].to(scores.dtype), self.dilations)
        neighbours = affinity.shape[2]
        per_map = neighbours * scores.shape[-2] * scores.shape[-1] * scores.element_size()
        chunk = max(1, CHUNK_BYTES // max(1, per_map))
        out = []
        for part in scores.split(chunk):
            mask = part[None]
            for _ in range(self.steps):
                spread = torch.cat([_neighbours(mask, d, _OFFSETS) for d in self.dilations], 2)
                mask = (spread * affinity).sum(dim=2)
            out.append(mask[0])
        return torch.cat(out)
