"""Reading videos: a container probed and decoded with PyAV (FFmpeg's libraries, shipped in its
wheels; ``pip install "clsclip[video]"``), frames sampled by count or by time, rotation
metadata applied, one-line errors that name the file.

Timestamps come from each frame's ``pts * time_base`` (variable frame rates are common in phone
videos), never from ``index / fps``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from clsclip.checks import check_int
from clsclip.optional import require
from clsclip.pipeline.images import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                  ".m2ts", ".mts", ".wmv", ".flv", ".3gp", ".ogv")  # fmt: skip
"""File name endings a folder's videos are looked for by (each is then probed: `is_video`)."""

_IMAGE_DEMUXERS = ("image2", "_pipe", "gif", "apng", "webp")
"""FFmpeg formats that are single images (FFmpeg opens a PNG as a one-frame "video")."""


class VideoError(ValueError):
    """A video that cannot be read: not a video, no video stream, no frames, truncated, or
    frames over the pixel limit. The message is one line and names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What a container says of its first video stream.

    Attributes:
        path: the file.
        width, height: the displayed frame size (rotation applied).
        rotation: degrees counterclockwise the stored frames are turned to be displayed (0, 90,
            180, 270; phone videos carry it).
        fps: the stream's average frame rate (None: unknown).
        frames: the frame count the container declares (None: not declared; may be wrong).
        duration: seconds (None: unknown).
        codec: the codec's name (``"h264"``).
    """

    path: str
    width: int
    height: int
    rotation: int
    fps: float | None
    frames: int | None
    duration: float | None
    codec: str


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``index`` in the source (every frame counted, from 0), ``time`` in
    seconds (``pts * time_base``; None for frames that came without a clock) and the RGB
    ``H x W x 3`` uint8 ``pixels`` as displayed."""

    index: int
    time: float | None
    pixels: np.ndarray | Image.Image


def _av() -> Any:
    return require("av", "video", purpose="reading videos")


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether FFmpeg reads ``path`` as a video with at least one video stream (probed, so a
    video with any name is found; a still image is not a video). Never raises."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES or not os.path.isfile(path):
        return False
    try:
        av = _av()
    except ImportError:
        return os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES  # reading says what to install
    try:
        with av.open(path, "r") as container:
            name = container.format.name
            return bool(container.streams.video) and not any(m in name for m in _IMAGE_DEMUXERS)
    except Exception:  # not a container FFmpeg knows (or unreadable): not a video
        return False


def _open(path: str) -> Any:
    av = _av()
    if os.path.isdir(path):
        raise VideoError(f"{path!r} is a folder, not a video")
    if not os.path.exists(path):
        raise FileNotFoundError(f"video not found: {path!r}")
    try:
        container = av.open(path, "r")
    except Exception as e:
        raise VideoError(f"{path!r} is not a video FFmpeg can read ({_reason(e)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise VideoError(f"{path!r} has no video stream (it holds {', '.join(kinds)})")
    return container


def _reason(error: BaseException) -> str:
    text = " ".join(str(getattr(error, "strerror", None) or error).split())
    return text.rstrip(".") or type(error).__name__


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """The container's description of its first video stream, its first frame decoded (for the
    rotation, and to know there is one). `VideoError` if there is no video stream or frame."""
    path = os.fspath(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            first = next(iter(container.decode(stream)), None)
        except Exception as e:
            raise VideoError(f"{path!r} could not be decoded ({_reason(e)})") from None
        if first is None:
            raise VideoError(f"{path!r} has no video frames")
        rotation = _rotation(first)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return VideoInfo(path, int(width), int(height), rotation,
                         float(rate) if rate else None, int(stream.frames) or None, duration,
                         stream.codec_context.name)  # fmt: skip


def _rotation(frame: Any) -> int:
    """A frame's display rotation (its display matrix; PyAV's ``VideoFrame.rotation``) in whole
    quarter turns counterclockwise, as degrees in 0..270."""
    angle = float(getattr(frame, "rotation", 0) or 0)
    return round(angle / 90.0) % 4 * 90


def _upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    """The stored frame turned as it is displayed (``rotation`` degrees counterclockwise)."""
    if rotation == 0:
        return pixels
    return np.ascontiguousarray(np.rot90(pixels, k=rotation // 90))


def check_sampling(
    every: int, fps: float | None, start: float | None, end: float | None
) -> tuple[int, float | None, float, float]:
    """``every``, ``fps``, ``start``, ``end`` checked; returns them with ``start`` 0 and ``end``
    infinity where not given."""
    check_int("every", every)
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)):
            raise TypeError(f"fps must be a number, got {type(fps).__name__}")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        if every != 1:
            raise ValueError("give either every or fps, not both")
    low = 0.0 if start is None else float(start)
    high = math.inf if end is None else float(end)
    if not low >= 0 or math.isnan(high) or not high > low:
        raise ValueError(f"start and end must satisfy 0 <= start < end, got {start} and {end}")
    return every, fps, low, high


def decode_video(
    path: str | os.PathLike[str],
    *,
    every: int = 1,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    first: int = 0,
    max_pixels: int | None = None,
) -> Iterator[Frame]:
    """The frames of a video's first video stream, upright, in order, sampled.

    Args:
        every: keep frames whose index is a multiple of it.
        fps: instead, keep the frame nearest in time to each tick ``start, start + 1/fps, ...``
            (each frame at most once: a rate above the video's keeps every frame).
        start, end: seconds; frames with ``start <= time < end`` (None: from the first, to the
            last).
        first: skip the sampled frames whose index is below it (a resumed run: the frames are
            decoded, not converted, to know their index).
        max_pixels: refuse frames with more pixels (`VideoError`, before decoding any).

    Raises:
        VideoError: not a video, no video stream, no frames at all, a frame size over
            ``max_pixels``, or a decoding error mid-stream (after the frames before it).
    """
    every, fps, low, high = check_sampling(every, fps, start, end)
    name = os.fspath(path)
    info = probe_video(name)
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise VideoError(
            f"{name!r}: frames of {info.width} x {info.height} pixels are over the limit of "
            f"{max_pixels} (max_image_pixels)"
        )
    return _frames(name, info, every, fps, low, high, first)


def _frames(
    name: str, info: VideoInfo, every: int, fps: float | None, low: float, high: float,
    first: int,
) -> Iterator[Frame]:  # fmt: skip
    container = _open(name)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        counted = [0]
        timed = _timed(container.decode(stream), info, counted, low, high)
        if fps is not None:
            sampled = _nearest_to_ticks(timed, fps, low)
        else:
            sampled = (item for item in timed if item[0] % every == 0)
        try:
            for index, time, frame in sampled:
                if index >= first:
                    pixels = frame.to_ndarray(format="rgb24")
                    yield Frame(index, time, _upright(pixels, _rotation(frame)))
        except VideoError:
            raise
        except Exception as e:
            raise VideoError(
                f"{name!r} could not be decoded after frame {counted[0]} ({_reason(e)})"
            ) from None
        if counted[0] == 0:
            raise VideoError(f"{name!r} has no video frames")
    finally:
        container.close()


def _timed(
    frames: Iterable[Any], info: VideoInfo, counted: list[int], low: float, high: float
) -> Iterator[tuple[int, float, Any]]:
    """``(index, time, frame)`` of the decoded frames with ``low <= time < high``; every frame
    is counted into ``counted[0]``, so indices are the source's."""
    for frame in frames:
        index = counted[0]
        counted[0] += 1
        time = float(frame.time) if frame.time is not None else index / (info.fps or 1.0)
        if time >= high:
            return
        if time >= low:
            yield index, time, frame


def _nearest_to_ticks(
    items: Iterable[tuple[int, float, Any]], fps: float, start: float
) -> Iterator[tuple[int, float, Any]]:
    """The item nearest in time to each tick ``start + k / fps`` (ties: the earlier), each
    once, in order; ticks after the last item's time take none."""
    previous: tuple[int, float, Any] | None = None
    tick, kept = 0, -1
    for item in items:
        while start + tick / fps <= item[1]:
            now = start + tick / fps
            best = item
            if previous is not None and now - previous[1] <= item[1] - now:
                best = previous
            if best[0] != kept:
                kept = best[0]
                yield best
            tick += 1
        previous = item


def frames_of(items: Iterable[Any], *, every: int = 1) -> Iterator[Frame]:
    """Frames from an iterable of PIL images or ``H x W x 3`` arrays (a camera, a generator):
    positions are indices, there is no clock (``time`` None)."""
    for index, item in enumerate(items):
        if index % every:
            continue
        if isinstance(item, (Image.Image, np.ndarray)):
            yield Frame(index, None, item)
        else:
            raise TypeError(
                f"frame {index} must be a PIL image or an H x W x 3 uint8 array, got "
                f"{type(item).__name__}"
            )


def open_frames(
    source: str | os.PathLike[str] | Iterable[Any],
    *,
    every: int = 1,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_pixels: int | None = None,
    first: int = 0,
) -> Iterator[Frame]:
    """The frames of a video file (`decode_video`: the file is probed now, so its errors come at
    the call) or of an iterable of images (`frames_of`; ``fps``, ``start`` and ``end`` need a
    clock, so a file)."""
    every, fps, low, high = check_sampling(every, fps, start, end)
    if isinstance(source, (str, os.PathLike)):
        return decode_video(source, every=every, fps=fps, start=start, end=end,
                            max_pixels=max_pixels, first=first)  # fmt: skip
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes, np.ndarray)):
        if fps is not None or low != 0.0 or high != math.inf:
            raise ValueError("fps, start and end need a video file (these frames have no clock)")
        return (frame for frame in frames_of(source, every=every) if frame.index >= first)
    raise TypeError(
        "source must be a video file path or an iterable of frames (PIL images or H x W x 3 "
        f"arrays), got {type(source).__name__}"
    )
