"""Frames per second of `Segmenter.segment_video` on a generated H.264 clip: decoding alone,
the network alone (the same frames already decoded, through the same pipeline) and the whole
pipeline (decode thread + network), at 640 x 360 and 1280 x 720, for the bundled demo model
and a ViT-B/16 training-free model (NACLIP without PAMR, random weights: the cost is the
same as with downloaded ones). Each frame's label map is computed, as a user's loop would.

The pipeline must reach >= 85 % of the network-alone rate: decoding is hidden behind the
network.

    python benchmarks/bench_video.py
    python benchmarks/bench_video.py --device cuda --json docs/results/bench_video_gpu.json

Prints a table (medians over --repeats, the three runs interleaved in each repeat; the share is
the median of the repeats' pipeline / network ratios) and writes JSON with --json. "written" is
``clsclip segment``'s path: label PNGs and the overlay MP4 written by its writer thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from clsclip import Segmenter
from clsclip.config import DenseClipConfig
from clsclip.pipeline.video_decode import decode_video

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.video_files import make_video  # noqa: E402 - the tests' clip maker

SIZES = {"640x360": (640, 360), "1280x720": (1280, 720)}
BATCH = 8
"""Frames per network call (`segment_video`'s default)."""
CLASSES = ["red disc", "blue square", "yellow triangle", "green star", "grey background"]


def _models(device: str) -> dict[str, tuple[Segmenter, int]]:
    """Each model and the frames its clip has (fewer for the slow ViT-B/16)."""
    demo = Segmenter.from_pretrained(ROOT / "examples" / "demo-model", device=device)
    config = DenseClipConfig(backbone="ViT-B-16-quickgelu", pretrained=None, method="naclip",
                             refine="none")  # fmt: skip
    naclip = Segmenter.from_config(config, device=device)
    return {"demo": (demo, 120), "naclip-vit-b16": (naclip, 6)}


def _consume(results: Any) -> int:
    count = 0
    for frame in results:
        frame.result.label_map  # noqa: B018 - the full-resolution work a user asks for
        count += 1
    return count


def _rate(run: Any) -> float:
    start = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - start)


def _rates(runs: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median frames per second of each run, the runs interleaved in each repeat (a noisy
    machine slows neighbours alike); ``pipeline_share``: the median of the repeats' ratios."""
    got: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            got[name].append(_rate(run))
    out = {f"{name}_fps": statistics.median(values) for name, values in got.items()}
    ratios = [p / n for p, n in zip(got["pipeline"], got["network"], strict=True)]
    out["pipeline_share"] = statistics.median(ratios)
    ratios = [p / n for p, n in zip(got["written"], got["network"], strict=True)]
    out["written_share"] = statistics.median(ratios)
    return out


def _label(seg: Segmenter, clip: Path, out: Path) -> int:
    """The labelling path of ``clsclip segment``: label PNGs and the overlay MP4 written by the
    writer thread while the network runs."""
    import shutil

    from clsclip.labelling.inputs import InputImage
    from clsclip.labelling.outputs import OutputOptions
    from clsclip.labelling.video import VideoOptions, label_video

    shutil.rmtree(out, ignore_errors=True)
    options = OutputOptions(out, tuple(CLASSES), ("label",))
    record = label_video(seg, InputImage(clip.name, clip, True), clip.stem, options,
                         VideoOptions(overlay=True, batch_size=BATCH), run="bench",
                         threshold=None)  # fmt: skip
    return int(record["frames"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model_name, (seg, frames) in _models(args.device).items():
            seg.encode_classes(CLASSES)
            for size_name, (width, height) in SIZES.items():
                clip = Path(folder) / f"{size_name}-{frames}.mp4"
                if not clip.exists():
                    make_video(clip, frames=frames, width=width, height=height, rate=30)
                decoded = [f.pixels for f in decode_video(clip)]

                def decode(clip: Path = clip) -> int:
                    return sum(1 for _ in decode_video(clip))

                def network(decoded: list[Any] = decoded, seg: Segmenter = seg) -> int:
                    return _consume(seg.segment_video(iter(decoded), CLASSES, batch_size=BATCH))

                def pipeline(clip: Path = clip, seg: Segmenter = seg) -> int:
                    return _consume(seg.segment_video(clip, CLASSES, batch_size=BATCH))

                def written(clip: Path = clip, seg: Segmenter = seg) -> int:
                    return _label(seg, clip, Path(folder) / "out")

                row: dict[str, Any] = {"model": model_name, "size": size_name, "frames": frames}
                runs = {"decode": decode, "network": network, "pipeline": pipeline,
                        "written": written}  # fmt: skip
                row.update(_rates(runs, args.repeats))
                rows.append(row)
                print(f"{model_name:15s} {size_name:9s} decode {row['decode_fps']:8.1f} fps  "
                      f"network {row['network_fps']:7.2f} fps  pipeline "
                      f"{row['pipeline_fps']:7.2f} fps  ({row['pipeline_share']:.0%})  written "
                      f"{row['written_fps']:7.2f} fps ({row['written_share']:.0%})",
                      flush=True)  # fmt: skip
    print(
        "\n| model | size | decode alone | network alone | pipeline | pipeline / network | "
        "with label PNGs + overlay MP4 | written / network |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']} | {r['decode_fps']:.1f} | {r['network_fps']:.2f} | "
              f"{r['pipeline_fps']:.2f} | {r['pipeline_share']:.0%} | {r['written_fps']:.2f} | "
              f"{r['written_share']:.0%} |")  # fmt: skip
    if args.json is not None:
        machine = {"device": args.device, "cpu": platform.processor() or platform.machine(),
                   "threads": torch.get_num_threads(), "torch": torch.__version__}  # fmt: skip
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
