"""The inputs of a labelling run: which image files, under which keys, stems and COCO ids.

An image's key is its path relative to the run's base folder (the deepest folder that holds
every image of the run's first start, kept in ``run.json``), so it stays the same when images
are added, removed or reordered, and when the run is resumed from another working directory.
Output stems and COCO image ids are derived from the key, never from a position in the list.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from clsclip.names import RESERVED_NAMES, colliding, file_key
from clsclip.pipeline.images import IMAGE_SUFFIXES
from clsclip.pipeline.video_decode import VIDEO_SUFFIXES, is_video

MAX_COMPONENT_BYTES = 120
"""Longest stem component kept as it is: file systems allow 255 bytes per name, and outputs
add suffixes such as ``_mask00_{class}.png``. Longer components are cut and end in a hash."""
OUTSIDE = "_abs"
"""First key component of images outside the base folder (their absolute path follows)."""
_ESCAPED = re.compile(re.escape(OUTSIDE) + "_+")
"""First folders of keys inside the base that `image_key` escaped (``_abs`` -> ``_abs_``)."""


@dataclass(frozen=True)
class InputImage:
    """One image of a run.

    Attributes:
        key: its path relative to the run's base folder (POSIX separators), or
            ``_abs/...`` with its absolute path for an image outside it.
        path: the absolute path.
        video: whether it is a video (probed: `clsclip.pipeline.video_decode.is_video`).
    """

    key: str
    path: Path
    video: bool = False


def list_inputs(
    paths: Sequence[Path],
    *,
    base: Path | None,
    recursive: bool = False,
    list_file: Path | None = None,
    exclude: Path | None = None,
) -> list[InputImage]:
    """The images of a run, in a fixed order, each once.

    Files are taken as given (a video is told from an image by probing it); folders are
    replaced by their regular image and video files (sorted; all
    subfolders with ``recursive``); then the lines of ``list_file``: one path per line,
    relative to the list file's folder, blank lines and lines starting with ``#`` (after
    spaces) skipped, folders expanded as above. A file listed twice (by any spelling) is kept
    once; nothing under ``exclude`` (the run's output folder) is taken from a folder.

    Raises:
        FileNotFoundError / IsADirectoryError / ValueError: ``list_file`` is missing, a folder,
            or not UTF-8 text (naming the line).
    """
    found: list[Path] = []
    for path in paths:
        found += _expand(Path(path), recursive, exclude)
    if list_file is not None:
        for entry in read_list_file(list_file):
            found += _expand(entry, recursive, exclude)
    seen: set[str] = set()
    absolute = []
    for path in found:
        path = Path(os.path.abspath(path))
        identity = os.path.realpath(path)
        if identity not in seen:
            seen.add(identity)
            absolute.append(path)
    root = base if base is not None else _common_folder(absolute)
    return [InputImage(image_key(path, root), path, _is_video(path)) for path in absolute]


def _is_video(path: Path) -> bool:
    """A video by probing, or by its name (so that one FFmpeg cannot read is reported as a
    video that cannot be read, not as an image)."""
    return path.suffix.lower() in VIDEO_SUFFIXES or is_video(path)


def _common_folder(paths: Sequence[Path]) -> Path:
    if not paths:
        return Path.cwd()
    return Path(os.path.commonpath([os.fspath(p.parent) for p in paths]))


def common_base(images: Sequence[InputImage]) -> Path:
    """The deepest folder holding every image: the base of a new run's keys."""
    return _common_folder([image.path for image in images])


def read_list_file(list_file: Path) -> list[Path]:
    """The paths a ``--list`` file names, relative ones against the file's own folder."""
    if list_file.is_dir():
        raise IsADirectoryError(f"--list {str(list_file)!r} is a folder, not a text file of paths")
    try:
        raw = list_file.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"--list file not found: {str(list_file)!r}") from None
    lines = raw.split(b"\n")
    entries = []
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise ValueError(
                f"--list {str(list_file)!r} is not UTF-8 text (line {number}: {e.reason})"
            ) from None
        if not text or text.startswith("#"):
            continue
        entry = Path(text).expanduser()
        entries.append(entry if entry.is_absolute() else list_file.parent / entry)
    return entries


