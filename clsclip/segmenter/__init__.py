"""The user-facing `Segmenter` (`clsclip.segmenter.facade`) and its streaming ways in
(`clsclip.segmenter.streams`)."""

from clsclip.classes import ClassesArg
from clsclip.segmenter.arguments import Threshold
from clsclip.segmenter.facade import Segmenter

__all__ = ["ClassesArg", "Segmenter", "Threshold"]
