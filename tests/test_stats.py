"""Known-answer tests for common.stats (Post 01 Table 9.10 paired statistics)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from common.stats import PairedStats, align, paired_stats, sign_test


def test_sign_test_hand_computed():
    # 10 pairs, 8 wins: P(X ≥ 8) = (45 + 10 + 1) / 1024 = 56/1024; two-sided → 112/1024
    assert sign_test(8, 2) == pytest.approx(112 / 1024) == pytest.approx(0.109375)
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == 1.0


def test_small_case_by_hand():
    b = np.array([0.50, 0.60, 0.40, 0.70, 0.55, 0.45, 0.65, 0.52, 0.48, 0.58])
    delta = np.array([0.10, 0.05, 0.20, 0.02, 0.08, 0.12, 0.03, 0.07, -0.04, -0.01])
    a = b + delta
    s = paired_stats(a, b, seed=1)
    assert (s.n, s.wins, s.losses, s.ties) == (10, 8, 2, 0)
    assert s.sign_p == pytest.approx(0.109375)
    d = a - b
    assert s.mean_delta == pytest.approx(d.mean())
    mean = d.sum() / 10
    sd = math.sqrt(((d - mean) ** 2).sum() / 9)
    assert s.sd_delta == pytest.approx(sd)
    assert s.cohens_d == pytest.approx(mean / sd)  # paired d by hand
    t = sps.ttest_rel(a, b)
    assert s.t_stat == pytest.approx(t.statistic) and s.t_p == pytest.approx(t.pvalue)
    assert s.t_stat == pytest.approx(mean / (sd / math.sqrt(10)))  # t = d·√n
    assert s.ci_low < s.mean_delta < s.ci_high
    assert s.median_delta == pytest.approx(np.median(d))


def test_ties_dropped_from_sign_test():
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    b = [0.0, 1.0, 2.0, 4.0, 5.0, 7.0]  # 3 wins, 2 ties, 1 loss
    s = paired_stats(a, b)
    assert (s.wins, s.losses, s.ties) == (3, 1, 2)
    assert s.sign_p == pytest.approx(sps.binomtest(3, 4).pvalue)
    s_tol = paired_stats(a, b, tol=1.0)  # |Δ| ≤ 1 counts as a tie
    assert (s_tol.wins, s_tol.losses, s_tol.ties) == (0, 0, 6) and s_tol.sign_p == 1.0


def test_bootstrap_deterministic_and_seeded():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.5, 0.9, 180)
    a = b + rng.normal(0.02, 0.05, 180)
    s1, s2 = paired_stats(a, b, seed=7), paired_stats(a, b, seed=7)
    assert (s1.ci_low, s1.ci_high) == (s2.ci_low, s2.ci_high)
    s3 = paired_stats(a, b, seed=8)
    assert (s3.ci_low, s3.ci_high) != (s1.ci_low, s1.ci_high)
    assert s1.n_boot == 10_000 and s1.ci_level == 0.95
    assert s1.ci_low < s1.mean_delta < s1.ci_high
    # percentile CI ≈ mean ± 1.96·se for n = 180
    se = s1.sd_delta / math.sqrt(180)
    assert s1.ci_low == pytest.approx(s1.mean_delta - 1.96 * se, abs=0.3 * se)
    assert s1.ci_high == pytest.approx(s1.mean_delta + 1.96 * se, abs=0.3 * se)


def test_mappings_pair_by_task_id():
    a = {"t1": 0.9, "t2": 0.8, "t3": 0.7}
    b = {"t3": 0.6, "t1": 0.95, "t2": 0.5}
    s = paired_stats(a, b)
    assert (s.wins, s.losses) == (2, 1)
    assert s.mean_delta == pytest.approx(((0.9 - 0.95) + (0.8 - 0.5) + (0.7 - 0.6)) / 3)
    with pytest.raises(KeyError, match="t4"):
        align({**a, "t4": 0.1}, b)
    with pytest.raises(ValueError, match="t2"):
        align({**a, "t2": float("nan")}, b)
    with pytest.raises(ValueError, match="length"):
        paired_stats([1.0, 2.0], [1.0])


def test_degenerate_and_serialisable():
    s = paired_stats([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])  # constant Δ: no spread
    assert s.mean_delta == pytest.approx(0.5) and s.ci_low == s.ci_high == pytest.approx(0.5)
    assert math.isnan(s.cohens_d) and math.isnan(s.t_p)
    assert isinstance(s, PairedStats)
    json.dumps(s.to_dict())
