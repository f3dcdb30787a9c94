"""Reduced precision against fp32: speed and agreement, ViT-B/16 with random weights.

ClsCLIP at 352 px with several class counts, and CLIPSeg with 20 prompts, through
`Segmenter.segment` (decode, network, post-processing) on one 640 x 480 image: fp32, bf16
(converted weights; on CPUs with AMX or AVX-512 BF16), int8 (dynamic quantisation), and
onnxruntime fp32 / int8 graphs. Agreement is the mean absolute probability difference against
fp32 and the mask IoU with each fp32 map thresholded at its own median (so the masks are half
the image whatever the random weights give), averaged over classes.

    python benchmarks/bench_precision.py --json docs/results/bench_precision_cpu.json
    python benchmarks/bench_precision.py --device cuda --precisions fp32 bf16 fp16 --no-onnx

Prints the CPU model and its capabilities first: these machines differ from session to session.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clsclip import ClipSegConfig, ClsClipConfig, Segmenter
from clsclip.backends.precision import cpu_bf16_feature
from clsclip.config import AnyConfig
from clsclip.model import build_model


def cpu_description() -> dict[str, Any]:
    """The CPU's model name, torch's kernel capability and its bf16 / int8 matrix flags."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine()):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f")
    return {
        "model": name,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "flags": sorted(f for f in wanted if f in flags),
        "native_bf16": cpu_bf16_feature(),
        "threads": torch.get_num_threads(),
    }


def _time(seg: Segmenter, image: np.ndarray, names: list[str], repeats: int) -> tuple[float, Any]:
    probs = seg.segment(image, names).probs  # warm-up, and the class vectors cached
    times = []
    for _ in range(repeats):
        if seg.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        _ = seg.segment(image, names).label_map
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


def _segmenters(
    config: AnyConfig, state: dict[str, torch.Tensor], args: argparse.Namespace, tmp: Path
) -> list[tuple[str, Segmenter]]:
    out = []
    for precision in args.precisions:
        model = build_model(config)
        model.load_state_dict(state)
        try:
            out.append(
                (precision, Segmenter(model, config, device=args.device, precision=precision))
            )
        except ValueError as e:
            print(f"  {precision}: skipped ({e})")
    if not args.no_onnx:
        model = build_model(config)
        model.load_state_dict(state)
        fp32 = Segmenter(model, config, device="cpu")
        for int8 in (False, True):
            folder = fp32.export_onnx(tmp / f"{config.MODEL_TYPE}-{int8}", int8=int8)
            name = "onnxruntime int8" if int8 else "onnxruntime fp32"
            out.append((name, Segmenter.from_pretrained(folder, backend="onnxruntime")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--classes", type=int, nargs="+", default=[1, 5, 20, 80])
    parser.add_argument("--clipseg-prompts", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    cpu = cpu_description()
    print(f"CPU: {cpu['model']}; torch {torch.__version__} kernels {cpu['capability']}; "
          f"flags {cpu['flags']}; native bf16: {cpu['native_bf16']}; "
          f"threads {cpu['threads']}")  # fmt: skip
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    models = [
        ("clsclip", ClsClipConfig(backbone="ViT-B-16-quickgelu", pretrained=None), args.classes),
        ("clipseg", ClipSegConfig(backbone="ViT-B-16-quickgelu", pretrained=None),
         [args.clipseg_prompts]),
    ]  # fmt: skip
    rows = []
    print(f"{'model':<8} {'K':>3} {'path':<17} {'s / image':>9} {'speed-up':>8} "
          f"{'mean |dp|':>10} {'mask IoU':>9}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, config, counts in models:
            torch.manual_seed(0)
            state = build_model(config).state_dict()
            segmenters = _segmenters(config, state, args, Path(tmp))
            for k in counts:
                names = [f"object {i}" for i in range(k)]
                reference, base = None, None
                for path, seg in segmenters:
                    seconds, probs = _time(seg, image, names, args.repeats)
                    if reference is None:
                        reference, base = probs, seconds
                    row = {
                        "model": name, "classes": k, "path": path, "seconds": seconds,
                        "speedup": base / seconds,
                        "mean_abs_prob_diff": float(np.abs(probs - reference).mean()),
                        "median_mask_iou": _median_iou(reference, probs),
                    }  # fmt: skip
                    rows.append(row)
                    print(f"{name:<8} {k:>3} {path:<17} {seconds:>9.3f} "
                          f"{row['speedup']:>8.2f} {row['mean_abs_prob_diff']:>10.2e} "
                          f"{row['median_mask_iou']:>9.4f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "cpu": cpu, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
