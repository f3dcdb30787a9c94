"""``clsclip eval --benchmark``: the training-free methods' 8-benchmark protocol (whole
validation sets, the references' class-name files, whole-dataset mIoU as mmseg computes it)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from clsclip.classes import ClassSpec
from clsclip.config import DenseClipConfig
from clsclip.datasets import benchmarks
from clsclip.evaluation.metrics import DatasetIoU
from clsclip.segmenter import Segmenter

SETTINGS = ("reference", "model")
"""``reference``: a training-free model gets the reference's settings for the benchmark
(`DenseClipConfig.preset`, keeping its backbone, weights and method); ``model``: the model's own
config as saved (other model types always)."""


def benchmark_segmenter(segmenter: Segmenter, benchmark: str, settings: str) -> Segmenter:
    """The segmenter with the benchmark's settings, and the class names it scores."""
    if settings not in SETTINGS:
        raise ValueError(f"unknown settings {settings!r}; choose one of {list(SETTINGS)}")
    config = segmenter.config
    if settings == "reference" and isinstance(config, DenseClipConfig):
        method = (
            config.method if config.method in ("clearclip", "naclip", "scclip") else "clearclip"
        )
        preset = DenseClipConfig.preset(f"{method}-{benchmark}", backbone=config.backbone,
                                        pretrained=config.pretrained)  # fmt: skip
        lines = benchmarks.class_names(benchmark, method)
        background = lines[0] if benchmarks.BENCHMARKS[benchmark].background else ()
        fields = {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset)}
        fields.update(background_prompts=tuple(background), prompt_rule="max",
                      image_mean=config.image_mean, image_std=config.image_std,
                      method=config.method)  # fmt: skip
        return segmenter._with_config(DenseClipConfig(**fields))
    return segmenter


def class_specs(benchmark: str, method: str) -> tuple[list[ClassSpec], int]:
    """The classes to segment (the names file's lines, the background's left out) as specs with
    their synonyms, and the label index of the first of them (1 with a background line)."""
    lines = benchmarks.class_names(benchmark, method)
    offset = 1 if benchmarks.BENCHMARKS[benchmark].background else 0
    specs = [ClassSpec(names[0], tuple(names)) for names in lines[offset:]]
    return specs, offset


def evaluate_benchmark(
    segmenter: Segmenter,
    benchmark: str,
    data_root: str | os.PathLike[str],
    *,
    settings: str = "reference",
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """mIoU of ``segmenter`` on a benchmark's validation set (see docs/training-free.md).

    Args:
        benchmark: one of `clsclip.datasets.benchmarks.BENCHMARKS`.
        data_root: the dataset's folder in the references' layout.
        settings: see `SETTINGS`.
        limit: evaluate the first N images only (a quick check; not the benchmark's figure).
        progress: a progress bar on stderr.

    Returns:
        The report: per-class IoU, mIoU and aAcc (in [0, 1]), the number of images, the
        settings used and the seconds taken.
    """
    samples = benchmarks.samples(benchmark, data_root)
    if limit is not None:
        samples = samples[:limit]
    seg = benchmark_segmenter(segmenter, benchmark, settings)
    method = getattr(seg.config, "method", "naclip")
    specs, offset = class_specs(benchmark, method)
    lines = benchmarks.class_names(benchmark, method)
    metric = DatasetIoU(len(lines))
    iterator: Any = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc=benchmark, unit="image")
    start = time.perf_counter()
    for sample in iterator:
        label = benchmarks.read_label(benchmark, sample.label)
        result = seg.segment(str(sample.image), specs)
        if result.size != label.shape:
            raise ValueError(
                f"{sample.image}: the image is {result.size[1]} x {result.size[0]}, its label "
                f"map {label.shape[1]} x {label.shape[0]}"
            )
        # clsclip's label map: 0 where no class (the background), k + 1 for class k
        prediction = result.label_map.astype("int64") - 1 + offset
        metric.update(prediction, label)
    seconds = time.perf_counter() - start
    ious = metric.class_iou()
    config = seg.config
    return {
        "benchmark": benchmark,
        "images": metric.images,
        "limit": limit,
        "miou": metric.miou(),
        "aacc": metric.accuracy(),
        "class_iou": {
            names[0]: (None if ious[i] != ious[i] else float(ious[i]))
            for i, names in enumerate(lines)
        },
        "settings": settings,
        "config": config.to_file_dict(),
        "seconds": seconds,
    }


def format_report(report: dict[str, Any]) -> str:
    """A table: one row per class, then mIoU and aAcc, in percent."""
    names = list(report["class_iou"])
    width = max(10, *(len(n) for n in names))
    lines = [f"{report['benchmark']}: {report['images']} images, {report['settings']} settings"]
    for name, iou in report["class_iou"].items():
        lines.append(f"{name:<{width}}  " + ("  n/a" if iou is None else f"{100 * iou:5.1f}"))
    lines.append(f"{'mIoU':<{width}}  {100 * report['miou']:5.1f}")
    lines.append(f"{'aAcc':<{width}}  {100 * report['aacc']:5.1f}")
    return "\n".join(lines)
