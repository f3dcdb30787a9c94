"""clsclip: zero-shot semantic segmentation with ClsCLIP (arXiv 2304.06212).

from clsclip import Segmenter
seg = Segmenter.from_pretrained("path/or/org-repo")
result = seg.segment("photo.jpg", ["dog", "cat"])
"""

from clsclip.classes import ClassSpec
from clsclip.config import ClipSegConfig, ClsClipConfig, DenseClipConfig
from clsclip.results import SegmentationResult, TensorSegmentation
from clsclip.segmenter import Segmenter
from clsclip.version import __version__

__all__ = [
    "ClassSpec",
    "ClipSegConfig",
    "ClsClipConfig",
    "DenseClipConfig",
    "SegmentationResult",
    "Segmenter",
    "TensorSegmentation",
    "__version__",
]
