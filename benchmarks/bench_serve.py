"""The server against the library: requests per second and latency of ``clsclip serve``.

A ClsCLIP with random weights (the cost does not depend on them) is saved, then:

- ``in-process``: `Segmenter.segment` called serially on the images, masks computed and encoded
  as COCO RLE (the work of a JSON answer), in this process;
- ``serve, C clients``: ``clsclip serve`` in a subprocess on 127.0.0.1, and C client threads
  (one httpx client each) sending the same requests, for C in ``--clients``.

Each request is one of ``--images`` synthetic JPEGs with ``--classes`` class names. Latency is
per request, from the client's send to the end of its answer; throughput from the wall clock of
the whole run. Medians of ``--repeats`` rounds.

    python benchmarks/bench_serve.py                       # ViT-B/16 at 224 px, 1 class
    python benchmarks/bench_serve.py --backbone tiny --requests 200
    python benchmarks/bench_serve.py --device cuda --clients 1 16
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from bench_batch import cpu_description
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 6, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def make_model(folder: Path, backbone: str, size: int) -> None:
    import torch

    from clsclip import ClsClipConfig, Segmenter

    torch.manual_seed(0)
    if backbone == "tiny":
        config = ClsClipConfig(
            backbone=TINY, pretrained=None, image_size=size,
            injection_layers=(2, 3, 4), decoder_channels=(32, 16, 8),
        )  # fmt: skip
    else:
        config = ClsClipConfig(backbone=backbone, pretrained=None, image_size=size)
    Segmenter.from_config(config, device="cpu").save_pretrained(folder)


def make_images(count: int, width: int, height: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        small = rng.integers(0, 256, (height // 32, width // 32, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).save(
            buffer, format="JPEG", quality=90
        )
        out.append(buffer.getvalue())
    return out


def in_process(model: Path, device: str, images: list[bytes], names: list[str],
               requests: int) -> list[float]:  # fmt: skip
    from clsclip import Segmenter
    from clsclip.results.formats import encode_rle

    segmenter = Segmenter.from_pretrained(model, device=device)
    for data in images[:2]:  # warm-up: kernels, the class cache
        _ = segmenter.segment(data, names).masks
    latencies = []
    for i in range(requests):
        start = time.perf_counter()
        result = segmenter.segment(images[i % len(images)], names)
        [encode_rle(mask) for mask in result.masks]
        latencies.append(time.perf_counter() - start)
    return latencies


class Server:
    def __init__(self, model: Path, device: str, max_batch: int, max_wait_ms: float) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
        command = [sys.executable, "-m", "clsclip", "serve", "--model", str(model), "--port", "0",
                   "--device", device, "--max-batch", str(max_batch), "--max-wait-ms",
                   str(max_wait_ms), "--max-queue", "256", "--timeout", "600"]  # fmt: skip
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the server did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1].strip()
        from clsclip.serving.readiness import wait_until_ready

        if not wait_until_ready(self.url, timeout_s=60):
            raise RuntimeError("the server never became ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(120)


def served(server: Server, images: list[bytes], names: list[str], requests: int,
           clients: int) -> tuple[float, list[float]]:  # fmt: skip
    """Wall seconds and per-request latencies of ``requests`` requests from ``clients``."""
    import httpx

    counter = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    data = {"classes": json.dumps(names)}

    def client(_: int) -> None:
        with httpx.Client(timeout=600) as session:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                files = {"image": ("i.jpg", images[i % len(images)], "image/jpeg")}
                start = time.perf_counter()
                response = session.post(server.url + "/v1/segment", files=files, data=data)
                response.json()
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise RuntimeError(response.text)
                with lock:
                    latencies.append(elapsed)

    for i in range(2):  # warm-up
        files = {"image": ("i.jpg", images[i % len(images)], "image/jpeg")}
        httpx.post(server.url + "/v1/segment", files=files, data=data, timeout=600)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return time.perf_counter() - start, latencies


def quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="ViT-B-16-quickgelu", help="open_clip name, or tiny")
    parser.add_argument("--size", type=int, default=224, help="model input in pixels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", type=int, default=1, help="class names per request")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--image-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--requests", type=int, default=32, help="requests per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clsclip-bench-serve-"))
    make_model(work / "model", args.backbone, args.size)
    images = make_images(args.images, *args.image_size)
    names = ["dog", "cat", "car", "tree", "person", "sky", "road", "grass"][: args.classes]
    print(f"CPU: {cpu_description()}")
    print(f"{args.backbone} at {args.size} px, device {args.device}, {args.classes} class(es), "
          f"{args.image_size[0]} x {args.image_size[1]} JPEGs, {args.requests} requests, "
          f"--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g}, medians of "
          f"{args.repeats}")  # fmt: skip
    rows: dict[str, dict[str, float]] = {}
    rounds = [in_process(work / "model", args.device, images, names, args.requests)
              for _ in range(args.repeats)]  # fmt: skip
    rows["in-process"] = {
        "rps": statistics.median(len(r) / sum(r) for r in rounds),
        "p50_ms": 1000 * statistics.median(quantile(r, 0.5) for r in rounds),
        "p99_ms": 1000 * statistics.median(quantile(r, 0.99) for r in rounds),
    }
    server = Server(work / "model", args.device, args.max_batch, args.max_wait_ms)
    try:
        for clients in args.clients:
            runs = [served(server, images, names, args.requests, clients)
                    for _ in range(args.repeats)]  # fmt: skip
            rows[f"serve, {clients} client(s)"] = {
                "rps": statistics.median(args.requests / wall for wall, _ in runs),
                "p50_ms": 1000 * statistics.median(quantile(lat, 0.5) for _, lat in runs),
                "p99_ms": 1000 * statistics.median(quantile(lat, 0.99) for _, lat in runs),
            }
    finally:
        server.stop()
    print(f"{'run':22s} {'req/s':>8s} {'p50 ms':>9s} {'p99 ms':>9s}")
    for name, row in rows.items():
        print(f"{name:22s} {row['rps']:8.2f} {row['p50_ms']:9.1f} {row['p99_ms']:9.1f}")
    base = rows["in-process"]
    if "serve, 1 client(s)" in rows:
        one = rows["serve, 1 client(s)"]
        latency = 100 * (one["p50_ms"] / base["p50_ms"] - 1)
        per_request = 100 * (base["rps"] / one["rps"] - 1)
        print(f"server overhead at 1 client: {latency:+.1f}% latency (p50), "
              f"{per_request:+.1f}% time per request")  # fmt: skip
        for clients in args.clients[1:]:
            many = rows[f"serve, {clients} client(s)"]
            print(f"throughput at {clients} clients / 1 client: {many['rps'] / one['rps']:.2f}x")
    if args.json:
        payload: dict[str, Any] = {"args": vars(args), "cpu": cpu_description(), "rows": rows}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
