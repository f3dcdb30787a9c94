"""The request: what every way in (`Segmenter.segment`, `segment_batch`, `segment_torch`,
`segment_many`, the server, both labelling engines) builds before any image is read, with one
function (`build_request`), and what the batch planner runs. Everything that changes the
computation is in it: the classes' rows (prompts, negatives), the thresholds, the calibration,
min_score and the proposals."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from clsclip.backends import Backend
from clsclip.checks import check_threshold
from clsclip.classes import ClassesArg, class_rows, resolve_classes
from clsclip.classes.rows import RowLayout
from clsclip.config import AnyConfig
from clsclip.config.base import calibration_entry
from clsclip.model.pamr import Pamr
from clsclip.proposals import LabelMatcher, Proposer, ZoomSettings
from clsclip.proposals.matching import TextEncoder
from clsclip.results import Thresholds

ThresholdArg = float | Mapping[str, float] | None
"""A call's threshold: one for every class, some classes' by name, or None (the config's)."""


@dataclass(frozen=True)
class Request:
    """What every entry point checks and prepares before any image is read.

    Attributes:
        names: the K checked class names.
        thresholds: each class's mask threshold (`clsclip.results.Thresholds`).
        proposer: ClsCLIP+ region proposals, or None.
        text: float32 ``R x embed_dim`` vectors of the rows (prompts, negatives) on the
            backend's device; for plain class names, class k is row k.
        layout: where each class's rows are (None: class k is row k).
        scale, bias: float32 ``K`` calibration of the class logits (None: none).
        min_score: classes whose presence score is below it get empty masks.
        area_threshold: the model's SC-CLIP area threshold (`LowResPrediction.area_threshold`).
    """

    names: list[str]
    thresholds: Thresholds
    proposer: Proposer | None
    text: torch.Tensor
    layout: RowLayout | None = None
    scale: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    min_score: float | None = None
    area_threshold: float | None = None


@dataclass(frozen=True)
class Settings:
    """How images become views: the backend, its input, the ClsCLIP+ settings, the chunks."""

    backend: Backend
    image_size: int
    resize_mode: str
    matcher: LabelMatcher
    zoom: ZoomSettings
    encode: TextEncoder
    chunk_size: int
    refine: Pamr | None = None


def build_request(
    config: AnyConfig,
    class_names: ClassesArg,
    threshold: ThresholdArg,
    proposer: Proposer | None,
    encode: Callable[[Sequence[str]], torch.Tensor],
    min_score: float | None = None,
) -> Request:
    """The one request of a call: its class specs resolved and their rows encoded (plain names
    are their own rows), each class's threshold (`Thresholds.resolve`), the model's calibration
    of each class, and ``min_score`` checked. `TypeError` / `ValueError` naming what is
    wrong."""
    specs = resolve_classes(class_names)
    names = [spec.name for spec in specs]
    thresholds = Thresholds.resolve(specs, threshold, config.class_thresholds, config.threshold)
    if all(spec.plain for spec in specs):
        text, layout = encode(names), None
    else:
        text, layout = class_rows(specs, encode, config.prompt_rule)
    scale = bias = None
    if config.calibration is not None:
        pairs = [calibration_entry(config.calibration, name) for name in names]
        scale = torch.tensor([a for a, _ in pairs], dtype=torch.float32, device=text.device)
        bias = torch.tensor([b for _, b in pairs], dtype=torch.float32, device=text.device)
    if min_score is not None:
        min_score = check_threshold(min_score)
    area = getattr(config, "area_threshold", None)  # SC-CLIP's area_thd (training-free)
    return Request(names, thresholds, proposer, text, layout, scale, bias, min_score, area)


def refinement(config: AnyConfig) -> Pamr | None:
    """The refinement a config asks for (training-free models: ``refine="pamr"``), or None."""
    if getattr(config, "refine", None) != "pamr":
        return None
    return Pamr(int(getattr(config, "pamr_steps")), tuple(getattr(config, "pamr_dilations")))  # noqa: B009


__all__ = ["Request", "Settings", "ThresholdArg", "build_request", "refinement"]
