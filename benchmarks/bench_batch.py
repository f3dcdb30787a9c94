"""Labelling throughput: clsclip segment over a folder, the local engine against Ray Data.

Synthetic 1024 x 768 JPEGs, a ViT-B/16 ClsCLIP with random weights (the cost does not depend
on them). Each configuration runs the real command line in a subprocess on the same folder;
images per second are measured from the wall clock, start-up excluded (the time of a run on
one image, model loading and for Ray the cluster and its actors, is subtracted). Then output
bytes per image with 20 classes for the formats png, label and coco.

    python benchmarks/bench_batch.py --images 200 --size 224 --classes 1
    python benchmarks/bench_batch.py --images 200 --device cuda --gpus-per-actor 1

Configurations: ``serial`` (one image at a time, no workers), ``local`` (``--workers`` and
``--batch-size``), ``ray-1`` and ``ray-2`` (``--engine ray`` with 1 and 2 actors).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def cpu_description() -> str:
    import platform

    import torch

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{name}, {os.cpu_count()} cores, torch kernels {torch.backends.cpu.get_cpu_capability()}"
    )


def _make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((1024, 768), Image.Resampling.BICUBIC)
        image.save(folder / f"img{i:04d}.jpg", quality=90)


def _make_model(folder: Path, size: int) -> None:
    import torch

    from clsclip import ClsClipConfig, Segmenter

    torch.manual_seed(0)
    config = ClsClipConfig(backbone="ViT-B-16-quickgelu", pretrained=None, image_size=size)
    Segmenter.from_config(config, device="cpu").save_pretrained(folder)


def _run(pythonpath: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(pythonpath), HF_HUB_OFFLINE="1", RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0")  # fmt: skip
    command = [sys.executable, "-m", "clsclip", "segment", *args]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=352, help="model input in pixels")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clsclip-bench-batch-"))
    images, model = work / "images", work / "model"
    _make_images(images, args.images)
    _make_images(work / "one", 1)
    _make_model(model, args.size)
    classes = ["dog", "cat", "car", "tree", "person", "sky", "road", "grass"][: args.classes]
    common = ["--classes", *classes, "--model", str(model), "--device", args.device]
    local = ["--workers", str(args.workers), "--batch-size", str(args.batch_size)]
    ray = ["--engine", "ray", "--batch-size", str(args.batch_size),
           "--gpus-per-actor", str(args.gpus_per_actor)]  # fmt: skip
    runs = {
        "serial": ["--batch-size", "1"],
        "local": local,
        "ray-1": [*ray, "--actors", "1"],
        "ray-2": [*ray, "--actors", "2"],
    }
    rows = {}
    print(f"CPU: {cpu_description()}")
    print(f"{args.images} images of 1024 x 768, {args.size} px, {args.classes} class(es), "
          f"device {args.device}")  # fmt: skip
    print("run        images/s   seconds   (start-up excluded)")
    for name, extra in runs.items():
        load = _run(ROOT, [str(work / "one"), *common, *extra, "--out", str(work / f"o1-{name}")])
        total = _run(ROOT, [str(images), *common, *extra, "--out", str(work / f"out-{name}")])
        seconds = max(1e-9, total - load)
        rows[name] = {"seconds": seconds, "images_per_s": args.images / seconds,
                      "startup_s": load}  # fmt: skip
        print(f"{name:9s} {args.images / seconds:9.2f} {seconds:9.1f}", flush=True)
    for name in ("ray-1", "ray-2"):
        ratio = rows["local"]["seconds"] / rows[name]["seconds"]
        print(f"{name} / local throughput: {ratio:.2f}x")

    names = [f"class {i}" for i in range(20)]
    sample = work / "sample"
    _make_images(sample, 5)
    sizes = {}
    for fmt in ("png", "label", "coco"):
        out = work / f"fmt-{fmt}"
        _run(ROOT, [str(sample), "--classes", *names, "--model", str(model), "--out", str(out),
                    "--device", args.device, "--format", fmt])  # fmt: skip
        skip = {"manifest.jsonl", "classes.json", "run.json", ".clsclip.lock"}  # per run
        files = [p for p in out.iterdir() if p.is_file() and p.name not in skip]
        sizes[fmt] = sum(p.stat().st_size for p in files) / 5
    print("format   bytes per image (20 classes; coco: coco.json, without its resume parts)")
    for fmt, size in sizes.items():
        print(f"{fmt:8s} {size:12.0f}")
    print(f"png / label: {sizes['png'] / sizes['label']:.1f}x")
    if args.json:
        payload = {"images": args.images, "device": args.device, "size": args.size,
                   "classes": args.classes, "cpu": cpu_description(), "runs": rows,
                   "bytes": sizes}  # fmt: skip
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
