"""Train the bundled demo model, examples/demo-model/, on synthetic shapes (CPU, ~15 minutes).

A tiny CLIP (ViT width 128, 6 blocks, 8 px patches; text width 32), trained end to end
(`unfreeze="all"`) with ClsCLIP's navigation and decoder on fold 0 of a synthetic dataset of 20
"colour shape" classes (`clsclip.datasets.synthetic`). It is a demonstration of the pipeline,
not a real-world model: it knows red, green, blue and yellow discs, squares, triangles, rings
and crosses, on plain backgrounds. Weights are stored in float16 (loaded as float32).

    python examples/train_demo_model.py examples/demo-model
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from clsclip import Segmenter
from clsclip.datasets.synthetic import generate
from clsclip.evaluation import evaluate
from clsclip.training import TrainConfig, train

BACKBONE = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 6, "head_width": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        data = generate(Path(tmp) / "synthetic", num_train=400, num_val=100, seed=0)
        config = TrainConfig(
            model={"backbone": BACKBONE, "pretrained": None, "image_size": 128,
                   "decoder_channels": [64, 32, 16]},
            dataset="pascal5i", data_root=str(data), fold=0, train_split="train",
            val_split="val", output_dir=str(Path(tmp) / "run"), max_steps=args.steps,
            batch_size=16, num_workers=2, optimizer="adamw", lr=1e-3, weight_decay=1e-4,
            warmup_steps=50, val_every=0, checkpoint_every=500, log_every=100,
            device=args.device, unfreeze="all", seed=0,
            novel_pixels="ignore",  # the setting the bundled demo model was trained with
        )  # fmt: skip
        trained = train(config)
        seg = Segmenter.from_pretrained(trained, device=args.device)
        for classes in ("base", "novel"):
            scores = evaluate(seg, data_root=data, dataset="pascal5i", fold=0, episodes=200,
                              protocol="all-pairs", classes=classes, progress=False)  # fmt: skip
            logging.info(
                "%s classes: mIoU %.3f, FB-IoU %.3f", classes, scores["miou"], scores["fb_iou"]
            )
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(trained / "config.json", args.out / "config.json")
        tensors = load_file(trained / "model.safetensors")
        half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(
            half,
            args.out / "model.safetensors",
            metadata={"format": "pt", "clsclip_contents": "full"},
        )


if __name__ == "__main__":
    main()
