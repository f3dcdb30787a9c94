"""The facade's argument defaults, shared by its modules."""

from __future__ import annotations

from clsclip.pipeline.request import ThresholdArg


class _UseDefault:
    def __repr__(self) -> str:
        return "<the segmenter's proposals>"


_DEFAULT = _UseDefault()
Threshold = ThresholdArg
"""A call's threshold (`clsclip.pipeline.request.ThresholdArg`)."""
