"""Reduced precision against fp32: speed and agreement (ClsCLIP, ViT-B/16, random weights).

Agreement is the mean absolute probability difference and the mask IoU with each fp32 map
thresholded at its own median (so the masks are half the image, whatever the random weights
give), averaged over classes.

    python benchmarks/bench_precision.py --device cpu --precisions fp32 int8
    python benchmarks/bench_precision.py --device cuda --precisions fp32 bf16 fp16 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

import numpy as np
import torch

from clsclip import ClsClipConfig, Segmenter
from clsclip.model import build_model


def _time(
    seg: Segmenter, image: np.ndarray, names: list[str], repeats: int
) -> tuple[float, np.ndarray]:
    probs = seg.segment(image, names).probs
    times = []
    for _ in range(repeats):
        if seg.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        seg.segment(image, names)
        if seg.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), probs


def _median_iou(reference: np.ndarray, probs: np.ndarray) -> float:
    ious = []
    for ref, other in zip(reference, probs, strict=True):
        cut = np.median(ref)
        a, b = ref > cut, other > cut
        ious.append((a & b).sum() / max(1, (a | b).sum()))
    return float(np.mean(ious))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    config = ClsClipConfig(backbone="ViT-B-16-quickgelu", pretrained=None)
    torch.manual_seed(0)
    state = build_model(config).state_dict()
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    names = [f"object {i}" for i in range(args.classes)]
    rows, reference, base = [], None, None
    print(" precision   time ms  speed-up  mean |dp|  median-mask IoU")
    for precision in args.precisions:
        model = build_model(config)
        model.load_state_dict(state)
        seg = Segmenter(model, config, device=args.device, precision=precision)
        seconds, probs = _time(seg, image, names, args.repeats)
        if reference is None:
            reference, base = probs, seconds
        row = {
            "precision": precision,
            "time_s": seconds,
            "speedup": base / seconds,
            "mean_abs_prob_diff": float(np.abs(probs - reference).mean()),
            "median_mask_iou": _median_iou(reference, probs),
        }
        rows.append(row)
        print(
            f"{precision:>10} {seconds * 1e3:9.1f} {row['speedup']:9.2f} "
            f"{row['mean_abs_prob_diff']:10.2e} {row['median_mask_iou']:16.4f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "classes": args.classes, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
