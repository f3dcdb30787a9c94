"""Time the text tower: class vectors for K names under T prompt templates.

ClsCLIP on ViT-B/16 (random weights; the cost does not depend on them), `encode_class_names`
for the 80 COCO class names with 1 template ("a photo of a {}.") and 7 (CLIP's short ensemble).
Run it on two checkouts to compare (PYTHONPATH=/path/to/other/checkout).

    python benchmarks/bench_text.py --repeats 5 --json docs/results/bench_text_cpu.json

Prints a table (medians) and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time

import torch

from clsclip import ClsClipConfig
from clsclip.datasets.folds import COCO_CLASSES
from clsclip.model import build_model

TEMPLATES = {
    1: ("a photo of a {}.",),
    7: (
        "a photo of a {}.",
        "a bad photo of a {}.",
        "a photo of the large {}.",
        "a photo of the small {}.",
        "itap of a {}.",
        "a good photo of a {}.",
        "art of the {}.",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[20, 80])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rows = []
    print(" templates  classes  prompts   ms  ms/prompt")
    for count, templates in TEMPLATES.items():
        torch.manual_seed(0)
        config = ClsClipConfig(
            backbone="ViT-B-16-quickgelu", pretrained=None, prompt_templates=templates
        )
        model = build_model(config).eval()
        for k in args.classes:
            names = list(COCO_CLASSES[:k])
            with torch.inference_mode():
                model.encode_class_names(names)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    model.encode_class_names(names)
                    times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            prompts = k * count
            rows.append({"templates": count, "classes": k, "seconds": seconds})
            ms = seconds * 1e3
            print(f"{count:10d} {k:8d} {prompts:8d} {ms:5.0f} {ms / prompts:9.2f}")
    if args.json:
        with open(args.json, "w") as f:
            info = {"device": platform.processor(), "threads": torch.get_num_threads()}
            json.dump({**info, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
