"""One request through the pipeline: images (PIL, tensors or a loader's batches) and checked
class names in, results out. The `Segmenter` facade checks arguments and calls these."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from PIL import Image

from clsclip.classes.rows import RowLayout
from clsclip.pipeline.batches import LoadedImage
from clsclip.pipeline.letterbox import letterbox_tensor
from clsclip.pipeline.request import Request, Settings
from clsclip.pipeline.views import (
    ImagePrediction,
    ViewPlanner,
    refine_rows,
    score_rows,
    with_background,
)
from clsclip.results import (
    FullResolution,
    ImageOutcome,
    LowResPrediction,
    SegmentationResult,
    TensorSegmentation,
)


def predict_images(
    settings: Settings,
    images: Sequence[Image.Image | None],
    request: Request,
    prepared: Sequence[Any] | None = None,
) -> list[ImagePrediction]:
    """Whole images and their matching crops: every (view, class) pair, ``chunk_size`` views
    per network call (``prepared``: whole views letterboxed already, by loader workers)."""
    planner = ViewPlanner(
        settings.backend, settings.image_size, settings.resize_mode, settings.refine
    )
    for i, image in enumerate(images):
        found = None
        if request.proposer is not None and image is not None:
            found = request.proposer.propose(image, request.names)
        ready = prepared[i] if prepared is not None else None
        planner.plan_image(image, request.names, found, settings.matcher, settings.zoom,
                           settings.encode, ready, request.layout)  # fmt: skip
    with settings.backend.inference():
        return planner.run(
            request.text, chunk_size=settings.chunk_size, fusion=settings.zoom.fusion
        )


def predict_requests(
    settings: Settings, items: Sequence[tuple[Image.Image, Request]]
) -> list[ImagePrediction]:
    """Images of different requests (their own classes, specs, thresholds, proposals) through
    one pass: the class-independent work once per image, each request's rows once in one text
    tensor. Each image is scored against its own request's rows only (the scoring rule sees an
    image's own classes), so a request never sees another's classes."""
    if not items:
        return []
    offsets: dict[int, int] = {}
    texts: list[torch.Tensor] = []
    for _, request in items:
        if id(request) not in offsets:
            offsets[id(request)] = sum(t.shape[0] for t in texts)
            texts.append(request.text)
    planner = ViewPlanner(
        settings.backend, settings.image_size, settings.resize_mode, settings.refine
    )
    for image, request in items:
        found = request.proposer.propose(image, request.names) if request.proposer else None
        layout = request.layout or RowLayout.plain(len(request.names))
        planner.plan_image(image, request.names, found, settings.matcher, settings.zoom,
                           settings.encode, None, layout.shifted(offsets[id(request)]))  # fmt: skip
    with settings.backend.inference():
        return planner.run(torch.cat(texts), chunk_size=settings.chunk_size,
                           fusion=settings.zoom.fusion)  # fmt: skip


def result_of(request: Request, prediction: ImagePrediction) -> SegmentationResult:
    """The user's result of one image's prediction."""
    low_res = prediction.prediction
    if request.scale is not None or request.bias is not None:
        low_res = low_res.with_calibration(request.scale, request.bias)
    if request.area_threshold is not None:
        low_res = dataclasses.replace(low_res, area_threshold=request.area_threshold)
    thresholds = request.thresholds
    return SegmentationResult(
        request.names, low_res, thresholds.default, prediction.image, prediction.boxes,
        class_thresholds=thresholds.own, min_score=request.min_score,
    )  # fmt: skip


def stream_outcomes(
    settings: Settings,
    batches: Iterable[list[LoadedImage]],
    request: Request,
    *,
    deterministic: bool = False,
) -> Iterator[ImageOutcome]:
    """One `ImageOutcome` per loaded image, in input order, a batch through the network at a
    time (``deterministic``: each image's views on their own); images that failed to load pass
    through as errors."""
    for batch in batches:
        good = [item for item in batch if item.error is None]
        prepared = [(item.pixels, item.letterbox) for item in good]
        images = [item.image for item in good]
        if deterministic:  # the matrix products' shapes, hence their rounding, are the image's
            predictions = [
                predict_images(settings, [image], request, [ready])[0]
                for image, ready in zip(images, prepared, strict=True)
            ]
        else:
            predictions = predict_images(settings, images, request, prepared)
        by_index = dict(zip((item.index for item in good), predictions, strict=True))
        for item in batch:
            if item.error is not None:
                yield ImageOutcome(item.index, item.source, None, item.error)
            else:
                yield ImageOutcome(
                    item.index, item.source, result_of(request, by_index[item.index])
                )


def check_image_tensors(images: object) -> torch.Tensor:
    """``images`` if it is a ``B x 3 x H x W`` uint8 or floating tensor with B, H, W >= 1."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images must be B x 3 x H x W with B >= 1, got {tuple(images.shape)}")
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"images have zero size: {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    return images


