"""What every segmentation network in clsclip offers the pipeline (`Segmenter`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clsclip.model.backbone import ClipBackbone


class SegmentationModel(nn.Module):
    """A text-conditioned segmentation network on a CLIP backbone.

    Subclasses implement `encode_class_names` and `predict_pairs`; the pipeline needs nothing
    else. ``image_mean`` / ``image_std`` are the RGB normalisation in [0, 1] units.
    """

    backbone: ClipBackbone
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]

    def grid_for(self, image_size: int) -> tuple[int, int]:
        """Patch grid ``(h, w)`` of a square input of ``image_size`` pixels."""
        patch = self.backbone.patch_size
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        return image_size // patch, image_size // patch

    def encode_class_names(self, names: Sequence[str]) -> torch.Tensor:
        """Class conditioning vectors, ``K x embed_dim``."""
        raise NotImplementedError

    def predict_pairs(
        self, pixels: torch.Tensor, text: torch.Tensor, pairs: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        """Logits ``P x h' x w'`` for (view, class) ``pairs`` (``P x 2``) of ``V x 3 x S x S``
        normalised views and ``K x embed_dim`` class vectors; each view's class-independent
        work runs once."""
        raise NotImplementedError

    def predict_logits(
        self, pixels: torch.Tensor, text: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        """Every class for every image: ``B x 3 x S x S``, ``K x E`` -> ``B x K x h' x w'``."""
        num_images, num_classes = pixels.shape[0], text.shape[0]
        pairs = torch.cartesian_prod(
            torch.arange(num_images, device=pixels.device),
            torch.arange(num_classes, device=pixels.device),
        ).reshape(-1, 2)
        logits = self.predict_pairs(pixels, text, pairs, chunk_size=chunk_size)
        return logits.reshape(num_images, num_classes, *logits.shape[-2:])
