"""Writing videos: RGB frames (overlays) encoded as H.264 in MP4 with PyAV at their own times,
and finished parts joined without re-encoding (``pip install "clsclip[video]"``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image

from clsclip.optional import require
from clsclip.storage.files import temporary_sibling

TIME_BASE = Fraction(1, 90_000)
"""The written streams' clock (MPEG's 90 kHz): frame times are kept to 11 microseconds."""


class VideoWriter:
    """An MP4 file of RGB frames, H.264 (libx264; ``yuv420p``, or ``yuv444p`` for an odd width
    or height, which 4:2:0 cannot hold), each frame at its own time (variable rates kept), no
    B-frames (so finished parts join by copying: `join_videos`). Written to a hidden temporary
    beside ``path`` and renamed on `close`: a killed writer leaves no half file under the name.

    Args:
        path: the MP4 file.
        width, height: the frames' size (every frame must have it).
        fps: the nominal rate (for players and the encoder's rate control; frames without a
            time are put at ``count / fps``).
        crf: x264's constant rate factor (lower: better, larger; 23 is x264's default).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        fps: float,
        crf: int = 23,
        preset: str = "veryfast",
    ) -> None:
        av = require("av", "video", purpose="writing videos")
        if width < 1 or height < 1:
            raise ValueError(f"a video needs a size of at least 1 x 1, got {width} x {height}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.size = (int(width), int(height))
        self.fps = float(fps)
        self.frames = 0
        self._last = -1
        self._tmp = temporary_sibling(self.path)
        self._container = av.open(os.fspath(self._tmp), "w", format="mp4")
        stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(
            1001))  # fmt: skip
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.codec_context.time_base = TIME_BASE
        # one thread: x264 with frame threads gave other bytes for the same frames from run to run
        stream.options = {"crf": str(int(crf)), "preset": preset, "bf": "0", "threads": "1"}
        self._stream = stream
        self._av = av

    def write(self, image: Image.Image | np.ndarray, time: float | None = None) -> None:
        """Add one frame (RGB, the writer's size) at ``time`` seconds (None: ``count / fps``).
        Times must increase (a frame at the time of the last one is moved a tick later)."""
        pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        if pixels.shape != (self.size[1], self.size[0], 3) or pixels.dtype != np.uint8:
            raise ValueError(
                f"frames must be {self.size[1]} x {self.size[0]} x 3 uint8 RGB, got "
                f"{pixels.shape} {pixels.dtype}"
            )
        seconds = self.frames / self.fps if time is None else float(time)
        pts = max(round(seconds / TIME_BASE), self._last + 1)
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
        frame.pts, frame.time_base = pts, TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last = pts
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, finish the file and put it in place."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
        finally:
            self._container = None
            self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop the file being written (nothing is put under ``path``)."""
        if self._container is not None:
            with contextlib.suppress(Exception):  # a half file: dropped whatever it says
                self._container.close()
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def join_videos(parts: Sequence[str | os.PathLike[str]], target: str | os.PathLike[str]) -> int:
    """Join MP4 files written by `VideoWriter` (same size and settings, increasing times) into
    ``target`` by copying their packets (no re-encoding); returns the number of frames. Written
    to a temporary beside ``target`` and renamed."""
    av = require("av", "video", purpose="writing videos")
    if not parts:
        raise ValueError("no video parts to join")
    target = Path(target)
    tmp = temporary_sibling(target)
    count = 0
    try:
        with av.open(os.fspath(tmp), "w", format="mp4") as out:
            stream: Any = None
            last = -1
            for part in parts:
                with av.open(os.fspath(part), "r") as source:
                    video = source.streams.video[0]
                    if stream is None:
                        stream = out.add_stream_from_template(video)
                    for packet in source.demux(video):
                        if packet.dts is None or packet.dts <= last:
                            continue  # the flush packet; a repeated time
                        last = packet.dts
                        packet.stream = stream
                        out.mux(packet)
                        count += 1
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return count
