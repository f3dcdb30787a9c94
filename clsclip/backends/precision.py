"""Opt-in reduced precision: bf16/fp16 autocast on CUDA, dynamic int8 linear layers on the CPU."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Literal, cast

import torch
from torch import nn

from clsclip.model import SegmentationModel

Precision = Literal["fp32", "bf16", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> Precision:
    """Validate a precision for a device; `ValueError` says what each device supports.

    bf16 and fp16 run under CUDA autocast; on these CPUs (no native bf16) they are several times
    slower than fp32, so they are refused there. int8 (dynamic quantisation) is a CPU path.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    checked = cast(Precision, precision)
    if precision in _AUTOCAST and device.type != "cuda":
        raise ValueError(
            f"precision {precision!r} needs a CUDA device (got {device.type!r}); on the CPU "
            "use 'fp32', or 'int8' for dynamic int8 linear layers"
        )
    if precision == "int8" and device.type != "cpu":
        raise ValueError(
            f"precision 'int8' is a CPU path (got {device.type!r}); on CUDA use 'bf16'"
        )
    return checked


def quantize_backbone(model: SegmentationModel) -> None:
    """Replace the visual transformer's linear layers by dynamic int8 ones, in place.

    The MLPs are most of a ViT's work; attention's fused input projection stays in fp32. Uses
    ``torch.ao.quantization.quantize_dynamic`` (deprecated in favour of torchao, still shipped).
    """
    visual = model.backbone.visual
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        visual.transformer = torch.ao.quantization.quantize_dynamic(
            visual.transformer, {nn.Linear}, dtype=torch.qint8
        )


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """CUDA autocast for bf16 / fp16; nothing for fp32 and int8."""
    if precision in _AUTOCAST:
        with torch.autocast(device_type=device.type, dtype=_AUTOCAST[precision]):
            yield
    else:
        yield
