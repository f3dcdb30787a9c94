"""Opt-in reduced precision: bf16/fp16 autocast on CUDA; bf16 weights on CPUs with native bf16
matrix units (AMX, AVX-512 BF16); dynamic int8 linear layers on the CPU; ``"auto"`` picks.

On the CPU, bf16 means converting the network's weights (inputs at the boundary, logits back to
float32): ``torch.autocast("cpu", bfloat16)`` was measured 7x slower than fp32 on an AMX Xeon
(its casts dominate), while converted weights were 3.2x faster (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, cast

import torch
from torch import nn

from clsclip.model import SegmentationModel

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16", "int8", "auto"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "auto")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
BF16_FEATURES = ("amx_bf16", "avx512_bf16")
"""CPU flags (Linux ``/proc/cpuinfo``, as ``lscpu`` shows them) of native bf16 matrix units."""


@functools.lru_cache(maxsize=1)
def cpu_bf16_feature() -> str | None:
    """The CPU's native bf16 matrix feature (``"amx_bf16"`` or ``"avx512_bf16"``), or None.

    Read from ``/proc/cpuinfo`` (Linux); elsewhere None, so bf16 stays off where it cannot be
    confirmed. Mocked in the tests, so nothing depends on the machine that runs them.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    return next((feature for feature in BF16_FEATURES if feature in flags), None)


def resolve_precision(precision: str, device: torch.device) -> tuple[Precision, str]:
    """The precision to run at, and why: ``"auto"`` becomes bf16 on a CPU with native bf16
    (AMX or AVX-512 BF16, measured 2-4x faster than fp32 there) and fp32 elsewhere (CUDA
    included, as without ``"auto"``); other values are checked by `check_precision`."""
    if precision != "auto":
        return check_precision(precision, device), "requested"
    if device.type == "cpu":
        feature = cpu_bf16_feature()
        if feature is not None:
            return "bf16", f"auto: this CPU has {feature}"
        return "fp32", "auto: this CPU has no native bf16 (neither amx_bf16 nor avx512_bf16)"
    return "fp32", f"auto: fp32 on {device.type}"


def check_precision(precision: str, device: torch.device) -> Precision:
    """Validate a precision for a device; `ValueError` says what each device supports.

    bf16 and fp16 run under CUDA autocast. On the CPU, bf16 converts the weights and needs
    native bf16 matrix units (AMX or AVX-512 BF16): without them it is several times slower
    than fp32, so it is refused, naming the missing feature. int8 (dynamic quantisation) is a
    CPU path. ``"auto"`` is resolved by `resolve_precision`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    checked = cast(Precision, precision)
    if precision == "auto":
        return resolve_precision(precision, device)[0]
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision 'fp16' needs a CUDA device (got {device.type!r}); on the CPU use 'fp32', "
            "'bf16' (CPUs with AMX or AVX-512 BF16) or 'int8'"
        )
    if precision == "bf16" and device.type == "cpu" and cpu_bf16_feature() is None:
        raise ValueError(
            "precision 'bf16' on the CPU needs native bf16 matrix units (the CPU flags amx_bf16 "
            "or avx512_bf16, which lscpu shows); this CPU has neither, and bf16 would run "
            "several times slower than fp32. Use 'fp32', 'int8' or 'auto'"
        )
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"precision 'bf16' runs on CUDA or the CPU, not on {device.type!r}")
    if precision == "int8" and device.type != "cpu":
        raise ValueError(
            f"precision 'int8' is a CPU path (got {device.type!r}); on CUDA use 'bf16'"
        )
    return checked


def uses_converted_weights(precision: str, device: torch.device) -> bool:
    """bf16 on the CPU runs a copy of the network in bf16 (not autocast)."""
    return precision == "bf16" and device.type == "cpu"


def quantize_backbone(model: SegmentationModel) -> None:
    """Replace the visual transformer's linear layers by dynamic int8 ones, in place.

    The MLPs are most of a ViT's work; attention's fused input projection stays in fp32. Uses
    ``torch.ao.quantization.quantize_dynamic`` (deprecated in favour of torchao, still shipped).
    """
    visual = model.backbone.visual
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as e:  # deprecated by PyTorch (docs/limits.md)
            raise ImportError(
                f"precision 'int8' needs torch.ao.quantization, which torch {torch.__version__} "
                "no longer ships; use 'bf16' (CPUs with native bf16) or an onnxruntime int8 "
                "export (docs/deploy.md)"
            ) from e
        visual.transformer = quantize_dynamic(visual.transformer, {nn.Linear}, dtype=torch.qint8)


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """CUDA autocast for bf16 / fp16; nothing for fp32, int8 and CPU bf16 (converted weights)."""
    if precision in _AUTOCAST and device.type == "cuda":
        with torch.autocast(device_type=device.type, dtype=_AUTOCAST[precision]):
            yield
    else:
        yield
