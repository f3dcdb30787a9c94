"""ClsCLIP+ on the bundled image: the demo model misses the two small objects at full-image
resolution; boxes around them make it zoom in. Writes the plain and the zoomed overlays side by
side (left: ClsCLIP, right: ClsCLIP+ with the boxes drawn).

    python examples/clsclip_plus_demo.py examples/demo-model docs/images/clsclip-plus-demo.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from clsclip import Segmenter

IMAGE = Path(__file__).parent / "images" / "shapes.png"
CLASSES = ["red disc", "yellow ring", "blue triangle"]
# Boxes around the small red disc and the small yellow ring (x0, y0, x1, y1 in pixels).
BOXES = {"red disc": [[406, 236, 434, 264]], "yellow ring": [[27, 257, 53, 283]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model folder or Hub repo id")
    parser.add_argument("out", help="PNG file to write")
    args = parser.parse_args()
    seg = Segmenter.from_pretrained(args.model, device="cpu")
    plain = seg.segment(IMAGE, CLASSES).overlay()
    zoomed = seg.segment(IMAGE, CLASSES, proposals=BOXES).overlay()
    figure = Image.new("RGB", (plain.width * 2 + 8, plain.height), (255, 255, 255))
    figure.paste(plain, (0, 0))
    figure.paste(zoomed, (plain.width + 8, 0))
    figure.save(args.out)


if __name__ == "__main__":
    main()
