"""What every subcommand shares: one-line errors, the output-folder check, SIGTERM handling."""

from __future__ import annotations

import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

USER_ERRORS = (OSError, ValueError, TypeError, ImportError)
"""Errors that are the user's input, reported as one line with exit status 2."""


def fail(error: BaseException | str) -> int:
    """Print ``clsclip: error: ...`` (one line) and return the exit status 2."""
    print(f"clsclip: error: {error}", file=sys.stderr)
    return 2


def resolve_class_args(args: Any) -> None:
    """``--classes`` or ``--classes-file`` (exactly one) as ``args.class_specs`` (`ClassSpec`s)
    and ``args.classes`` (their names)."""
    from clsclip.classes import read_classes_file, resolve_classes

    given = [flag for flag, value in (("--classes", args.classes),
                                      ("--classes-file", args.classes_file)) if value]  # fmt: skip
    if len(given) != 1:
        raise ValueError("give the classes with --classes NAME ... or --classes-file FILE"
                         + (" (not both)" if given else ""))  # fmt: skip
    if args.classes_file is not None:
        args.class_specs = read_classes_file(args.classes_file)
    else:
        args.class_specs = resolve_classes(list(args.classes))
    args.classes = [spec.name for spec in args.class_specs]


def check_output_folder(folder: Path, flag: str = "--out") -> None:
    """Create ``folder`` if needed and check that files can be written there; `OSError` that
    says what is wrong, before any model is loaded or image segmented."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{flag} {str(folder)!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(f"cannot write into {flag} {str(folder)!r}: {e.strerror or e}") from e


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the block runs, so that a terminated run
    cleans up like one stopped with Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