def segment_tensors(
    settings: Settings, images: torch.Tensor, request: Request
) -> TensorSegmentation:
    """Same-size image tensors through letterbox, network and label maps, all in torch on the
    backend's device (plain ClsCLIP: no proposals)."""
    backend = settings.backend
    layout = request.layout or RowLayout.plain(len(request.names))
    text, background = with_background(backend, request.text)
    outputs = []
    with backend.inference():
        for chunk in images.split(settings.chunk_size):
            pixels, box = letterbox_tensor(
                chunk.to(backend.device),
                settings.image_size,
                backend.image_mean,
                backend.image_std,
                settings.resize_mode,
            )
            out = backend.predict_logits(pixels, text, chunk_size=settings.chunk_size).float()
            if settings.refine is not None:
                refined = [refine_rows(settings.refine, p, box, x)
                           for p, x in zip(pixels, out, strict=True)]  # fmt: skip
                out, box = torch.stack([x for x, _ in refined]), refined[0][1]
            outputs.append(out.to(backend.device))
        raw = torch.cat(outputs)
        rule = backend.scoring
        scored = [score_rows(rule, x.__getitem__, layout.prompts, background) for x in raw]
        low_res = torch.stack([view.logits for view in scored])
        floors = [view.floor for view in scored]
        rows: torch.Tensor | None = None
        row_of: tuple[int, ...] = ()
        if rule.competes:  # as `ViewPlanner.run`: full-resolution logits from the rows
            rows, row_of = torch.stack([view.rows for view in scored]), scored[0].row_of
        cutoffs = request.thresholds.cutoffs(request.names)
        labels = torch.stack([
            _label_map(LowResPrediction(
                x, box, scale=request.scale, bias=request.bias, background=floors[i],
                rows=None if rows is None else rows[i], row_of=row_of,
                area_threshold=request.area_threshold,
            ), cutoffs)
            for i, x in enumerate(low_res)
        ])  # fmt: skip
    thresholds = request.thresholds
    floor_maps = None if floors[0] is None else torch.stack(floors)  # type: ignore[arg-type]
    return TensorSegmentation(request.names, labels, low_res, box, thresholds.default,
                              thresholds.own, request.scale, request.bias, floor_maps, rows,
                              row_of, request.area_threshold)  # fmt: skip


def _label_map(prediction: LowResPrediction, cutoffs: float | list[float]) -> torch.Tensor:
    """The label map of one prediction at logit ``cutoffs``, the classes the area threshold
    drops left out (as `SegmentationResult.label_map`)."""
    full = FullResolution(prediction)
    dropped = full.area_dropped()
    if dropped:
        count = prediction.num_classes
        each = [cutoffs] * count if isinstance(cutoffs, float) else list(cutoffs)
        cutoffs = [math.inf if k in dropped else c for k, c in enumerate(each)]
    return full.label_map(cutoffs)[0]
