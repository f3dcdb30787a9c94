"""Make docs/images/video-overlay-strip.png: the bundled demo model on a generated clip of moving
shapes, segmented with `Segmenter.segment_video`, four overlay frames side by side.

    python examples/video_overlay_strip.py [--out docs/images/video-overlay-strip.png]

Needs clsclip[video] (PyAV). Runs offline.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from clsclip import Segmenter

HERE = Path(__file__).resolve().parent
CLASSES = ["red disc", "blue square"]


def shapes_clip(path: Path, frames: int = 24, width: int = 320, height: int = 180) -> None:
    """A red disc moving right and a blue square moving down, on grey, 12 frames a second."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        yy, xx = np.mgrid[:height, :width]
        for i in range(frames):
            frame = np.full((height, width, 3), 150, np.uint8)
            cx, cy = 40 + 10 * i, 60
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 <= 28**2] = (210, 40, 40)
            top = 20 + 5 * i
            frame[top : top + 45, 200:245] = (40, 60, 200)
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/video-overlay-strip.png"))
    args = parser.parse_args()
    seg = Segmenter.from_pretrained(HERE / "demo-model", device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "shapes.mp4"
        shapes_clip(clip)
        tiles = []
        for frame in seg.segment_video(clip, CLASSES, every=6):
            tile = frame.result.overlay(legend=frame.index == 0)
            ImageDraw.Draw(tile).text((4, tile.height - 14), f"frame {frame.index}, "
                                      f"{frame.time:.2f} s", fill=(255, 255, 255))  # fmt: skip
            tiles.append(tile)
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height))
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + 4
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(tiles)} frames)")


if __name__ == "__main__":
    main()
