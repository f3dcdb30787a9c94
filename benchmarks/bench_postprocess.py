"""Post-processing cost at any image size: time and memory after the network, against the floor.

A tiny model (a 2-block ViT of width 64 with 16 px patches at 352 px, the 22 x 22 grid of
ViT-B/16) makes the network's time negligible, so what is measured is the way from its output
to full-resolution answers. Each case runs in a fresh subprocess so that its peak memory is its
own:

- ``work``: `segment` + `label_map` + `summary()` + one `mask()`, median over --repeats;
- ``network``: `segment` alone on a 64 x 48 copy of the image (the same network work);
- ``pre``: decoding checks and letterboxing of the full image (`load_image`, `letterbox_image`);
- ``post``: ``work - network - pre``, everything after the network;
- ``floor``: the work that must be done, in the same process: K low-resolution maps bilinearly
  upsampled to H x W (`F.interpolate`) with a running max over classes;
- ``added``: peak RSS (CPU) or `torch.cuda.max_memory_allocated` (CUDA) during one ``work``,
  above what the process held before it, the image already decoded;
- ``write``: `SegmentationResult.save` of one result (a mask PNG per class, the overlay PNG, the
  JSON summary) into a temporary folder, median over --repeats.

    python benchmarks/bench_postprocess.py --json docs/results/bench_postprocess_cpu.json
    python benchmarks/bench_postprocess.py --before /path/to/old/checkout  # both, side by side

``--before`` runs the same cases with another clsclip checkout first on PYTHONPATH (cases that
would need more memory than --max-gb are skipped there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = [
    (480, 640, 1),
    (480, 640, 20),
    (480, 640, 80),
    (3024, 4032, 1),
    (3024, 4032, 20),
    (3024, 4032, 80),
    (8000, 8000, 1),
    (8000, 8000, 20),
    (8000, 8000, 100),
]


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _run_case(height: int, width: int, classes: int, device: str, repeats: int) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from clsclip import ClsClipConfig, Segmenter
    from clsclip.pipeline.images import load_image
    from clsclip.pipeline.letterbox import letterbox_image

    torch.manual_seed(0)
    backbone = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 352, "patch_size": 16, "width": 64, "layers": 2},
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    config = ClsClipConfig(
        backbone=backbone,
        pretrained=None,
        image_size=352,
        injection_layers=(1,),
        decoder_channels=(16, 16, 16),
    )
    seg = Segmenter.from_config(config, device=device)
    names = [f"class {i}" for i in range(classes)]
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    small_image = Image.fromarray(small)
    cuda = seg.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def work() -> None:
        result = seg.segment(image, names)
        result.label_map  # noqa: B018 - computing it is the point
        result.summary()
        result.mask(names[-1])
        sync()

    seg.segment(small_image, names)  # warm-up: text cache, allocator
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
        base = _rss_mb("VmRSS")
    start = time.perf_counter()
    work()
    times = [time.perf_counter() - start]
    if cuda:
        added = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        added = _rss_mb("VmHWM") - base
    for _ in range(repeats - 1):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)

    network = []
    for _ in range(repeats):
        start = time.perf_counter()
        seg.segment(small_image, names)
        sync()
        network.append(time.perf_counter() - start)

    pre = []
    for _ in range(repeats):
        start = time.perf_counter()
        letterbox_image(load_image(image), 352, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        pre.append(time.perf_counter() - start)

    grid = torch.randn(classes, 22, 22, device=seg.device)
    floor = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        best = None
        for k in range(classes):
            up = F.interpolate(grid[k][None, None], size=(height, width), mode="bilinear")[0, 0]
            best = up if best is None else torch.maximum(best, up)
        sync()
        floor.append(time.perf_counter() - start)
    import tempfile

    result = seg.segment(image, names)
    result.label_map  # noqa: B018 - the label map is shared with the overlay, as in a run
    write = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            result.save(folder, "image")
            write.append(time.perf_counter() - start)
    return {
        "height": height,
        "width": width,
        "classes": classes,
        "write_s": statistics.median(write),
        "work_s": statistics.median(times),
        "network_s": statistics.median(network),
        "pre_s": statistics.median(pre),
        "floor_s": statistics.median(floor),
        "added_mb": added,
    }


def _spawn(case: tuple[int, int, int], args: argparse.Namespace, pythonpath: str) -> dict | None:
    height, width, classes = case
    if pythonpath == args.before and classes * height * width * 4 * 3 / 2**30 > args.max_gb:
        return None  # the old path materialises K x H x W float32 maps several times
    env = dict(os.environ, PYTHONPATH=pythonpath)
    command = [sys.executable, __file__, "--case", str(height), str(width), str(classes)]
    command += ["--device", args.device, "--repeats", str(args.repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(label: str, r: dict | None, case: tuple[int, int, int]) -> str:
    height, width, classes = case
    head = f"{label:7s} {width:5d} x {height:<5d} {classes:4d}"
    if r is None:
        return head + "   (not run: would not fit in memory)"
    post = max(0.0, r["work_s"] - r["network_s"] - r["pre_s"])
    return (
        f"{head} {r['work_s']:8.3f} {r['network_s']:9.3f} {r['pre_s']:7.3f} {post:8.3f} "
        f"{r['floor_s']:8.3f} "
        f"{post / r['floor_s']:7.2f} {r['added_mb']:9.0f} {r.get('write_s', float('nan')):8.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default=None, help="an older clsclip checkout to compare")
    parser.add_argument("--max-gb", type=float, default=16.0)
    parser.add_argument("--only", type=int, nargs=3, action="append", default=None)
    parser.add_argument("--case", type=int, nargs=3, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(_run_case(*args.case, args.device, args.repeats)))
        return
    cases = [tuple(c) for c in args.only] if args.only else CASES
    print(
        "version  image        classes  work s  network s  pre s   post s  floor s  post/floor"
        "  added MB  write s"
    )
    rows = []
    for case in cases:
        before = _spawn(case, args, args.before) if args.before else None
        if args.before:
            print(_row("before", before, case), flush=True)
        after = _spawn(case, args, str(Path(__file__).resolve().parent.parent))
        print(_row("after", after, case), flush=True)
        rows.append({"case": case, "before": before, "after": after})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "machine": platform.processor(), "rows": rows}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
