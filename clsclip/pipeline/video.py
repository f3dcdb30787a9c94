"""Frames through the network as a pipeline: a thread decodes and letterboxes ahead into a
bounded queue while the network runs on batches, so memory stays bounded whatever the video's
length, and results come out in order as soon as they are ready (`stream_frames`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from clsclip.pipeline.images import load_image
from clsclip.pipeline.letterbox import letterbox_image
from clsclip.pipeline.predict import predict_images, result_of
from clsclip.pipeline.request import Request, Settings
from clsclip.pipeline.video_decode import Frame
from clsclip.results import LowResPrediction, SegmentationResult

_SMOOTHED = ("logits", "negatives", "background", "rows")
"""The whole image's grids `Smoother` averages (ClsCLIP+ crops move with their boxes: not)."""


@dataclass(frozen=True)
class FrameResult:
    """One processed frame of a video or stream.

    Attributes:
        index: the frame's index in the source (every frame counted, from 0).
        time: seconds, ``pts * time_base`` of the container (None for frames without a clock,
            such as an iterable of images).
        result: the frame's lazy `SegmentationResult`, as `Segmenter.segment` gives it.
        tracks: with a tracking proposer (``YoloProposer(tracker=...)``), per class the track
            id of each of its boxes (``result.boxes[name]``, same order; -1: a box in no
            confirmed track yet); empty otherwise.
    """

    index: int
    time: float | None
    result: SegmentationResult
    tracks: dict[str, np.ndarray] = field(default_factory=dict)

    def instances(self) -> Iterator[tuple[int, str, np.ndarray]]:
        """Each tracked object in this frame: its track id, its class, and its mask (the
        class's mask inside the object's box, bool ``H x W``), one at a time."""
        height, width = self.result.size
        for name, ids in self.tracks.items():
            boxes = self.result.boxes.get(name, np.zeros((0, 4), np.float32))
            mask = self.result.mask(name)
            for box, track in zip(boxes, ids, strict=True):
                if track < 0:
                    continue
                x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
                x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
                part = np.zeros_like(mask)
                part[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
                yield int(track), name, part


class Smoother:
    """An exponential moving average of a stream's low-resolution logits:
    ``s_t = alpha * x_t + (1 - alpha) * s_(t-1)`` on the whole image's grids (class logits,
    negatives, background, the training-free models' rows); ``alpha = 1`` is no smoothing.
    Starts again when the frames' grids change (another size). `state_dict` and
    `load_state_dict` carry it across calls and processes (a resumed labelling run)."""

    def __init__(self, alpha: float) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise TypeError(f"smooth must be a number in (0, 1], got {type(alpha).__name__}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"smooth must be in (0, 1] (the new frame's weight), got {alpha}")
        self.alpha = float(alpha)
        self._state: dict[str, torch.Tensor] = {}

    @staticmethod
    def grids(prediction: LowResPrediction) -> dict[str, torch.Tensor]:
        """The grids of ``prediction`` that a smoother averages, float32 (absent ones left out).
        Those of a frame the smoother returned are its average after that frame: what
        `state_dict` gave then (on the prediction's device)."""
        return {n: getattr(prediction, n).float() for n in _SMOOTHED
                if getattr(prediction, n) is not None}  # fmt: skip

    def __call__(self, prediction: LowResPrediction) -> LowResPrediction:
        grids = self.grids(prediction)
        state = self._state
        if set(state) != set(grids) or any(state[n].shape != grids[n].shape for n in grids):
            self._state = grids
            return prediction
        self._state = {
            n: torch.lerp(state[n].to(grids[n].device), grids[n], self.alpha) for n in grids
        }
        return replace(prediction, **self._state)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running averages (empty before the first frame)."""
        return {name: tensor.cpu() for name, tensor in self._state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        unknown = set(state) - set(_SMOOTHED)
        if unknown:
            raise ValueError(f"not a smoother's state: unknown entries {sorted(unknown)}")
        self._state = {name: tensor.float() for name, tensor in state.items()}


@dataclass
class _Ready:
    frame: Frame
    image: Any
    pixels: torch.Tensor
    letterbox: Any


_END = object()


def stream_frames(
    settings: Settings,
    request: Request,
    frames: Iterator[Frame],
    *,
    batch_size: int,
    smoother: Smoother | None = None,
    deterministic: bool = False,
    max_pixels: int | None = None,
    keep_frames: bool = True,
) -> Iterator[FrameResult]:
    """One `FrameResult` per frame, in order. A thread decodes (``frames``) and letterboxes
    into a queue of at most two batches; the network takes ``batch_size`` frames a time
    (``deterministic``: each frame's views on their own, bit for bit `segment` on it alone).
    Closing the iterator stops the thread; an error of the decoder is raised here, after the
    frames before it."""
    reset = getattr(request.proposer, "reset", None)
    if reset is not None:  # a tracker starts a new video
        reset()
    ahead: queue.Queue[Any] = queue.Queue(maxsize=2 * batch_size)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for frame in frames:
                image = load_image(frame.pixels, max_pixels=max_pixels)
                pixels, box = letterbox_image(
                    image, settings.image_size, settings.backend.image_mean,
                    settings.backend.image_std, settings.resize_mode,
                )  # fmt: skip
                if not put(_Ready(frame, image, pixels, box)):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(e)
            return
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        put(_END)

    thread = threading.Thread(target=produce, name="clsclip-video-decode", daemon=True)
    thread.start()
    try:
        ended = False
        while not ended:
            batch: list[_Ready] = []
            failure: BaseException | None = None
            while len(batch) < batch_size:
                item = ahead.get()
                if item is _END:
                    ended = True
                    break
                if isinstance(item, BaseException):
                    failure, ended = item, True
                    break
                batch.append(item)
            yield from _run(settings, request, batch, smoother, deterministic, keep_frames)
            if failure is not None:
                raise failure
    finally:
        stop.set()
        thread.join(timeout=10)


def _run(
    settings: Settings,
    request: Request,
    batch: list[_Ready],
    smoother: Smoother | None,
    deterministic: bool,
    keep_frames: bool,
) -> Iterator[FrameResult]:
    if not batch:
        return
    images = [item.image for item in batch]
    prepared = [(item.pixels, item.letterbox) for item in batch]
    if deterministic:
        predictions = [predict_images(settings, [image], request, [ready])[0]
                       for image, ready in zip(images, prepared, strict=True)]  # fmt: skip
    else:
        predictions = predict_images(settings, images, request, prepared)
    for item, prediction in zip(batch, predictions, strict=True):
        if smoother is not None:
            prediction = replace(prediction, prediction=smoother(prediction.prediction))
        if not keep_frames:
            prediction = replace(prediction, image=None)
        yield FrameResult(item.frame.index, item.frame.time, result_of(request, prediction),
                          prediction.track_ids)  # fmt: skip
