"""The decoding workers' start: a worker stays quiet when the run stops mid-hand-over."""

from __future__ import annotations

import os
import sys
from typing import Any

from clsclip.pipeline.batches import _quiet_hand_over


def _raised_in(filename: str, error: BaseException) -> tuple[Any, ...]:
    """``sys.exc_info()`` of ``error`` raised in a function ``_serve`` of ``filename``."""
    namespace: dict[str, Any] = {}
    exec(compile("def _serve(e):\n    raise e\n", filename, "exec"), namespace)
    try:
        namespace["_serve"](error)
    except BaseException:
        return sys.exc_info()
    raise AssertionError("not raised")


def test_only_a_broken_hand_over_in_the_resource_sharer_is_dropped() -> None:
    """multiprocessing's resource-sharer thread prints its errors with `sys.excepthook`: a
    connection the stopped run broke is dropped, every other error is reported."""
    sharer = os.path.join(os.path.dirname(os.__file__), "multiprocessing", "resource_sharer.py")
    reported: list[BaseException] = []
    hook = _quiet_hand_over(lambda kind, error, trace: reported.append(error))
    hook(*_raised_in(sharer, ConnectionResetError("reset by peer")))
    hook(*_raised_in(sharer, EOFError()))
    assert reported == []
    other = [
        _raised_in(sharer, ValueError("a bug")),  # not a broken connection
        _raised_in("/somewhere/else.py", ConnectionResetError("mine")),  # not the sharer
    ]
    for info in other:
        hook(*info)
    assert reported == [info[1] for info in other]
