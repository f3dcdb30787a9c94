"""`Segmenter`: the user-facing pipeline from images and class names to masks."""

from __future__ import annotations

import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from clsclip.config import AnyConfig, ClipSegConfig, ClsClipConfig
from clsclip.hub import (
    push_folder_to_hub,
    write_model_card,
)
from clsclip.image_io import MAX_IMAGE_PIXELS, ImageInput, load_image
from clsclip.inference import ImagePrediction, ViewPlanner
from clsclip.inputs import check_class_names, check_int, check_threshold, resolve_device
from clsclip.loader import ImageListDataset, ImageOutcome, image_loader
from clsclip.model import SegmentationModel, build_model
from clsclip.model.clipseg_model import ClipSegModel
from clsclip.model.clsclip_model import ClsClipModel
from clsclip.model_folder import load_model_folder, load_onnx_folder, save_model_folder
from clsclip.postprocess import FullResolution, LowResPrediction, threshold_logit
from clsclip.precision import Precision, autocast, check_precision, quantize_backbone
from clsclip.preprocess import Letterbox, letterbox_tensor
from clsclip.proposals import LabelMatcher, ProposalSource, Proposer, resolve_proposer
from clsclip.results import SegmentationResult, TensorSegmentation
from clsclip.zoom import ZoomSettings

logger = logging.getLogger(__name__)

_TEXT_CACHE_SIZE = 4096
BACKENDS = ("torch", "onnxruntime")
_SINGLE_IMAGE_TYPES = (Image.Image, np.ndarray, str, os.PathLike)


class _UseDefault:
    def __repr__(self) -> str:
        return "<the segmenter's proposals>"


_DEFAULT = _UseDefault()


