"""Learning-rate schedules as multipliers of the base LR (Post 01 fine-tunes, Post 02 recovery).

- ``constant``; ``warmup_cosine`` (linear warmup then cosine to ``final``); ``warmup_invsqrt``
  (linear warmup then ∝ 1/√step);
- ``piecewise``: linear interpolation through (step, multiplier) points, held after the last one.
  Post 02's match-then-boost recovery schedule is ``match_then_boost(total)``: linear warmup over 50
  steps, plateau through step 400, ramp ×5, hold to step 2000 (steps scaled to ``total``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """An LR multiplier as a function of the (1-based) optimiser step."""

    kind: str = "warmup_cosine"
    warmup: int = 0
    final: float = 0.0  # cosine end multiplier
    points: tuple[tuple[int, float], ...] = ()
    horizon: int | None = None  # plan length the curve is laid over (default: the run's own length)

    def __call__(self, step: int, total: int) -> float:
        total = self.horizon or total
        if self.kind == "piecewise":
            return _piecewise(self.points, step)
        if self.warmup and step <= self.warmup:
            return step / self.warmup
        if self.kind == "constant":
            return 1.0
        if self.kind == "warmup_cosine":
            span = max(total - self.warmup, 1)
            t = min(max(step - self.warmup, 0) / span, 1.0)
            return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * t))
        if self.kind == "warmup_invsqrt":
            return math.sqrt(max(self.warmup, 1) / max(step, 1))
        raise ValueError(f"unknown schedule kind {self.kind!r}")


def _piecewise(points: tuple[tuple[int, float], ...], step: int) -> float:
    if not points:
        raise ValueError("piecewise schedule needs points")
    if step <= points[0][0]:
        return points[0][1]
    for (s0, m0), (s1, m1) in zip(points, points[1:]):
        if s0 <= step <= s1:
            return m0 + (m1 - m0) * (step - s0) / max(s1 - s0, 1)
    return points[-1][1]


def match_then_boost(total: int = 2000, boost: float = 5.0, ramp_frac: float = 0.05) -> Schedule:
    """Post 02 §3 recovery: warmup 0→1 over 50/2000 of ``total``, plateau to 400/2000, ramp to ×``boost``, hold.

    The post does not give the ramp's length; we use ``ramp_frac`` of the run (100 of 2000 steps).
    """
    f = total / 2000
    warm, plateau, ramp_end = round(50 * f), round(400 * f), round((400 + ramp_frac * 2000) * f)
    return Schedule(kind="piecewise", points=((0, 0.0), (max(warm, 1), 1.0), (plateau, 1.0), (ramp_end, boost),
                                              (total, boost)))
