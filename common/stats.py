"""Paired statistics on per-task scores (Post 01 §10, Table 9.10: α-boost vs standard per rank).

Each task (e.g. one of the 180 watch-eval tasks) is scored under two recipes; ``Δ = a − b`` per task.
:func:`paired_stats` reports the three views the post uses — direction (wins/losses and the sign test),
magnitude (mean Δ, paired t, bootstrap CI) and effect size (paired Cohen's d = mean Δ / sd Δ).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence, Union

import numpy as np
from scipy import stats

Scores = Union[Sequence[float], np.ndarray, Mapping[str, float]]


@dataclass(frozen=True)
class PairedStats:
    """Paired comparison of recipe A against recipe B on the same tasks (Δ = A − B)."""

    n: int                 #: number of paired tasks
    mean_a: float
    mean_b: float
    mean_delta: float      #: mean Δ
    median_delta: float
    sd_delta: float        #: sample standard deviation of Δ (ddof = 1)
    wins: int              #: tasks with Δ > tol
    losses: int            #: tasks with Δ < −tol
    ties: int              #: |Δ| ≤ tol (dropped from the sign test)
    sign_p: float          #: two-sided exact binomial sign test on wins vs losses
    t_stat: float          #: paired t statistic (scipy.stats.ttest_rel)
    t_p: float             #: its two-sided p
    cohens_d: float        #: mean Δ / sd Δ
    ci_low: float          #: percentile bootstrap CI of mean Δ
    ci_high: float
    ci_level: float
    n_boot: int
    seed: int

    def to_dict(self) -> dict:
        """JSON-serialisable dict (NaN stays NaN; the project's JSON writer handles it)."""
        return asdict(self)


def gap_share(x: float, low: float, high: float) -> float | None:
    """Share of the ``low`` → ``high`` gap that ``x`` recovers, (x − low) / (high − low); None where the gap is not
    positive (Post 01 §2–§6: swap cells and patches as a share of the base → fine-tune IoU gap)."""
    return (x - low) / (high - low) if high > low else None


def align(a: Scores, b: Scores) -> tuple[np.ndarray, np.ndarray]:
    """Two score collections as aligned float arrays: mappings are paired by task id (sorted), sequences by
    position. Mismatched task ids or lengths, or non-finite scores, raise naming the task."""
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("pass both scores as mappings task→score or both as sequences")
    if isinstance(a, Mapping):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        if only_a or only_b:
            raise KeyError(f"unpaired tasks: only in A {only_a[:5]}, only in B {only_b[:5]}")
        keys = sorted(a)
        x = np.array([a[k] for k in keys], dtype=float)
        y = np.array([b[k] for k in keys], dtype=float)
    else:
        keys = list(range(len(a)))
        x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
        if x.shape != y.shape:
            raise ValueError(f"paired scores differ in length: {x.size} vs {y.size}")
    bad = [keys[i] for i in np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))]
    if bad:
        raise ValueError(f"non-finite score for task(s) {bad[:5]}")
    return x, y


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (``scipy.stats.binomtest``, p = 0.5) on wins vs losses, ties already
    dropped; 1.0 when there are no untied pairs."""
    n = wins + losses
    return 1.0 if n == 0 else float(stats.binomtest(wins, n, 0.5, alternative="two-sided").pvalue)


def bootstrap_ci(delta: np.ndarray, n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``delta`` (``scipy.stats.bootstrap``, seeded, deterministic)."""
    if delta.size < 2 or np.all(delta == delta[0]):
        m = float(delta.mean())
        return m, m
    res = stats.bootstrap((delta,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                          rng=np.random.default_rng(seed), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_stats(a: Scores, b: Scores, *, tol: float = 0.0, n_boot: int = 10_000, ci_level: float = 0.95,
                 seed: int = 0) -> PairedStats:
    """Table 9.10's row for recipe A (e.g. α-boost) vs recipe B (e.g. α = r) on the same tasks.

    ``tol``: |Δ| ≤ tol counts as a tie (dropped from the sign test). With fewer than 2 pairs, or zero
    spread in Δ, the t test and Cohen's d are NaN.
    """
    x, y = align(a, b)
    if x.size == 0:
        raise ValueError("no paired scores")
    d = x - y
    wins, losses = int((d > tol).sum()), int((d < -tol).sum())
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    if d.size > 1 and sd > 0:
        t = stats.ttest_rel(x, y)
        t_stat, t_p, cohen = float(t.statistic), float(t.pvalue), float(d.mean() / sd)
    else:
        t_stat = t_p = cohen = math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = bootstrap_ci(d, n_boot, ci_level, seed)
    return PairedStats(
        n=int(d.size), mean_a=float(x.mean()), mean_b=float(y.mean()), mean_delta=float(d.mean()),
        median_delta=float(np.median(d)), sd_delta=sd, wins=wins, losses=losses, ties=int(d.size - wins - losses),
        sign_p=sign_test(wins, losses), t_stat=t_stat, t_p=t_p, cohens_d=cohen, ci_low=lo, ci_high=hi,
        ci_level=ci_level, n_boot=n_boot, seed=seed,
    )