class Segmenter:
    """Zero-shot semantic segmentation with a ClsCLIP model.

    Build one with `Segmenter.from_pretrained` (a saved model) or `Segmenter.from_config` (a
    fresh, untrained model), then call `segment`.

    Args:
        model: the network, as built by `clsclip.model.build_model`.
        config: the config it was built from.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a `torch.device`; None picks
            CUDA when available.
        chunk_size: (view, class) pairs per pass through the class-dependent blocks, and views
            (images and crops) per pass through the shared blocks. Peak memory grows with it, not
            with the number of classes.
        proposals: the default region proposals of `segment` (ClsCLIP+): None (plain ClsCLIP),
            ``"yolo"``, a proposer, or boxes per class. ``"yolo"`` is resolved once, here.
        zoom: crop margin, minimum crop size and fusion mode of the zoom-in.
        matcher: which proposals serve which class (names, synonyms, CLIP similarity).
        precision: ``"fp32"`` (default); ``"bf16"`` or ``"fp16"`` (CUDA autocast); ``"int8"``
            (CPU: the backbone's linear layers dynamically quantised; such a segmenter cannot be
            saved or moved to another device). See docs/performance.md for speed and agreement.

    Attributes:
        max_image_pixels: images with more pixels are refused before decoding (`ValueError`);
            default 100 million, None for no limit but PIL's own (see docs/limits.md).
    """

    def __init__(
        self,
        model: SegmentationModel,
        config: AnyConfig,
        *,
        device: str | torch.device | None = None,
        chunk_size: int = 16,
        proposals: ProposalSource = None,
        zoom: ZoomSettings | None = None,
        matcher: LabelMatcher | None = None,
        precision: Precision = "fp32",
    ) -> None:
        if not isinstance(model, SegmentationModel):
            raise TypeError(
                f"model must be a clsclip SegmentationModel, got {type(model).__name__}"
            )
        _check_config(config)
        self.config = config
        self.chunk_size = check_int("chunk_size", chunk_size)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.precision = check_precision(precision, self.device)
        if self.precision == "int8":
            quantize_backbone(self.model)
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.max_image_pixels: int | None = MAX_IMAGE_PIXELS
        self._yolo: Proposer | None = None
        self.proposer: Proposer | None = self._resolve(proposals)
        self.zoom = zoom if zoom is not None else ZoomSettings()
        self.matcher = matcher if matcher is not None else LabelMatcher()
        if not isinstance(self.zoom, ZoomSettings):
            raise TypeError(f"zoom must be a ZoomSettings, got {type(zoom).__name__}")
        if not isinstance(self.matcher, LabelMatcher):
            raise TypeError(f"matcher must be a LabelMatcher, got {type(matcher).__name__}")

    @classmethod
    def from_config(
        cls,
        config: AnyConfig,
        *,
        device: str | torch.device | None = None,
        chunk_size: int = 16,
        cache_dir: str | None = None,
        precision: Precision = "fp32",
    ) -> Segmenter:
        """A fresh model: the backbone from open_clip (``config.pretrained``), the projection and
        decoder randomly initialised. Train it before expecting useful masks."""
        _check_config(config)
        device = resolve_device(device)
        model = build_model(config, cache_dir=cache_dir)
        return cls(model, config, device=device, chunk_size=chunk_size, precision=precision)

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        chunk_size: int = 16,
        precision: Precision = "fp32",
        verify: bool = True,
        backend: str = "torch",
    ) -> Segmenter:
        """Load a saved model from a local folder or a Hugging Face Hub repo.

        Args:
            source: a folder holding ``config.json`` and ``model.safetensors``, or a Hub repo id
                (``"org/name"``, optionally prefixed ``"hf-hub:"``).
            device: where to run; None picks CUDA when available.
            revision, cache_dir, local_files_only, token: passed to huggingface_hub for Hub repos;
                ``cache_dir`` is also where open_clip caches backbone weights.
            chunk_size, precision: see `Segmenter`.
            verify: check the CRC-32 of every weight tensor and that ``config.json`` is the one
                the weights were saved with (models saved by clsclip 0.2 and later carry both).
                ``False`` accepts a config edited by hand; NaN or infinite weights are refused
                either way.
            backend: ``"torch"``, or ``"onnxruntime"`` for a folder written by `export_onnx`
                (``clsclip export``): the same pipeline with onnxruntime sessions in place of
                the torch network, on the CPU (needs ``clsclip[onnx]``).

        Raises:
            FileNotFoundError: no such folder, or a file of the model is missing.
            OSError: the Hub cannot provide the model (offline and not cached, unknown repo).
            ValueError: invalid config, or weights that do not match it (listing the keys).
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
        if backend == "onnxruntime":
            return cls._from_onnx(source, chunk_size=chunk_size, precision=precision)
        resolve_device(device)  # an unusable device fails before anything is read
        model, config = load_model_folder(
            source,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            verify=verify,
        )
        return cls(model, config, device=device, chunk_size=chunk_size, precision=precision)

    @classmethod
    def _from_onnx(
        cls, source: str | os.PathLike[str], *, chunk_size: int, precision: Precision
    ) -> Segmenter:
        if precision != "fp32":
            raise ValueError("the onnxruntime backend runs the exported fp32 graphs")
        model, config = load_onnx_folder(source)
        return cls(model, config, device="cpu", chunk_size=chunk_size)

    def export_onnx(
        self,
        out_dir: str | os.PathLike[str],
        *,
        classes: Sequence[str] | None = None,
        opset: int | None = None,
        int8: bool = False,
    ) -> Path:
        """Export the network as ONNX graphs that keep the vocabulary open (text encoder,
        class-independent part, class-dependent part) and a JSON describing the pipeline;
        ``classes`` also stores their vectors; ``int8`` quantises the graphs (onnxruntime's
        dynamic quantisation). Load with ``from_pretrained(dir,
        backend="onnxruntime")``. Needs ``clsclip[onnx]``; see docs/deploy.md."""
        import copy

        from clsclip.export import OPSET, export_onnx

        if self.precision == "int8":
            raise RuntimeError("export the fp32 model: an int8 (quantised) one cannot be exported")
        if not isinstance(self.model, (ClsClipModel, ClipSegModel)):
            raise TypeError(f"cannot export a {type(self.model).__name__}")
        model = copy.deepcopy(self.model)
        names = check_class_names(classes) if classes is not None else None
        return export_onnx(
            model, self.config, Path(out_dir), classes=names, opset=opset or OPSET, int8=int8
        )

    def to(self, device: str | torch.device) -> Segmenter:
        """Move the model to another device (in place); returns self."""
        target = resolve_device(device)
        check_precision(self.precision, target)
        self.device = target
        self.model.to(self.device)
        self._text_cache.clear()
        return self

    @overload
    def segment(
        self,
        image: ImageInput,
        class_names: Sequence[str],
        *,
        threshold: float | None = None,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
    ) -> SegmentationResult: ...

    @overload
    def segment(
        self,
        image: list[ImageInput] | tuple[ImageInput, ...],
        class_names: Sequence[str],
        *,
        threshold: float | None = None,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
    ) -> list[SegmentationResult]: ...

    def segment(
        self,
        image: ImageInput | list[ImageInput] | tuple[ImageInput, ...],
        class_names: Sequence[str],
        *,
        threshold: float | None = None,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
    ) -> SegmentationResult | list[SegmentationResult]:
        """Segment every named class in one image or a list of images.

        Args:
            image: a PIL image, an ``H x W x 3`` uint8 RGB array, a file path, or a list of these.
            class_names: K distinct, non-empty names, in plain words (``["dog", "cat"]``).
            threshold: probability above which a pixel is in a mask; default the config's.
            proposals: ClsCLIP+ region proposals for this call: None or ``"none"`` (plain
                ClsCLIP), ``"yolo"`` (ultralytics' default detector), a proposer, or boxes per
                class ``{"dog": [[x0, y0, x1, y1], ...]}`` in pixels of the original image
                (exclusive end; used for every image of a list). Default: the segmenter's.
                Boxes that match a class are cropped with a margin, zoomed to the model input,
                segmented for that class, and fused back at full resolution.

        Returns:
            A `SegmentationResult` (or a list, for a list of images): each class's low-resolution
            logits and the geometry back to the image; masks, probabilities and the label map at
            the image's original size are computed from them when asked for.
        """
        names = check_class_names(class_names)
        threshold = check_threshold(self.config.threshold if threshold is None else threshold)
        single = isinstance(image, _SINGLE_IMAGE_TYPES)
        images: list[ImageInput]
        if isinstance(image, (list, tuple)):
            images = list(image)
        elif single:
            images = [image]
        else:
            raise TypeError(
                "image must be a PIL image, an H x W x 3 uint8 array, a file path, or a list of "
                f"these; got {type(image).__name__}"
            )
        proposer = self.proposer if isinstance(proposals, _UseDefault) else self._resolve(proposals)
        text = self.encode_classes(names)
        results = []
        for start in range(0, len(images), self.chunk_size):
            group = [
                load_image(x, max_pixels=self.max_image_pixels)
                for x in images[start : start + self.chunk_size]
            ]
            for prediction in self._predict(group, names, text, proposer):
                results.append(
                    SegmentationResult(
                        names, prediction.prediction, threshold, prediction.image, prediction.boxes
                    )
                )
        return results[0] if single else results

    def segment_torch(
        self,
        images: torch.Tensor,
        class_names: Sequence[str],
        *,
        threshold: float | None = None,
    ) -> TensorSegmentation:
        """Segment a batch of same-size image tensors without PIL or numpy (plain ClsCLIP).

        Letterboxing, the network and the post-processing all run on the model's device; only
        the returned tensors exist at full resolution. For pipelines and servers that already
        hold decoded images as tensors. (Region proposals need `segment`.)

        Args:
            images: ``B x 3 x H x W`` RGB, uint8 (0..255) or floating point (0..1), on any
                device (moved to the model's). Resizing is torch's antialiased bicubic, so the
                output is close to, not bit-equal with, `segment` on the same pixels.
            class_names: K distinct, non-empty names.
            threshold: probability threshold of the label maps; default the config's.

        Returns:
            A `TensorSegmentation`: int32 ``B x H x W`` label maps and float32
            ``B x K x h' x w'`` low-resolution logits, on the model's device.
        """
        names = check_class_names(class_names)
        threshold = check_threshold(self.config.threshold if threshold is None else threshold)
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise ValueError(f"images must be B x 3 x H x W with B >= 1, got {tuple(images.shape)}")
        if images.shape[2] == 0 or images.shape[3] == 0:
            raise ValueError(f"images have zero size: {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
        text = self.encode_classes(names)
        model = self.model
        logits = []
        with torch.inference_mode(), autocast(self.precision, self.device):
            for chunk in images.split(self.chunk_size):
                pixels, box = letterbox_tensor(
                    chunk.to(self.device),
                    self.config.image_size,
                    model.image_mean,
                    model.image_std,
                    self.config.resize_mode,
                )
                out = model.predict_logits(pixels, text, chunk_size=self.chunk_size)
                logits.append(out.float())
            low_res = torch.cat(logits)
            cutoff = threshold_logit(threshold)
            labels = torch.stack(
                [FullResolution(LowResPrediction(x, box)).label_map(cutoff)[0] for x in low_res]
            )
        return TensorSegmentation(names, labels, low_res, box, threshold)

    def segment_many(
        self,
        images: Sequence[ImageInput] | Dataset[Any],
        class_names: Sequence[str],
        *,
        batch_size: int = 8,
        workers: int = 0,
        threshold: float | None = None,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
        keep_images: bool = True,
    ) -> Iterator[ImageOutcome]:
        """Segment many images, decoded ahead by worker processes and batched through the network.

        Args:
            images: a sequence of images (paths, PIL images, arrays) or a map-style
                `torch.utils.data.Dataset` returning them.
            class_names, threshold, proposals: as in `segment`.
            batch_size: images per network call (classes are still run in ``chunk_size`` chunks).
            workers: `DataLoader` worker processes that decode and letterbox (0: in this one).
            keep_images: keep each decoded image in its result (for `overlay`); without
                proposals, False saves the memory and the transfer from the workers.

        Yields:
            One `ImageOutcome` per input, in input order: ``result`` or, for an image that could
            not be read, ``error``. At most a few batches are in memory at a time.
        """
        names = check_class_names(class_names)
        threshold = check_threshold(self.config.threshold if threshold is None else threshold)
        check_int("batch_size", batch_size)
        check_int("workers", workers, minimum=0)
        proposer = self.proposer if isinstance(proposals, _UseDefault) else self._resolve(proposals)
        text = self.encode_classes(names)
        dataset = ImageListDataset(
            images,
            input_size=self.config.image_size,
            mean=self.model.image_mean,
            std=self.model.image_std,
            max_pixels=self.max_image_pixels,
            keep_images=keep_images or proposer is not None,
            resize_mode=self.config.resize_mode,
        )
        for batch in image_loader(dataset, batch_size=batch_size, workers=workers):
            good = [item for item in batch if item.error is None]
            prepared = [(item.pixels, item.letterbox) for item in good]
            predictions = self._predict(
                [item.image for item in good],
                names,
                text,
                proposer,
                prepared,
            )
            by_index = dict(zip((item.index for item in good), predictions, strict=True))
            for item in batch:
                if item.error is not None:
                    yield ImageOutcome(item.index, item.source, None, item.error)
                    continue
                p = by_index[item.index]
                result = SegmentationResult(names, p.prediction, threshold, p.image, p.boxes)
                yield ImageOutcome(item.index, item.source, result)

    def encode_classes(self, class_names: Sequence[str]) -> torch.Tensor:
        """Text vectors of class names (``K x embed_dim``, unit norm) on the model's device.

        Cached per name, so repeated calls with the same classes skip the text encoder.
        """
        names = check_class_names(class_names)
        keys = [name.strip() for name in names]
        missing = [key for key in dict.fromkeys(keys) if key not in self._text_cache]
        if missing:
            with torch.inference_mode():
                vectors = self.model.encode_class_names(missing)
            for key, vector in zip(missing, vectors, strict=False):
                self._text_cache[key] = vector
        for key in keys:
            self._text_cache.move_to_end(key)
        while len(self._text_cache) > _TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return torch.stack([self._text_cache[key] for key in keys])

    def _resolve(self, proposals: ProposalSource) -> Proposer | None:
        """`resolve_proposer`, with the default YOLO detector loaded once per segmenter."""
        if proposals == "yolo":
            if self._yolo is None:
                self._yolo = resolve_proposer("yolo")
            return self._yolo
        return resolve_proposer(proposals)

    def _predict(
        self,
        images: Sequence[Image.Image | None],
        names: list[str],
        text: torch.Tensor,
        proposer: Proposer | None,
        prepared: Sequence[tuple[torch.Tensor, Letterbox]] | None = None,
    ) -> list[ImagePrediction]:
        """Whole images and their matching crops: every (view, class) pair, ``chunk_size`` views
        per network call (``prepared``: whole views letterboxed already, by loader workers)."""
        planner = ViewPlanner(self.model, self.config.image_size, self.config.resize_mode)
        plans = []
        for i, image in enumerate(images):
            proposals = None
            if proposer is not None and image is not None:
                proposals = proposer.propose(image, names)
            ready = prepared[i] if prepared is not None else None
            plans.append(
                planner.plan_image(
                    image, names, proposals, self.matcher, self.zoom, self.encode_classes, ready
                )
            )
        with torch.inference_mode(), autocast(self.precision, self.device):
            return planner.run(plans, text, chunk_size=self.chunk_size, fusion=self.zoom.fusion)

    def save_pretrained(
        self, save_directory: str | os.PathLike[str], *, include_backbone: bool | None = None
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into a folder (created if needed).

        Args:
            save_directory: the folder.
            include_backbone: store the backbone weights too. None (default) stores them when
                open_clip cannot rebuild them: ``config.pretrained`` is None or the backbone has
                trainable parameters (fine-tuned).

        Returns:
            The folder's path.
        """
        if self.precision == "int8":
            raise RuntimeError(
                "an int8 (quantised) segmenter cannot be saved: save the fp32 model, and choose "
                "precision='int8' when loading it"
            )
        if include_backbone is None:
            include_backbone = self.config.pretrained is None or any(
                p.requires_grad for p in self.model.backbone.parameters()
            )
        return save_model_folder(
            self.model, self.config, Path(save_directory), include_backbone=include_backbone
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload clsclip model",
    ) -> str:
        """Save the model and upload it to a Hugging Face Hub repo (created if needed).

        Returns the URL of the commit.
        """
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            write_model_card(Path(tmp), repo_id, self.config)
            return push_folder_to_hub(
                tmp,
                repo_id,
                private=private,
                token=token,
                revision=revision,
                commit_message=commit_message,
            )

    def __repr__(self) -> str:
        backbone = self.config.backbone if isinstance(self.config.backbone, str) else "custom"
        return (
            f"Segmenter(model={self.config.MODEL_TYPE!r}, backbone={backbone!r}, "
            f"image_size={self.config.image_size}, device={str(self.device)!r})"
        )


def _check_config(config: object) -> None:
    if not isinstance(config, (ClsClipConfig, ClipSegConfig)):
        raise TypeError(
            f"config must be a ClsClipConfig or ClipSegConfig, got {type(config).__name__}"
        )
