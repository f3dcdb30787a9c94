"""The `Segmenter`'s streaming ways in: many images through decoding workers
(`segment_many`) and videos or streams of frames (`segment_video`), as a mixin of the facade."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from torch.utils.data import Dataset

from clsclip.checks import check_int
from clsclip.classes import ClassesArg
from clsclip.pipeline.batches import ImageListDataset, image_loader
from clsclip.pipeline.images import ImageInput
from clsclip.pipeline.predict import stream_outcomes
from clsclip.pipeline.request import Request, Settings
from clsclip.pipeline.video import FrameResult, Smoother, stream_frames
from clsclip.pipeline.video_decode import open_frames
from clsclip.proposals import ProposalSource
from clsclip.results import ImageOutcome
from clsclip.segmenter.arguments import _DEFAULT, Threshold, _UseDefault

if TYPE_CHECKING:
    from clsclip.backends import Backend
    from clsclip.config import AnyConfig


class Streams:
    """`segment_many` and `segment_video` (see `clsclip.Segmenter`)."""

    if TYPE_CHECKING:
        backend: Backend
        max_image_pixels: int | None

        @property
        def config(self) -> AnyConfig: ...

        def _prepare(
            self,
            class_names: ClassesArg,
            threshold: Threshold,
            proposals: ProposalSource | _UseDefault,
            min_score: float | None = None,
        ) -> Request: ...

        def _settings(self) -> Settings: ...

    def segment_many(
        self,
        images: Sequence[ImageInput] | Dataset[Any] | Iterable[ImageInput],
        class_names: ClassesArg,
        *,
        batch_size: int = 8,
        workers: int = 0,
        threshold: Threshold = None,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
        keep_images: bool = True,
        deterministic: bool = False,
        min_score: float | None = None,
    ) -> Iterator[ImageOutcome]:
        """Segment many images, decoded ahead by worker processes and batched through the network.

        Arguments are checked when this is called, before anything is read.

        Args:
            images: a sequence of images (paths, PIL images, arrays), a map-style
                `torch.utils.data.Dataset` returning them, or any iterable of them (a generator:
                streamed, never listed first).
            class_names, threshold, proposals, min_score: as in `segment`.
            batch_size: images per network call (classes are still run in ``chunk_size`` chunks).
            workers: `DataLoader` worker processes that decode and letterbox (0: in this one).
            keep_images: keep each decoded image in its result (for `overlay`); without
                proposals, False saves the memory and the transfer from the workers.
            deterministic: run each image's views through the network on their own, so its
                results are bit for bit those of `segment` on it alone, whatever else shares
                its batch (matrix products round their last bit differently with their size);
                decoding stays batched. Labelling runs use it, so reruns, resumes and engines
                agree exactly.

        Returns:
            An iterator of one `ImageOutcome` per input, in input order: ``result`` or, for an
            image that could not be read, ``error``. At most a few batches are in memory.
        """
        check_int("batch_size", batch_size)
        check_int("workers", workers, minimum=0)
        request = self._prepare(class_names, threshold, proposals, min_score)
        dataset = ImageListDataset(
            images,
            input_size=self.config.image_size,
            mean=self.backend.image_mean,
            std=self.backend.image_std,
            max_pixels=self.max_image_pixels,
            keep_images=keep_images or request.proposer is not None,
            resize_mode=self.config.resize_mode,
        )
        loader = image_loader(dataset, batch_size=batch_size, workers=workers)
        return stream_outcomes(self._settings(), loader, request, deterministic=deterministic)

    def segment_video(
        self,
        source: str | os.PathLike[str] | Iterable[Any],
        class_names: ClassesArg,
        *,
        every: int = 1,
        fps: float | None = None,
        start: float | None = None,
        end: float | None = None,
        batch_size: int = 8,
        smooth: float | Smoother | None = None,
        threshold: Threshold = None,
        proposals: ProposalSource | _UseDefault = _DEFAULT,
        min_score: float | None = None,
        deterministic: bool = False,
        keep_frames: bool = True,
        start_frame: int = 0,
    ) -> Iterator[FrameResult]:
        """Segment a video (a file FFmpeg reads; needs ``clsclip[video]``) or a stream of frames
        (an iterable of PIL images or arrays) frame by frame; see docs/video.md.

        A thread decodes ahead into a bounded queue while the network runs on ``batch_size``
        frames at a time (the class vectors once), so memory stays flat for any length. Rotation
        metadata is applied; times are the container's ``pts * time_base``.

        Args:
            every: every n-th frame (by index). fps: instead, the frame nearest each tick of
                this rate (files only). start, end: seconds (files only).
            smooth: an exponential moving average of the low-resolution logits, the new frame's
                weight in (0, 1] (None: off): steadier masks, slower to follow a change; or a
                `Smoother`, whose state carries over (a stream continued in another call).
            class_names, threshold, proposals, min_score: as in `segment`.
            deterministic, keep_frames: as `segment_many`'s ``deterministic`` and
                ``keep_images``.
            start_frame: skip the sampled frames with a lower index (decoded to be counted, not
                segmented): a resumed run.

        Returns:
            An iterator of one `FrameResult` (``index``, ``time``, ``result``) per sampled
            frame, in order. Argument, file and container errors are raised here, at the call;
            a decoding error mid-video (`VideoError`) after the frames before it.
        """
        check_int("batch_size", batch_size)
        check_int("start_frame", start_frame, minimum=0)
        smoother = smooth if isinstance(smooth, Smoother) or smooth is None else Smoother(smooth)
        frames = open_frames(source, every=every, fps=fps, start=start, end=end,
                             max_pixels=self.max_image_pixels, first=start_frame)  # fmt: skip
        request = self._prepare(class_names, threshold, proposals, min_score)
        return stream_frames(self._settings(), request, frames, batch_size=batch_size,
                             smoother=smoother, deterministic=deterministic,
                             max_pixels=self.max_image_pixels, keep_frames=keep_frames)  # fmt: skip
