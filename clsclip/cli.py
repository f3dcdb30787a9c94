"""The ``clsclip`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger("clsclip.cli")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
RESERVED_STEMS = ("index",)  # the run's own index.json / index.jsonl


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clsclip", description="Zero-shot semantic segmentation with ClsCLIP."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    seg = commands.add_parser(
        "segment",
        help="segment images by class names",
        description="Write one mask PNG per class, a colour overlay PNG and a JSON summary per "
        "image into --out.",
    )
    seg.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    seg.add_argument("--classes", nargs="+", required=True, help="class names, e.g. dog cat")
    seg.add_argument("--model", required=True, help="a model folder or a Hugging Face Hub repo id")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
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
    seg.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    seg.add_argument(
        "--local-files-only", action="store_true", help="never download; use the cache only"
    )
    _add_train_parser(commands)
    _add_eval_parser(commands)
    return parser


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
        description="The protocol of the paper: seeded episodes, per-class IoU summed over "
        "episodes, mIoU over the fold's classes, FB-IoU; scored at label resolution.",
    )
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
    commands = {"segment": _segment, "train": _train, "eval": _eval}
    if args.command in commands:
        return commands[args.command](args)
    raise AssertionError(f"unhandled command {args.command}")


def expand_images(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders replaced by their regular image files (sorted, not recursive).

    Named pipes, sockets and devices in a folder are skipped: opening one could block forever.
    """
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
        else:
            out.append(path)
    return out


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output stems, one per input, that never collide (compared ignoring case, for
    case-insensitive file systems) with each other or with the run's own files: ``a``, ``a_2``,
    and ``a_2_2`` for a later input that is itself called ``a_2``."""
    taken = {stem.casefold() for stem in RESERVED_STEMS}
    stems = []
    for path in paths:
        base = path.stem or "image"
        stem, n = base, 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{base}_{n}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


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
    from clsclip.inputs import check_threshold
    from clsclip.segmenter import Segmenter

    images = expand_images(args.images)
    if not images:
        print("clsclip: error: no images found", file=sys.stderr)
        return 2
    try:
        check_output_folder(args.out)
        segmenter = Segmenter.from_pretrained(
            args.model,
            device=args.device,
            revision=args.revision,
            local_files_only=args.local_files_only,
            chunk_size=args.chunk_size,
            precision=args.precision,
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
    with terminate_as_interrupt():
        done, failed, interrupted = _segment_all(segmenter, images, args)
    if interrupted:
        print(
            f"clsclip: interrupted after {done} of {len(images)} image(s); the index lists "
            "the finished ones",
            file=sys.stderr,
        )
        return 130
    if failed:
        print(f"clsclip: {failed} of {len(images)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _segment_all(
    segmenter: Any, images: list[Path], args: argparse.Namespace
) -> tuple[int, int, bool]:
    """Segment and save each image; ``index.jsonl`` gets a line as each image finishes, and
    ``index.json`` lists them all at the end, also after an interruption. Returns (finished,
    failed, interrupted)."""
    from tqdm import tqdm

    from clsclip.safe_write import write_atomic

    index: list[dict[str, Any]] = []
    failed, interrupted = 0, False
    progress = tqdm(images, desc="segmenting", unit="image")
    try:
        with open(args.out / "index.jsonl", "a", encoding="utf-8") as lines:
            for path, stem in zip(progress, unique_stems(images), strict=True):
                start = time.perf_counter()
                try:
                    result = segmenter.segment(path, args.classes, threshold=args.threshold)
                    written = result.save(args.out, stem)
                except Exception as e:  # any per-image failure is reported and counted
                    failed += 1
                    logger.error("skipped %s: %s: %s", path, type(e).__name__, e)
                    continue
                entry = {
                    "image": str(path),
                    "files": [p.name for p in written],
                    "seconds": round(time.perf_counter() - start, 3),
                }
                index.append(entry)
                lines.write(json.dumps(entry) + "\n")
                lines.flush()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        text = json.dumps(index, indent=2) + "\n"
        write_atomic(args.out / "index.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    logger.info("wrote results for %d image(s) to %s", len(index), args.out)
    return len(index), failed, interrupted


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
            split=args.split,
            episodes=args.episodes,
            seed=args.seed,
            proposals=args.proposals,
            classes=args.classes,
        )
    except (OSError, ValueError, TypeError, ImportError) as e:
        print(f"clsclip: error: {e}", file=sys.stderr)
        return 2
    print(format_scores(scores))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**scores, "model": args.model}, indent=2) + "\n")
    return 0


def format_scores(scores: dict[str, Any]) -> str:
    """A table like the paper's: one row per class, then mIoU and FB-IoU, in percent."""
    width = max(10, *(len(name) for name in scores["class_iou"]))
    lines = [
        f"{scores['dataset']} fold {scores['fold']} ({scores['classes']} classes), "
        f"{scores['episodes']} episodes, proposals: {scores['proposals']}",
        f"{'class':<{width}}  IoU %",
    ]
    lines += [f"{name:<{width}}  {100 * iou:5.1f}" for name, iou in scores["class_iou"].items()]
    lines += [f"{'mIoU':<{width}}  {100 * scores['miou']:5.1f}"]
    lines += [f"{'FB-IoU':<{width}}  {100 * scores['fb_iou']:5.1f}"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
