"""A labelling run (``clsclip segment``): the folder's state checked, the images still to do,
an engine (local, or Ray Data) to do them, and the manifest and COCO file kept by this process.

An output folder belongs to one run: ``run.json`` says which (`clsclip.labelling.spec`), a lock
keeps a second process out, ``--resume`` continues only the same run, ``--overwrite`` starts
over. See docs/labelling.md.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clsclip.labelling.inputs import InputImage, assign_stems
from clsclip.labelling.manifest import (
    LOCK_FILE,
    Manifest,
    differences,
    lock_folder,
    read_run,
    run_hash,
    write_run,
)
from clsclip.labelling.outputs import (
    OutputOptions,
    merge_coco,
    merge_label_studio,
    outputs_exist,
    remove_run,
    write_classes,
    write_outputs,
)
from clsclip.labelling.video import VideoOptions, label_video, merge_youtube_vis, remove_video
from clsclip.names import image_files
from clsclip.storage.files import inside, remove_all_temporaries
from clsclip.version import __version__

logger = logging.getLogger(__name__)


class RunRefused(ValueError):
    """The folder holds another run (or something else) and the arguments do not allow going
    on: nothing was written."""


class WorkerDied(RuntimeError):
    """A decoding worker died mid-run; what was finished is in the manifest."""


@dataclass
class RunState:
    """What `open_run` found and set up."""

    spec: dict[str, Any]
    hash: str
    records: dict[str, dict[str, Any]]
    manifest: Manifest
    lock: Any
    corrupt_lines: int = 0
    stems: dict[str, str] = field(default_factory=dict)


def check_folder(
    out: Path, spec: Mapping[str, Any], *, resume: bool, overwrite: bool
) -> dict[str, Any]:
    """Decide, reading only, whether this run may use ``out``; returns the description to use
    (a resumed run's own, whose ``inputs_base`` keys the images). `RunRefused` says why not."""
    old = read_run(out) if out.is_dir() else None
    entries = [p for p in out.iterdir() if p.name != LOCK_FILE] if out.is_dir() else []
    if resume and old is not None:
        changed = differences(old, spec)
        if changed:
            raise RunRefused(
                f"--resume: {str(out)!r} holds another run; it differs in "
                + "; ".join(changed)
                + ". Resume with the same settings, start over with --overwrite, or use "
                "another --out"
            )
        return {**spec, "inputs_base": old["inputs_base"], "created": old.get("created")}
    if old is None and entries and not overwrite:
        raise RunRefused(
            f"{str(out)!r} is not empty and holds no clsclip run (no run.json; it may come from "
            "an earlier clsclip): use an empty or new --out, or --overwrite to start a run "
            "there (files it does not know are kept)"
        )
    if old is not None and not overwrite:
        raise RunRefused(
            f"{str(out)!r} holds a run already: --resume to go on with it, --overwrite to start "
            "over, or another --out"
        )
    return dict(spec)


def open_run(
    out: Path, spec: dict[str, Any], *, resume: bool, overwrite: bool, options: OutputOptions
) -> RunState:
    """Lock the folder, re-check it under the lock, and set it up for this run."""
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_folder(out)
    try:
        spec = check_folder(out, spec, resume=resume, overwrite=overwrite)
        manifest = Manifest(out)
        records, bad = manifest.read()
        if not resume:
            for record in records.values():
                if record.get("kind") == "video" and isinstance(record.get("stem"), str):
                    remove_video(out, record["stem"])
            remove_run(out, records)
            records, bad = {}, 0
        write_run(out, spec)
        if "label" in options.formats:
            write_classes(options)
        manifest.open()
    except BaseException:
        lock.release()
        raise
    return RunState(spec, run_hash(spec), records, manifest, lock, bad)


def todo(images: Sequence[InputImage], state: RunState, out: Path) -> list[InputImage]:
    """The images not done: done means a record of this run with status ok whose files all
    still exist (a deleted file is redone)."""
    left = []
    for image in images:
        record = state.records.get(image.key)
        done = (
            record is not None
            and record.get("status") == "ok"
            and record.get("run") == state.hash
            and outputs_exist(out, record)
        )
        if not done:
            left.append(image)
    return left


def all_done(out: Path, images: Sequence[InputImage], spec: Mapping[str, Any]) -> bool:
    """Whether a ``--resume`` of ``spec`` in ``out`` has nothing left (`todo` empty), read only:
    the run in ``out`` is this one and every input has an ok record of it whose files exist."""
    old = read_run(out)
    if old is None or differences(old, spec):
        return False
    resumed = {**spec, "inputs_base": old["inputs_base"], "created": old.get("created")}
    manifest = Manifest(out)
    state = RunState(resumed, run_hash(resumed), manifest.read()[0], manifest, None)
    return not todo(images, state, out)


def stems_for(
    images: Sequence[InputImage], state: RunState, options: OutputOptions
) -> dict[str, str]:
    """Each image's stem: the manifest's (contained in the run), else a new one whose files
    collide with no other image's (`assign_stems`)."""
    taken = {}
    for key, record in state.records.items():  # stems read from the manifest: contained
        stem = record.get("stem")
        if isinstance(stem, str) and inside(state.manifest.path.parent, stem) is not None:
            taken[key] = stem
        elif stem is not None:
            logger.warning("manifest stem %r of %r is not inside the run: a new one", stem, key)
    files_of = functools.partial(image_files, class_names=options.classes, formats=options.formats)
    state.stems = assign_stems([i.key for i in images], taken, files_of)
    return state.stems


def ok_record(
    image: InputImage, stem: str, files: Sequence[str], size: tuple[int, int], run: str,
    seconds: float, formats: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    return {"key": image.key, "image": str(image.path), "stem": stem, "status": "ok",
            "formats": sorted(formats), "outputs": list(files), "size": list(size), "run": run,
            "seconds": round(seconds, 4)}  # fmt: skip


def failed_record(image: InputImage, stem: str, error: str, run: str) -> dict[str, Any]:
    return {"key": image.key, "image": str(image.path), "stem": stem, "status": "failed",
            "error": error, "run": run}  # fmt: skip


Engine = Callable[[Sequence[InputImage], dict[str, str], RunState], Iterator[dict[str, Any]]]
"""Segments the images and writes their files; yields one manifest record per image."""


def local_engine(
    segmenter: Any, options: OutputOptions, *, threshold: float | None, batch_size: int,
    workers: int,
) -> Engine:  # fmt: skip
    """Images decoded by ``workers`` `DataLoader` processes, ``batch_size`` at a time, each
    image's network passes on their own (so results never depend on its batch)."""

    def run(
        images: Sequence[InputImage], stems: dict[str, str], state: RunState
    ) -> Iterator[dict[str, Any]]:
        outcomes = segmenter.segment_many(
            [image.path for image in images],
            options.segment_classes,
            batch_size=batch_size,
            workers=workers,
            threshold=threshold,
            keep_images="png" in options.formats,
            deterministic=True,
            min_score=options.min_score,
        )
        start = time.perf_counter()
        for outcome in _loaded(outcomes):
            image = images[outcome.index]
            stem = stems[image.key]
            try:
                if outcome.error is not None:
                    raise RuntimeError(outcome.error)
                files, _ = write_outputs(outcome.result, options, image.key, stem)
            except Exception as e:  # any per-image failure is reported, counted, and passed
                message = outcome.error or f"{type(e).__name__}: {e}"
                logger.error("skipped %s: %s", image.path, message)
                yield failed_record(image, stem, message, state.hash)
            else:
                now = time.perf_counter()
                yield ok_record(image, stem, files, outcome.result.size, state.hash,
                                now - start, options.formats)  # fmt: skip
                start = now

    return run


def video_engine(
    segmenter: Any, options: OutputOptions, settings: VideoOptions, *, threshold: float | None
) -> Engine:
    """Videos one after another, each a stream through the segmenter (`label_video`: decoding,
    network and writing overlap), resumed from its frame log."""

    def run(
        videos: Sequence[InputImage], stems: dict[str, str], state: RunState
    ) -> Iterator[dict[str, Any]]:
        for video in videos:
            yield label_video(segmenter, video, stems[video.key], options, settings,
                              run=state.hash, threshold=threshold)  # fmt: skip

    return run


def _loaded(outcomes: Iterator[Any]) -> Iterator[Any]:
    """The outcomes of `Segmenter.segment_many`; a decoding worker's death (the `DataLoader`
    raises it, or a broken pipe to it) becomes `WorkerDied`. Per-image faults never get here:
    they are outcomes with an error."""
    while True:
        try:
            outcome = next(outcomes)
        except StopIteration:
            return
        except (RuntimeError, OSError, EOFError) as e:
            if isinstance(e, RuntimeError) and "DataLoader worker" not in str(e):
                raise
            _quiet_loader_shutdown(outcomes)
            raise WorkerDied(f"an image decoding worker died ({e})") from e
        yield outcome


def _quiet_loader_shutdown(outcomes: Iterator[Any]) -> None:
    """torch's SIGCHLD handler raises again (as an 'ignored' traceback) while the dead loader
    shuts its other workers down; the run already reports the death, so the handler goes. It
    may fire once more before it is gone (another worker's exit): that raise is the same news."""
    for _ in range(8):
        try:
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            break
        except RuntimeError as e:
            if "DataLoader worker" not in str(e):
                raise
    with contextlib.suppress(Exception):
        outcomes.close()  # type: ignore[attr-defined]


@dataclass
class RunReport:
    """How a run ended: images written and failed in this start, and failures overall."""

    written: int = 0
    failed: int = 0
    total_failed: int = 0
    broken_parts: list[str] = field(default_factory=list)


def execute(
    engine: Engine,
    images: Sequence[InputImage],
    state: RunState,
    options: OutputOptions,
    *,
    threshold: float,
    progress: bool = False,
    videos: Engine | None = None,
) -> RunReport:
    """Run the images not done through ``engine`` and the videos through ``videos``, append
    each record to the manifest as it comes, then merge the COCO parts. A KeyboardInterrupt
    (Ctrl-C, SIGTERM turned into one) propagates after the last whole record; so do
    `WorkerDied` and manifest write errors."""
    report = RunReport()
    stems = stems_for(images, state, options)
    left = todo(images, state, options.out)
    logger.info("%d of %d input(s) to segment", len(left), len(images))
    left_videos = [item for item in left if item.video]
    left = [item for item in left if not item.video]
    if left_videos and videos is None:
        raise ValueError("this engine does not take videos; run them with --engine local")
    bar = tqdm(total=len(left) + len(left_videos), desc="segmenting", unit="input",
               disable=not progress)  # fmt: skip
    done = engine(left, stems, state) if left else iter(())
    more = videos(left_videos, stems, state) if videos is not None and left_videos else iter(())
    with bar:
        for record in itertools.chain(done, more):
            state.manifest.append(record)
            state.records[record["key"]] = record
            bar.update()
            if record["status"] == "ok":
                report.written += 1
            else:
                report.failed += 1
    left_over = remove_all_temporaries(options.out)  # the engine is done: no writer is left
    if left_over:
        logger.info("removed %d temporary file(s) of interrupted writes", left_over)
    keys = {image.key for image in images}
    records = [r for k, r in state.records.items() if k in keys]
    video_records = [r for r in records if r.get("kind") == "video"]
    records = [r for r in records if r.get("kind") != "video"]
    if "coco" in options.formats:
        if records or not video_records:
            report.broken_parts = merge_coco(options.out, records, options.classes, threshold)
        if video_records:
            broken = merge_youtube_vis(options.out, video_records, options.classes)
            report.broken_parts = sorted(set(report.broken_parts) | set(broken))
    if "label-studio" in options.formats:
        version = f"clsclip {__version__} run {state.hash[:12]}"
        broken = merge_label_studio(options.out, records, options, version)
        report.broken_parts = sorted(set(report.broken_parts) | set(broken))
    every = records + video_records
    report.total_failed = sum(r.get("status") != "ok" for r in every) + len(report.broken_parts)
    return report


def close_run(state: RunState) -> None:
    state.manifest.close()
    state.lock.release()


__all__ = [
    "Engine",
    "RunRefused",
    "RunReport",
    "RunState",
    "WorkerDied",
    "check_folder",
    "close_run",
    "execute",
    "local_engine",
    "open_run",
    "video_engine",
    "todo",
]
