"""Model parts: the CLIP backbone, ClsCLIP (navigation + decoder), CLIPSeg, the training-free
dense CLIP, and the builder."""

from clsclip.model.base import SegmentationModel
from clsclip.model.builder import build_model
from clsclip.model.clipseg_model import ClipSegModel
from clsclip.model.clsclip_model import ClsClipModel
from clsclip.model.dense_clip import DenseClipModel

__all__ = ["ClipSegModel", "ClsClipModel", "DenseClipModel", "SegmentationModel", "build_model"]
