"""Calibration, prompts and thresholds on the synthetic shapes world, with the demo model.

A calibration set and a test set of the synthetic shapes world (`clsclip.datasets.synthetic`,
different seeds). On the test set, for the demo model (`examples/demo-model`, trained on that
world with plain class names):

- expected calibration error (ECE, 15 bins) of the pixel probabilities, before and after
  `Segmenter.calibrate` on the calibration set (per class its own scale and bias);
- mIoU of the label maps (classes compete, as `--format label` writes them) at the threshold
  0.5 against the calibrated per-class thresholds (metric iou and f1);
- mIoU with one prompt per class against three prompts ("red disc", "a red disc", "a disc
  that is red"), combined by the mean rule and by the max rule;
- the cost: seconds per image of 20 classes with 3 prompts each against 1 prompt.

    python benchmarks/bench_calibration.py --json docs/results/bench_calibration.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from clsclip import Segmenter
from clsclip.datasets.synthetic import CLASS_NAMES, generate
from clsclip.pipeline.calibrate import count_pixels
from clsclip.results.calibration import ECE_BINS, EDGES

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-model"


def _set(root: Path, count: int, seed: int) -> list[tuple[Path, np.ndarray]]:
    folder = generate(root, num_train=0, num_val=count, seed=seed)
    images = sorted((folder / "JPEGImages").iterdir())
    return [(p, np.asarray(Image.open(folder / "SegmentationClassAug" / p.name))) for p in images]


def _pooled_ece(seg: Segmenter, samples: list[tuple[Path, np.ndarray]]) -> float:
    """ECE of every class's pixel probabilities on the set, all classes pooled."""
    request = seg._prepare(list(CLASS_NAMES), None, None)
    counts = count_pixels(seg._settings(), samples, request)
    calibration = seg.config.calibration
    edges = EDGES.numpy()
    values = np.concatenate([[edges[0] - 1], 0.5 * (edges[:-1] + edges[1:]), [edges[-1]]])
    count = np.zeros(ECE_BINS)
    confidence = np.zeros(ECE_BINS)
    hits = np.zeros(ECE_BINS)
    for k, name in enumerate(CLASS_NAMES):
        scale, bias = 1.0, 0.0
        if calibration is not None:
            entry = calibration["classes"].get(name, calibration["default"])
            scale, bias = entry["scale"], entry["bias"]
        prob = 1 / (1 + np.exp(-(scale * values + bias)))
        which = np.minimum((prob * ECE_BINS).astype(int), ECE_BINS - 1)
        total = counts.positives[k] + counts.negatives[k]
        count += np.bincount(which, weights=total, minlength=ECE_BINS)
        confidence += np.bincount(which, weights=total * prob, minlength=ECE_BINS)
        hits += np.bincount(which, weights=counts.positives[k], minlength=ECE_BINS)
    used = count > 0
    return float((np.abs(confidence[used] - hits[used])).sum() / count.sum())


def _miou(seg: Segmenter, samples, classes, threshold=None) -> tuple[float, float]:
    """mIoU over the classes the test set shows (label maps against the truth), and seconds
    per image (median)."""
    inter = np.zeros(len(CLASS_NAMES) + 1)
    union = np.zeros(len(CLASS_NAMES) + 1)
    shown = np.zeros(len(CLASS_NAMES) + 1, bool)
    seconds = []
    for path, truth in samples:
        start = time.perf_counter()
        result = seg.segment(path, classes, threshold=threshold)
        labels = result.label_map
        seconds.append(time.perf_counter() - start)
        valid = truth != 255
        for c in range(1, len(CLASS_NAMES) + 1):
            a, b = (labels == c) & valid, (truth == c) & valid
            inter[c] += (a & b).sum()
            union[c] += (a | b).sum()
            shown[c] |= b.any()
    return float(np.mean(inter[shown] / union[shown])), statistics.median(seconds)


def _prompts(name: str) -> list[str]:
    colour, shape = name.split(" ")
    return [name, f"a {name}", f"a {shape} that is {colour}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-images", type=int, default=60)
    parser.add_argument("--test-images", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        calibration = _set(Path(tmp) / "cal", args.calibration_images, seed=101)
        test = _set(Path(tmp) / "test", args.test_images, seed=202)
        raw = Segmenter.from_pretrained(DEMO, device="cpu")
        start = time.perf_counter()
        tuned = {m: raw.calibrate(calibration, list(CLASS_NAMES), metric=m) for m in ("iou", "f1")}
        fit_seconds = (time.perf_counter() - start) / 2
        names = list(CLASS_NAMES)
        rows: dict[str, dict[str, float]] = {}
        rows["uncalibrated, threshold 0.5"] = dict(
            zip(("miou", "s_per_image"), _miou(raw, test, names, 0.5), strict=True)
        )
        rows["uncalibrated, threshold 0.5"]["ece"] = _pooled_ece(raw, test)
        for metric, seg in tuned.items():
            key = f"calibrated, thresholds for {metric}"
            rows[key] = dict(zip(("miou", "s_per_image"), _miou(seg, test, names), strict=True))
            rows[key]["ece"] = _pooled_ece(seg, test)
        several = {name: _prompts(name) for name in names}
        rows["3 prompts, mean rule, 0.5"] = dict(
            zip(("miou", "s_per_image"), _miou(raw, test, several, 0.5), strict=True)
        )
        max_rule = raw._with_config(dataclasses.replace(raw.config, prompt_rule="max"))
        rows["3 prompts, max rule, 0.5"] = dict(
            zip(("miou", "s_per_image"), _miou(max_rule, test, several, 0.5), strict=True)
        )
    print(f"calibration set {args.calibration_images} images, test set {args.test_images} "
          f"(96 x 128, 20 classes); fit {fit_seconds:.1f} s")  # fmt: skip
    print(f"{'setting':<34}{'ECE':>8}{'mIoU':>8}{'s/image':>9}")
    for key, row in rows.items():
        ece = f"{row['ece']:.4f}" if "ece" in row else "-"
        print(f"{key:<34}{ece:>8}{row['miou']:>8.4f}{row['s_per_image']:>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "fit_seconds": fit_seconds,
                                         "calibration_images": args.calibration_images,
                                         "test_images": args.test_images}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
