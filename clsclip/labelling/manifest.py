"""A run's folder: ``run.json`` (what the run is), ``manifest.jsonl`` (what it has done), and the
lock that makes the folder one run's at a time."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from clsclip.names import LOCK_FILE, MANIFEST, RUN_FILE
from clsclip.storage.files import write_json

logger = logging.getLogger(__name__)

UNCOMPARED = ("inputs_base", "created")
"""run.json fields a resume may differ in: where the first start ran, and when. The model is
compared by content (config and weights hashes, Hub revision), never by how its path was
spelled (`compared`)."""


def compared(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run: the description without `UNCOMPARED` fields and the
    model's ``source`` (a relative or absolute path, or a symlink, to the same files)."""
    out = {k: v for k, v in spec.items() if k not in UNCOMPARED}
    model = out.get("model")
    if isinstance(model, Mapping):
        out["model"] = {k: v for k, v in model.items() if k != "source"}
    return out


class RunLocked(RuntimeError):
    """Another live process is writing into the output folder."""


def lock_folder(out: Path) -> Any:
    """Hold the folder's advisory lock for the run (released when the process ends, however it
    ends); `RunLocked` at once when another process holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(out / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunLocked(
            f"another clsclip run is writing into {str(out)!r} (its lock {LOCK_FILE} is held); "
            "wait for it to end, or use another --out"
        ) from None
    return lock


def run_hash(spec: Mapping[str, Any]) -> str:
    """sha256 of the compared part of a run description (its canonical JSON)."""
    return hashlib.sha256(json.dumps(compared(spec), sort_keys=True).encode("utf-8")).hexdigest()


def read_run(out: Path) -> dict[str, Any] | None:
    """The folder's ``run.json``, or None; `ValueError` naming it when it is not a run file."""
    path = out / RUN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); start over with --overwrite") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a clsclip run description; start over with --overwrite")
    return data


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"field: old (this run: new)"`` for each compared field that differs."""
    old, new = compared(old), compared(new)
    fields = sorted(set(old) | set(new))
    return [
        f"{field}: {json.dumps(old.get(field))} (this run: {json.dumps(new.get(field))})"
        for field in fields
        if old.get(field) != new.get(field)
    ]


def write_run(out: Path, spec: Mapping[str, Any]) -> None:
    write_json(out / RUN_FILE, dict(spec))


class Manifest:
    """``manifest.jsonl``: one JSON record per finished image, appended as each finishes.

    Safe after any kill: every record starts on its own line (a line cut by kill -9 is ended
    before the next append, so it never swallows the next record), unreadable lines are skipped
    and counted, and when one image has several records the last one written wins.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / MANIFEST
        self._file: IO[str] | None = None

    def read(self) -> tuple[dict[str, dict[str, Any]], int]:
        """The last record of each image key, and the number of lines that are not records."""
        records: dict[str, dict[str, Any]] = {}
        bad = 0
        if not self.path.is_file():
            return records, bad
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1  # a line cut by a kill: that image is not done
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("key"), str):
                    bad += 1
                    continue
                records[record["key"]] = record
        if bad:
            logger.warning("%s: skipped %d line(s) that are not records", self.path, bad)
        return records, bad

    def open(self) -> None:
        """Open for appending; a last line cut by a kill is ended first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        if needs_newline:
            self._file.write("\n")
            self._file.flush()

    def append(self, record: Mapping[str, Any]) -> None:
        """One record, flushed (it survives the process being killed right after)."""
        assert self._file is not None, "open() the manifest first"
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
