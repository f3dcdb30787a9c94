"""Draw the bundled example image, examples/images/shapes.png: coloured shapes of the demo
model's classes at several sizes on a plain background (made by the project).

Run: python examples/make_example_image.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from clsclip.datasets.synthetic import COLOURS, draw_shape

# (class name, centre x, centre y, radius): large, medium and small objects.
SCENE = [
    ("red disc", 70, 80, 45),
    ("blue triangle", 230, 90, 50),
    ("yellow ring", 390, 110, 40),
    ("green cross", 140, 230, 38),
    ("blue square", 300, 240, 30),
    ("red disc", 420, 250, 9),
    ("yellow ring", 40, 270, 8),
]


def draw_scene(width: int = 480, height: int = 320, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    gradient = np.linspace(-20, 20, height)[:, None, None]
    background = np.array([150.0, 140.0, 120.0]) + gradient + rng.normal(0, 6, (height, width, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for name, cx, cy, r in SCENE:
        colour, shape = name.split(" ")
        draw_shape(draw, shape, cx, cy, r, COLOURS[colour])
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=Path(__file__).parent / "images" / "shapes.png")
    args = parser.parse_args()
    draw_scene().save(args.out, optimize=True)


if __name__ == "__main__":
    main()
