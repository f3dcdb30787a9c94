"""``clsclip eval``: episodic mIoU / FB-IoU on a fold's novel classes."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from clsclip.cli.common import USER_ERRORS, fail


def add_parser(commands: Any) -> None:
    ev = commands.add_parser(
        "eval",
        help="episodic mIoU / FB-IoU on a fold's novel classes, or a training-free benchmark",
        description="--dataset and --fold: the few-shot protocol; the standard one (default) "
        "runs the references' fixed (image, class) lists and episodes, scored at the network "
        "input; all-pairs every pair with --min-pixels pixels, scored at the label's "
        "resolution (docs/evaluation.md). --benchmark: a whole validation set as the "
        "training-free methods report it (voc21, context60, object, voc20, context59, stuff, "
        "cityscapes, ade; whole-dataset mIoU; docs/training-free.md).",
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
    ev.add_argument("--dataset", choices=("pascal5i", "coco20i"), default=None)
    ev.add_argument("--fold", type=int, default=None, help="0, 1, 2 or 3")
    ev.add_argument(
        "--benchmark",
        choices=("voc21", "context60", "object", "voc20", "context59", "stuff", "cityscapes",
                 "ade"),
        default=None,
        help="a training-free benchmark instead of --dataset/--fold",
    )  # fmt: skip
    ev.add_argument(
        "--settings",
        choices=("reference", "model"),
        default="reference",
        help="--benchmark: the reference's settings for the benchmark (a training-free "
        "model's preset) or the model's own config (default: %(default)s)",
    )
    ev.add_argument("--limit", type=int, default=None, help="--benchmark: first N images only")
    ev.add_argument("--data-root", required=True)
    ev.add_argument("--split", default="val")
    ev.add_argument("--proposals", choices=("none", "yolo", "gt"), default="none")
    ev.add_argument("--episodes", type=int, default=1000)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--classes", choices=("novel", "base"), default="novel")
    ev.add_argument("--device", default=None)
    ev.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clsclip.evaluation import evaluate
    from clsclip.segmenter import Segmenter

    if args.benchmark is not None:
        return run_benchmark(args)
    try:
        check_arguments(args)
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
    except USER_ERRORS as e:
        return fail(e)
    return _report(args, format_scores(scores), scores)


def run_benchmark(args: argparse.Namespace) -> int:
    from clsclip.evaluation.benchmark import evaluate_benchmark, format_report
    from clsclip.segmenter import Segmenter

    try:
        if args.dataset is not None or args.fold is not None:
            raise ValueError("give --benchmark, or --dataset and --fold, not both")
        if args.limit is not None:
            from clsclip.checks import check_int

            check_int("--limit", args.limit)
        _check_out(args.out)
        segmenter = Segmenter.from_pretrained(args.model, device=args.device)
        report = evaluate_benchmark(segmenter, args.benchmark, args.data_root,
                                    settings=args.settings, limit=args.limit)  # fmt: skip
    except USER_ERRORS as e:
        return fail(e)
    return _report(args, format_report(report), report)


def _report(args: argparse.Namespace, table: str, scores: dict[str, Any]) -> int:
    """Print the table; write the scores and the model's name as JSON to ``--out``."""
    from clsclip.storage.files import write_atomic

    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**scores, "model": args.model}, indent=2) + "\n"
        write_atomic(args.out, lambda tmp: tmp.write_text(text))
    return 0


def check_arguments(args: argparse.Namespace) -> None:
    """The arguments that need no model or data, checked before either is read: the fold, the
    number of episodes and a writable ``--out`` file."""
    from clsclip.checks import check_int
    from clsclip.datasets.folds import check_fold

    if args.dataset is None or args.fold is None:
        raise ValueError("give --dataset and --fold (the few-shot protocol) or --benchmark")
    check_fold(args.dataset, args.fold)
    check_int("--episodes", args.episodes)
    check_int("--min-pixels", args.min_pixels)
    _check_out(args.out)


def _check_out(out: Path | None) -> None:
    """A writable ``--out`` file, checked before anything is read."""
    if out is not None:
        if out.is_dir():
            raise IsADirectoryError(f"--out {str(out)!r} is a folder; give the JSON file to write")
        parent = out.parent if str(out.parent) else Path(".")
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"--out {str(out)!r}: {str(parent)!r} is not a folder")
        if parent.is_dir() and not os.access(parent, os.W_OK):
            raise PermissionError(f"--out {str(out)!r}: cannot write into {str(parent)!r}")


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
