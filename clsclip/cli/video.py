"""``clsclip segment``'s video options (see docs/video.md): how frames are sampled, smoothed
and written, checked before anything is written."""

from __future__ import annotations

import argparse
from typing import Any

from clsclip.optional import require

TRACKERS = {"bytetrack": "bytetrack.yaml", "botsort": "botsort.yaml"}
"""``--track``: ultralytics' tracker configs."""


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "videos", "inputs FFmpeg reads as videos (probed; needs clsclip[video]): one folder of "
        "outputs per video, frames named by their index (docs/video.md)",
    )  # fmt: skip
    group.add_argument("--every", type=int, default=1, help="every n-th frame (default: 1)")
    group.add_argument(
        "--fps", type=float, default=None,
        help="instead, the frame nearest each tick of this rate (default: every frame)",
    )  # fmt: skip
    group.add_argument("--start", type=float, default=None, help="from this second (default: 0)")
    group.add_argument("--end", type=float, default=None, help="up to this second (default: end)")
    group.add_argument(
        "--smooth", type=float, default=None,
        help="moving average of the low-resolution logits, the new frame's weight in (0, 1]: "
        "steadier masks, slower to follow a change (default: off)",
    )  # fmt: skip
    group.add_argument(
        "--overlay-video", action="store_true",
        help="write each video's overlay as H.264 MP4 (the png format also does)",
    )  # fmt: skip
    group.add_argument(
        "--track", choices=sorted(TRACKERS), default=None,
        help="with --proposals yolo: ultralytics' tracker, one id per object across frames; "
        "the YouTube-VIS file then has one annotation per tracked object (default: none)",
    )  # fmt: skip
    group.add_argument(
        "--video-chunk", type=int, default=32,
        help="frames per overlay part and smoothing checkpoint: with either, a resumed run "
        "goes on from the last checkpoint (default: 32)",
    )  # fmt: skip


def video_settings(args: argparse.Namespace, inputs: list[Any]) -> Any:
    """The run's `VideoOptions` when it has videos (None otherwise), checked: PyAV installed,
    formats a video can be written in."""
    from clsclip.checks import check_int
    from clsclip.labelling.video import VideoOptions
    from clsclip.pipeline.video import Smoother
    from clsclip.pipeline.video_decode import check_sampling

    check_sampling(args.every, args.fps, args.start, args.end)
    if args.track is not None and args.proposals != "yolo":
        raise ValueError("--track follows the detector's boxes: give --proposals yolo too")
    check_int("--video-chunk", args.video_chunk)
    if args.smooth is not None:
        Smoother(args.smooth)
    if not any(item.video for item in inputs):
        if args.track is not None:
            raise ValueError("--track follows objects across a video's frames: give videos")
        return None
    if args.track is not None and not all(item.video for item in inputs):
        raise ValueError("--track takes videos only: segment the images in another run")
    require("av", "video", purpose="segmenting videos")
    if "label-studio" in args.format:
        raise ValueError("--format label-studio takes images only; for videos use label, npz, "
                         "coco or png (the overlay video)")  # fmt: skip
    return VideoOptions(args.every, args.fps, args.start, args.end, args.smooth,
                        args.overlay_video, args.video_chunk, args.batch_size,
                        args.track)  # fmt: skip