def _expand(path: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    if not path.is_dir():
        return [path]
    found: Iterable[Path] = path.rglob("*") if recursive else path.iterdir()
    skip = os.path.realpath(exclude) if exclude is not None else None
    images = []
    for entry in found:
        if entry.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES or not entry.is_file():
            continue
        if skip is not None and _inside(os.path.realpath(entry), skip):
            continue  # the run's own outputs are never its inputs
        images.append(entry)
    return sorted(images)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def image_key(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` with POSIX separators; ``_abs/...`` outside it. A path
    inside whose first folder is ``_abs``, ``_abs_``, ... gets one more ``_`` (`key_path` takes
    it off), so no image inside the base has the key of one outside it."""
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(Path(os.path.abspath(base)))
    except ValueError:
        return PurePosixPath(OUTSIDE, *absolute.parts[1:]).as_posix()
    parts = list(relative.parts)
    if len(parts) > 1 and re.fullmatch(re.escape(OUTSIDE) + "_*", parts[0]):
        parts[0] += "_"
    return PurePosixPath(*parts).as_posix()


def key_path(key: str) -> str | None:
    """The path relative to the run's base folder that a key names (`image_key`'s inverse),
    or None for an image outside it."""
    parts = PurePosixPath(key).parts
    if len(parts) > 1 and parts[0] == OUTSIDE:
        return None
    if len(parts) > 1 and _ESCAPED.fullmatch(parts[0]):
        return PurePosixPath(parts[0][:-1], *parts[1:]).as_posix()
    return key


def default_stem(key: str) -> str:
    """The readable stem of a key: its path without the suffix (``x/cat.jpg`` -> ``x/cat``);
    components over `MAX_COMPONENT_BYTES` are cut and end in a hash; a first component that is
    one of the run's own names or starts with a dot gets a leading ``_``."""
    parts = list(PurePosixPath(key).with_suffix("").parts) or ["image"]
    parts = [_shorten(part) for part in parts]
    if parts[0].casefold() in RESERVED_NAMES or parts[0].startswith("."):
        parts[0] = "_" + parts[0]
    parts = [("_" + p) if p.startswith(".") else p for p in parts]
    return "/".join(parts)


def _shorten(component: str) -> str:
    if len(component.encode("utf-8")) <= MAX_COMPONENT_BYTES:
        return component
    digest = hashlib.sha256(component.encode("utf-8")).hexdigest()[:12]
    cut = component.encode("utf-8")[:80].decode("utf-8", errors="ignore")
    return f"{cut}-{digest}"


def assign_stems(
    keys: Sequence[str],
    taken: Mapping[str, str],
    files_of: Callable[[str], list[str]] | None = None,
) -> dict[str, str]:
    """Output stems of ``keys``: those the run already used (``taken``, key -> stem, from its
    manifest) stay; a new key gets its `default_stem`, or, where that stem or any file it would
    write (``files_of(stem)``: `clsclip.names.image_files`) is a stem or file of another
    image, the stem and a hash of the key. Names are compared as case-insensitive and
    Unicode-normalising file systems see them (`file_key`), so two images never write one file."""
    files_of = files_of or (lambda stem: [])
    stems = dict(taken)
    used: set[str] = set()
    for stem in taken.values():
        used.add(file_key(stem))
        used.update(file_key(f) for f in files_of(stem))
    for key in sorted(set(keys) - set(taken)):
        stem = default_stem(key)
        if file_key(stem) in used or colliding(files_of(stem), used):
            stem = f"{stem}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:8]}"
        used.add(file_key(stem))
        used.update(file_key(f) for f in files_of(stem))
        stems[key] = stem
    return {key: stems[key] for key in keys}


def coco_annotation_id(key: str, index: int) -> int:
    """The id of an image's ``index``-th COCO annotation: 52 bits of a hash of its key and
    index, so ids stay the same when other images are added to the run and merged again."""
    return int(hashlib.sha256(f"{key}\n{index}".encode()).hexdigest()[:13], 16)


def coco_image_id(key: str) -> int:
    """A COCO image id from the key: 52 bits of its sha256 (exact in JSON readers that use
    doubles), the same in every run and engine."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:13], 16)
