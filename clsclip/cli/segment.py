"""``clsclip segment``: label images or a whole dataset (see docs/labelling.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from clsclip.cli.common import (
    USER_ERRORS,
    check_output_folder,
    fail,
    resolve_class_args,
    terminate_as_interrupt,
)
from clsclip.cli.engines import engine, video_engine
from clsclip.cli.video import TRACKERS, add_video_arguments, video_settings
from clsclip.names import FORMATS
from clsclip.optional import require

logger = logging.getLogger("clsclip.cli")


def add_parser(commands: Any) -> None:
    seg = commands.add_parser(
        "segment",
        help="segment images by class names (a file, folders, or a whole dataset)",
        description="Write each image's results into --out in the chosen formats, and one line "
        "per finished image into manifest.jsonl. The folder belongs to one run (run.json): "
        "--resume goes on with the same run, --overwrite starts over. --engine ray runs the job "
        "on Ray Data, on this machine or a cluster. See docs/labelling.md.",
    )
    seg.add_argument("images", nargs="*", type=Path, help="image or video files, or folders")
    seg.add_argument("--list", type=Path, default=None, help="a text file of image paths")
    seg.add_argument("--recursive", action="store_true", help="look into subfolders too")
    seg.add_argument("--classes", nargs="+", default=None, help="class names, e.g. dog cat")
    seg.add_argument(
        "--classes-file", type=Path, default=None,
        help="YAML or JSON mapping of class names to prompts, negatives and thresholds, instead "
        "of --classes (see docs/calibration.md)",
    )  # fmt: skip
    seg.add_argument("--model", required=True, help="a model folder or a Hugging Face Hub repo id")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
    seg.add_argument(
        "--format",
        nargs="+",
        choices=FORMATS,
        default=["png"],
        help="png: masks, overlay, JSON per image; label: one palette PNG label map per image; "
        "coco: one COCO JSON (RLE) for the run; npz: low-resolution logits; label-studio: one "
        "Label Studio tasks JSON with brush pre-annotations and its labelling config XML "
        "(default: png)",
    )
    seg.add_argument(
        "--ls-image-root", default=None,
        help="label-studio: URL prefix of the images (their paths relative to the inputs' "
        "folder follow); default: local-files URLs of their absolute paths",
    )  # fmt: skip
    seg.add_argument("--ls-from-name", default="label", help="label-studio: the BrushLabels name")
    seg.add_argument("--ls-to-name", default="image", help="label-studio: the Image tag name")
    seg.add_argument("--instances", action="store_true", help="coco: one annotation per blob")
    seg.add_argument(
        "--batch-size", type=int, default=8, help="images per network call (default: 8)"
    )
    seg.add_argument(
        "--workers", type=int, default=0, help="image decoding processes (default: 0, in this one)"
    )
    seg.add_argument(
        "--resume", action="store_true", help="go on with the run in --out (the same settings)"
    )
    seg.add_argument(
        "--overwrite", action="store_true", help="start over in --out (its run's files removed)"
    )
    seg.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: this process and --workers decoders; ray: Ray Data (needs clsclip[ray])",
    )  # fmt: skip
    seg.add_argument("--actors", type=int, default=1, help="ray: model actors (default: 1)")
    seg.add_argument(
        "--threads", type=int, default=None,
        help="torch threads of this process (local) or of each actor (ray); default: torch's, "
        "or the machine's cores shared among the actors of a local Ray cluster",
    )  # fmt: skip
    seg.add_argument("--gpus-per-actor", type=float, default=0.0, help="ray: GPUs per actor")
    seg.add_argument(
        "--ray-retries", type=int, default=2,
        help="ray: retries of a batch whose worker died, then each of its images alone; an "
        "image that still fails is recorded as failed (default: 2)",
    )  # fmt: skip
    seg.add_argument(
        "--ray-address", default=None,
        help="ray: a running cluster to join (auto, or host:port; default: $RAY_ADDRESS, else a "
        "local cluster of the run's own, even where another runs)",
    )  # fmt: skip
    seg.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: auto)")
    seg.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="mask threshold in [0, 1] (default: the model's)",
    )
    seg.add_argument(
        "--min-score", type=float, default=None,
        help="classes whose presence score in an image is below it get empty masks there",
    )  # fmt: skip
    seg.add_argument(
        "--chunk-size",
        type=int,
        default=16,
        help="(view, class) pairs per forward pass (default: 16)",
    )
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
    seg.add_argument(
        "--yolo-conf",
        type=float,
        default=0.25,
        help="detector confidence threshold (default: 0.25)",
    )
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
    add_video_arguments(seg)
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
        return YoloProposer(args.yolo_model, conf=args.yolo_conf, device=device,
                            tracker=TRACKERS.get(args.track))  # fmt: skip
    return None


def run(args: argparse.Namespace) -> int:
    """The labelling job: 0 done, 1 some images failed, 2 refused (nothing written), 130
    interrupted (``--resume`` goes on)."""
    import torch

    from clsclip.labelling import RunLocked, RunRefused

    threads = torch.get_num_threads()  # --threads is this run's: `main()` may be called again
    try:
        try:
            plan = _plan(args)
        except (*USER_ERRORS, RunRefused, RunLocked) as e:
            return fail(e)
        return _execute(args, plan)
    finally:
        torch.set_num_threads(threads)


def _check_arguments(args: argparse.Namespace) -> None:
    from clsclip.checks import check_int, check_threshold

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "clsclip segment does not shard with torchrun; run one process with --engine ray "
            "--actors N (--gpus-per-actor 1 for one GPU each)"
        )
    if args.resume and args.overwrite:
        raise ValueError("give either --resume or --overwrite, not both")
    check_int("--batch-size", args.batch_size)
    check_int("--workers", args.workers, minimum=0)
    check_int("--actors", args.actors)
    if args.threads is not None:
        check_int("--threads", args.threads)
    if args.max_image_pixels is not None:
        check_int("--max-image-pixels", args.max_image_pixels, minimum=0)
    if args.threshold is not None:
        check_threshold(args.threshold)
    if args.min_score is not None:
        check_threshold(args.min_score)
    resolve_class_args(args)
    if "label-studio" in args.format:  # before anything is written, not at the merge
        from clsclip.results.label_studio import check_label_names

        check_label_names(args.classes)
    if not args.gpus_per_actor >= 0:
        raise ValueError(f"--gpus-per-actor must be >= 0, got {args.gpus_per_actor}")
    check_int("--ray-retries", args.ray_retries, minimum=0)
    if args.engine == "ray":
        require("ray.data", "ray", purpose="--engine ray")


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    """Everything checked and decided before anything is written."""
    from clsclip.checks import MAX_IMAGE_PIXELS
    from clsclip.classes import specs_identity
    from clsclip.labelling import check_folder, common_base, list_inputs, read_run
    from clsclip.labelling.run import all_done
    from clsclip.labelling.spec import model_identity, proposals_identity, run_spec

    _check_arguments(args)
    out = Path(os.path.abspath(args.out))
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(args.out)!r} exists and is not a folder")
    for parent in out.parents:  # the nearest existing folder above it must be one
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"--out {str(args.out)!r}: {str(parent)!r} is a file")
            break
    old = read_run(out) if args.resume and out.is_dir() else None
    kept = old.get("inputs_base") if old else None
    base = Path(kept) if isinstance(kept, str) else None  # None: the images' common folder
    images = list_inputs(args.images, base=base, recursive=args.recursive, list_file=args.list,
                         exclude=out)  # fmt: skip
    if not images:
        raise ValueError("no images or videos found")
    video = video_settings(args, images)
    base = base if base is not None else common_base(images)
    limit = MAX_IMAGE_PIXELS if args.max_image_pixels is None else (args.max_image_pixels or None)
    formats = tuple(dict.fromkeys(args.format))

    def spec_for(config: Any, segmenter: Any) -> dict[str, Any]:
        return run_spec(
            model=model_identity(args.model, backend=args.backend, revision=args.revision),
            config=config, classes=specs_identity(args.class_specs),
            threshold=config.threshold if args.threshold is None else args.threshold,
            formats=formats, min_score=args.min_score, instances=args.instances,
            proposals=proposals_identity(args.proposals, boxes=args.boxes,
                                         yolo_model=args.yolo_model, yolo_conf=args.yolo_conf),
            precision=_resolved_precision(args, segmenter), backend=args.backend,
            max_image_pixels=limit, base=base, video=video.identity() if video else None,
        )  # fmt: skip

    segmenter, config = None, _config(args)
    # a resume with nothing to segment still merges and tidies the run, but loads no model
    nothing_left = old is not None and all_done(out, images, spec_for(config, None))
    if args.engine == "local" and not nothing_left:
        if args.threads is not None:  # before the model computes anything (class vectors)
            import torch

            torch.set_num_threads(args.threads)  # `run` restores the caller's count
        segmenter = _segmenter(args)
        config = segmenter.config
    proposer = None
    if not nothing_left:
        proposer = _proposer(args, str(segmenter.device) if segmenter is not None else "cpu")
    threshold = config.threshold if args.threshold is None else args.threshold
    spec = spec_for(config, segmenter)
    check_folder(out, spec, resume=args.resume, overwrite=args.overwrite)  # reads only
    check_output_folder(out)
    if args.engine == "ray" and not nothing_left:  # the cluster and its resources, before writing
        from clsclip.labelling.ray_engine import prepare_cluster

        prepare_cluster(args.ray_address, actors=args.actors, gpus_per_actor=args.gpus_per_actor)
    if segmenter is not None:
        segmenter.max_image_pixels = limit
        segmenter.proposer = proposer
    return {"out": out, "images": images, "segmenter": segmenter, "spec": spec,
            "threshold": threshold, "formats": formats, "limit": limit,
            "video": video, "nothing_left": nothing_left}  # fmt: skip


def _resolved_precision(args: argparse.Namespace, segmenter: Any) -> str:
    """What ``--precision`` resolves to here (``auto``: bf16 or fp32 by this CPU), as run.json
    stores it: a resume on a machine that would resolve it otherwise is another run."""
    if segmenter is not None:
        return str(segmenter.precision)
    import torch

    from clsclip.backends.precision import resolve_precision

    device = torch.device("cuda" if args.gpus_per_actor > 0 else "cpu")
    return resolve_precision(args.precision, device)[0]


def _config(args: argparse.Namespace) -> Any:
    """The model's config (of its own family: ClsCLIP, CLIPSeg, training-free), read without
    loading the model (the Ray driver needs no model)."""
    from clsclip.cli.info import read_config

    return read_config(args.model)[0]


def _segmenter(args: argparse.Namespace) -> Any:
    from clsclip.segmenter import Segmenter

    segmenter = Segmenter.from_pretrained(
        args.model,
        device=args.device,
        revision=args.revision,
        local_files_only=args.local_files_only,
        chunk_size=args.chunk_size,
        precision=args.precision,
        backend=args.backend,
    )
    logger.info("model %s: %s", args.model, segmenter)
    segmenter.encode_classes(  # checks the names and prompts once, before any image
        list(dict.fromkeys(t for c in args.class_specs for t in (*c.prompts, *c.negatives)))
    )
    return segmenter


def _execute(args: argparse.Namespace, plan: dict[str, Any]) -> int:
    from clsclip.labelling import OutputOptions, RunLocked, WorkerDied, close_run, execute, open_run

    out = plan["out"]
    options = OutputOptions(out, tuple(args.classes), plan["formats"], args.instances,
                            tuple(args.class_specs), args.min_score, args.ls_image_root,
                            args.ls_from_name, args.ls_to_name)  # fmt: skip
    try:
        state = open_run(out, plan["spec"], resume=args.resume, overwrite=args.overwrite,
                         options=options)  # fmt: skip
    except (*USER_ERRORS, RunLocked) as e:
        return fail(e)
    try:
        with terminate_as_interrupt():
            report = execute(engine(args, plan, options), plan["images"], state, options,
                             threshold=plan["threshold"], progress=True,
                             videos=video_engine(args, plan, options))  # fmt: skip
    except KeyboardInterrupt:
        print("clsclip: interrupted; --resume goes on from the manifest", file=sys.stderr)
        return 130
    except WorkerDied as e:
        print(f"clsclip: stopped: {e}; --resume goes on from the manifest", file=sys.stderr)
        return 130
    except OSError as e:  # the manifest or a run file could not be written (a full disk)
        print(f"clsclip: stopped: {e}; --resume goes on from the manifest", file=sys.stderr)
        return 1
    finally:
        close_run(state)
    noun = "input(s)" if plan["video"] is not None else "image(s)"
    if report.total_failed:
        print(f"clsclip: {report.total_failed} of {len(plan['images'])} {noun} failed",
              file=sys.stderr)  # fmt: skip
    before = len(plan["images"]) - report.written - report.failed
    if plan["nothing_left"] and not report.total_failed:
        print(f"clsclip: nothing left to do: every input of the run in {out} is done",
              file=sys.stderr)  # fmt: skip
    else:
        print(f"clsclip: {report.written} {noun} segmented, {report.failed} failed, {before} "
              f"done before; outputs in {out}", file=sys.stderr)  # fmt: skip
    return 1 if report.total_failed else 0
