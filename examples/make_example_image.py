"""Draw the bundled example image, examples/images/park.png (made by the project, no licence
questions). Run: python examples/make_example_image.py"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def draw_park(width: int = 480, height: int = 320, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    sky = np.linspace([110, 170, 235], [200, 225, 250], height // 2)[:, None, :]
    grass = np.linspace([80, 160, 60], [40, 110, 30], height - height // 2)[:, None, :]
    array = np.concatenate([sky, grass]).repeat(width, axis=1)
    array += rng.normal(0, 4, array.shape)
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse([380, 30, 440, 90], fill=(250, 220, 60))  # sun
    draw.rectangle([60, 110, 80, 200], fill=(100, 70, 40))  # tree trunk
    draw.ellipse([20, 50, 120, 140], fill=(30, 120, 40))  # tree crown
    draw.rectangle([220, 190, 340, 230], fill=(200, 30, 30))  # car body
    draw.rectangle([245, 165, 315, 192], fill=(180, 25, 25))  # car roof
    for x in (245, 315):  # wheels
        draw.ellipse([x - 14, 218, x + 14, 246], fill=(20, 20, 20))
    draw.ellipse([150, 235, 172, 257], fill=(240, 240, 240))  # a small ball
    return image.filter(ImageFilter.GaussianBlur(0.6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", default=Path(__file__).parent / "images" / "park.png")
    args = parser.parse_args()
    draw_park().save(args.out, optimize=True)


if __name__ == "__main__":
    main()
