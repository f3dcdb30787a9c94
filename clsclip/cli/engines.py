"""``clsclip segment``'s engines: the local one or Ray Data, for a run's images and its videos,
built from the checked arguments and the plan."""

from __future__ import annotations

import argparse
import json
from typing import Any

from clsclip.cli.video import TRACKERS


def engine(args: argparse.Namespace, plan: dict[str, Any], options: Any) -> Any:
    """The engine of the run's images."""
    from clsclip.labelling import local_engine

    if args.engine == "local":
        return local_engine(plan["segmenter"], options, threshold=args.threshold,
                            batch_size=args.batch_size, workers=args.workers)  # fmt: skip
    from clsclip.labelling.ray_engine import ray_engine

    return ray_engine(args.model, options, threshold=args.threshold, batch_size=args.batch_size,
                      actors=args.actors, gpus_per_actor=args.gpus_per_actor,
                      address=args.ray_address, actor_kwargs=_actor_kwargs(args, plan),
                      retries=args.ray_retries)  # fmt: skip


def video_engine(args: argparse.Namespace, plan: dict[str, Any], options: Any) -> Any:
    """The engine of the run's videos (None: the run has none)."""
    if plan["video"] is None:
        return None
    if args.engine == "local":
        from clsclip.labelling.run import video_engine as local_video_engine

        return local_video_engine(
            plan["segmenter"], options, plan["video"], threshold=args.threshold
        )
    from clsclip.labelling.ray_video import ray_video_engine

    return ray_video_engine(args.model, options, plan["video"], threshold=args.threshold,
                            actors=args.actors, gpus_per_actor=args.gpus_per_actor,
                            address=args.ray_address, actor_kwargs=_actor_kwargs(args, plan),
                            retries=args.ray_retries)  # fmt: skip


def _actor_kwargs(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    boxes = json.loads(args.boxes.read_text(encoding="utf-8")) if args.boxes else None
    return {"device": args.device, "precision": plan["spec"]["precision"],
            "backend": args.backend, "revision": args.revision, "chunk_size": args.chunk_size,
            "boxes": boxes, "proposals": args.proposals, "yolo_model": args.yolo_model,
            "yolo_conf": args.yolo_conf, "max_image_pixels": plan["limit"],
            "threads": args.threads, "tracker": TRACKERS.get(args.track)}  # fmt: skip
