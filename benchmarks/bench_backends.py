"""CPU time per image of torch and onnxruntime backends, fp32 and int8, with their agreement.

Models (random weights; the cost does not depend on them): ClsCLIP ViT-B/16 at 352 px, and
CLIPSeg on ViT-B/16 (the published checkpoints' architecture) and a smaller CLIPSeg (width 512,
6 blocks, reduce dim 48). For 1, 5 and 20 classes: `segment` of a 640 x 480 image (median of
--repeats after a warm-up), speed-up against torch fp32, and agreement with torch fp32 (largest
logit difference and mean absolute probability difference). In the same run: the machine's
fp32 matrix-product rate, and the time of export + load + first segment for each model.

    python benchmarks/bench_backends.py --json docs/results/bench_backends_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from clsclip import ClipSegConfig, ClsClipConfig, Segmenter

SMALL = {
    "embed_dim": 512,
    "vision_cfg": {
        "image_size": 224,
        "patch_size": 16,
        "width": 512,
        "layers": 6,
        "head_width": 64,
    },
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 6},
}


def _configs() -> dict[str, object]:
    return {
        "clsclip-vit-b16": ClsClipConfig(
            backbone="ViT-B-16-quickgelu", pretrained=None, image_size=352
        ),
        "clipseg-vit-b16": ClipSegConfig(backbone="ViT-B-16-quickgelu", pretrained=None),
        "clipseg-small": ClipSegConfig(
            backbone=SMALL, pretrained=None, extract_layers=(1, 3, 5), reduce_dim=48
        ),
    }


def _median_time(seg: Segmenter, image: np.ndarray, names: list[str], repeats: int) -> float:
    seg.segment(image, names)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        seg.segment(image, names)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _matmul_rate() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(_configs()))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rate = _matmul_rate()
    print(f"fp32 matmul rate: {rate:.0f} GFLOP/s, {torch.get_num_threads()} threads")
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    work = Path(tempfile.mkdtemp(prefix="clsclip-bench-backends-"))
    rows = []
    print("model            classes  backend      ms/image  speed-up  max |dlogit|  mean |dprob|")
    for name in args.models:
        torch.manual_seed(0)
        reference = Segmenter.from_config(_configs()[name], device="cpu")
        folder = work / name
        start = time.perf_counter()
        reference.save_pretrained(folder)
        reference.export_onnx(folder / "onnx")
        reference.export_onnx(folder / "onnx-int8", int8=True)
        loaded = Segmenter.from_pretrained(folder / "onnx", backend="onnxruntime")
        loaded.segment(image, ["dog"])
        round_trip = time.perf_counter() - start
        print(f"{name}: save + export (fp32 and int8) + load + segment {round_trip:.1f} s")
        backends = {
            "torch fp32": reference,
            "torch int8": Segmenter.from_pretrained(folder, device="cpu", precision="int8"),
            "ort fp32": loaded,
            "ort int8": Segmenter.from_pretrained(folder / "onnx-int8", backend="onnxruntime"),
        }
        for k in args.classes:
            names = [f"class {i}" for i in range(k)]
            base = reference.segment(image, names)
            base_ms = None
            for backend, seg in backends.items():
                seconds = _median_time(seg, image, names, args.repeats)
                result = seg.segment(image, names)
                dlogit = float((result.low_res_logits - base.low_res_logits).abs().max())
                dprob = float(np.abs(result.probs - base.probs).mean())
                base_ms = base_ms or seconds * 1e3
                row = {
                    "model": name,
                    "classes": k,
                    "backend": backend,
                    "ms": seconds * 1e3,
                    "speedup": base_ms / (seconds * 1e3),
                    "max_abs_logit_diff": dlogit,
                    "mean_abs_prob_diff": dprob,
                    "round_trip_s": round_trip,
                }
                rows.append(row)
                print(
                    f"{name:16s} {k:7d}  {backend:11s} {row['ms']:9.0f} {row['speedup']:9.2f} "
                    f"{dlogit:13.2e} {dprob:13.2e}",
                    flush=True,
                )
    if args.json:
        payload = {"matmul_gflops": rate, "threads": torch.get_num_threads(), "rows": rows}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
