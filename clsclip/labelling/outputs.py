"""What a labelling run writes: each image's files in every format (atomic, idempotent: the same
image and run give the same bytes), its manifest record, and the run-wide files."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clsclip.labelling.inputs import coco_annotation_id, coco_image_id, key_path
from clsclip.names import (
    CLASSES_FILE,
    COCO_FILE,
    COCO_PARTS,
    LS_CONFIG,
    LS_PARTS,
    LS_TASKS,
    RUN_FILES,
    coco_part,
    label_file,
    label_studio_part,
    npz_file,
)
from clsclip.results import SegmentationResult
from clsclip.results.drawing import palette
from clsclip.results.files import save_png
from clsclip.results.formats import coco_categories, label_image
from clsclip.storage.files import inside, write_atomic, write_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputOptions:
    """How each image is written.

    Attributes:
        out: the output folder.
        classes: the class names.
        formats: some of `FORMATS`.
        instances: COCO annotations per connected component instead of per class.
        specs: the class specs (`clsclip.classes.ClassSpec`) of ``classes`` (empty: the names).
        min_score: classes below this presence score get empty masks (None: no such rule).
        ls_image_root, ls_from_name, ls_to_name: Label Studio tasks: the prefix of image URLs
            (None: local-file URLs of the images' paths) and the config's tag names.
    """

    out: Path
    classes: tuple[str, ...]
    formats: tuple[str, ...] = ("png",)
    instances: bool = False
    specs: tuple[Any, ...] = ()
    min_score: float | None = None
    ls_image_root: str | None = None
    ls_from_name: str = "label"
    ls_to_name: str = "image"

    @property
    def segment_classes(self) -> list[Any]:
        """What `Segmenter.segment_many` is given: the specs, else the names."""
        return list(self.specs or self.classes)


def write_outputs(
    result: SegmentationResult, options: OutputOptions, key: str, stem: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """Write one image's files in every format under ``stem`` (which may hold subfolders);
    returns their paths relative to ``out`` and the image's COCO annotations (empty unless the
    coco format is asked for)."""
    out = options.out
    target = out / stem
    target.parent.mkdir(parents=True, exist_ok=True)
    name = target.name
    paths: list[Path] = []
    annotations: list[dict[str, Any]] = []
    if "png" in options.formats:
        paths += result.save(target.parent, name)
    if "label" in options.formats:
        path = target.parent / label_file(name)
        image = label_image(result.label_map, len(result.class_names))
        write_atomic(path, lambda tmp: save_png(image, tmp))
        paths.append(path)
    if "npz" in options.formats:
        path = target.parent / npz_file(name)
        write_atomic(path, lambda tmp: write_npz(result, tmp))
        paths.append(path)
    if "coco" in options.formats:
        image_id = coco_image_id(key)
        annotations = result.to_coco(image_id=image_id, instances=options.instances)
        height, width = result.size
        part = {"image": {"id": image_id, "height": height, "width": width},
                "annotations": annotations}  # fmt: skip
        path = out / coco_part(stem)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, part)
        paths.append(path)
    if "label-studio" in options.formats:  # the tag names and URLs are set when merged
        path = out / label_studio_part(stem)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, result.to_label_studio(instances=options.instances))
        paths.append(path)
    return [p.relative_to(out).as_posix() for p in paths], annotations


def write_npz(result: SegmentationResult, path: Path) -> None:
    with open(path, "wb") as f:  # a file object: numpy would append ".npz" to a name
        result.save_npz(f)


def write_classes(options: OutputOptions) -> None:
    """``classes.json``: label 0 background, k + 1 for class k, with their palette colours."""
    colors = palette(len(options.classes)).tolist()
    classes = [{"label": 0, "name": "background", "color": [0, 0, 0]}]
    classes += [
        {"label": k + 1, "name": n, "color": colors[k]} for k, n in enumerate(options.classes)
    ]
    write_json(options.out / CLASSES_FILE, classes)


def outputs_exist(out: Path, record: Mapping[str, Any]) -> bool:
    """Whether every file a record lists is still there (a deleted one means: redo the image)."""
    outputs = record.get("outputs")
    if not isinstance(outputs, list):
        return False
    paths = [inside(out, name) for name in outputs]
    return all(path is not None and path.is_file() for path in paths)


def remove_run(out: Path, records: Mapping[str, Mapping[str, Any]]) -> None:
    """``--overwrite``: remove every file the previous run listed, and its own files. A listed
    name that is not inside ``out`` once resolved is left alone (and logged)."""
    for record in records.values():
        outputs = record.get("outputs")
        for name in outputs if isinstance(outputs, list) else []:
            path = inside(out, name)
            if path is None:
                logger.warning("%s lists %r, which is not inside it: not removed", out, name)
            elif not path.is_dir():
                path.unlink(missing_ok=True)
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def read_parts(
    out: Path,
    folder: str,
    records: Sequence[Mapping[str, Any]],
    check: Callable[[Any], None],
) -> tuple[list[tuple[Mapping[str, Any], Any]], list[str]]:
    """The per-image parts (``folder/{stem}.json``) of the ok records, in key order, each
    passed through ``check`` (which raises for a part of the wrong shape); and the keys whose
    part could not be read or checked (logged: ``--resume`` redoes them)."""
    parts: list[tuple[Mapping[str, Any], Any]] = []
    broken: list[str] = []
    for record in sorted(records, key=lambda r: r["key"]):
        if record.get("status") != "ok":
            continue
        path = out / folder / f"{record['stem']}.json"
        try:
            part = json.loads(path.read_text(encoding="utf-8"))
            check(part)
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.error("cannot read %s (%s); --resume redoes %s", path, e, record["key"])
            broken.append(record["key"])
            continue
        parts.append((record, part))
    return parts, broken


def _check_coco_part(part: Any) -> None:
    if not isinstance(part["image"], dict) or not isinstance(part["annotations"], list):
        raise ValueError("not a COCO part")


def _check_label_studio_part(part: Any) -> None:
    if not isinstance(part["result"], list):
        raise ValueError("not a Label Studio prediction")


def merge_coco(
    out: Path, records: Sequence[Mapping[str, Any]], classes: Sequence[str], threshold: float
) -> list[str]:
    """``coco.json`` from the parts of the ok records (the images of the run's last start), in
    key order, image and annotation ids from the keys.

    Returns the keys whose part could not be read (counted as failures: ``--resume`` redoes
    them). Raises `ValueError` if two keys gave one image id (which a 52-bit hash makes
    vanishingly rare), rather than writing a file with duplicate ids.
    """
    coco: dict[str, Any] = {
        "info": {"description": "clsclip predictions", "threshold": threshold},
        "images": [],
        "annotations": [],
        "categories": coco_categories(list(classes)),
    }
    ids: dict[int, str] = {}
    annotation_ids: set[int] = set()
    parts, broken = read_parts(out, COCO_PARTS, records, _check_coco_part)
    for record, part in parts:
        image, annotations = part["image"], part["annotations"]
        if image["id"] in ids:
            raise ValueError(f"images {ids[image['id']]!r} and {record['key']!r} share a COCO id")
        ids[image["id"]] = record["key"]
        coco["images"].append({**image, "file_name": record["image"]})
        for n, annotation in enumerate(annotations):
            annotation_id = coco_annotation_id(record["key"], n)
            if annotation_id in annotation_ids:
                raise ValueError(f"two annotations share the COCO id {annotation_id}")
            annotation_ids.add(annotation_id)
            coco["annotations"].append({"id": annotation_id, **annotation})
    write_json(out / COCO_FILE, coco, indent=None)
    return broken


def merge_label_studio(
    out: Path, records: Sequence[Mapping[str, Any]], options: OutputOptions, model_version: str
) -> list[str]:
    """``label-studio.json`` (one task per ok image, in key order, with its prediction) and
    ``label-studio.xml`` (the matching ``BrushLabels`` config) from the parts. Returns the keys
    whose part could not be read (failures: ``--resume`` redoes them)."""
    from clsclip.results.label_studio import labeling_config

    tasks: list[dict[str, Any]] = []
    parts, broken = read_parts(out, LS_PARTS, records, _check_label_studio_part)
    for record, prediction in parts:
        for region in prediction["result"]:
            region["from_name"], region["to_name"] = options.ls_from_name, options.ls_to_name
        prediction["model_version"] = model_version
        tasks.append({"data": {"image": image_url(record, options.ls_image_root)},
                      "meta": {"clsclip_key": record["key"]},
                      "predictions": [prediction]})  # fmt: skip
    write_json(out / LS_TASKS, tasks, indent=None)
    colors = palette(len(options.classes)).tolist()
    config = labeling_config(
        list(options.classes), colors, from_name=options.ls_from_name, to_name=options.ls_to_name
    )
    write_atomic(out / LS_CONFIG, lambda tmp: tmp.write_text(config, encoding="utf-8"))
    return broken


def image_url(record: Mapping[str, Any], root: str | None) -> str:
    """How a Label Studio task names its image: ``root`` + the image's key (its path relative
    to the run's base folder, URL-quoted), or without a root a local-files URL of its absolute
    path (Label Studio serves it with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=/``)."""
    from urllib.parse import quote

    if root is not None:
        key = str(record["key"])
        return root + quote(key_path(key) or key)
    return "/data/local-files/?d=" + quote(str(record["image"]).lstrip("/"))
