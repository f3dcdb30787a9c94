"""The ``clsclip`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clsclip.labelling import FORMATS, RunOptions, list_images
from clsclip.safe_write import write_atomic

logger = logging.getLogger("clsclip.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clsclip", description="Zero-shot semantic segmentation with ClsCLIP."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

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
        choices=("fp32", "bf16", "fp16", "int8"),
        default="fp32",
        help="bf16/fp16: CUDA autocast; int8: dynamic int8 linear layers on the CPU",
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
    _add_train_parser(commands)
    _add_eval_parser(commands)
    _add_data_parser(commands)
    _add_export_parser(commands)
    return parser


def _add_export_parser(commands: Any) -> None:
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


def _add_data_parser(commands: Any) -> None:
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


def _add_train_parser(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train a ClsCLIP model on a fold's base classes (needs clsclip[train])",
        description="Train on PASCAL-5i / COCO-20i (VOC layout). Run under torchrun for many "
        "GPUs. Bundled configs: pascal5i-fold0..3, coco20i-fold0..3.",
    )
    train.add_argument("--config", required=True, help="a training config JSON, or a bundled name")
    train.add_argument("--data-root", default=None)
    train.add_argument("--fold", type=int, default=None)
    train.add_argument("--output-dir", default=None)
    train.add_argument("--max-steps", type=int, default=None)
    train.add_argument("--device", default=None)


def _add_eval_parser(commands: Any) -> None:
    ev = commands.add_parser(
        "eval",
        help="episodic mIoU / FB-IoU on a fold's novel classes",
        description="The standard protocol (default): the references' fixed (image, class) "
        "lists and episodes, scored at the network input. all-pairs: every pair with "
        "--min-pixels pixels, scored at the label's resolution. See docs/evaluation.md.",
    )
    ev.add_argument("--protocol", choices=("standard", "all-pairs"), default="standard")
    ev.add_argument(
        "--score-at",
        choices=("input", "original"),
        default=None,
        help="input: image and label resized to the model input (the references); original: "
        "the label's resolution (PFENet). Default: input for standard, original for all-pairs",
    )
    ev.add_argument("--min-pixels", type=int, default=16, help="all-pairs: least class pixels")
    ev.add_argument("--model", required=True, help="a model folder or a Hugging Face Hub repo id")
    ev.add_argument("--dataset", choices=("pascal5i", "coco20i"), required=True)
    ev.add_argument("--fold", type=int, required=True, choices=(0, 1, 2, 3))
    ev.add_argument("--data-root", required=True)
    ev.add_argument("--split", default="val")
    ev.add_argument("--proposals", choices=("none", "yolo", "gt"), default="none")
    ev.add_argument("--episodes", type=int, default=1000)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--classes", choices=("novel", "base"), default="novel")
    ev.add_argument("--device", default=None)
    ev.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 some images failed)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    commands = {
        "segment": _segment,
        "train": _train,
        "eval": _eval,
        "data": _data,
        "export": _export,
    }
    if args.command in commands:
        return commands[args.command](args)
    raise AssertionError(f"unhandled command {args.command}")


def check_output_folder(folder: Path) -> None:
    """Create ``folder`` if needed and check that files can be written there; `OSError` that
    says what is wrong, before any model is loaded or image segmented."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--out {str(folder)!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(f"cannot write into --out {str(folder)!r}: {e.strerror or e}") from e


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the block runs, so that a terminated run
    cleans up like one stopped with Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _proposer(args: argparse.Namespace) -> Any:
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
        return YoloProposer(args.yolo_model, conf=args.yolo_conf, device=args.device)
    return None


def _segment(args: argparse.Namespace) -> int:
    from clsclip.inputs import check_int, check_threshold
    from clsclip.segmenter import Segmenter

    rank, world, local_rank = _torchrun()
    images = list_images(args.images, recursive=args.recursive, list_file=args.list)
    if not images:
        print("clsclip: error: no images found", file=sys.stderr)
        return 2
    try:
        check_output_folder(args.out)
        check_int("--batch-size", args.batch_size)
        check_int("--workers", args.workers, minimum=0)
        device = args.device
        if world > 1 and device is None and _cuda():
            device = f"cuda:{local_rank}"
        segmenter = Segmenter.from_pretrained(
            args.model,
            device=device,
            revision=args.revision,
            local_files_only=args.local_files_only,
            chunk_size=args.chunk_size,
            precision=args.precision,
            backend=args.backend,
        )
        segmenter.encode_classes(args.classes)  # checks the names once, before any image
        if args.threshold is not None:
            check_threshold(args.threshold)
        if args.max_image_pixels is not None:
            segmenter.max_image_pixels = args.max_image_pixels or None
        segmenter.proposer = _proposer(args)
    except (OSError, ValueError, TypeError, ImportError) as e:
        print(f"clsclip: error: {e}", file=sys.stderr)
        return 2
    options = RunOptions(
        out=args.out,
        classes=list(args.classes),
        formats=tuple(dict.fromkeys(args.format)),
        threshold=args.threshold,
        batch_size=args.batch_size,
        workers=args.workers,
        resume=args.resume,
        instances=args.instances,
        rank=rank,
        world=world,
    )
    return _label(segmenter, images, options)


