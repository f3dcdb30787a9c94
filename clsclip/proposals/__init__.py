"""Region proposals for ClsCLIP+: who proposes boxes, which boxes serve which class, and the
crops they become (`ZoomSettings`, `crop_region`).

from clsclip.proposals import BoxProposer, YoloProposer, LabelMatcher, ZoomSettings
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clsclip.proposals.base import Proposals, Proposer
from clsclip.proposals.boxes import BoxesByClass, BoxProposer
from clsclip.proposals.matching import DEFAULT_SYNONYMS, LabelMatcher, normalize_label
from clsclip.proposals.yolo import YoloProposer
from clsclip.proposals.zoom import FusionMode, ZoomSettings, crop_region

ProposalSource = str | Proposer | BoxesByClass | None
"""``None`` / ``"none"`` (no zoom-in), ``"yolo"`` (the default ultralytics detector), a
`Proposer`, or explicit boxes ``{"dog": [[x0, y0, x1, y1], ...]}`` in original-image pixels."""

__all__ = [
    "DEFAULT_SYNONYMS",
    "BoxProposer",
    "BoxesByClass",
    "FusionMode",
    "LabelMatcher",
    "ProposalSource",
    "Proposals",
    "Proposer",
    "YoloProposer",
    "ZoomSettings",
    "crop_region",
    "normalize_label",
    "resolve_proposer",
]


def resolve_proposer(source: Any) -> Proposer | None:
    """Turn a `ProposalSource` into a proposer (None for no proposals).

    Raises `ValueError` for an unknown string and `TypeError` for anything else unsupported;
    ``"yolo"`` raises `ImportError` with the install command when ultralytics is missing.
    """
    if source is None:
        return None
    if isinstance(source, str):
        if source == "none":
            return None
        if source == "yolo":
            return YoloProposer()
        raise ValueError(
            f"unknown proposals {source!r}; use None, 'none', 'yolo', a proposer object or "
            '{"class": [[x0, y0, x1, y1], ...]}'
        )
    if isinstance(source, Mapping):
        return BoxProposer(source)
    if isinstance(source, Proposer):
        return source
    raise TypeError(
        "proposals must be None, 'none', 'yolo', an object with a propose(image, class_names) "
        f"method, or a dict of boxes per class; got {type(source).__name__}"
    )
