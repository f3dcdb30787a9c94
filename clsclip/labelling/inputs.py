"""The inputs of a labelling run: which image files, in which order, under which output stems."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clsclip.pipeline.images import IMAGE_SUFFIXES

RESERVED_STEMS = ("manifest", "classes", "coco")  # the run's own files


def list_images(
    paths: Sequence[Path], *, recursive: bool = False, list_file: Path | None = None
) -> list[Path]:
    """The images of a run, in a fixed order: files as given, folders replaced by their regular
    image files (sorted; all subfolders with ``recursive``), then the lines of ``list_file``
    (one path per line; blank lines and lines starting with ``#`` skipped).

    Named pipes, sockets and devices in a folder are skipped: opening one could block forever.
    """
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = path.rglob("*") if recursive else path.iterdir()
            out += sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            out.append(path)
    if list_file is not None:
        lines = list_file.read_text(encoding="utf-8").splitlines()
        out += [Path(line.strip()) for line in lines if line.strip() and not line.startswith("#")]
    return out


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output stems, one per input, that never collide (compared ignoring case, for
    case-insensitive file systems) with each other or with the run's own files: ``a``, ``a_2``,
    and ``a_2_2`` for a later input that is itself called ``a_2``."""
    taken = {stem.casefold() for stem in RESERVED_STEMS}
    stems = []
    for path in paths:
        base = path.stem or "image"
        stem, n = base, 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{base}_{n}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems
