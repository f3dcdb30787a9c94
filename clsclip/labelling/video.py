"""A labelling run's videos: each video's frames segmented as a stream (`Segmenter.segment_video`)
and written as they come by a writer thread behind a bounded queue (per-frame label PNGs and
npz, the overlay video, the YouTube-VIS annotations), with a frame log that lets a killed run
resume at the first frame not written.

A video's files are in its folder ``{stem}/`` (`clsclip.names`). Its frame log
(``frames.jsonl``) starts with the run it belongs to, then holds one line per written frame
and, with an overlay video or smoothing, a checkpoint line each `VideoOptions.chunk` frames:
the overlay is written in parts closed at checkpoints (an MP4 cannot be appended to) and the
smoothing state is saved there, so such a run resumes at the first frame after the last
checkpoint; without either, at the first frame not logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clsclip.labelling.inputs import InputImage, coco_annotation_id, coco_image_id
from clsclip.labelling.outputs import OutputOptions, write_npz
from clsclip.names import (
    VIS_FILE,
    frame_log_file,
    frame_stem,
    label_file,
    npz_file,
    overlay_video_file,
    video_files,
    video_part,
)
from clsclip.pipeline.video import FrameResult, Smoother
from clsclip.pipeline.video_decode import VideoError, probe_video
from clsclip.results.files import save_png
from clsclip.results.formats import coco_categories, encode_rle, label_image, rle_stats
from clsclip.results.prediction import LowResPrediction
from clsclip.results.video import VideoWriter, join_videos
from clsclip.storage.files import write_atomic, write_json

logger = logging.getLogger(__name__)

PARTS = "overlay-parts"
"""A video's folder of overlay parts (joined into ``overlay.mp4`` when the video is done)."""
SMOOTH_STATE = "smooth-state.pt"
"""A video's smoothing state at its last checkpoint."""
_OWN = re.compile(r"^(\d{6,}(_label\.png|\.npz)|frames\.jsonl|overlay\.mp4|youtube-vis\.json|"
                  r"smooth-state\.pt)$")  # fmt: skip


@dataclass(frozen=True)
class VideoOptions:
    """How a run's videos are read and written.

    Attributes:
        every, fps, start, end, smooth: as `Segmenter.segment_video` takes them.
        overlay: write the overlay video (``--overlay-video``; the ``png`` format also does).
        chunk: frames per overlay part and smoothing checkpoint.
        batch_size: frames per network call.
        track: the detector's tracker (``--track``; None: none): frames carry track ids, the
            YouTube-VIS file has one annotation per tracked object, and an interrupted video is
            redone from its start (a tracker's state is not saved).
    """

    every: int = 1
    fps: float | None = None
    start: float | None = None
    end: float | None = None
    smooth: float | None = None
    overlay: bool = False
    chunk: int = 32
    batch_size: int = 8
    track: str | None = None

    def writes_overlay(self, formats: Sequence[str]) -> bool:
        return self.overlay or "png" in formats

    def identity(self) -> dict[str, Any]:
        """What of these options changes a video's outputs (the run's identity)."""
        return {"every": self.every, "fps": self.fps, "start": self.start, "end": self.end,
                "smooth": self.smooth, "overlay": self.overlay, "chunk": self.chunk,
                "track": self.track}  # fmt: skip


