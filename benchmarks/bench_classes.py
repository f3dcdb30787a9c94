"""Time ClsCLIP (ViT-B/16, random weights) against the number of classes per image.

Compares clsclip's shared pass (blocks before the first injection layer once per image, the rest
per class in chunks) with segmenting each class alone, and reports CUDA peak memory.

    python benchmarks/bench_classes.py --device cpu --sizes 352 --classes 1 5 20
    python benchmarks/bench_classes.py --device cuda --sizes 352 480 --classes 1 5 20 80

Prints a table (medians over --repeats) and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from clsclip import ClsClipConfig
from clsclip.model import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    num_classes: int,
    chunk_size: int,
    device: torch.device,
    repeats: int,
) -> dict:
    with torch.inference_mode():
        text = model.encode_class_names([f"class {i}" for i in range(num_classes)])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        shared = _median_time(
            lambda: model.predict_logits(pixels, text, chunk_size=chunk_size), device, repeats
        )
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        alone = _median_time(
            lambda: [model(pixels, text[i : i + 1]) for i in range(num_classes)], device, repeats
        )
    # Count FLOPs in train mode with the math attention backend: PyTorch's fused attention
    # kernels (the inference fast path, flash attention on the CPU) are invisible to the counter
    # (no dropout anywhere, so the arithmetic is the same).
    model.train()
    with (
        torch.no_grad(),
        sdpa_kernel(SDPBackend.MATH),
        FlopCounterMode(display=False) as counter,
    ):
        model.predict_logits(pixels, text, chunk_size=chunk_size)
    model.eval()
    return {
        "gflop": counter.get_total_flops() / 1e9,
        "size": pixels.shape[-1],
        "classes": num_classes,
        "shared_s": shared,
        "alone_s": alone,
        "ratio": shared / alone,
        "peak_mib": peak,
    }


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """The machine's fp32 matrix-product rate, measured now (the ceiling for the ViT)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    seconds = _median_time(lambda: a @ b, device, repeats)
    return 2 * n**3 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[352])
    parser.add_argument("--classes", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = ClsClipConfig(backbone="ViT-B-16-quickgelu", pretrained=None)
    model = build_model(config).to(device).eval()
    depth, first = model.backbone.depth, model.first_class_block
    peak = matmul_gflops(device)
    print(f"fp32 matmul rate: {peak:.0f} GFLOP/s")
    print(" size    K  shared ms   alone ms  ratio  ideal  peak MiB   GFLOP  GFLOP/s  of matmul")
    rows = []
    for size in args.sizes:
        pixels = torch.randn(1, 3, size, size, device=device)
        for k in args.classes:
            row = _measure(model, pixels, k, args.chunk_size, device, args.repeats)
            row["blocks_ratio"] = (first + (depth - first) * k) / (depth * k)
            row["gflops_per_s"] = row["gflop"] / row["shared_s"]
            row["fraction_of_matmul"] = row["gflops_per_s"] / peak
            rows.append(row)
            peak_mib = f"{row['peak_mib']:9.0f}" if row["peak_mib"] is not None else "        -"
            print(
                f"{size:5d} {k:4d} {row['shared_s'] * 1e3:10.1f} {row['alone_s'] * 1e3:10.1f} "
                f"{row['ratio']:6.3f} {row['blocks_ratio']:6.3f} {peak_mib} "
                f"{row['gflop']:7.1f} {row['gflops_per_s']:8.1f} {row['fraction_of_matmul']:10.2f}",
                flush=True,
            )
    info = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "chunk_size": args.chunk_size,
        "matmul_gflops": peak,
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
