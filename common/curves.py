"""Training-loss curves from a run's per-step log (Post 01 Fig 9.3, Fig 9.8, Table 9.9, Fig/Table 9.15).

The trainer logs two losses per step (``common.train.train_loop``):

* ``loss_scaled`` — what SAM3's trainer *displays*: the per-sample loss × √(per-device batch)
  (``scale_by_find_batch_size``); full recipes run 1 image per device (× 1), LoRA 4 images (× 2);
* ``loss_per_sample`` — the same loss ÷ √bs, comparable across recipes (Fig 9.3 "√bs-corrected").

:func:`end_loss` is the posts' "end loss (smoothed, last training steps)": the mean of the last
``frac`` of the logged steps (5 %, the same window as the trainer's ``final_loss_per_sample``).
:func:`smooth` is a trailing moving average; :func:`downsample` thins a curve for the results JSON.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

LOSS_KEYS = ("loss_per_sample", "loss_scaled")


def series(log: Sequence[dict], key: str = "loss_per_sample") -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key`` over a per-step log; rows lacking the key or non-finite are skipped."""
    steps, vals = [], []
    for r in log:
        v = r.get(key)
        if v is None or not math.isfinite(float(v)):
            continue
        steps.append(int(r["step"]))
        vals.append(float(v))
    if not vals:
        raise ValueError(f"log has no finite {key!r} values ({len(log)} rows)")
    return np.asarray(steps), np.asarray(vals, dtype=float)


def default_window(n: int) -> int:
    """Smoothing window for a curve of ``n`` points: 5 % of it, at least 1."""
    return max(1, int(round(0.05 * n)))


def smooth(values: Sequence[float], window: int | None = None) -> np.ndarray:
    """Trailing moving average (point i = mean of the ``window`` values ending at i; shorter at the start)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return v
    w = default_window(v.size) if window is None else max(1, int(window))
    c = np.cumsum(np.insert(v, 0, 0.0))
    i = np.arange(1, v.size + 1)
    lo = np.maximum(0, i - w)
    return (c[i] - c[lo]) / (i - lo)


def end_loss(log: Sequence[dict], key: str = "loss_per_sample", frac: float = 0.05) -> float:
    """Mean of ``key`` over the last ``frac`` of the logged steps (at least one step)."""
    _, v = series(log, key)
    k = max(1, int(len(v) * frac))
    return float(v[-k:].mean())


def downsample(steps: Sequence[int], values: Sequence[float], n: int = 200) -> tuple[list[int], list[float]]:
    """At most ``n`` evenly spaced points of a curve (first and last kept), rounded for JSON."""
    s, v = np.asarray(steps), np.asarray(values, dtype=float)
    if len(s) > n:
        idx = np.unique(np.linspace(0, len(s) - 1, n).round().astype(int))
        s, v = s[idx], v[idx]
    return [int(x) for x in s], [round(float(x), 5) for x in v]


def curve(log: Sequence[dict], key: str = "loss_per_sample", window: int | None = None, n: int = 200) -> dict:
    """A JSON-able smoothed, downsampled curve: ``{"step": [...], "value": [...], "window": w, "key": key}``."""
    s, v = series(log, key)
    w = default_window(len(v)) if window is None else window
    st, sv = downsample(s, smooth(v, w), n)
    return {"key": key, "window": w, "step": st, "value": sv}
