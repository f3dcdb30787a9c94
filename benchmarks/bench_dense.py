"""Time the training-free methods at their references' settings on one 500 x 375 image.

ClearCLIP (short side 448, 448 px windows every 224), NACLIP (short side 336, 224 px windows
every 112), NACLIP with PAMR (10 iterations, dilations 8 and 16), SC-CLIP (NACLIP's windows,
LOF and the calibrated last block per window), on ViT-B/16 with random
weights (the cost is the same as with downloaded ones), for 21 and 150 classes, class vectors
cached (80 templates: the text tower is timed apart). Backends: torch fp32, torch bf16 where the
CPU has native bf16, onnxruntime (fp32). The share of the time spent in PAMR is measured by
timing the same model with and without it.

    python benchmarks/bench_dense.py
    python benchmarks/bench_dense.py --device cuda --json docs/results/bench_dense_gpu.json

Prints a table (medians over --repeats) and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch

from clsclip import Segmenter
from clsclip.backends.precision import cpu_bf16_feature
from clsclip.config import DenseClipConfig

BACKBONE = "ViT-B-16-quickgelu"
METHODS = {
    "clearclip": {"method": "clearclip"},
    "naclip": {"method": "naclip", "refine": "none"},
    "naclip+pamr": {"method": "naclip", "refine": "pamr"},
    "scclip": {"method": "scclip"},
}


def _median(fn: Any, repeats: int) -> float:
    fn()  # warm-up (and fills the class-vector cache)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", type=int, nargs="+", default=[21, 150])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    image = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    precisions = ["fp32"]
    if device.type == "cpu" and cpu_bf16_feature() is not None:
        precisions.append("bf16")
    rows = []
    for label, fields in METHODS.items():
        if label not in args.methods:
            continue
        torch.manual_seed(0)
        config = DenseClipConfig(backbone=BACKBONE, pretrained=None, **fields)  # type: ignore[arg-type]
        backends: list[tuple[str, Segmenter]] = []
        for precision in precisions:
            backends.append((f"torch {precision}", Segmenter.from_config(
                config, device=device, precision=precision)))  # fmt: skip
        if not args.no_onnx and device.type == "cpu":
            folder = tempfile.mkdtemp(prefix="bench-dense-onnx-")
            backends[0][1].export_onnx(folder)
            backends.append(
                ("onnxruntime", Segmenter.from_pretrained(folder, backend="onnxruntime"))
            )
        for backend, seg in backends:
            for k in args.classes:
                names = [f"class {i}" for i in range(k)]
                seconds = _median(lambda s=seg, n=names: s.segment(image, n).label_map,
                                  args.repeats)  # fmt: skip
                row = {"method": label, "backend": backend, "classes": k, "seconds": seconds}
                if label == "naclip+pamr":
                    plain = dataclasses.replace(seg.config, refine="none")
                    other = seg._with_config(plain)
                    base = _median(lambda s=other, n=names: s.segment(image, n).label_map,
                                   args.repeats)  # fmt: skip
                    row["pamr_share"] = max(0.0, 1.0 - base / seconds)
                rows.append(row)
                print(row, flush=True)
    seg = Segmenter.from_config(DenseClipConfig(backbone=BACKBONE, pretrained=None),
                                device=device)  # fmt: skip
    start = time.perf_counter()
    seg.encode_classes([f"fresh class {i}" for i in range(21)])
    text_seconds = time.perf_counter() - start
    print(f"\nCPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'method':<13} {'backend':<12} {'classes':>7} {'s / image':>10} {'PAMR share':>10}")
    for row in rows:
        share = f"{row['pamr_share']:.0%}" if "pamr_share" in row else "-"
        print(f"{row['method']:<13} {row['backend']:<12} {row['classes']:>7} "
              f"{row['seconds']:>10.2f} {share:>10}")  # fmt: skip
    print(f"text tower, 21 new names x 80 templates: {text_seconds:.2f} s (once; cached)")
    if args.json:
        payload = {
            "device": str(device),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "image": [375, 500],
            "rows": rows,
            "text_seconds_21_names_80_templates": text_seconds,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)


if __name__ == "__main__":
    main()
