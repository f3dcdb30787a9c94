"""A small synthetic dataset in the VOC2012 layout, for tests and the demo model.

20 classes, each a shape in a colour ("red disc", "blue triangle", ...), drawn on smooth noisy
backgrounds at sizes from a few pixels to half the image, with class-index masks. Run:
    python -m clsclip.datasets.synthetic OUT_DIR [--train 400] [--val 100]
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
}
SHAPES = ("disc", "square", "triangle", "ring", "cross")
CLASS_NAMES: tuple[str, ...] = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [
            (cx + r * math.cos(a), cy + r * math.sin(a))
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    if shape == "cross":
        t = r / 3
        pts = [
            (-t, -r),
            (t, -r),
            (t, -t),
            (r, -t),
            (r, t),
            (t, t),
            (t, r),
            (-t, r),
            (-t, t),
            (-r, t),
            (-r, -t),
            (-t, -t),
        ]
        return [(cx + x, cy + y) for x, y in pts]
    raise ValueError(shape)


def draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    fill: int | tuple[int, ...],
) -> None:
    """Draw one shape of radius ``r`` at ``(cx, cy)``."""
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "disc":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, round(r / 3)))
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=fill)


def make_sample(rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """One image (RGB) and its class-index mask (0 background, k + 1 for class k)."""
    height, width = size
    base = rng.integers(60, 200, 3).astype(np.float32)
    gradient = np.linspace(-25, 25, height, dtype=np.float32)[:, None, None]
    noise = rng.normal(0, 8, (height, width, 3)).astype(np.float32)
    image = Image.fromarray(np.clip(base + gradient + noise, 0, 255).astype(np.uint8))
    mask = Image.new("L", (width, height), 0)
    draw, draw_mask = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(len(CLASS_NAMES)))
        colour_name, shape = CLASS_NAMES[k].split(" ")
        r = float(rng.uniform(3, min(height, width) / 4))
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        colour = tuple(
            int(v) for v in np.clip(np.array(COLOURS[colour_name]) + rng.normal(0, 12, 3), 0, 255)
        )
        draw_shape(draw, shape, cx, cy, r, colour)
        draw_shape(draw_mask, shape, cx, cy, r, k + 1)
    return image, mask


def generate(
    root: str | os.PathLike[str],
    *,
    num_train: int = 400,
    num_val: int = 100,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
) -> Path:
    """Write the dataset: ``JPEGImages/*.png``, ``SegmentationClassAug/*.png``,
    ``ImageSets/Segmentation/{train,trainaug,val}.txt`` and ``classes.txt``. Returns the root."""
    out = Path(root)
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for split, count in (("train", num_train), ("val", num_val)):
        for i in range(count):
            image_id = f"{split}_{i:05d}"
            image, mask = make_sample(rng, size)
            image.save(out / "JPEGImages" / f"{image_id}.png")
            mask.save(out / "SegmentationClassAug" / f"{image_id}.png")
            splits[split].append(image_id)
    lists = out / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("\n".join(splits["train"]) + "\n")
    (lists / "trainaug.txt").write_text("\n".join(splits["train"]) + "\n")
    (lists / "val.txt").write_text("\n".join(splits["val"]) + "\n")
    (out / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic VOC-layout dataset.")
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, num_train=args.train, num_val=args.val, seed=args.seed)


if __name__ == "__main__":
    main()
