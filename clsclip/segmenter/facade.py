"""`Segmenter`: the user-facing pipeline from images and class names to masks (the facade);
its streaming ways in (many images, videos) are in `clsclip.segmenter.streams`."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any, overload

import numpy as np
import torch
from PIL import Image

from clsclip.backends import Backend, Precision, TorchBackend
from clsclip.backends.model_files import ModelFiles
from clsclip.backends.torch_backend import check_config
from clsclip.checks import MAX_IMAGE_PIXELS, check_class_names, check_int, resolve_device
from clsclip.classes import ClassesArg
from clsclip.config import AnyConfig
from clsclip.model import SegmentationModel
from clsclip.pipeline.images import ImageInput, load_image
from clsclip.pipeline.predict import (
    check_image_tensors,
    predict_images,
    predict_requests,
    result_of,
    segment_tensors,
)
from clsclip.pipeline.request import Request, Settings, build_request, refinement
from clsclip.pipeline.text_cache import TextCache
from clsclip.proposals import LabelMatcher, ProposalSource, Proposer, ZoomSettings, resolve_proposer
from clsclip.results import SegmentationResult, TensorSegmentation
from clsclip.segmenter.arguments import _DEFAULT, Threshold, _UseDefault
from clsclip.segmenter.streams import Streams

_SINGLE_IMAGE_TYPES = (Image.Image, np.ndarray, str, os.PathLike, bytes)


class Segmenter(Streams, ModelFiles):
    """Zero-shot semantic segmentation with a ClsCLIP (or CLIPSeg) model.

    Build one with `Segmenter.from_pretrained` (a saved model) or `Segmenter.from_config` (a
    fresh, untrained model), then call `segment`.

    Args:
        model: the network, as built by `clsclip.model.build_model` (or a ready
            `clsclip.backends.Backend`, such as an onnxruntime export).
        config: the config it was built from (ignored for a backend, which has its own).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a `torch.device`; None picks
            CUDA when available.
        chunk_size: (view, class) pairs per pass through the class-dependent blocks, and views
            (images and crops) per pass through the shared blocks. Peak memory grows with it, not
            with the number of classes.
        proposals: the default region proposals of `segment` (ClsCLIP+): None (plain ClsCLIP),
            ``"yolo"``, a proposer, or boxes per class. ``"yolo"`` is resolved once, here.
        zoom: crop margin, minimum crop size and fusion mode of the zoom-in.
        matcher: which proposals serve which class (names, synonyms, CLIP similarity).
        precision: ``"fp32"`` (default); ``"bf16"`` (CUDA autocast, or on a CPU with AMX or
            AVX-512 BF16 the weights converted); ``"fp16"`` (CUDA autocast); ``"int8"`` (CPU:
            the backbone's linear layers dynamically quantised); ``"auto"``: bf16 on CPUs with
            native bf16, fp32 elsewhere. Converted or quantised segmenters cannot be saved. See
            docs/performance.md for speed and agreement.

    Attributes:
        max_image_pixels: images with more pixels are refused before decoding (`ValueError`);
            default 100 million, None for no limit but PIL's (see docs/limits.md).

    Thread safety: `segment`, `segment_torch` and `segment_many` may be called from several
    threads at once; the class-vector cache and the default YOLO detector are shared safely.
    """

    def __init__(
        self,
        model: SegmentationModel | Backend,
        config: AnyConfig | None = None,
        *,
        device: str | torch.device | None = None,
        chunk_size: int = 16,
        proposals: ProposalSource = None,
        zoom: ZoomSettings | None = None,
        matcher: LabelMatcher | None = None,
        precision: Precision = "fp32",
    ) -> None:
        if isinstance(model, SegmentationModel):
            check_config(config)
            assert config is not None
            backend: Backend = TorchBackend(
                model, config, device=resolve_device(device), precision=precision
            )
        elif isinstance(model, Backend):
            backend = model
        else:
            raise TypeError(
                f"model must be a clsclip SegmentationModel, got {type(model).__name__}"
            )
        self.backend = backend
        self.chunk_size = check_int("chunk_size", chunk_size)
        self.max_image_pixels: int | None = MAX_IMAGE_PIXELS
        self._text = TextCache(self.backend.encode_class_names)
        self._yolo: Proposer | None = None
        self.proposer: Proposer | None = self._resolve(proposals)
        self.zoom = zoom if zoom is not None else ZoomSettings()
        self.matcher = matcher if matcher is not None else LabelMatcher()
        if not isinstance(self.zoom, ZoomSettings):
            raise TypeError(f"zoom must be a ZoomSettings, got {type(zoom).__name__}")
        if not isinstance(self.matcher, LabelMatcher):
            raise TypeError(f"matcher must be a LabelMatcher, got {type(matcher).__name__}")

    def to(self, device: str | torch.device) -> Segmenter:
        """Move the network to another device (in place); returns self."""
        self.backend.to(device)
        self._text.clear()
        return self

    @overload
    def segment(
        self,
        image: ImageInput,
        class_names: ClassesArg,
        *,
        threshold: Threshold = None,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
        min_score: float | None = None,
    ) -> SegmentationResult: ...

    @overload
    def segment(
        self,
        image: list[ImageInput] | tuple[ImageInput, ...],
        class_names: ClassesArg,
        *,
        threshold: Threshold = None,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
        min_score: float | None = None,
    ) -> list[SegmentationResult]: ...

    def segment(
        self,
        image: ImageInput | list[ImageInput] | tuple[ImageInput, ...],
        class_names: ClassesArg,
        *,
        threshold: Threshold = None,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
        min_score: float | None = None,
    ) -> SegmentationResult | list[SegmentationResult]:
        """Segment every named class in one image or a list of images.

        Args:
            image: a PIL image, an ``H x W x 3`` uint8 RGB array, a file path, an encoded image
                file's bytes, or a list of these.
            class_names: K distinct, non-empty names, in plain words (``["dog", "cat"]``), or
                class specs: `ClassSpec` objects and mappings (``{"dog": ["dog", "puppy"]}``),
                mixed freely with names (see docs/calibration.md).
            threshold: probability above which a pixel is in a mask: one for every class, or a
                mapping of some classes' (``{"dog": 0.4}``). A spec's own threshold goes first,
                then this, then the config's ``class_thresholds``, then its ``threshold``.
            proposals: ClsCLIP+ region proposals for this call: None or ``"none"`` (plain
                ClsCLIP), ``"yolo"`` (ultralytics' default detector), a proposer, or boxes per
                class ``{"dog": [[x0, y0, x1, y1], ...]}`` in pixels of the original image
                (exclusive end; used for every image of a list). Default: the segmenter's.
                Boxes that match a class are cropped with a margin, zoomed to the model input,
                segmented for that class, and fused back at full resolution.
            min_score: classes whose presence score (`SegmentationResult.scores`) is below it
                get empty masks.

        Returns:
            A `SegmentationResult` (or a list, for a list of images): each class's low-resolution
            logits and the geometry back to the image; masks, probabilities and the label map at
            the image's original size are computed from them when asked for.
        """
        single = isinstance(image, _SINGLE_IMAGE_TYPES)
        if not single and not isinstance(image, (list, tuple)):
            raise TypeError(
                "image must be a PIL image, an H x W x 3 uint8 array, a file path, or a list of "
                f"these; got {type(image).__name__}"
            )
        images: list[Any] = [image] if single else list(image)  # type: ignore[arg-type]
        request = self._prepare(class_names, threshold, proposals, min_score)
        settings, results = self._settings(), []
        for start in range(0, len(images), self.chunk_size):
            group = [
                load_image(x, max_pixels=self.max_image_pixels)
                for x in images[start : start + self.chunk_size]
            ]
            results += [result_of(request, p) for p in predict_images(settings, group, request)]
        return results[0] if single else results

    def segment_batch(
        self,
        items: Sequence[tuple[ImageInput, ClassesArg]],
        *,
        thresholds: Sequence[Threshold] | None = None,
        proposals: Sequence[ProposalSource | _UseDefault] | None = None,
        min_score: float | None = None,
    ) -> list[SegmentationResult]:
        """Images of different requests, each with its own classes (and threshold and
        proposals), through one pass: each image's class-independent work once, the class
        vectors from the shared cache. What a server batching across requests needs; equal to
        `segment` on each image alone.

        Args:
            items: ``(image, classes)`` pairs (images and classes as `segment` takes them).
            thresholds: one per item (None: the config's; or a mapping, as in `segment`).
            proposals: one per item (default: the segmenter's).
            min_score: as in `segment`, for every item.
        """
        count = len(items)
        thresholds = list(thresholds) if thresholds is not None else [None] * count
        sources = list(proposals) if proposals is not None else [_DEFAULT] * count
        if not len(thresholds) == len(sources) == count:
            raise ValueError("give one threshold and one proposal source per item")
        requests = [
            self._prepare(names, threshold, source, min_score)
            for (_, names), threshold, source in zip(items, thresholds, sources, strict=True)
        ]
        images = [load_image(image, max_pixels=self.max_image_pixels) for image, _ in items]
        predictions = predict_requests(self._settings(), list(zip(images, requests, strict=True)))
        return [result_of(r, p) for r, p in zip(requests, predictions, strict=True)]

    def segment_torch(
        self,
        images: torch.Tensor,
        class_names: ClassesArg,
        *,
        threshold: Threshold = None,
    ) -> TensorSegmentation:
        """Segment a batch of same-size image tensors without PIL or numpy (plain ClsCLIP).

        Letterboxing, the network and the post-processing all run on the model's device; only
        the returned tensors exist at full resolution. For pipelines and servers that already
        hold decoded images as tensors. (Region proposals need `segment`.)

        Args:
            images: ``B x 3 x H x W`` RGB, uint8 (0..255) or floating point (0..1), on any
                device (moved to the model's). Resizing is torch's antialiased bicubic, so the
                output is close to, not bit-equal with, `segment` on the same pixels.
            class_names, threshold: as in `segment` (class specs without negatives).

        Returns:
            A `TensorSegmentation`: int32 ``B x H x W`` label maps and float32
            ``B x K x h' x w'`` low-resolution logits, on the model's device.
        """
        images = check_image_tensors(images)
        request = self._prepare(class_names, threshold, None)
        if request.layout is not None and any(request.layout.negatives):
            raise ValueError("segment_torch does not take negatives; use segment")
        return segment_tensors(self._settings(), images, request)

    def encode_classes(self, class_names: Sequence[str]) -> torch.Tensor:
        """Class vectors of names (float32 ``K x embed_dim``) on the model's device, as the
        network reads them: unit norm for ClsCLIP; CLIPSeg's raw (unnormalised) text features.

        Cached per name (bounded, shared by threads), so repeated calls skip the text encoder.
        """
        return self._text.get(check_class_names(class_names)).to(self.device)

    def calibrate(
        self,
        samples: Iterable[tuple[ImageInput, np.ndarray]],
        class_names: ClassesArg,
        *,
        metric: str = "iou",
        ignore_index: int = 255,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
    ) -> Segmenter:
        """A segmenter calibrated on a small labelled set: per class seen in the set, a scale
        and bias on the logits (so that ``prob`` is calibrated) and the threshold of the best
        ``metric``; the classes the set never shows keep a default fitted on all pixels.

        Args:
            samples: ``(image, label_map)`` pairs; label maps are ``H x W`` integers of the
                image's size: 0 background, ``k + 1`` for class k, ``ignore_index`` not counted.
            class_names: the classes the labels number (names or specs, as `segment` takes).
            metric: ``"iou"`` (the set's IoU per class, as mIoU counts) or ``"f1"`` (the mean
                of the images' F1).
            proposals: as in `segment`.

        Returns:
            A new `Segmenter` on the same network whose config holds ``threshold``,
            ``class_thresholds`` and ``calibration`` (with the set's size and the figures
            before and after); `save_pretrained` writes them. This one is unchanged.
        """
        from clsclip.pipeline.calibrate import count_pixels
        from clsclip.results.calibration import check_metric, fit_calibration

        check_metric(metric)  # before any image is segmented
        request = self._prepare(class_names, None, proposals)
        counts = count_pixels(
            self._settings(), samples, request, ignore_index=ignore_index,
            keep_images=metric == "f1", max_pixels=self.max_image_pixels,
        )  # fmt: skip
        fit = fit_calibration(counts, metric)
        return self._with_config(dataclasses.replace(self.config, **fit.config_fields()))

    def _with_config(self, config: AnyConfig) -> Segmenter:
        """This segmenter with another config of the same network (shares its weights and its
        place: moving either moves both, and both know)."""
        backend = copy.copy(self.backend)
        backend.config = config  # type: ignore[misc]
        other = copy.copy(self)
        other.backend = backend
        return other

    def _prepare(
        self,
        class_names: ClassesArg,
        threshold: Threshold,
        proposals: ProposalSource | _UseDefault,
        min_score: float | None = None,
    ) -> Request:
        proposer = self.proposer if isinstance(proposals, _UseDefault) else self._resolve(proposals)
        return build_request(
            self.config, class_names, threshold, proposer, self.encode_classes, min_score
        )

    def _settings(self) -> Settings:
        config = self.config
        return Settings(
            self.backend,
            config.image_size,
            config.resize_mode,
            self.matcher,
            self.zoom,
            self.encode_classes,
            self.chunk_size,
            refinement(config),
        )

    def _resolve(self, proposals: ProposalSource) -> Proposer | None:
        """`resolve_proposer`, with the default YOLO detector loaded once per segmenter."""
        if proposals == "yolo":
            if self._yolo is None:
                self._yolo = resolve_proposer("yolo")
            return self._yolo
        return resolve_proposer(proposals)
