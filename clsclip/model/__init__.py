"""Model parts of ClsCLIP: backbone, navigation, decoder, and the builder that joins them."""

from clsclip.model.builder import build_model
from clsclip.model.clsclip_model import ClsClipModel

__all__ = ["ClsClipModel", "build_model"]
