"""``clsclip export``: ONNX graphs for onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clsclip.cli.common import USER_ERRORS, fail


def add_parser(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="export a model as ONNX graphs for onnxruntime (needs clsclip[onnx])",
        description="Write text.onnx, views.onnx, decode.onnx and clsclip-onnx.json into --out; "
        "the vocabulary stays open. See docs/deploy.md.",
    )
    export.add_argument("model", help="a model folder or a Hugging Face Hub repo id")
    export.add_argument("--out", type=Path, required=True, help="the folder to write")
    export.add_argument("--classes", nargs="+", default=None, help="also store their vectors")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    export.add_argument("--int8", action="store_true", help="dynamic int8 quantisation")
    export.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clsclip.segmenter import Segmenter

    try:
        segmenter = Segmenter.from_pretrained(args.model, device="cpu")
        out = segmenter.export_onnx(
            args.out, classes=args.classes, opset=args.opset, int8=args.int8
        )
    except (*USER_ERRORS, RuntimeError) as e:
        return fail(e)
    print(f"exported to {out}")
    return 0
