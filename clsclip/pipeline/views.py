"""Views of a batch of images (whole images and zoomed crops) through the network, in chunks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clsclip.backends import Backend
from clsclip.classes.rows import RowLayout
from clsclip.geometry import Letterbox, Region
from clsclip.model.pamr import Pamr
from clsclip.model.scores import ScoringRule
from clsclip.pipeline.letterbox import letterbox_image
from clsclip.proposals.base import Proposals
from clsclip.proposals.matching import LabelMatcher, TextEncoder
from clsclip.proposals.zoom import FusionMode, ZoomSettings, crop_region
from clsclip.results.prediction import CropLogits, LowResPrediction


@dataclass(frozen=True)
class _PlannedView:
    image: Image.Image | None
    region: Region | None  # None: the whole image
    prepared: tuple[torch.Tensor, Letterbox] | None = None  # letterboxed already (workers)


@dataclass
class _Crop:
    view: int
    class_index: int
    region: Region


@dataclass
class _ImagePlan:
    image: Image.Image | None
    view: int
    layout: RowLayout  # where the image's classes are in the text tensor
    crops: list[_Crop] = field(default_factory=list)
    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    track_ids: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ImagePrediction:
    """The network's output for one image, and the proposal boxes used per class."""

    image: Image.Image | None
    prediction: LowResPrediction
    boxes: dict[str, np.ndarray]
    track_ids: dict[str, np.ndarray] = field(default_factory=dict)


