"""Mask thresholds, in one place: what the user gives (probabilities in [0, 1], per class and
for the rest), which one each class gets (its spec's, the call's, the model config's), and the cut
on logits each one means (`threshold_logit`: exact in double precision, 0 and 1 included)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from clsclip.checks import check_threshold
from clsclip.classes.spec import ClassSpec


@dataclass(frozen=True)
class Thresholds:
    """The mask thresholds of one request's classes.

    Attributes:
        default: the probability threshold of the classes without their own.
        own: the classes' own thresholds, by name (a spec's, the call's, the config's).
    """

    default: float
    own: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        specs: Sequence[ClassSpec],
        call: float | Mapping[str, float] | None,
        config_thresholds: Mapping[str, float],
        config_default: float,
    ) -> Thresholds:
        """Each class's threshold: its spec's, else the call's (a mapping entry, or one number
        for every class), else the model config's ``class_thresholds`` entry, else the config's
        ``threshold``. `ValueError` for a mapping that names a class that is not asked for."""
        names = [spec.name for spec in specs]
        values = resolve_thresholds(specs, call, config_thresholds, config_default)
        default = config_default if not isinstance(call, (int, float)) else float(call)
        own = {n: v for n, v in zip(names, values, strict=True) if v != default}
        return cls(default, own)

    def of(self, name: str) -> float:
        return self.own.get(name, self.default)

    def values(self, names: Sequence[str]) -> list[float]:
        return [self.of(name) for name in names]

    def cutoffs(self, names: Sequence[str]) -> float | list[float]:
        """The logit cuts of ``names``' thresholds (one number when they are all alike)."""
        return class_cutoffs(self.values(names), len(names))


def resolve_thresholds(
    specs: Sequence[ClassSpec],
    call: float | Mapping[str, float] | None,
    config_thresholds: Mapping[str, float],
    default: float,
) -> list[float]:
    """Each class's threshold, in class order (see `Thresholds.resolve`)."""
    names = [spec.name for spec in specs]
    per_call: dict[str, float] = {}
    uniform: float | None = None
    if isinstance(call, Mapping):
        unknown = sorted(set(call) - set(names))
        if unknown:
            raise ValueError(
                f"thresholds given for {unknown}, which are not among the classes {names}"
            )
        for name, value in call.items():
            try:
                per_call[name] = check_threshold(value)
            except (TypeError, ValueError) as e:
                raise type(e)(f"threshold of {name!r}: {e}") from None
    elif call is not None:
        uniform = check_threshold(call)
    out = []
    for spec in specs:
        if spec.threshold is not None:
            value = spec.threshold
        elif spec.name in per_call:
            value = per_call[spec.name]
        elif uniform is not None:
            value = uniform
        elif spec.name in config_thresholds:
            value = float(config_thresholds[spec.name])
        else:
            value = default
        out.append(value)
    return out


def threshold_logit(threshold: float) -> float:
    """The logit of a probability threshold: ``p > t`` exactly when ``logit > log(t / (1 - t))``.

    0 maps to ``-inf`` and 1 to ``+inf``.
    """
    if threshold <= 0.0:
        return -math.inf
    if threshold >= 1.0:
        return math.inf
    return math.log(threshold) - math.log1p(-threshold)


def class_cutoffs(threshold: float | Sequence[float], num_classes: int) -> float | list[float]:
    """Logit cutoffs of probability thresholds: one number stays one (every class alike), a
    sequence gives one per class (`ValueError` for the wrong count)."""
    if isinstance(threshold, (int, float)):
        return threshold_logit(float(threshold))
    values = list(threshold)
    if len(values) != num_classes:
        raise ValueError(f"give one threshold per class ({num_classes}), got {len(values)}")
    if len(set(values)) == 1:
        return threshold_logit(values[0])
    return [threshold_logit(v) for v in values]
