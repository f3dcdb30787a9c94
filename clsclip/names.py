"""The names of every file a result writes for one image and every file a labelling run writes
for itself, in one place: `SegmentationResult.save`, a labelling run's formats and files
(`clsclip.labelling`) and `clsclip convert` take them from here, and a run assigns each image a
stem whose files collide with no other image's, nor with the run's own (`colliding`)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

FORMATS = ("png", "label", "coco", "npz", "label-studio")
"""A labelling run's output formats (``clsclip segment --format``)."""

# The files a labelling run writes for itself (besides each image's), in its output folder.
RUN_FILE = "run.json"
"""What the run is (`clsclip.labelling.manifest`)."""
MANIFEST = "manifest.jsonl"
"""One record per finished image."""
LOCK_FILE = ".clsclip.lock"
"""The lock a live run holds."""
CLASSES_FILE = "classes.json"
"""The label map's classes and colours (``--format label``)."""
COCO_FILE = "coco.json"
"""The merged COCO file (``--format coco``)."""
COCO_PARTS = "coco-parts"
"""A run's folder of per-image COCO parts (``coco-parts/{stem}.json``)."""
LS_TASKS, LS_CONFIG = "label-studio.json", "label-studio.xml"
"""The merged Label Studio tasks and their labelling config (``--format label-studio``)."""
LS_PARTS = "label-studio-parts"
"""A run's folder of per-image Label Studio predictions."""
VIS_FILE = "youtube-vis.json"
"""The merged video annotations of a run's videos, YouTube-VIS layout (``--format coco``)."""
RUN_FILES = (RUN_FILE, MANIFEST, CLASSES_FILE, COCO_FILE, COCO_PARTS, LS_TASKS, LS_CONFIG,
             LS_PARTS, VIS_FILE)  # fmt: skip
"""What ``--overwrite`` removes besides the images' own files."""
RESERVED_NAMES = tuple(sorted({name.split(".")[0] for name in RUN_FILES}))
"""Top-level names of the run's own files: an image's stem never starts with one."""


def safe_name(name: str) -> str:
    """A class name as a file name part: runs of other characters than letters, digits, ``.``
    and ``-`` become ``_`` (``"red disc"`` -> ``red_disc``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "class"


def mask_file(stem: str, index: int, name: str) -> str:
    """Class ``index``'s mask PNG: ``{stem}_mask{index:02d}_{safe name}.png``."""
    return f"{stem}_mask{index:02d}_{safe_name(name)}.png"


def overlay_file(stem: str) -> str:
    return f"{stem}_overlay.png"


def summary_file(stem: str) -> str:
    return f"{stem}.json"


def label_file(stem: str) -> str:
    return f"{stem}_label.png"


def npz_file(stem: str) -> str:
    return f"{stem}.npz"


def coco_part(stem: str) -> str:
    return f"{COCO_PARTS}/{stem}.json"


def label_studio_part(stem: str) -> str:
    return f"{LS_PARTS}/{stem}.json"


def image_files(stem: str, class_names: Sequence[str], formats: Iterable[str]) -> list[str]:
    """Every file (relative to the run's folder) the formats write for an image of ``stem``
    (``png`` with its overlay: a name it may use)."""
    files: list[str] = []
    for fmt in formats:
        if fmt == "png":
            files += [mask_file(stem, k, n) for k, n in enumerate(class_names)]
            files += [overlay_file(stem), summary_file(stem)]
        elif fmt == "label":
            files.append(label_file(stem))
        elif fmt == "npz":
            files.append(npz_file(stem))
        elif fmt == "coco":
            files.append(coco_part(stem))
        elif fmt == "label-studio":
            files.append(label_studio_part(stem))
    return files


def frame_stem(stem: str, index: int) -> str:
    """A video frame's stem inside its video's folder: ``{stem}/{index:06d}`` (its index in the
    source, so names sort in time)."""
    return f"{stem}/{index:06d}"


def overlay_video_file(stem: str) -> str:
    return f"{stem}/overlay.mp4"


def frame_log_file(stem: str) -> str:
    """A video's frame log: what is done, for a frame-granular resume."""
    return f"{stem}/frames.jsonl"


def video_part(stem: str) -> str:
    """A video's own YouTube-VIS file."""
    return f"{stem}/{VIS_FILE}"


def video_files(stem: str, formats: Iterable[str], overlay: bool) -> list[str]:
    """The files a finished video keeps under its folder ``{stem}/`` (besides each frame's
    ``frame_stem`` label PNG and npz): its frame log, the overlay video (``png`` or
    ``overlay``), its YouTube-VIS file (``coco``)."""
    formats = set(formats)
    files = [frame_log_file(stem)]
    if overlay or "png" in formats:
        files.append(overlay_video_file(stem))
    if "coco" in formats:
        files.append(video_part(stem))
    return files


def colliding(files: Iterable[str], used: set[str]) -> bool:
    """Whether any of ``files`` is among ``used`` (compared without case: case-insensitive and
    Unicode-normalising file systems, macOS's and Windows', see one file there)."""
    return any(file_key(f) in used for f in files)


def file_key(name: str) -> str:
    """How a file system that ignores case and Unicode normalisation sees a name."""
    return unicodedata.normalize("NFC", name).casefold()
