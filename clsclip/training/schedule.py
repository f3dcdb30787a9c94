"""Learning-rate schedules: linear warm-up, then poly decay or cosine annealing with restarts."""

from __future__ import annotations

import math


def lr_factor(
    step: int, *, max_steps: int, warmup_steps: int, schedule: str, poly_power: float,
    restart_steps: int,
) -> float:  # fmt: skip
    """Multiplier of the base learning rate at ``step`` (0-based).

    Warm-up rises linearly from 1/warmup to 1. Poly: ``(1 - t / T) ** power`` over the steps after
    warm-up. Cosine with restarts (SGDR): ``0.5 * (1 + cos(pi * t_cycle / period))``, restarting
    every ``restart_steps``.
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    t = step - warmup_steps
    total = max(1, max_steps - warmup_steps)
    if schedule == "poly":
        return max(0.0, 1.0 - t / total) ** poly_power
    if schedule == "cosine_restarts":
        return 0.5 * (1.0 + math.cos(math.pi * (t % restart_steps) / restart_steps))
    raise ValueError(f"unknown schedule {schedule!r}")
