"""``clsclip segment``: label images or a whole dataset (see docs/labelling.md)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from clsclip.cli.common import USER_ERRORS, check_output_folder, fail, terminate_as_interrupt
from clsclip.labelling import FORMATS, RunOptions, list_images

logger = logging.getLogger("clsclip.cli")


def add_parser(commands: Any) -> None:
    seg = commands.add_parser(
        "segment",
        help="segment images by class names (a file, folders, or a whole dataset)",
        description="Write each image's results into --out in the chosen formats, and one line "
        "per finished image into manifest.jsonl (--resume skips those). Under torchrun, every "
        "rank takes its share of the images. See docs/labelling.md.",
    )
    seg.add_argument("images", nargs="*", type=Path, help="image files or folders of images")
    seg.add_argument("--list", type=Path, default=None, help="a text file of image paths")
    seg.add_argument("--recursive", action="store_true", help="look into subfolders too")
    seg.add_argument("--classes", nargs="+", required=True, help="class names, e.g. dog cat")
    seg.add_argument("--model", required=True, help="a model folder or a Hugging Face Hub repo id")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
    seg.add_argument(
        "--format",
        nargs="+",
        choices=FORMATS,
        default=["png"],
        help="png: masks, overlay, JSON per image; label: one palette PNG label map per image; "
        "coco: one COCO JSON (RLE) for the run; npz: low-resolution logits (default: png)",
    )
    seg.add_argument("--instances", action="store_true", help="coco: one annotation per blob")
    seg.add_argument("--batch-size", type=int, default=8, help="images per network call")
    seg.add_argument("--workers", type=int, default=0, help="image decoding processes")
    seg.add_argument("--resume", action="store_true", help="skip images the manifest lists")
    seg.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: auto)")
    seg.add_argument("--threshold", type=float, default=None, help="mask threshold in [0, 1]")
    seg.add_argument("--chunk-size", type=int, default=16, help="pairs per forward pass")
    seg.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16", "int8", "auto"),
        default="fp32",
        help="bf16: CUDA autocast, or bf16 weights on CPUs with AMX / AVX-512 BF16; fp16: CUDA "
        "autocast; int8: dynamic int8 linear layers on the CPU; auto: the fastest for this "
        "device (bf16 on CPUs with native bf16, else fp32)",
    )
    seg.add_argument(
        "--proposals",
        choices=("none", "yolo"),
        default="none",
        help="ClsCLIP+ region proposals: none, or an ultralytics detector (needs clsclip[yolo])",
    )
    seg.add_argument(
        "--yolo-model", default="yolo11n.pt", help="ultralytics weights name, path or model YAML"
    )
    seg.add_argument("--yolo-conf", type=float, default=0.25, help="detector confidence threshold")
    seg.add_argument(
        "--boxes",
        type=Path,
        default=None,
        help='JSON file of boxes per class, {"dog": [[x0, y0, x1, y1], ...]}, in image pixels; '
        "used for every image (zoom-in on given boxes)",
    )
    seg.add_argument(
        "--max-image-pixels",
        type=int,
        default=None,
        help="refuse images with more pixels (default 100 million; 0 for no limit but PIL's)",
    )
    seg.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="onnxruntime: a folder written by clsclip export (needs clsclip[onnx])",
    )
    seg.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    seg.add_argument(
        "--local-files-only", action="store_true", help="never download; use the cache only"
    )
    seg.set_defaults(run=run)


def _proposer(args: argparse.Namespace, device: str) -> Any:
    from clsclip.proposals import BoxProposer, YoloProposer

    if args.boxes is not None and args.proposals != "none":
        raise ValueError("give either --boxes or --proposals yolo, not both")
    if args.boxes is not None:
        try:
            boxes = json.loads(args.boxes.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{args.boxes} is not valid JSON: {e}") from e
        proposer = BoxProposer(boxes)
        proposer.check_classes(args.classes)  # once, before any image
        return proposer
    if args.proposals == "yolo":
        return YoloProposer(args.yolo_model, conf=args.yolo_conf, device=device)
    return None


def run(args: argparse.Namespace) -> int:
    from clsclip.checks import check_int, check_threshold
    from clsclip.distributed import DistributedContext
    from clsclip.segmenter import Segmenter

    context = DistributedContext.from_env(args.device)
    images = list_images(args.images, recursive=args.recursive, list_file=args.list)
    if not images:
        return fail("no images found")
    try:
        check_output_folder(args.out)
        check_int("--batch-size", args.batch_size)
        check_int("--workers", args.workers, minimum=0)
        if args.max_image_pixels is not None:
            check_int("--max-image-pixels", args.max_image_pixels, minimum=0)
        device = context.device(args.device) if context.enabled else args.device
        segmenter = Segmenter.from_pretrained(
            args.model,
            device=device,
            revision=args.revision,
            local_files_only=args.local_files_only,
            chunk_size=args.chunk_size,
            precision=args.precision,
            backend=args.backend,
        )
        logger.info("model %s: %s", args.model, segmenter)
        segmenter.encode_classes(args.classes)  # checks the names once, before any image
        if args.threshold is not None:
            check_threshold(args.threshold)
        if args.max_image_pixels is not None:
            segmenter.max_image_pixels = args.max_image_pixels or None
        segmenter.proposer = _proposer(args, str(segmenter.device))
    except USER_ERRORS as e:
        return fail(e)
    options = RunOptions(
        out=args.out,
        classes=list(args.classes),
        formats=tuple(dict.fromkeys(args.format)),
        threshold=args.threshold,
        batch_size=args.batch_size,
        workers=args.workers,
        resume=args.resume,
        instances=args.instances,
        rank=context.rank,
        world=context.world_size,
    )
    try:
        return _label(segmenter, images, options, context)
    finally:
        context.close()


def _label(segmenter: Any, images: list[Path], options: RunOptions, context: Any) -> int:
    """The run: prepare (rank 0), every rank its share, merge (rank 0); exit status 0, 1 (some
    images failed) or 130 (interrupted: the manifest lists what was finished)."""
    from clsclip import labelling

    if context.is_main:
        labelling.prepare(options)
    context.barrier()
    indices = labelling.todo(images, options)
    logger.info("rank %d: %d of %d image(s) to segment", options.rank, len(indices), len(images))
    try:
        with terminate_as_interrupt():
            written, failed = labelling.run(segmenter, images, indices, options, progress=True)
    except KeyboardInterrupt:
        print("clsclip: interrupted; --resume goes on from the manifest", file=sys.stderr)
        return 130
    logger.info("rank %d wrote %d image(s) to %s", options.rank, written, options.out)
    failed = int(context.sum(failed, segmenter.device))
    context.barrier()
    if context.is_main:
        labelling.finish(images, options)
    if failed:
        print(f"clsclip: {failed} of {len(images)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0
