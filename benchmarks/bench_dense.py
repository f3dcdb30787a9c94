"""Time the training-free dense head (ClearCLIP / NACLIP) against ClsCLIP on the same backbone.

One 640 x 480 image through `Segmenter.segment` (decode, network, label map), class vectors
already cached (the text tower is timed apart), for several class counts; and one 12-megapixel
image with sliding windows. ViT-B/16 with random weights: the cost is the same as with
downloaded ones.

    python benchmarks/bench_dense.py --classes 1 20 80 150 --clsclip-classes 1 20
    python benchmarks/bench_dense.py --device cuda --json docs/results/bench_dense_h100.json

Prints a table (medians over --repeats) and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

from clsclip import ClsClipConfig, Segmenter
from clsclip.config import DenseClipConfig

BACKBONE = "ViT-B-16-quickgelu"


def _median(fn: Any, repeats: int) -> float:
    fn()  # warm-up (and fills the class-vector cache)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _per_image(seg: Segmenter, image: np.ndarray, classes: int, repeats: int) -> float:
    names = [f"class {i}" for i in range(classes)]
    return _median(lambda: seg.segment(image, names).label_map, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", type=int, nargs="+", default=[1, 20, 80, 150])
    parser.add_argument("--clsclip-classes", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--method", default="clearclip", choices=("clearclip", "naclip"))
    parser.add_argument("--size", type=int, default=448, help="model input (long side)")
    parser.add_argument("--large-size", type=int, default=896, help="input for the 12 MP image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    dense = Segmenter.from_config(
        DenseClipConfig(backbone=BACKBONE, pretrained=None, image_size=args.size,
                        method=args.method), device=device)  # fmt: skip
    clsclip = Segmenter.from_config(
        ClsClipConfig(backbone=BACKBONE, pretrained=None, image_size=args.size), device=device
    )
    image = _image(480, 640)
    rows = []
    for k in args.classes:
        rows.append({"model": f"dense-{args.method}", "classes": k,
                     "seconds": _per_image(dense, image, k, args.repeats)})  # fmt: skip
    for k in args.clsclip_classes:
        rows.append({"model": "clsclip", "classes": k,
                     "seconds": _per_image(clsclip, image, k, args.repeats)})  # fmt: skip
    names = [f"class {i}" for i in range(20)]
    start = time.perf_counter()
    dense.encode_classes([f"fresh {n}" for n in names])
    text_seconds = time.perf_counter() - start
    large = Segmenter.from_config(
        DenseClipConfig(backbone=BACKBONE, pretrained=None, image_size=args.large_size,
                        method=args.method), device=device)  # fmt: skip
    big = _image(3000, 4000)
    windows = len(range(0, args.large_size - large.config.window + 1, large.config.stride))
    large_seconds = _median(lambda: large.segment(big, names).label_map, max(1, args.repeats - 2))
    one = next(r["seconds"] for r in rows if r["model"].startswith("dense") and r["classes"] == 1)
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"capability {capability}, threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'model':<18} {'classes':>7} {'s / image':>10} {'vs 1 class':>10}")
    for row in rows:
        ratio = row["seconds"] / one if row["model"].startswith("dense") else float("nan")
        print(f"{row['model']:<18} {row['classes']:>7} {row['seconds']:>10.3f} {ratio:>10.2f}")
    print(
        f"text tower, 20 new names x {len(dense.config.prompt_templates)} template(s): "
        f"{text_seconds:.3f} s"
    )
    print(
        f"12 MP (4000 x 3000) at {args.large_size} px, {windows}x{windows} windows of "
        f"{large.config.window} px, 20 classes: {large_seconds:.2f} s"
    )
    if args.json:
        payload = {
            "device": str(device),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "rows": rows,
            "text_seconds_20_names": text_seconds,
            "large": {"size": args.large_size, "windows_per_side": windows,
                      "window": large.config.window, "seconds": large_seconds},
        }  # fmt: skip
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)


if __name__ == "__main__":
    main()
