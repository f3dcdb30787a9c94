"""A finished run folder laid out as a dataset that annotation tools import without edits.

- ``coco``: ``annotations/instances_default.json`` (the run's ``coco.json``, ``file_name`` the
  image's key) and ``images/<key>``: Datumaro's ``coco_instances``, CVAT's "COCO 1.0".
- ``voc``: ``labelmap.txt``, ``ImageSets/Segmentation/default.txt``,
  ``SegmentationClass/<stem>.png`` (the run's label PNGs, byte for byte) and
  ``JPEGImages/<stem><suffix>``: Datumaro's ``voc_segmentation``, CVAT's "Segmentation mask 1.1".

Images are linked (hard links to the run's inputs: no space taken; copies where the file
system cannot link; never symlinks, which Datumaro refuses as escaping the dataset), copied, or
left out (an empty images folder,
for uploading annotations to a CVAT task that already holds the images). The dataset is built
in a temporary sibling folder and renamed, so the destination is whole or absent.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clsclip.labelling.manifest import Manifest, RunLocked, lock_folder, read_run
from clsclip.names import CLASSES_FILE, COCO_FILE, MANIFEST, label_file
from clsclip.storage.files import inside, write_json

logger = logging.getLogger(__name__)

LAYOUTS = ("coco", "voc")
IMAGE_MODES = ("link", "copy", "none")
_NEEDS = {"coco": "coco", "voc": "label"}


@dataclass(frozen=True)
class ConvertReport:
    """What a conversion wrote: images in the dataset, and images whose file was missing."""

    images: int
    missing_images: tuple[str, ...]


def convert_run(run: Path, layout: str, out: Path, *, images: str = "link") -> ConvertReport:
    """Write the dataset of one run folder in ``layout`` (``"coco"`` or ``"voc"``) into ``out``
    (absent or empty). ``images``: ``"link"``, ``"copy"`` or ``"none"``.

    Raises `ValueError` (not a run, a run without the format the layout needs, class names the
    layout cannot hold, a non-empty ``out``) before anything is written.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {', '.join(IMAGE_MODES)}, not {images!r}")
    spec = read_run(run)
    if spec is None:
        raise ValueError(f"{run} is not a clsclip run folder (no run.json)")
    if _NEEDS[layout] not in spec.get("formats", []):
        raise ValueError(
            f"the {layout} layout needs a run with --format {_NEEDS[layout]}; {run} has "
            f"{', '.join(spec.get('formats', [])) or 'none'}"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder")
    if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
        raise ValueError(f"write the dataset outside the run folder {run}")
    try:
        lock = lock_folder(run)  # no run may write into it while it is read
    except RunLocked:
        raise ValueError(
            f"another clsclip run is writing into {str(run)!r}; convert it when that run has ended"
        ) from None
    try:
        records, _ = Manifest(run).read()
        done = [records[key] for key in sorted(records) if records[key].get("status") == "ok"]
        missing = _write(run, layout, done, out, images)
    finally:
        lock.release()
    for key in missing:
        logger.warning("image of %r is missing; its annotations are kept without it", key)
    return ConvertReport(images=len(done), missing_images=tuple(missing))


def _write(
    run: Path, layout: str, done: Sequence[Mapping[str, Any]], out: Path, images: str
) -> list[str]:
    tmp = out.parent / f".{out.name}.clsclip-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        writer = _write_coco if layout == "coco" else _write_voc
        missing = writer(run, done, tmp, images)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return missing


def _place_image(source: Path, dest: Path, mode: str) -> bool:
    """Link or copy one image; False when its file is gone."""
    if not source.is_file():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        try:
            os.link(source, dest)
            return True
        except OSError:  # another file system, or one without hard links
            pass
    shutil.copy2(source, dest)
    return True


def _place_images(pairs: Sequence[tuple[str, Path, Path]], folder: Path, mode: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)  # importers need it even when empty
    if mode == "none":
        return []
    return [key for key, source, dest in pairs if not _place_image(source, dest, mode)]


def _write_coco(run: Path, records: Sequence[Mapping[str, Any]], out: Path, mode: str) -> list[str]:
    path = run / COCO_FILE
    if not path.is_file():
        raise ValueError(f"{path} is missing: finish the run (--resume) first")
    coco = json.loads(path.read_text(encoding="utf-8"))
    by_image = {record["image"]: record for record in records}
    held = [image["file_name"] for image in coco["images"]]
    stale = [name for name in held if name not in by_image]
    # merged after the manifest's last record, or a start stopped before its merge
    older = path.stat().st_mtime_ns < (run / MANIFEST).stat().st_mtime_ns
    if stale or older:
        raise ValueError(
            f"{path} does not hold the images the manifest has done (the run was stopped "
            "before its merge): finish it with --resume first"
        )
    if len(held) < len(by_image):  # the last start listed a subset of the run's inputs
        logger.info("%s holds %d of the run's %d done images (those its last start listed)",
                    path, len(held), len(by_image))  # fmt: skip
    records = [by_image[name] for name in held]
    for image in coco["images"]:
        image["file_name"] = by_image[image["file_name"]]["key"]
    pairs = [(r["key"], Path(r["image"]), _contained(out / "images", r["key"])) for r in records]
    (out / "annotations").mkdir()
    write_json(out / "annotations" / "instances_default.json", coco, indent=None)
    return _place_images(pairs, out / "images", mode)


def _check_voc_text(what: str, text: str) -> None:
    """VOC's text files hold one name a line, ``#`` starts a comment, ``:`` separates the
    labelmap's fields: `ValueError` for a name they cannot carry."""
    if (
        ":" in text
        or text.startswith("#")
        or text != text.strip()
        or any(ord(c) < 32 or ord(c) == 127 for c in text)
    ):
        raise ValueError(
            f"{what} cannot be written in VOC's text files (a ':', a leading '#', surrounding "
            "spaces or a control character); convert to coco instead"
        )


def _contained(root: Path, relative: Any) -> Path:
    """``root / relative`` for a key or stem read from the manifest; `ValueError` when it would
    be a path outside ``root``."""
    path = inside(root, relative)
    if path is None:
        raise ValueError(f"the manifest names {relative!r}, a path outside the dataset: refused")
    return path


def _write_voc(run: Path, records: Sequence[Mapping[str, Any]], out: Path, mode: str) -> list[str]:
    classes = json.loads((run / CLASSES_FILE).read_text(encoding="utf-8"))
    for entry in classes[1:]:
        _check_voc_text(f"class {entry['name']!r}", entry["name"])
        if entry["name"].strip().casefold() == "background":
            raise ValueError(
                "a class named 'background' would be VOC's label 0 (nothing found); rename it, "
                "or convert to coco instead"
            )
    if len(classes) > 256:
        raise ValueError(f"VOC masks hold at most 255 classes, the run has {len(classes) - 1}")
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{c['name']}:{','.join(str(v) for v in c['color'])}::" for c in classes]
    (out / "labelmap.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    masks = out / "SegmentationClass"
    ids, pairs = [], []
    for record in records:
        stem = record["stem"]
        _check_voc_text(f"image {record['key']!r}", stem)
        _contained(masks, stem)
        label = _contained(run, label_file(stem))
        if not label.is_file():
            raise ValueError(f"{label} is missing: --resume the run to redo it")
        (masks / stem).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(label, masks / f"{stem}.png")
        ids.append(stem)
        source = Path(record["image"])
        pairs.append((record["key"], source, out / "JPEGImages" / f"{stem}{source.suffix.lower()}"))
    (out / "ImageSets" / "Segmentation").mkdir(parents=True)
    (out / "ImageSets" / "Segmentation" / "default.txt").write_text(
        "".join(f"{i}\n" for i in ids), encoding="utf-8"
    )
    return _place_images(pairs, out / "JPEGImages", mode)
