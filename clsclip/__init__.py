"""clsclip: zero-shot semantic segmentation with ClsCLIP (arXiv 2304.06212).

from clsclip import Segmenter
seg = Segmenter.from_pretrained("path/or/org-repo")
result = seg.segment("photo.jpg", ["dog", "cat"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clsclip.version import __version__

if TYPE_CHECKING:
    from clsclip.classes import ClassSpec
    from clsclip.config import ClipSegConfig, ClsClipConfig, DenseClipConfig
    from clsclip.pipeline.video import FrameResult, Smoother
    from clsclip.results import SegmentationResult, TensorSegmentation
    from clsclip.segmenter import Segmenter

_WHERE = {
    "ClassSpec": "clsclip.classes",
    "ClipSegConfig": "clsclip.config",
    "ClsClipConfig": "clsclip.config",
    "DenseClipConfig": "clsclip.config",
    "SegmentationResult": "clsclip.results",
    "TensorSegmentation": "clsclip.results",
    "Segmenter": "clsclip.segmenter",
    "FrameResult": "clsclip.pipeline.video",
    "Smoother": "clsclip.pipeline.video",
}


def __getattr__(name: str) -> Any:
    """The public names, imported when first used (PEP 562): ``clsclip --help`` and
    ``--version`` start without importing torch."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clsclip' has no attribute {name!r}")


__all__ = [
    "ClassSpec",
    "ClipSegConfig",
    "ClsClipConfig",
    "DenseClipConfig",
    "FrameResult",
    "SegmentationResult",
    "Segmenter",
    "Smoother",
    "TensorSegmentation",
    "__version__",
]
