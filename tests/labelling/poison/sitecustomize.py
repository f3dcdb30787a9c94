"""Fault injection for the Ray tests, on the PYTHONPATH of the processes they start: decoding a
file whose name has "poison" in it kills the worker process (as the OOM killer or a crash in a
decoder would). Nothing else changes."""

import importlib.abc
import importlib.util
import os
import sys


class _Poison(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "clsclip.pipeline.images":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            real = module.load_image

            def load_image(image, *args, **kwargs):
                if "poison" in str(image):
                    os._exit(1)
                return real(image, *args, **kwargs)

            module.load_image = load_image

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Poison())