class ViewPlanner:
    """Collects the views (whole images and crops) and the (view, class) pairs of one batch.

    Views are letterboxed only when their chunk runs, so memory is set by ``chunk_size``, not by
    the number of images or proposal boxes.
    """

    def __init__(
        self,
        backend: Backend,
        image_size: int,
        resize_mode: str = "letterbox",
        refine: Pamr | None = None,
    ) -> None:
        self.backend = backend
        self.image_size = image_size
        self.resize_mode = resize_mode
        self.refine = refine
        self.rule = backend.scoring
        self.views: list[_PlannedView] = []
        self.pairs: list[tuple[int, int]] = []  # (view, row), each once
        self._paired: set[tuple[int, int]] = set()
        self.plans: list[_ImagePlan] = []

    def _pair(self, view: int, rows: Sequence[int]) -> None:
        for row in rows:
            if (view, row) not in self._paired:
                self._paired.add((view, row))
                self.pairs.append((view, row))

    def add_view(
        self,
        image: Image.Image | None,
        region: Region | None = None,
        prepared: tuple[torch.Tensor, Letterbox] | None = None,
    ) -> int:
        self.views.append(_PlannedView(image, region, prepared))
        return len(self.views) - 1

    def plan_image(
        self,
        image: Image.Image | None,
        class_names: Sequence[str],
        proposals: Proposals | None,
        matcher: LabelMatcher,
        settings: ZoomSettings,
        encode: TextEncoder,
        prepared: tuple[torch.Tensor, Letterbox] | None = None,
        layout: RowLayout | None = None,
    ) -> _ImagePlan:
        """Plan one image: its whole view (``prepared`` when already letterboxed) for every
        row of its classes (prompts and negatives), and a crop view per region of matching
        proposals (these need ``image``), for the prompt rows of the classes they serve (of
        all the image's classes when they compete). Every view is also scored against the
        background rows of a competing scoring rule, when `run` runs.

        ``layout``: where the image's classes are in the text tensor `run` gets (default: class
        k is row k); images of different requests share one pass with their own rows.
        """
        view = self.add_view(image, None, prepared)
        layout = layout if layout is not None else RowLayout.plain(len(class_names))
        plan = _ImagePlan(image=image, view=view, layout=layout)
        self.plans.append(plan)
        self._pair(view, layout.all_rows)
        if proposals is None or not len(proposals):
            return plan
        if image is None:
            raise ValueError("ClsCLIP+ proposals need the image itself, not only its pixels")
        if proposals.labels_are_classes:
            matches = [
                [i for i, label in enumerate(proposals.labels) if label == name]
                for name in class_names
            ]
        else:
            matches = matcher.match(proposals.labels, class_names, encode)
        crop_views: dict[Region, int] = {}
        size = (image.height, image.width)
        for k, indices in enumerate(matches):
            used, ids = [], []
            for i in indices:
                region = crop_region(proposals.boxes[i], size, settings)
                if region is None:
                    continue
                if region not in crop_views:  # one view per region, shared by its classes
                    crop_views[region] = self.add_view(image, region)
                if not any(c.view == crop_views[region] and c.class_index == k
                           for c in plan.crops):  # fmt: skip
                    plan.crops.append(_Crop(crop_views[region], k, region))
                    competitors = layout.prompts if self.rule.competes else [layout.prompts[k]]
                    self._pair(crop_views[region], [r for rows in competitors for r in rows])
                used.append(proposals.boxes[i])
                if proposals.ids is not None:
                    ids.append(proposals.ids[i])
            if used:
                plan.boxes[class_names[k]] = np.stack(used).astype(np.float32)
            if ids:
                plan.track_ids[class_names[k]] = np.asarray(ids, dtype=np.int64)
        return plan

    def run(
        self, text: torch.Tensor, *, chunk_size: int, fusion: FusionMode
    ) -> list[ImagePrediction]:
        """Run every pair of the planned images, ``chunk_size`` views at a time; one prediction
        per image, in planning order. The logits stay at low resolution."""
        rule = self.rule
        text, background = with_background(self.backend, text)
        for view in range(len(self.views)):
            self._pair(view, background)
        raw, boxes = self._logits(text, chunk_size)

        def scored(view: int, layout: RowLayout) -> ViewScores:
            return score_rows(rule, lambda row: raw[(view, row)], layout.prompts, background)

        out = []
        for plan in self.plans:
            layout = plan.layout
            whole = scored(plan.view, layout)
            crop_logits: dict[int, torch.Tensor] = {}
            crops = []
            for crop in plan.crops:
                if rule.competes:
                    if crop.view not in crop_logits:
                        crop_logits[crop.view] = scored(crop.view, layout).logits
                    logits = crop_logits[crop.view][crop.class_index]
                else:
                    own = layout.prompts[crop.class_index]
                    logits = _largest([raw[(crop.view, r)] for r in own]).float()
                crops.append(CropLogits(crop.class_index, crop.region, boxes[crop.view], logits))
            owners = tuple(k for k, rows in enumerate(layout.negatives) for _ in rows)
            negatives = None
            if owners:
                found = torch.stack([raw[(plan.view, row)]
                                     for rows in layout.negatives for row in rows])  # fmt: skip
                negatives = rule.negative_logits(whole.classes, whole.logits, found, owners)
            # competing classes: the full-resolution logits are scored from the rows
            rows, row_of = (whole.rows, whole.row_of) if rule.competes else (None, ())
            prediction = LowResPrediction(whole.logits, boxes[plan.view], tuple(crops), fusion,
                                          negatives, owners, background=whole.floor, rows=rows,
                                          row_of=row_of)  # fmt: skip
            out.append(ImagePrediction(plan.image, prediction, plan.boxes, plan.track_ids))
        return out

    def _logits(
        self, text: torch.Tensor, chunk_size: int
    ) -> tuple[dict[tuple[int, int], torch.Tensor], dict[int, Letterbox]]:
        """float32 ``h' x w'`` raw scores per (view, row) pair, and each view's letterbox.
        Views of one input shape go through the network together (``"short-side"`` inputs
        differ); with a refinement, each whole image's rows are refined at its own size."""
        device = text.device
        by_chunk: dict[int, list[tuple[int, int]]] = {}
        for view, k in self.pairs:  # the pairs of each chunk of views, in their order
            by_chunk.setdefault(view // chunk_size, []).append((view, k))
        logits: dict[tuple[int, int], torch.Tensor] = {}
        boxes: dict[int, Letterbox] = {}
        for start in range(0, len(self.views), chunk_size):
            views = range(start, min(len(self.views), start + chunk_size))
            pixels: dict[int, torch.Tensor] = {}
            for v in views:
                pixels[v], boxes[v] = self._letterbox(self.views[v])
            shapes: dict[tuple[int, ...], list[int]] = {}
            for v in views:
                shapes.setdefault(tuple(pixels[v].shape), []).append(v)
            pairs = by_chunk.get(start // chunk_size, [])
            for group in shapes.values():
                position = {v: i for i, v in enumerate(group)}
                mine = [(v, k) for v, k in pairs if v in position]
                if not mine:
                    continue
                local = torch.tensor([(position[v], k) for v, k in mine], dtype=torch.long)
                batch = torch.stack([pixels[v] for v in group]).to(device)
                rows = self.backend.predict_pairs(batch, text, local.to(device),
                                                  chunk_size=chunk_size)  # fmt: skip
                for pair, row in zip(mine, rows.float(), strict=True):
                    logits[pair] = row
            if self.refine is not None:
                for v in views:
                    if self.views[v].region is None:
                        boxes[v] = self._refined(v, pixels[v], boxes[v], logits)
        return logits, boxes

    def _refined(
        self,
        view: int,
        pixels: torch.Tensor,
        box: Letterbox,
        logits: dict[tuple[int, int], torch.Tensor],
    ) -> Letterbox:
        """NACLIP's refinement of one whole image: every row's scores and the input pixels
        resized (bilinear) to the image's size, PAMR over them, the rows replaced; the returned
        letterbox is the image's own (no way back left)."""
        assert self.refine is not None
        keys = [pair for pair in logits if pair[0] == view]
        if not keys:
            return box
        refined, box = refine_rows(self.refine, pixels, box, torch.stack([logits[k] for k in keys]))
        for key, row in zip(keys, refined, strict=True):
            logits[key] = row
        return box

    def _letterbox(self, view: _PlannedView) -> tuple[torch.Tensor, Letterbox]:
        if view.prepared is not None:
            return view.prepared
        assert view.image is not None, "a view is prepared or has its image"
        image = view.image if view.region is None else view.image.crop(view.region)
        backend = self.backend
        return letterbox_image(
            image, self.image_size, backend.image_mean, backend.image_std, self.resize_mode
        )


def refine_rows(
    refine: Pamr, pixels: torch.Tensor, box: Letterbox, rows: torch.Tensor
) -> tuple[torch.Tensor, Letterbox]:
    """Rows ``R x h x w`` of raw scores of one image's view refined as NACLIP does: the rows and
    the view's normalised pixels ``3 x S x S'`` resized (bilinear) to the image's size, PAMR
    over them. Returns the refined ``R x H x W`` rows and the image's own letterbox (the way
    back is then the identity)."""
    size = box.original_size
    rows = rows.float()[None]
    if rows.shape[-2:] != size:
        rows = F.interpolate(rows, size=size, mode="bilinear", align_corners=False)
    image = pixels[None, :, : box.resized_size[0], : box.resized_size[1]].to(rows)
    image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)[0]
    return refine(image, rows[0]), Letterbox(size, size, max(size), padded=False)


def with_background(backend: Backend, text: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``R x E`` class rows, and after them the backend's ``B`` background vectors when its
    classes compete (`clsclip.model.scores.ScoringRule`); and the rows those take."""
    if not backend.scoring.competes:
        return text, []
    extra = backend.background_vectors()
    if not extra.shape[0]:
        return text, []
    start = text.shape[0]
    return torch.cat([text, extra.to(text)]), list(range(start, start + extra.shape[0]))


class ViewScores(NamedTuple):
    """One view scored under a rule (`score_rows`).

    Attributes:
        classes: raw class scores ``K x h' x w'`` (the largest of each class's prompt rows).
        logits: their logits under the rule, ``K x h' x w'``.
        floor: the background's logits ``h' x w'`` (None: no competing background rows).
        rows: every row scored, float32 ``R x h' x w'``: each class's prompt rows, then the
            background rows (what `clsclip.results.LowResPrediction.rows` keeps).
        row_of: the class of each row (-1: background).
    """

    classes: torch.Tensor
    logits: torch.Tensor
    floor: torch.Tensor | None
    rows: torch.Tensor
    row_of: tuple[int, ...]


def score_rows(
    rule: ScoringRule,
    row: Callable[[int], torch.Tensor],
    prompts: Sequence[Sequence[int]],
    background: Sequence[int],
) -> ViewScores:
    """One view's raw class scores, their logits under ``rule`` and the background floor,
    from its rows stacked once: ``row(r)`` is row r's raw ``h' x w'`` scores on the view,
    ``prompts`` each class's prompt rows, ``background`` the rows of `with_background`."""
    order = [r for rows in prompts for r in rows] + list(background)
    count = len(order) - len(background)
    row_of = tuple(k for k, rows in enumerate(prompts) for _ in rows) + (-1,) * len(background)
    stacked = torch.stack([row(r).float() for r in order])
    classes = torch.stack([_largest([row(r) for r in rows]) for rows in prompts])
    logits, floor = rule.class_logits(stacked[:count], row_of[:count], len(prompts),
                                      stacked[count:])  # fmt: skip
    return ViewScores(classes, logits, floor, stacked, row_of)


def _largest(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """A class's scores: its one row's, or the largest of its prompt rows' per cell."""
    return rows[0] if len(rows) == 1 else torch.stack(list(rows)).amax(dim=0)
