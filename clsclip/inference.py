"""One batched pass over images and their zoomed crops: plan views, run the model, fuse."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from clsclip.model import SegmentationModel
from clsclip.preprocess import Letterbox, letterbox_image, restore_logits
from clsclip.proposals.base import Proposals
from clsclip.proposals.matching import LabelMatcher, TextEncoder
from clsclip.zoom import CropPrediction, FusionMode, Region, ZoomSettings, crop_region, fuse


@dataclass
class _Crop:
    view: int
    class_index: int
    region: Region
    box: Letterbox


@dataclass
class _ImagePlan:
    image: Image.Image
    view: int
    box: Letterbox
    crops: list[_Crop] = field(default_factory=list)
    boxes: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ImagePrediction:
    """Fused probabilities (float32 ``K x H x W``) and the proposal boxes used per class."""

    image: Image.Image
    probs: np.ndarray
    boxes: dict[str, np.ndarray]


class ViewPlanner:
    """Collects the views (whole images and crops) and the (view, class) pairs of one batch."""

    def __init__(self, model: SegmentationModel, image_size: int) -> None:
        self.model = model
        self.image_size = image_size
        self.views: list[torch.Tensor] = []
        self.pairs: list[tuple[int, int]] = []

    def add_view(self, image: Image.Image) -> tuple[int, Letterbox]:
        pixels, box = letterbox_image(
            image, self.image_size, self.model.image_mean, self.model.image_std
        )
        self.views.append(pixels)
        return len(self.views) - 1, box

    def plan_image(
        self,
        image: Image.Image,
        class_names: Sequence[str],
        proposals: Proposals | None,
        matcher: LabelMatcher,
        settings: ZoomSettings,
        encode: TextEncoder,
    ) -> _ImagePlan:
        view, box = self.add_view(image)
        plan = _ImagePlan(image=image, view=view, box=box)
        self.pairs += [(view, k) for k in range(len(class_names))]
        if proposals is None or not len(proposals):
            return plan
        if proposals.labels_are_classes:
            matches = [
                [i for i, label in enumerate(proposals.labels) if label == name]
                for name in class_names
            ]
        else:
            matches = matcher.match(proposals.labels, class_names, encode)
        crop_views: dict[Region, tuple[int, Letterbox]] = {}
        for k, indices in enumerate(matches):
            used = []
            for i in indices:
                region = crop_region(proposals.boxes[i], box.original_size, settings)
                if region is None:
                    continue
                if region not in crop_views:  # one view per region, shared by its classes
                    crop_views[region] = self.add_view(image.crop(region))
                crop_view, crop_box = crop_views[region]
                plan.crops.append(_Crop(crop_view, k, region, crop_box))
                self.pairs.append((crop_view, k))
                used.append(proposals.boxes[i])
            if used:
                plan.boxes[class_names[k]] = np.stack(used).astype(np.float32)
        return plan

    def run(
        self,
        plans: Sequence[_ImagePlan],
        text: torch.Tensor,
        *,
        chunk_size: int,
        fusion: FusionMode,
    ) -> list[ImagePrediction]:
        """Run every pair in one batched call and fuse each image's crops into its prediction."""
        device = text.device
        pixels = torch.stack(self.views).to(device)
        pairs = torch.tensor(self.pairs, dtype=torch.long, device=device)
        logits = self.model.predict_pairs(pixels, text, pairs, chunk_size=chunk_size)
        row_of = {pair: row for row, pair in enumerate(self.pairs)}
        num_classes = text.shape[0]
        out = []
        for plan in plans:
            rows = [row_of[(plan.view, k)] for k in range(num_classes)]
            full = _restore_probs(logits[rows], plan.box, chunk_size)
            crops = [
                CropPrediction(
                    crop.class_index,
                    crop.region,
                    _restore_probs(logits[[row_of[(crop.view, crop.class_index)]]], crop.box, 1)[0],
                )
                for crop in plan.crops
            ]
            probs = fuse(full, crops, fusion) if crops else full
            out.append(ImagePrediction(plan.image, probs, plan.boxes))
        return out


def _restore_probs(logits: torch.Tensor, box: Letterbox, chunk_size: int) -> np.ndarray:
    """``K x h x w`` logits -> float32 ``K x H x W`` probabilities at the box's original size, a
    chunk of classes at a time so the full-resolution intermediates stay bounded."""
    height, width = box.original_size
    probs = np.empty((logits.shape[0], height, width), dtype=np.float32)
    for start in range(0, logits.shape[0], chunk_size):
        chunk = restore_logits(logits[start : start + chunk_size], box)
        probs[start : start + chunk_size] = chunk.sigmoid().cpu().numpy()
    return probs
