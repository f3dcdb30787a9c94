"""Create the small model that the README's demo command segments with, fully offline.

It is a tiny open_clip ViT with random weights: it shows the whole pipeline (loading, shared
blocks, navigation, decoding, mapping back, outputs) but its masks mean nothing. Real weights
come from training (clsclip.training) or from a published model folder / Hub repo.

Run: python examples/make_demo_model.py examples/demo-model
"""

from __future__ import annotations

import argparse
import logging

import torch

from clsclip import ClsClipConfig, Segmenter

DEMO_BACKBONE = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": 224,
        "patch_size": 16,
        "width": 192,
        "layers": 6,
        "head_width": 64,
    },
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write config.json and model.safetensors into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)
    config = ClsClipConfig(
        backbone=DEMO_BACKBONE,
        pretrained=None,
        image_size=320,
        injection_layers=(2, 3, 4),
        decoder_channels=(64, 32, 16),
    )
    Segmenter.from_config(config, device="cpu").save_pretrained(args.out)


if __name__ == "__main__":
    main()