def _label(segmenter: Any, images: list[Path], options: RunOptions) -> int:
    """The run: prepare (rank 0), every rank its share, merge (rank 0); exit status 0, 1 (some
    images failed) or 130 (interrupted: the manifest lists what was finished)."""
    from clsclip import labelling

    if options.rank == 0:
        labelling.prepare(options)
    _barrier(options.world)
    indices = labelling.todo(images, options)
    logger.info("rank %d: %d of %d image(s) to segment", options.rank, len(indices), len(images))
    try:
        with terminate_as_interrupt():
            written, failed = labelling.run(segmenter, images, indices, options, progress=True)
    except KeyboardInterrupt:
        print("clsclip: interrupted; --resume goes on from the manifest", file=sys.stderr)
        return 130
    logger.info("rank %d wrote %d image(s) to %s", options.rank, written, options.out)
    failed = _sum_over_ranks(failed, options.world)
    _barrier(options.world)
    if options.rank == 0:
        labelling.finish(images, options)
    if failed:
        print(f"clsclip: {failed} of {len(images)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _torchrun() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if _cuda() else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _sum_over_ranks(value: int, world: int) -> int:
    if world == 1:
        return value
    import torch
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(total)
    return int(total.item())


def _train(args: argparse.Namespace) -> int:
    from clsclip.training import TrainConfig, train

    try:
        config = TrainConfig.load(args.config).replace(
            data_root=args.data_root,
            fold=args.fold,
            output_dir=args.output_dir,
            max_steps=args.max_steps,
            device=args.device,
        )
    except (OSError, ValueError, TypeError) as e:
        print(f"clsclip: error: {e}", file=sys.stderr)
        return 2
    print(f"model written to {train(config)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from clsclip.evaluation import evaluate
    from clsclip.segmenter import Segmenter

    try:
        segmenter = Segmenter.from_pretrained(args.model, device=args.device)
        scores = evaluate(
            segmenter,
            data_root=args.data_root,
            dataset=args.dataset,
            fold=args.fold,
            protocol=args.protocol,
            split=args.split,
            episodes=args.episodes,
            seed=args.seed,
            proposals=args.proposals,
            min_pixels=args.min_pixels,
            score_at=args.score_at,
            classes=args.classes,
        )
    except (OSError, ValueError, TypeError, ImportError) as e:
        print(f"clsclip: error: {e}", file=sys.stderr)
        return 2
    print(format_scores(scores))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**scores, "model": args.model}, indent=2) + "\n"
        write_atomic(args.out, lambda tmp: tmp.write_text(text))
    return 0


def _export(args: argparse.Namespace) -> int:
    from clsclip.segmenter import Segmenter

    try:
        segmenter = Segmenter.from_pretrained(args.model, device="cpu")
        out = segmenter.export_onnx(
            args.out, classes=args.classes, opset=args.opset, int8=args.int8
        )
    except (OSError, ValueError, TypeError, ImportError, RuntimeError) as e:
        print(f"clsclip: error: {e}", file=sys.stderr)
        return 2
    print(f"exported to {out}")
    return 0


def _data(args: argparse.Namespace) -> int:
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
    except (OSError, ValueError, ImportError) as e:
        print(f"clsclip: error: {e}", file=sys.stderr)
        return 2
    return 0


def format_scores(scores: dict[str, Any]) -> str:
    """A table like the paper's: one row per class, then mIoU and FB-IoU, in percent."""
    width = max(10, *(len(name) for name in scores["class_iou"]))
    lines = [
        f"{scores['dataset']} fold {scores['fold']} ({scores['classes']} classes), "
        f"{scores['protocol']} protocol, {scores['episodes']} episodes, scored at "
        f"{scores['score_at']}, proposals: {scores['proposals']}",
        f"{'class':<{width}}  IoU %  episodes",
    ]
    lines += [
        f"{name:<{width}}  {100 * iou:5.1f}  {scores['class_episodes'][name]:8d}"
        for name, iou in scores["class_iou"].items()
    ]
    lines += [f"{'mIoU':<{width}}  {100 * scores['miou']:5.1f}"]
    lines += [f"{'FB-IoU':<{width}}  {100 * scores['fb_iou']:5.1f}"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
