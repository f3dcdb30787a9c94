"""Model parts: the CLIP backbone, ClsCLIP (navigation + decoder), CLIPSeg, and the builder."""

from clsclip.model.base import SegmentationModel
from clsclip.model.builder import build_model
from clsclip.model.clipseg_model import ClipSegModel
from clsclip.model.clsclip_model import ClsClipModel

__all__ = ["ClipSegModel", "ClsClipModel", "SegmentationModel", "build_model"]
