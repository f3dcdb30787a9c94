"""Optional dependencies, imported when first used, with the command that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS: dict[str, str] = {
    "ultralytics": "yolo",
    "pycocotools": "coco",
    "scipy": "coco",
    "supervision": "supervision",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "ray": "ray",
    "fastapi": "serve",
    "fastapi_offline": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
    "prometheus_client": "serve",
    "fiftyone": "fiftyone",
    "autodistill": "autodistill",
    "av": "video",
}
"""The extra that brings each optional top-level package."""


def require(module: str, extra: str | None = None, *, purpose: str | None = None) -> ModuleType:
    """Import ``module`` (``"pycocotools.mask"``), or raise `ImportError` that names the package
    and the ``pip install "clsclip[extra]"`` command that brings it.

    Args:
        module: the module to import.
        extra: clsclip's extra that installs it (default: from `EXTRAS` by its top-level name).
        purpose: what needs it, for the message (default: "this").
    """
    package = module.split(".")[0]
    extra = extra or EXTRAS.get(package)
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = purpose or "this"
        hint = f': pip install "clsclip[{extra}]"' if extra else f": pip install {package}"
        raise ImportError(f"{what} needs {package}{hint}") from e
