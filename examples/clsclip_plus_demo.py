"""ClsCLIP+ on the bundled image with given boxes: writes an overlay that shows the boxes.

Run after examples/make_demo_model.py:
    python examples/clsclip_plus_demo.py examples/demo-model outputs/clsclip_plus_demo.png

The demo model has random weights, so the masks are meaningless; the picture shows the
mechanics: the boxes used per class, drawn in the class colour over the fused masks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clsclip import Segmenter

IMAGE = Path(__file__).parent / "images" / "park.png"
BOXES = {
    "ball": [[150, 235, 172, 257]],
    "sun": [[380, 30, 440, 90]],
    "red car": [[220, 165, 340, 246]],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model folder or Hub repo id")
    parser.add_argument("out", help="PNG file to write")
    args = parser.parse_args()
    seg = Segmenter.from_pretrained(args.model, device="cpu")
    result = seg.segment(IMAGE, ["ball", "sun", "red car", "grass"], proposals=BOXES)
    result.overlay().save(args.out)


if __name__ == "__main__":
    main()
