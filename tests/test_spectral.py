"""Known-answer tests for common/spectral.py (Post 01 §9–§11 thresholds, rank summaries, batching).

Random-matrix tolerances used below (documented so a failure is interpretable):
* planted rank-k signal with singular values 4–8× the noise bulk edge → MP-rank exactly k; the k-th
  singular value clears the true edge by > 3× and the Frobenius-estimated σ₊ by > 10 % (the estimate
  includes the signal's energy: at k=20 it is inflated ~2×, which is why the margin is not larger),
  while the (k+1)-th sits below both;
* BBP spike (square n×n, noise entries N(0,1/n), edge 2): a spike θ > 1 separates from the bulk at
  θ + 1/θ; θ = 1.6 (→ 2.225, 11 % above the edge, ≫ the n^(-2/3) Tracy–Widom scale ≈ 2 %) must count,
  θ = 0.7 (below the BBP transition, the top value sticks to the edge) must not, allowing one
  Tracy–Widom excursion (MP-rank ≤ 1);
* pure noise → MP-rank ≤ 1 on every seed (the top noise value fluctuates around the edge on the
  n^(-2/3) scale), and 0 on most seeds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common import spectral as sp


def planted(m: int, n: int, k: int, strength: float, seed: int, sigma: float = 1.0) -> tuple[torch.Tensor, float]:
    """Rank-k signal with singular values strength·edge·(1..2) plus N(0, σ²) noise; returns (matrix, edge)."""
    g = torch.Generator().manual_seed(seed)
    edge = sp.mp_edge_known(sigma, m, n)
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    svals = strength * edge * torch.linspace(2.0, 1.0, k, dtype=torch.float64)
    noise = sigma * torch.randn(m, n, generator=g, dtype=torch.float64)
    return u @ torch.diag(svals) @ v.T + noise, edge


@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("shape", [(256, 256), (384, 192)])
def test_planted_rank_exact(k: int, shape: tuple[int, int]) -> None:
    m, n = shape
    w, known_edge = planted(m, n, k, strength=4.0, seed=k)
    s = sp.singular_values(w)
    assert s[k - 1] > 3.0 * known_edge and s[k] < 1.02 * known_edge
    for variant, edge_fn in (("fro", sp.mp_edge_fro), ("rms", sp.mp_edge_rms)):
        edge = edge_fn(float(w.norm()), m, n)
        if variant == "rms" and m != n and k == 20:
            # Table 9.17's edge is √(m/n) = √2 stricter here, and σ̂ includes the 20 planted directions'
            # energy, so the weakest planted values (half the largest) fall below it: a documented
            # limitation of Frobenius-estimated edges on rectangular, signal-heavy deltas
            assert 0 < int(sp.mp_rank(s, m, n, variant)) < k
            continue
        assert int(sp.mp_rank(s, m, n, variant)) == k
        assert s[k - 1] > 1.1 * edge, "signal margin over the Frobenius-estimated edge"
        assert s[k] < edge
    # Gavish–Donoho (unknown noise) also recovers the planted rank at this signal strength
    assert int(sp.gd_rank(s, m, n)) == k


def test_edge_variants_relation() -> None:
    assert sp.mp_edge_fro(10.0, 128, 128) == pytest.approx(sp.mp_edge_rms(10.0, 128, 128))
    assert sp.mp_edge_rms(10.0, 512, 128) / sp.mp_edge_fro(10.0, 512, 128) == pytest.approx(2.0)
    # Table 9.1 edge of pure N(0, σ²) noise ≈ σ(√m+√n)
    w = torch.randn(400, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert sp.mp_edge_fro(float(w.norm()), 400, 200) == pytest.approx(sp.mp_edge_known(1.0, 400, 200), rel=0.01)


@pytest.mark.parametrize("seed", range(6))
def test_pure_noise_rank(seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    for m, n in ((256, 256), (512, 128)):
        w = torch.randn(m, n, generator=g, dtype=torch.float64)
        s = sp.singular_values(w)
        assert int(sp.mp_rank(s, m, n, "fro")) <= 1
        assert int(sp.mp_rank(s, m, n, "rms")) <= 1
        assert int(sp.gd_rank(s, m, n)) == 0
        assert int(sp.count_above(s, sp.gd_threshold_known(1.0, m, n))) == 0


def test_pure_noise_mostly_zero() -> None:
    hits = 0
    for seed in range(20):
        w = torch.randn(200, 200, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        hits += int(sp.mp_rank(sp.singular_values(w), 200, 200))
    assert hits <= 6  # P(top noise σ > edge) is well below 1/2 at this size


def _spike(theta: float, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, 1, generator=g, dtype=torch.float64)
    v = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return theta * (u / u.norm()) @ (v / v.norm()).T + torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)


@pytest.mark.parametrize("seed", range(4))
def test_near_edge_bbp(seed: int) -> None:
    n = 400
    above = _spike(1.6, n, seed)
    s = sp.singular_values(above)
    assert float(s[0]) == pytest.approx(1.6 + 1 / 1.6, rel=0.03)  # BBP location θ + 1/θ
    assert int(sp.mp_rank(s, n, n)) == 1
    below = _spike(0.7, n, seed)
    s = sp.singular_values(below)
    assert float(s[0]) == pytest.approx(2.0, rel=0.03)  # sticks to the bulk edge
    assert int(sp.mp_rank(s, n, n)) <= 1
    # known-noise GD threshold (4/√3 ≈ 2.309 > 2.225) correctly drops the weak-but-detectable spike
    assert sp.gd_lambda(1.0) == pytest.approx(4 / math.sqrt(3))
    assert int(sp.count_above(sp.singular_values(above), sp.gd_threshold_known(1 / math.sqrt(n), n, n))) == 0


def test_gd_omega_known_value() -> None:
    assert sp.gd_omega(1.0) == pytest.approx(2.86, abs=0.01)  # GD 2014: ω(1) ≈ 2.858


def test_e90_known() -> None:
    assert int(sp.e90(torch.ones(10))) == 9
    assert int(sp.e90(torch.tensor([3.0, 1.0, 0.0]))) == 1  # 9/10 = exactly 90 %
    assert int(sp.e90(torch.tensor([10.0, 1.0, 1.0]))) == 1
    assert int(sp.e90(torch.tensor([1.0, 1.0, 1.0, 1.0]))) == 4
    assert int(sp.e90(torch.zeros(5))) == 0


def test_entropy_er_known() -> None:
    assert float(sp.entropy_effective_rank(torch.ones(7))) == pytest.approx(7.0)
    assert float(sp.entropy_effective_rank(torch.tensor([5.0, 0, 0]))) == pytest.approx(1.0)
    # p = (2/3, 1/3) → exp(H) = exp(-(2/3 ln 2/3 + 1/3 ln 1/3))
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert float(sp.entropy_effective_rank(torch.tensor([2.0, 1.0]))) == pytest.approx(math.exp(h))
    # power 2 uses p = (4/5, 1/5)
    h2 = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert float(sp.entropy_effective_rank(torch.tensor([2.0, 1.0]), power=2)) == pytest.approx(math.exp(h2))
    assert float(sp.entropy_effective_rank(torch.zeros(3))) == 0.0


def test_batched_equals_per_matrix() -> None:
    g = torch.Generator().manual_seed(3)
    mats = {f"t{i}": torch.randn(*shape, generator=g) for i, shape in
            enumerate([(32, 32), (64, 32), (32, 32), (32, 64), (64, 32), (8, 4, 3, 3)])}
    batched = sp.singular_values(mats)
    assert list(batched) == list(mats)
    for k, w in mats.items():
        ref = np.linalg.svd(sp.as_matrix(w).numpy(), compute_uv=False)
        np.testing.assert_allclose(batched[k].numpy(), ref, rtol=1e-10, atol=1e-10)
    stack = torch.stack([mats["t0"], mats["t2"]]).double()
    s = sp.singular_values(stack)
    for fn in (sp.e90, sp.entropy_effective_rank, lambda x: sp.mp_rank(x, 32, 32), lambda x: sp.gd_rank(x, 32, 32)):
        out = fn(s)
        for i, k in enumerate(("t0", "t2")):
            assert float(out[i]) == pytest.approx(float(fn(batched[k])))


def test_state_diff_and_report() -> None:
    g = torch.Generator().manual_seed(0)
    base = {"a.weight": torch.randn(64, 64, generator=g), "a.bias": torch.randn(64, generator=g),
            "conv.weight": torch.randn(16, 8, 3, 3, generator=g), "b.weight": torch.randn(96, 48, generator=g)}
    tuned = {k: v.clone() for k, v in base.items()}
    delta_a, _ = planted(64, 64, 3, 4.0, seed=1, sigma=0.01)
    tuned["a.weight"] = base["a.weight"] + delta_a.float()
    tuned["b.weight"] = base["b.weight"] + 0.01 * torch.randn(96, 48, generator=g)
    d = sp.state_diff(base, tuned)
    assert set(d) == {"a.weight", "conv.weight", "b.weight"} and d["conv.weight"].shape == (16, 72)
    df = sp.spectral_report(base, tuned)
    assert list(df.columns) == sp.REPORT_COLUMNS and len(df) == 3
    row = df.set_index("name").loc["a.weight"]
    assert row.mp_rank_fro == 3 and row.mp_rank_rms == 3 and row.gd_rank == 3
    assert row.rel_change == pytest.approx(float(delta_a.norm() / base["a.weight"].double().norm()), rel=1e-4)
    assert df.set_index("name").loc["conv.weight"].fro_delta == 0.0
    with pytest.raises(ValueError, match="a.weight"):
        sp.state_diff(base, {**tuned, "a.weight": torch.zeros(3, 3)})
    with pytest.raises(KeyError, match="b.weight"):
        sp.state_diff(base, {k: v for k, v in tuned.items() if k != "b.weight"})


def test_saturation_rule() -> None:
    g = torch.Generator().manual_seed(0)
    # r=8 LoRA with a flat spectrum → all three above threshold → rank-limited
    b = torch.linalg.qr(torch.randn(128, 8, generator=g, dtype=torch.float64))[0]
    a = torch.linalg.qr(torch.randn(128, 8, generator=g, dtype=torch.float64))[0].T
    d = sp.saturation_diagnostics(b @ a, 8)
    assert d["verdict"] == "rank-limited" and d["tail_ratio"] == pytest.approx(1.0)
    # one dominant direction plus tiny tail → all below → not rank-limited
    steep = b @ torch.diag(torch.tensor([100.0] + [0.01] * 7, dtype=torch.float64)) @ a
    assert sp.saturation_diagnostics(steep, 8)["verdict"] == "not rank-limited"
    mixed = b @ torch.diag(torch.tensor([1.0] * 4 + [0.2] * 4, dtype=torch.float64)) @ a
    assert sp.saturation_diagnostics(mixed, 8)["verdict"] == "borderline"


def test_intruders() -> None:
    g = torch.Generator().manual_seed(0)
    n = 64
    base = torch.randn(n, n, generator=g, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(base)
    # full-FT-like: small perturbation → no intruders
    assert sp.intruder_dimensions(base, base + 1e-3 * torch.randn(n, n, generator=g, dtype=torch.float64))["n_intruders"] == 0
    # LoRA-like: add a large rank-1 direction orthogonal-ish to the top base vectors
    x = torch.randn(n, generator=g, dtype=torch.float64)
    x = x / x.norm()
    y = torch.randn(n, generator=g, dtype=torch.float64)
    y = y / y.norm()
    res = sp.intruder_dimensions(base, base + 5 * float(s[0]) * torch.outer(x, y), k=10, eps=0.5)
    assert res["index"][:1] == [0] and res["n_intruders"] >= 1
    with pytest.raises(ValueError):
        sp.intruder_dimensions(base, base[:10])


def test_rejects_vectors() -> None:
    with pytest.raises(ValueError):
        sp.as_matrix(torch.ones(3))


def test_bench_spectral_numpy_loop_agrees_with_the_batched_report():
    """scripts/bench_spectral.py: its per-tensor NumPy reference gives the batched report's numbers, including a
    conv kernel (flattened by as_matrix) and an untouched tensor (e90 = ER = 0), and time_both checks that."""
    import sys

    from common.io import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_spectral

    base, tuned = bench_spectral.synthetic_states(6)
    g = torch.Generator().manual_seed(1)
    base["conv.weight"] = torch.randn(8, 3, 2, 2, generator=g)
    tuned["conv.weight"] = base["conv.weight"] + 0.1 * torch.randn(8, 3, 2, 2, generator=g)
    base["frozen.weight"] = tuned["frozen.weight"] = torch.randn(5, 7, generator=g)
    ref = {r["name"]: r for r in bench_spectral.numpy_loop_report(base, tuned)}
    df = sp.spectral_report(base, tuned)
    assert set(ref) == set(df["name"])
    for r in df.itertuples():
        assert r.mp_rank_fro == ref[r.name]["mp_rank_fro"] and r.e90 == ref[r.name]["e90"], r.name
        assert r.entropy_er == pytest.approx(ref[r.name]["entropy_er"], rel=1e-9), r.name
    assert ref["frozen.weight"]["e90"] == 0 and ref["conv.weight"]["e90"] >= 1
    row = bench_spectral.time_both(base, tuned, repeats=1)
    assert row["tensors"] == len(df) and row["batched_s"] > 0 and row["numpy_loop_s"] > 0
