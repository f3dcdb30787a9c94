"""Backends: what runs the network (torch modules, or onnxruntime sessions of an ONNX export),
behind one interface, `Backend`; and ONNX export.

`load_backend` reads a model folder for either; the `Segmenter` facade holds the result and never
asks which one it is.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from clsclip.backends.base import Backend
    from clsclip.backends.precision import PRECISIONS, Precision
    from clsclip.backends.torch_backend import TorchBackend

BACKENDS = ("torch", "onnxruntime")

_WHERE = {
    "Backend": "clsclip.backends.base",
    "PRECISIONS": "clsclip.backends.precision",
    "Precision": "clsclip.backends.precision",
    "TorchBackend": "clsclip.backends.torch_backend",
}


def __getattr__(name: str) -> Any:
    """The torch-backed names, imported when first used: the torch-free modules of this
    package (`onnx_format`: reading an export's description) load without torch, so
    ``clsclip info`` starts in a fraction of a second."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clsclip.backends' has no attribute {name!r}")


def load_backend(
    source: str | os.PathLike[str],
    *,
    backend: str = "torch",
    device: torch.device | None,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    precision: Precision = "fp32",
    verify: bool = True,
) -> Backend:
    """A saved model ready to run: ``"torch"`` reads a model folder or Hub repo (see
    `TorchBackend.load`), ``"onnxruntime"`` an exported folder (`OnnxBackend`). ``device``
    None: CUDA when available for torch, the CPU for onnxruntime."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == "onnxruntime":
        from clsclip.backends.onnx_runtime import OnnxBackend

        if precision != "fp32":
            raise ValueError(
                "the onnxruntime backend runs the graphs as exported (fp32, or int8 with "
                "clsclip export --int8); precision applies to the torch backend"
            )
        return OnnxBackend(source, device=device)
    import torch

    from clsclip.backends.torch_backend import TorchBackend

    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return TorchBackend.load(
        source,
        device=device,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
        precision=precision,
        verify=verify,
    )


__all__ = ["BACKENDS", "PRECISIONS", "Backend", "Precision", "TorchBackend", "load_backend"]
