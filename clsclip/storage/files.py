"""Writing files and folders so that an interruption never leaves a half-written one behind.

A file is written under a temporary name beside its target and renamed over it (rename is atomic
on POSIX and Windows). A folder (a saved model) is built complete beside its target and then
swapped in: atomically with Linux's ``renameat2(RENAME_EXCHANGE)``, elsewhere with two renames.
Temporaries carry the writer's process id, so those of killed writers can be told from those of
live ones and removed.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

logger = logging.getLogger(__name__)

_TAG = "clsclip"


def temporary_sibling(path: Path, kind: str = "tmp") -> Path:
    """A hidden name beside ``path`` that no other writer uses: ``.NAME.clsclip-KIND-PID-RAND``."""
    return path.with_name(f".{path.name}.{_TAG}-{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` for a temporary sibling of ``path``, then rename it to ``path``.

    On any exception (KeyboardInterrupt included) the temporary is removed and the exception
    propagates; ``path`` is then either absent or its previous version.
    """
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_folder(folder: Path, write: Callable[[Path], object], *, replaces: set[str]) -> None:
    """Call ``write(tmp)`` to fill a hidden sibling folder, then put it in place of ``folder``.

    Entries already in ``folder`` whose names are not in ``replaces`` (a README a user put
    there) are carried over. Readers see the old folder or the complete new one, never a mix;
    on any exception the temporary folder is removed and ``folder`` is as it was.

    Raises:
        NotADirectoryError: ``folder`` exists and is not a folder.
    """
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder)
    tmp = temporary_sibling(folder)
    tmp.mkdir()
    try:
        write(tmp)
        if folder.is_dir():
            copy_other_files(folder, tmp, skip=replaces)
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(new: Path, target: Path) -> None:
    """Move the complete folder ``new`` to ``target``, replacing any folder there.

    Readers see the old folder or the new one: on Linux the two are exchanged in one atomic
    step; where that is not possible, ``target`` is missing for the moment between two renames
    (a crash there leaves the old folder as a hidden ``.clsclip-old-`` sibling, which
    `remove_stale` does not delete).
    """
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)  # now holds the old content
        return
    old = temporary_sibling(target, "old")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old)


def remove_stale(path: Path) -> None:
    """Remove temporaries of ``path`` left by writers that died (their process is gone)."""
    _remove_stale(path.parent, f".{path.name}.")


def inside(root: Path, relative: object) -> Path | None:
    """``root / relative`` for a path read from a file (a manifest's output, stem or key), or
    None when it is not a plain relative path that stays inside ``root`` once resolved (an
    absolute path, ``..``, a link out): nothing read from a file may name a path outside."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        return None
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or relative.startswith("\\"):
        return None
    path = root / relative
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return None
    return path


def remove_all_temporaries(folder: Path) -> int:
    """Remove every temporary under ``folder`` (any depth), whoever wrote it; returns how many.

    Only for a folder no one else writes now: a labelling run calls it when its engine has
    finished, holding the folder's lock. A writer killed mid-write (a Ray actor, say) may
    still be an unreaped process, which `remove_stale` must treat as alive."""
    marker = f".{_TAG}-tmp-"
    count = 0
    for root, dirs, files in os.walk(folder):
        for name in [*files, *dirs]:
            if name.startswith(".") and marker in name:
                entry = Path(root) / name
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                    dirs.remove(name)
                else:
                    entry.unlink(missing_ok=True)
                count += 1
    return count


def _remove_stale(parent: Path, prefix: str) -> None:
    if not parent.is_dir():
        return
    marker = f".{_TAG}-tmp-"
    for entry in parent.iterdir():
        name = entry.name
        if not name.startswith(prefix) or marker not in name:
            continue
        pid = name.rsplit(marker, 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            logger.info("removing %s, left by an interrupted write", entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where
    the C library or the file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}")


def copy_other_files(source: Path, destination: Path, skip: set[str]) -> None:
    """Hard-link (or copy) the entries of ``source`` not named in ``skip`` into
    ``destination``, so that replacing a folder keeps the files a user put there."""
    for entry in source.iterdir():
        if entry.name in skip or f".{_TAG}-" in entry.name:  # a temporary, never carried
            continue
        target = destination / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(target))


def _link_or_copy(source: str, destination: str) -> None:
    try:
        if os.path.islink(source):
            raise OSError("copy symlinks as links")
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)


def write_json(path: Path, value: Any, *, indent: int | None = 2) -> None:
    """Write ``value`` as JSON, atomically; NaN and infinities become null (JSON has none)."""
    text = json.dumps(_json_safe(value), indent=indent, allow_nan=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinite floats replaced by None: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
