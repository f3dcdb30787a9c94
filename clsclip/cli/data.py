"""``clsclip data``: prepare PASCAL-5i / COCO-20i, or check a root against the standard lists."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clsclip.cli.common import USER_ERRORS, fail


def add_parser(commands: Any) -> None:
    data = commands.add_parser(
        "data",
        help="prepare PASCAL-5i / COCO-20i data, or check it against the standard lists",
        description="voc: VOC2012 + SBD -> SegmentationClassAug and trainaug.txt. coco: COCO 2014 "
        "-> a VOC-layout folder. check: report images and masks of the standard lists missing "
        "from a data root. See docs/training.md.",
    )
    tasks = data.add_subparsers(dest="task", required=True)
    voc = tasks.add_parser("voc", help="VOC2012 + SBD -> SegmentationClassAug")
    voc.add_argument("--voc", type=Path, required=True, help="the VOC2012 folder")
    voc.add_argument("--sbd", type=Path, required=True, help="SBD's dataset folder (cls/, *.txt)")
    coco = tasks.add_parser("coco", help="COCO 2014 -> class-index PNGs in the VOC layout")
    coco.add_argument("--coco", type=Path, required=True, help="the COCO root")
    coco.add_argument("--out", type=Path, required=True, help="the folder to write")
    chk = tasks.add_parser("check", help="what the standard lists need that a root lacks")
    chk.add_argument("--dataset", choices=("pascal5i", "coco20i"), required=True)
    chk.add_argument("--data-root", type=Path, required=True)
    data.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clsclip.datasets import prepare

    try:
        if args.task == "voc":
            print(f"wrote {prepare.prepare_voc(args.voc, args.sbd)}")
        elif args.task == "coco":
            print(f"wrote {prepare.prepare_coco(args.coco, args.out)}")
        else:
            report = prepare.check(args.dataset, args.data_root)
            print(report.describe())
            return 0 if report.ok else 1
    except USER_ERRORS as e:
        return fail(e)
    return 0
