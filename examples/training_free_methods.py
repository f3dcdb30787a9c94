"""The training-free methods side by side: ClearCLIP, NACLIP, NACLIP with PAMR and SC-CLIP on
one image, each as its reference runs it, their overlays in a row.

With real CLIP weights (open_clip downloads them once, or give a checkpoint file):

    python examples/training_free_methods.py photo.jpg dog cat sofa --out methods.png \
        --backbone ViT-B-16-quickgelu --pretrained openai

Without weights (``--pretrained none``) the backbone is random and so are the masks: that run
only shows the tooling (docs/images/training-free-methods.png is such a run, on the bundled
synthetic image; no CLIP weights can be downloaded where the docs are built).
"""

from __future__ import annotations

import argparse
import json

import torch
from PIL import Image, ImageDraw

from clsclip import Segmenter
from clsclip.config import DenseClipConfig

METHODS = {
    "ClearCLIP": {"method": "clearclip"},
    "NACLIP": {"method": "naclip", "refine": "none"},
    "NACLIP + PAMR": {"method": "naclip", "refine": "pamr"},
    "SC-CLIP": {"method": "scclip"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("classes", nargs="+")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--backbone",
        default="ViT-B-16-quickgelu",
        help="an open_clip model name, or an open_clip model config as JSON",
    )
    parser.add_argument("--pretrained", default="openai", help="a tag, a file, or none")
    parser.add_argument("--width", type=int, default=320, help="width of each panel")
    args = parser.parse_args()
    pretrained = None if args.pretrained == "none" else args.pretrained
    backbone = json.loads(args.backbone) if args.backbone.startswith("{") else args.backbone
    panels = []
    for title, fields in METHODS.items():
        torch.manual_seed(0)  # the same random backbone for every method without weights
        config = DenseClipConfig(backbone=backbone, pretrained=pretrained, **fields)  # type: ignore[arg-type]
        result = Segmenter.from_config(config, device="cpu").segment(args.image, args.classes)
        overlay = result.overlay()
        height = round(overlay.height * args.width / overlay.width)
        panel = Image.new("RGB", (args.width, height + 24), (255, 255, 255))
        panel.paste(overlay.resize((args.width, height)), (0, 24))
        ImageDraw.Draw(panel).text((6, 6), title, fill=(0, 0, 0))
        panels.append(panel)
    figure = Image.new("RGB", (sum(p.width for p in panels) + 6 * (len(panels) - 1),
                               max(p.height for p in panels)), (255, 255, 255))  # fmt: skip
    x = 0
    for panel in panels:
        figure.paste(panel, (x, 0))
        x += panel.width + 6
    figure.save(args.out)


if __name__ == "__main__":
    main()
