"""``clsclip calibrate``: fit per-class temperatures, biases and thresholds on a small labelled
set and write a calibrated model folder (see docs/calibration.md)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from clsclip.cli.common import USER_ERRORS, check_output_folder, fail, resolve_class_args

logger = logging.getLogger(__name__)


def add_parser(commands: Any) -> None:
    cal = commands.add_parser(
        "calibrate",
        help="fit per-class calibration and thresholds on a labelled set; write a new model",
        description="Reads label PNGs (--labels: one single-channel PNG per image, same stem; "
        "0 background, k for the k-th class, 255 ignored) or a COCO instances file (--coco), "
        "through the readers evaluation uses. Writes --out: the model with threshold, "
        "class_thresholds and calibration in its config.json.",
    )
    cal.add_argument("--model", required=True, help="a model folder or a Hugging Face Hub repo id")
    cal.add_argument("--images", type=Path, required=True, help="the folder of images")
    source = cal.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", type=Path, help="the folder of label PNGs")
    source.add_argument("--coco", type=Path, help="a COCO instances JSON of the images")
    cal.add_argument("--classes", nargs="+", default=None,
                     help="class names, label k for the k-th (--coco: category names; default "
                     "all categories)")  # fmt: skip
    cal.add_argument("--classes-file", type=Path, default=None,
                     help="YAML or JSON class specs instead of --classes")  # fmt: skip
    cal.add_argument("--metric", choices=("iou", "f1"), default="iou",
                     help="what the thresholds maximise: the set's IoU per class, or the "
                     "images' mean F1 (default iou)")  # fmt: skip
    cal.add_argument("--ignore-index", type=int, default=255, help="label value not counted")
    cal.add_argument("--out", type=Path, required=True, help="the calibrated model folder")
    cal.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: auto)")
    cal.add_argument("--local-files-only", action="store_true", help="never download")
    cal.set_defaults(run=run)


def label_folder_samples(images: Path, labels: Path) -> list[tuple[Path, Path]]:
    """``(image, label PNG)`` pairs of two folders, matched by stem; `ValueError` naming the
    first images without a label."""
    from clsclip.pipeline.images import IMAGE_SUFFIXES

    for flag, folder in (("--images", images), ("--labels", labels)):
        if not folder.is_dir():
            raise NotADirectoryError(f"{flag} {str(folder)!r} is not a folder")
    found = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise ValueError(f"no images in {images}")
    pairs, missing = [], []
    for image in found:
        label = labels / f"{image.stem}.png"
        if label.is_file():
            pairs.append((image, label))
        else:
            missing.append(image.name)
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) have no label PNG of the same stem in {labels}: "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        )
    return pairs


def _label_samples(pairs: list[tuple[Path, Path]]) -> Iterator[tuple[str, np.ndarray]]:
    from clsclip.datasets.voc import read_label_image

    for image, label in pairs:
        yield str(image), read_label_image(label)


def coco_samples(
    images: Path, annotations: Path, classes: list[str] | None
) -> tuple[list[str], Iterator[tuple[str, np.ndarray]]]:
    """The class names (the asked categories, else all in id order) and ``(image, label map)``
    pairs of a COCO instances file; categories not asked for are ignored (255), not
    background. `ValueError` for a name that is not a category, or a missing image file."""
    from clsclip.datasets.coco import coco_api, render_class_mask

    api = coco_api(annotations)
    categories = {c["name"]: c["id"] for c in api.loadCats(sorted(api.getCatIds()))}
    names = list(classes) if classes else list(categories)
    unknown = [n for n in names if n not in categories]
    if unknown:
        raise ValueError(
            f"{unknown} are not categories of {annotations} (it has {sorted(categories)[:10]})"
        )
    labels = {cat: 255 for cat in categories.values()}
    labels.update({categories[n]: k + 1 for k, n in enumerate(names)})
    infos = api.loadImgs(sorted(api.getImgIds()))
    if not infos:
        raise ValueError(f"{annotations} lists no images")
    missing = [i["file_name"] for i in infos if not (images / i["file_name"]).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} image(s) of {annotations} are not in {images}: "
                         f"{', '.join(missing[:3])}")  # fmt: skip

    def samples() -> Iterator[tuple[str, np.ndarray]]:
        for info in infos:
            yield str(images / info["file_name"]), render_class_mask(api, info["id"], labels)

    return names, samples()


def run(args: argparse.Namespace) -> int:
    try:
        if args.coco is not None and args.classes is None and args.classes_file is None:
            args.classes, samples = coco_samples(args.images, args.coco, None)  # all categories
            resolve_class_args(args)
        elif args.coco is not None:
            resolve_class_args(args)
            _, samples = coco_samples(args.images, args.coco, args.classes)
        else:
            resolve_class_args(args)
            pairs = label_folder_samples(args.images, args.labels)
            samples = _label_samples(pairs)
        check_output_folder(args.out)
        from clsclip.segmenter import Segmenter

        segmenter = Segmenter.from_pretrained(
            args.model, device=args.device, local_files_only=args.local_files_only
        )
        calibrated = segmenter.calibrate(
            samples, args.class_specs, metric=args.metric, ignore_index=args.ignore_index
        )
        calibrated.save_pretrained(args.out)
    except USER_ERRORS as e:
        return fail(e)
    report = calibrated.config.calibration
    assert report is not None
    _print_report(report, args.metric, args.out)
    return 0


def _print_report(calibration: dict[str, Any], metric: str, out: Path) -> None:
    figures = calibration["figures"]
    size = calibration["set"]
    print(f"calibrated on {size['images']} image(s); wrote {out}")
    header = f"{'class':<24}{'pixels':>10}{'ECE before':>12}{'ECE after':>11}"
    header += f"{metric + ' @0.5':>12}{metric + ' tuned':>12}"
    print(header)
    for name, f in figures.items():
        print(f"{name:<24}{f['pixels']:>10}{f['ece_before']:>12.4f}{f['ece_after']:>11.4f}"
              f"{f[f'{metric}_at_0.5']:>12.4f}{f[f'{metric}_calibrated']:>12.4f}")  # fmt: skip
    if size["absent"]:
        print(f"never in the set (default calibration and threshold): {', '.join(size['absent'])}",
              file=sys.stderr)  # fmt: skip
    for name, reason in size.get("uncalibrated", {}).items():
        print(f"{name}: not calibrated ({reason}): the default scale and bias, its own "
              "threshold", file=sys.stderr)  # fmt: skip
    logger.info("calibration: %s", json.dumps(size))
