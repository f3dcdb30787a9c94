"""Test videos made in the test run with PyAV: moving synthetic shapes, chosen codecs, times
and rotation; and the broken kinds (audio only, no frames, truncated)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

TIME_BASE = Fraction(1, 1000)


def shapes_frame(i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i``: a red disc moving right and a blue square moving down on grey."""
    frame = np.full((height, width, 3), 128, np.uint8)
    yy, xx = np.mgrid[:height, :width]
    cx, cy = (5 + 2 * i) % width, height // 3
    frame[(xx - cx) ** 2 + (yy - cy) ** 2 <= (min(width, height) // 6) ** 2] = (220, 30, 30)
    top = (3 + i) % max(1, height - 10)
    frame[top : top + 10, width // 2 : width // 2 + 10] = (30, 30, 220)
    frame[:4, :8] = (250, 250, 0)  # a marker in the displayed top-left corner
    return frame


def make_video(
    path: Path,
    *,
    frames: int = 30,
    width: int = 64,
    height: int = 48,
    codec: str = "libx264",
    rate: int = 10,
    times: Sequence[float] | None = None,
    rotation: int | None = None,
    container_format: str | None = None,
) -> list[np.ndarray]:
    """Write a video; returns the frames as displayed (before encoding). ``times``: each
    frame's time in seconds (a variable rate); ``rotation``: the display matrix's
    counterclockwise degrees (the stored frames are turned the other way)."""
    shown = [shapes_frame(i, width, height) for i in range(frames)]
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        turns = (rotation or 0) // 90
        stored_w, stored_h = (height, width) if turns % 2 else (width, height)
        stream.width, stream.height, stream.pix_fmt = stored_w, stored_h, "yuv420p"
        if times is not None:
            stream.codec_context.time_base = TIME_BASE
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, picture in enumerate(shown):
            stored = np.ascontiguousarray(np.rot90(picture, k=-turns))
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] / TIME_BASE), TIME_BASE
            for packet in stream.encode(frame):
                container.mux(packet)
        if not shown:
            container.start_encoding()  # the header: a video stream that holds no frame
        for packet in stream.encode():
            container.mux(packet)
    return shown


def make_audio(path: Path, seconds: float = 0.5) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        for start in range(0, samples, 1024):
            wave = np.sin(np.arange(start, start + 1024) / 10.0).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def decoded(path: Path) -> list[tuple[int, float, np.ndarray]]:
    """Every frame as PyAV decodes it (index, ``pts * time_base``, stored RGB pixels)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (i, float(f.pts * f.time_base), f.to_ndarray(format="rgb24"))
            for i, f in enumerate(container.decode(stream))
        ]
