"""``clsclip convert``: a finished labelling run as a COCO or VOC dataset that Datumaro and CVAT
import without edits (see docs/labelling.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clsclip.cli.common import USER_ERRORS, fail


def add_parser(commands: Any) -> None:
    conv = commands.add_parser(
        "convert",
        help="lay out a labelling run as a COCO or VOC dataset (Datumaro, CVAT)",
        description="coco (from --format coco): annotations/instances_default.json + images/, "
        "Datumaro's coco_instances and CVAT's COCO 1.0. voc (from --format label): labelmap.txt, "
        "ImageSets/Segmentation, SegmentationClass, JPEGImages: Datumaro's voc_segmentation and "
        "CVAT's Segmentation mask 1.1.",
    )
    conv.add_argument("run_dir", type=Path, help="the run folder (clsclip segment --out)")
    conv.add_argument("--to", choices=("coco", "voc"), required=True, help="the dataset layout")
    conv.add_argument(
        "--out", type=Path, required=True, help="the dataset folder (absent or empty)"
    )
    conv.add_argument("--images", choices=("link", "copy", "none"), default="link",
                      help="hard-link the images (default; copies across file systems), copy "
                      "them, or leave them out (annotations for a CVAT task that has the "
                      "images)")  # fmt: skip
    conv.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clsclip.labelling.convert import convert_run

    try:
        report = convert_run(args.run_dir, args.to, args.out, images=args.images)
    except USER_ERRORS as e:
        return fail(e)
    missing = (
        f", {len(report.missing_images)} image file(s) missing" if report.missing_images else ""
    )
    print(f"wrote {args.out}: {report.images} image(s) as {args.to}{missing}")
    return 0
