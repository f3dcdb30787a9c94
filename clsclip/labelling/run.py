"""A labelling run (``clsclip segment``): output formats, a manifest that makes runs
resumable, and torchrun ranks that each take a deterministic share."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clsclip.labelling.inputs import unique_stems
from clsclip.results import SegmentationResult
from clsclip.results.drawing import palette
from clsclip.results.formats import coco_categories, label_image
from clsclip.storage.files import remove_stale_in, write_atomic, write_json

logger = logging.getLogger(__name__)

FORMATS = ("png", "label", "coco", "npz")
MANIFEST = "manifest.jsonl"
_COCO_PARTS = "coco-parts"


@dataclass(frozen=True)
class RunOptions:
    """What a labelling run writes and how it reads.

    Attributes:
        out: the output folder.
        classes: the class names.
        formats: some of `FORMATS`.
        threshold: mask threshold (None: the model's).
        batch_size: images per network call.
        workers: loader processes.
        resume: skip images the manifest lists as done.
        instances: COCO annotations per connected component instead of per class.
        rank, world: this process's share (torchrun).
    """

    out: Path
    classes: list[str]
    formats: tuple[str, ...] = ("png",)
    threshold: float | None = None
    batch_size: int = 8
    workers: int = 0
    resume: bool = False
    instances: bool = False
    rank: int = 0
    world: int = 1

    @property
    def manifest(self) -> Path:
        """This process's manifest: the run's, or a per-rank shard merged at the end."""
        name = MANIFEST if self.world == 1 else f"manifest.rank{self.rank}.jsonl"
        return self.out / name


def read_manifests(out: Path) -> dict[str, dict[str, Any]]:
    """The last entry per image over the run's manifest and any rank shards."""
    entries: dict[str, dict[str, Any]] = {}
    for path in [out / MANIFEST, *sorted(out.glob("manifest.rank*.jsonl"))]:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut by kill -9: that image is not done
                continue
            entries[entry["image"]] = entry
    return entries


def prepare(options: RunOptions) -> None:
    """Before any rank writes (rank 0, then a barrier): remove what killed writers left, start a
    fresh run's manifest unless resuming, write the class list."""
    remove_stale_in(options.out)
    if not options.resume:
        for path in [options.out / MANIFEST, *options.out.glob("manifest.rank*.jsonl")]:
            path.unlink(missing_ok=True)
    if "label" in options.formats:
        colors = palette(len(options.classes)).tolist()
        classes = [{"label": 0, "name": "background", "color": [0, 0, 0]}]
        classes += [
            {"label": k + 1, "name": n, "color": colors[k]} for k, n in enumerate(options.classes)
        ]
        write_json(options.out / "classes.json", classes)


def todo(images: Sequence[Path], options: RunOptions) -> list[int]:
    """Indices of this rank's images: those not done (with ``resume``: listed as ok with every
    format asked for now), every world-th."""
    done = read_manifests(options.out) if options.resume else {}
    wanted = set(options.formats)

    def finished(path: Path) -> bool:
        entry = done.get(str(path), {})
        return entry.get("status") == "ok" and wanted <= set(entry.get("formats", ()))

    left = [i for i, p in enumerate(images) if not finished(p)]
    return left[options.rank :: options.world]


def run(
    segmenter: Any,
    images: Sequence[Path],
    indices: Sequence[int],
    options: RunOptions,
    *,
    progress: bool = False,
) -> tuple[int, int]:
    """Segment ``images[i]`` for i in ``indices`` and write each as it finishes: its files under
    temporary names then renamed, then one manifest line. Returns (written, failed); a
    KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one) propagates after the last whole
    image."""
    stems = unique_stems(images)
    written = failed = 0
    options.out.mkdir(parents=True, exist_ok=True)
    outcomes = segmenter.segment_many(
        [images[i] for i in indices],
        options.classes,
        batch_size=options.batch_size,
        workers=options.workers,
        threshold=options.threshold,
        keep_images="png" in options.formats,
    )
    bar = tqdm(total=len(indices), desc="segmenting", unit="image", disable=not progress)
    with open(options.manifest, "a", encoding="utf-8") as manifest, bar:
        for item, seconds in _timed(outcomes):
            bar.update()
            index = indices[item.index]
            entry: dict[str, Any] = {"image": str(images[index]), "stem": stems[index]}
            try:
                if item.error is not None:
                    raise RuntimeError(item.error)
                files = write_outputs(item.result, options, stems[index], index)
            except Exception as e:  # any per-image failure is reported, counted, and passed
                message = item.error or f"{type(e).__name__}: {e}"
                logger.error("skipped %s: %s", images[index], message)
                entry.update(status="failed", error=message)
                failed += 1
            else:
                height, width = item.result.size
                entry.update(status="ok", formats=list(options.formats), outputs=files)
                entry.update(size=[height, width])
                entry.update(classes=options.classes, seconds=round(seconds, 4))
                written += 1
            manifest.write(json.dumps(entry) + "\n")
            manifest.flush()
    return written, failed


def _timed(items: Iterator[Any]) -> Iterator[tuple[Any, float]]:
    """Each item with the seconds since the previous one (its share of the batch's time)."""
    start = time.perf_counter()
    for item in items:
        now = time.perf_counter()
        yield item, now - start
        start = now


def write_outputs(
    result: SegmentationResult, options: RunOptions, stem: str, index: int
) -> list[str]:
    """Write one image's files in every format; returns their names relative to ``out``."""
    out = options.out
    paths: list[Path] = []
    if "png" in options.formats:
        paths += result.save(out, stem)
    if "label" in options.formats:
        path = out / f"{stem}_label.png"
        image = label_image(result.label_map, len(result.class_names))
        write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
        paths.append(path)
    if "npz" in options.formats:
        path = out / f"{stem}.npz"
        write_atomic(path, lambda tmp: _write_npz(result, tmp))
        paths.append(path)
    if "coco" in options.formats:
        height, width = result.size
        part = {
            "image": {"id": index + 1, "height": height, "width": width},
            "annotations": result.to_coco(image_id=index + 1, instances=options.instances),
        }
        (out / _COCO_PARTS).mkdir(exist_ok=True)
        path = out / _COCO_PARTS / f"{stem}.json"
        write_json(path, part)
        paths.append(path)
    return [str(p.relative_to(out)) for p in paths]


def _write_npz(result: SegmentationResult, path: Path) -> None:
    with open(path, "wb") as f:  # a file object: numpy would append ".npz" to a name
        result.save_npz(f)


def finish(images: Sequence[Path], options: RunOptions) -> list[dict[str, Any]]:
    """Rank 0, after every rank is done: merge the manifests into ``manifest.jsonl`` (in input
    order) and write the run-wide ``coco.json``. Returns the merged entries."""
    position = {str(p): i for i, p in enumerate(images)}
    entries = sorted(
        read_manifests(options.out).values(), key=lambda e: position.get(e["image"], len(images))
    )
    text = "".join(json.dumps(e) + "\n" for e in entries)
    write_atomic(options.out / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    for shard in options.out.glob("manifest.rank*.jsonl"):
        shard.unlink()
    if "coco" in options.formats:
        _write_coco(images, entries, options)
    return entries


def _write_coco(images: Sequence[Path], entries: list[dict[str, Any]], options: RunOptions) -> None:
    coco: dict[str, Any] = {
        "info": {"description": "clsclip predictions", "threshold": options.threshold},
        "images": [],
        "annotations": [],
        "categories": coco_categories(options.classes),
    }
    for entry in entries:
        if entry.get("status") != "ok":
            continue
        part = json.loads(
            (options.out / _COCO_PARTS / f"{entry['stem']}.json").read_text(encoding="utf-8")
        )
        coco["images"].append({**part["image"], "file_name": entry["image"]})
        for annotation in part["annotations"]:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, **annotation})
    write_json(options.out / "coco.json", coco, indent=None)
