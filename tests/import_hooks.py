"""Patch a clsclip module as it is first imported, in a process a test starts: the
``sitecustomize`` files that tests put on a child's PYTHONPATH (fault injection for the Ray
workers, the server's gate) install one `PatchOnImport` each. The child imports this module
from the repository root, which the same PYTHONPATH names."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any


class PatchOnImport(importlib.abc.MetaPathFinder):
    """A finder that lets the real one load each named module, then calls its patch on the
    module (before anything else sees it)."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self.patches = patches

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = self.patches.get(name)
        if patch is None:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec

    def install(self) -> None:
        sys.meta_path.insert(0, self)
