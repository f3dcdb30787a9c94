"""What the bundled demo model tells apart: per-class IoU of its label maps on the validation
images of the synthetic dataset it was trained on (the same draw: ``generate(seed=0)``), all 20
classes queried at once, and which class each class's pixels were given when missed.

    python examples/demo_model_report.py [--model examples/demo-model]

Prints a Markdown table (as in examples/demo-model/README.md). Runs offline, on the CPU.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from clsclip import Segmenter
from clsclip.datasets.folds import novel_classes
from clsclip.datasets.synthetic import CLASS_NAMES, generate
from clsclip.evaluation.metrics import DatasetIoU

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=HERE / "demo-model")
    args = parser.parse_args()
    seg = Segmenter.from_pretrained(args.model, device="cpu")
    names = list(CLASS_NAMES)
    count = len(names) + 1  # 0: background
    metric = DatasetIoU(count)
    confusion = np.zeros((count, count), np.int64)
    with tempfile.TemporaryDirectory() as folder:
        root = generate(Path(folder) / "synthetic", num_train=400, num_val=100, seed=0)
        ids = (root / "ImageSets/Segmentation/val.txt").read_text().split()
        for image_id in ids:
            image = Image.open(root / "JPEGImages" / f"{image_id}.png").convert("RGB")
            label = np.asarray(Image.open(root / "SegmentationClassAug" / f"{image_id}.png"))
            predicted = seg.segment(image, names).label_map
            metric.update(predicted, label)
            valid = label != 255
            np.add.at(confusion, (label[valid], predicted[valid]), 1)
    novel = set(novel_classes("pascal5i", 0, len(names)))  # held out of training (1-based)
    iou = metric.class_iou()
    print("| class | seen in training | IoU | most often given instead |")
    print("|---|---|---|---|")
    for k, name in enumerate(names, start=1):
        row = confusion[k].copy()
        row[k] = 0
        other = int(row.argmax())
        share = row[other] / max(1, confusion[k].sum())
        instead = "background" if other == 0 else names[other - 1]
        print(f"| {name} | {'no (novel)' if k in novel else 'yes'} | {iou[k]:.3f} | "
              f"{instead} ({share:.0%}) |")  # fmt: skip
    print(f"\nmIoU over the 20 classes: {np.nanmean(iou[1:]):.3f} ({len(ids)} images)")


if __name__ == "__main__":
    main()