class _FrameLog:
    """``{stem}/frames.jsonl``: the run's header, then frame and checkpoint lines, flushed."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.lines: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []
        self.checkpoint: dict[str, Any] | None = None
        self._file: Any = None

    def read(self, checkpointed: bool) -> None:
        """The lines of this run (another run's log, or none, is started afresh); with
        ``checkpointed``, frames after the last checkpoint are dropped (they are redone)."""
        lines = []
        if self.path.is_file():
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        lines.append(json.loads(line))
                    except json.JSONDecodeError:
                        break  # a line cut by a kill ends what is known
        if not lines or lines[0] != self.header:
            return
        end = len(lines)
        if checkpointed:
            marks = [i for i, line in enumerate(lines) if "checkpoint" in line]
            end = marks[-1] + 1 if marks else 1
        self.lines = lines[1:end]
        self.frames = [line for line in self.lines if "frame" in line]
        found = [line for line in self.lines if "checkpoint" in line]
        self.checkpoint = found[-1] if found else None

    def open(self) -> None:
        """Rewrite the log to what is kept, then append to it."""
        lines = [self.header, *self.lines]
        text = "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines)
        write_atomic(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the video

    def append(self, line: dict[str, Any]) -> None:
        self._file.write(json.dumps(line, allow_nan=False) + "\n")
        self._file.flush()
        self.lines.append(line)
        if "frame" in line:
            self.frames.append(line)
        else:
            self.checkpoint = line

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def clear_video(folder: Path) -> None:
    """Remove what a video of an earlier run left in its folder (only clsclip's own names)."""
    if not folder.is_dir():
        return
    shutil.rmtree(folder / PARTS, ignore_errors=True)
    for entry in folder.iterdir():
        if entry.is_file() and _OWN.match(entry.name):
            entry.unlink(missing_ok=True)


class _Writer:
    """The writing stage: frames' files, overlay parts and log lines, in a thread behind a
    bounded queue (the network does not wait for PNG and H.264 encoding)."""

    def __init__(self, job: _VideoJob, size: int) -> None:
        self.job = job
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="clsclip-video-write", daemon=True)
        self.thread.start()

    def put(self, item: FrameResult | None) -> None:
        while self.thread.is_alive():
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        self.raise_error()

    def _run(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                self.job.write_frame(item)
        except BaseException as e:  # raised in the main thread
            self.error = e

    def finish(self) -> None:
        self.put(None)
        self.thread.join()
        self.raise_error()

    def stop(self) -> None:
        """Let the frames already queued be written, then end (an interrupted run)."""
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=30)
        self.thread.join(timeout=60)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


class _VideoJob:
    """One video's outputs and log."""

    def __init__(self, video: InputImage, stem: str, options: OutputOptions,
                 settings: VideoOptions, run: str, size: tuple[int, int], fps: float,
                 smoother: Smoother | None) -> None:  # fmt: skip
        self.video, self.stem, self.options, self.settings = video, stem, options, settings
        self.folder = options.out / stem
        self.size, self.fps = size, fps
        self.smoother = smoother
        self.overlay = settings.writes_overlay(options.formats)
        self.checkpointed = self.overlay or smoother is not None
        self.log = _FrameLog(options.out / frame_log_file(stem), {"run": run, "key": video.key})
        self.writer: VideoWriter | None = None
        self.pending = 0
        self.last: LowResPrediction | None = None  # the last written: its grids are the average

    def resume_point(self) -> int:
        """Read the log; the first frame index still to do (0: from the start, folder cleared)."""
        if self.settings.track is None:  # a tracker's state is not saved: from the start
            self.log.read(self.checkpointed)
        if not self.log.frames:
            clear_video(self.folder)
            self.log.lines, self.log.checkpoint = [], None
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.smoother is not None and self.log.checkpoint is not None:
            state = torch.load(self.folder / SMOOTH_STATE, weights_only=True)
            self.smoother.load_state_dict(state)
        parts = self.folder / PARTS
        if parts.is_dir():  # parts after the last checkpoint are redone
            kept = set((self.log.checkpoint or {}).get("parts", []))
            for part in parts.iterdir():
                if part.name not in kept:
                    part.unlink(missing_ok=True)
        self.log.open()
        return self.log.frames[-1]["frame"] + 1 if self.log.frames else 0

    def write_frame(self, frame: FrameResult) -> None:
        result, formats = frame.result, self.options.formats
        files: list[str] = []
        name = frame_stem(self.stem, frame.index)
        line: dict[str, Any] = {"frame": frame.index, "time": frame.time}
        if "label" in formats:
            image = label_image(result.label_map, len(result.class_names))
            write_atomic(self.options.out / label_file(name), lambda tmp: save_png(image, tmp))
            files.append(label_file(name))
        if "npz" in formats:
            write_atomic(self.options.out / npz_file(name), lambda tmp: write_npz(result, tmp))
            files.append(npz_file(name))
        if "coco" in formats:
            line["annotations"] = {
                str(a["category_id"]): {k: a[k] for k in ("segmentation", "area", "bbox", "score")}
                for a in result.to_coco()
            }
        if frame.tracks:
            line["tracks"] = {str(track): self._tracked(result, name, mask)
                              for track, name, mask in frame.instances()}  # fmt: skip
        if self.overlay:
            if self.writer is None:
                part = self.folder / PARTS / f"{frame.index:06d}.mp4"
                part.parent.mkdir(parents=True, exist_ok=True)
                self.writer = VideoWriter(part, width=self.size[0], height=self.size[1],
                                          fps=self.fps)  # fmt: skip
            self.writer.write(result.overlay(), frame.time)
        line["files"] = files
        if self.smoother is not None:  # not the live smoother's: the network runs ahead of us
            self.last = result.prediction
        self.log.append(line)
        self.pending += 1
        if self.checkpointed and self.pending >= self.settings.chunk:
            self.checkpoint()

    def _tracked(self, result: Any, name: str, mask: Any) -> dict[str, Any] | None:
        """One tracked object in one frame: its class and mask (None: an empty mask)."""
        if not mask.any():
            return None
        rle = encode_rle(mask)
        area, bbox = rle_stats(rle)
        return {"category_id": result.class_names.index(name) + 1, "segmentation": rle,
                "area": area, "bbox": bbox}  # fmt: skip

    def checkpoint(self) -> None:
        """Close the overlay part and save the smoothing state, then log it."""
        parts = list((self.log.checkpoint or {}).get("parts", []))
        if self.writer is not None:
            self.writer.close()
            parts.append(self.writer.path.name)
            self.writer = None
        if self.smoother is not None:  # the average after the last frame written
            grids = {} if self.last is None else Smoother.grids(self.last)
            state = {name: grid.cpu() for name, grid in grids.items()}
            write_atomic(self.folder / SMOOTH_STATE, lambda tmp: torch.save(state, tmp))
        self.log.append({"checkpoint": len(self.log.frames), "parts": parts})
        self.pending = 0

    def finish(self) -> list[str]:
        """After the last frame: the last checkpoint, the overlay joined, the YouTube-VIS file;
        the files the video's record lists."""
        if self.checkpointed and (self.pending or self.writer is not None):
            self.checkpoint()
        out = self.options.out
        if self.overlay:
            parts = [self.folder / PARTS / p for p in (self.log.checkpoint or {}).get("parts", [])]
            if parts:
                join_videos(parts, out / overlay_video_file(self.stem))
            shutil.rmtree(self.folder / PARTS, ignore_errors=True)
        if "coco" in self.options.formats:
            write_json(out / video_part(self.stem), self.youtube_vis())
        (self.folder / SMOOTH_STATE).unlink(missing_ok=True)
        files = video_files(self.stem, self.options.formats, self.settings.overlay)
        return [f for f in files if (out / f).is_file()]

    def youtube_vis(self) -> dict[str, Any]:
        """This video in the YouTube-VIS layout: one annotation per class present in any frame,
        one RLE per frame (None where absent)."""
        frames = self.log.frames
        width, height = self.size
        video_id = coco_image_id(self.video.key)
        video = {"id": video_id, "width": width, "height": height, "length": len(frames),
                 "file_names": [f"{self.video.key}#{f['frame']}" for f in frames],
                 "frame_indices": [f["frame"] for f in frames],
                 "timestamps": [f["time"] for f in frames]}  # fmt: skip
        if self.settings.track is not None:
            annotations = self._tracked_annotations(video_id)
            return {"videos": [video], "annotations": annotations,
                    "categories": coco_categories(self.options.classes)}  # fmt: skip
        annotations = []
        present = sorted({int(c) for f in frames for c in f.get("annotations", {})})
        for category in present:
            got = [f.get("annotations", {}).get(str(category)) for f in frames]
            annotations.append({
                "id": coco_annotation_id(self.video.key, category), "video_id": video_id,
                "category_id": category, "iscrowd": 0, "width": width, "height": height,
                "length": 1, "segmentations": [g["segmentation"] if g else None for g in got],
                "areas": [g["area"] if g else None for g in got],
                "bboxes": [g["bbox"] if g else None for g in got],
                "score": sum(g["score"] for g in got if g) / max(1, sum(bool(g) for g in got)),
            })  # fmt: skip
        return {"videos": [video], "annotations": annotations,
                "categories": coco_categories(self.options.classes)}  # fmt: skip

    def _tracked_annotations(self, video_id: int) -> list[dict[str, Any]]:
        """One YouTube-VIS annotation per (track, class) seen in any frame: its mask per frame
        (None where the object is absent), ``track_id`` the tracker's id."""
        frames = self.log.frames
        width, height = self.size
        found = sorted({(int(t), got["category_id"]) for f in frames
                        for t, got in f.get("tracks", {}).items() if got})  # fmt: skip
        annotations = []
        for track, category in found:
            got = []
            for f in frames:
                entry = f.get("tracks", {}).get(str(track))
                got.append(entry if entry and entry["category_id"] == category else None)
            annotations.append({
                "id": coco_annotation_id(self.video.key, track * 1000 + category),
                "video_id": video_id, "category_id": category, "track_id": track, "iscrowd": 0,
                "width": width, "height": height, "length": 1,
                "segmentations": [g["segmentation"] if g else None for g in got],
                "areas": [g["area"] if g else None for g in got],
                "bboxes": [g["bbox"] if g else None for g in got],
            })  # fmt: skip
        return annotations


def label_video(
    segmenter: Any,
    video: InputImage,
    stem: str,
    options: OutputOptions,
    settings: VideoOptions,
    *,
    run: str,
    threshold: float | None,
) -> dict[str, Any]:
    """Segment one video and write its outputs, resuming from its frame log; returns its
    manifest record (status ``failed`` with the one-line reason for a video that cannot be
    read). KeyboardInterrupt propagates after the frames already segmented are written."""
    started = time.perf_counter()
    base = {"key": video.key, "image": str(video.path), "stem": stem, "kind": "video", "run": run}
    job: _VideoJob | None = None
    try:
        info = probe_video(video.path)
        limit = segmenter.max_image_pixels
        if limit is not None and info.width * info.height > limit:
            raise VideoError(
                f"{str(video.path)!r}: frames of {info.width} x {info.height} pixels are over "
                f"the limit of {limit} (--max-image-pixels)"
            )
        rate = settings.fps or (info.fps or 25.0) / settings.every
        smoother = Smoother(settings.smooth) if settings.smooth is not None else None
        job = _VideoJob(video, stem, options, settings, run, (info.width, info.height), rate,
                        smoother)  # fmt: skip
        first = job.resume_point()
        frames = segmenter.segment_video(
            video.path, options.segment_classes, every=settings.every, fps=settings.fps,
            start=settings.start, end=settings.end, batch_size=settings.batch_size,
            smooth=smoother, threshold=threshold, min_score=options.min_score,
            deterministic=True, keep_frames=job.overlay, start_frame=first,
        )  # fmt: skip
        _write_all(job, frames, settings.batch_size)
        files = job.finish()
    except (VideoError, FileNotFoundError, OSError, ValueError, RuntimeError) as e:
        message = f"{type(e).__name__}: {e}"
        logger.error("skipped %s: %s", video.path, message)
        return {**base, "status": "failed", "error": message,
                "frames": len(job.log.frames) if job else 0}  # fmt: skip
    finally:
        if job is not None:
            job.log.close()
            if job.writer is not None:
                job.writer.abort()
    return {**base, "status": "ok", "formats": sorted(options.formats), "outputs": files,
            "frames": len(job.log.frames), "size": [info.height, info.width],
            "seconds": round(time.perf_counter() - started, 4)}  # fmt: skip


def _write_all(job: _VideoJob, frames: Iterator[FrameResult], batch_size: int) -> None:
    writer = _Writer(job, 2 * batch_size)
    try:
        for frame in frames:
            writer.put(frame)
    except BaseException:
        writer.stop()
        close = getattr(frames, "close", None)
        if close is not None:
            close()
        raise
    writer.finish()


def merge_youtube_vis(
    out: Path, records: Sequence[dict[str, Any]], classes: Sequence[str]
) -> list[str]:
    """``youtube-vis.json``: every finished video's own file merged, in key order; returns the
    keys whose file could not be read (counted as failures: ``--resume`` redoes them)."""
    videos: list[Any] = []
    annotations: list[Any] = []
    broken = []
    done = [r for r in records if r.get("kind") == "video" and r.get("status") == "ok"]
    for record in sorted(done, key=lambda r: r["key"]):
        path = out / video_part(record["stem"])
        try:
            part = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(part["videos"], list) or not isinstance(part["annotations"], list):
                raise ValueError("not a YouTube-VIS file")
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.error("cannot read %s (%s); --resume redoes %s", path, e, record["key"])
            broken.append(record["key"])
            continue
        videos += part["videos"]
        annotations += part["annotations"]
    write_json(out / VIS_FILE, {"videos": videos, "annotations": annotations,
                                "categories": coco_categories(list(classes))},
               indent=None)  # fmt: skip
    return broken


def remove_video(out: Path, stem: str) -> None:
    """``--overwrite``: a listed video's own files (its folder, clsclip's names only)."""
    folder = out / stem
    if folder.is_dir() and os.path.realpath(folder).startswith(os.path.realpath(out) + os.sep):
        clear_video(folder)
