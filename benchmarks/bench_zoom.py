"""Time ClsCLIP+ (ViT-B/16, random weights) with 0 to N matching boxes for one class.

Cost model: one full-image pass for every class, plus one pass per matching (crop, class).

    python benchmarks/bench_zoom.py --device cpu --boxes 0 1 2 4 --repeats 3
    python benchmarks/bench_zoom.py --device cuda --boxes 0 1 2 4 8 16 --repeats 10

Prints a table (medians over --repeats) and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from clsclip import ClsClipConfig, Segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--boxes", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = ClsClipConfig(backbone="ViT-B-16-quickgelu", pretrained=None, image_size=args.size)
    seg = Segmenter.from_config(config, device=args.device)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    rows = []
    print(" boxes  passes   time ms  per pass ms")
    for n in args.boxes:
        boxes = {"dog": [[40 * i, 30 * i, 40 * i + 60, 30 * i + 50] for i in range(n)]}
        seg.segment(image, ["dog"], proposals=boxes)  # warm-up
        times = []
        for _ in range(args.repeats):
            if seg.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            seg.segment(image, ["dog"], proposals=boxes)
            if seg.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append({"boxes": n, "passes": 1 + n, "time_s": median})
        print(f"{n:6d} {1 + n:7d} {median * 1e3:9.1f} {median * 1e3 / (1 + n):12.1f}", flush=True)
    if args.json:
        device = (
            torch.cuda.get_device_name(seg.device)
            if seg.device.type == "cuda"
            else platform.processor()
        )
        with open(args.json, "w") as f:
            json.dump({"device": device, "size": args.size, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
