"""Rank series: identities of the K-basis adapter and a micro-scale smoke test of every paper script.

Scripts run with ``--scale micro --seeds 0`` into a temp --out, sharing one temp run cache.
"""
from __future__ import annotations

import importlib
import json

import pytest
import torch

from common import spectral as sp
from rank_series import adapters as A
from rank_series import gradients as G
from rank_series import lm

SCRIPTS = ["paper86_true_gradient_er", "paper87_svd_coverage", "paper83_projected_gradient_er", "paper82_k_budget",
           "paper81_k_schedules", "paper84_adaptive_k", "paper85_bottom_k64", "paper88_er_matched_schedule"]


@pytest.fixture(scope="module")
def micro():
    s = lm.SCALES["micro"]
    c = lm.build_corpus(s.vocab)
    return s, c


def test_corpus_and_init_loss(micro) -> None:
    s, c = micro
    assert c.vocab == s.vocab and len(c.train) > 50_000
    tiny = lm.build_corpus(lm.SCALES["tiny"].vocab)
    assert abs(lm.lnv(tiny) - 7.85) < 0.01  # ln 2560 ≈ the series' step-1 loss 7.84
    m = lm.build_model(s, c.vocab, 0)
    assert abs(lm.heldout_loss(m, lm.heldout_batches(c, s)) - lm.lnv(c)) < 0.2


def test_alpha_grad_identity(micro) -> None:
    """∂L/∂α_i (autograd through the adapter at α=0) equals u_iᵀ G v_i with G = ∂L/∂W of the plain model."""
    s, c = micro
    model = lm.build_model(s, c.vocab, 0)
    batch = lm.heldout_batches(c, s)[:1]
    grads, _ = G.capture_gradients(model, batch)
    ads = A.attach_adapters(model, 1000, "svd")  # K = full
    x, y = batch[0]
    model(x, y).backward()
    for n, ad in ads.items():
        expect = torch.diagonal(ad.U.double().T @ grads[n] @ ad.V.double())
        torch.testing.assert_close(ad.alpha.grad.double(), expect, rtol=1e-4, atol=1e-7)


def test_coverage_full_is_one_and_er_le_k() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 48, generator=g, dtype=torch.float64)
    grad = torch.randn(48, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 48, generator=g, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(w)
    assert G.k_stats(grad, u, vh.T)["cov"] == pytest.approx(1.0)
    ur, vr = G.random_orthonormal(48, 48, g), G.random_orthonormal(48, 48, g)
    assert G.k_stats(grad, ur, vr)["cov"] == pytest.approx(1.0)
    prev = 0.0
    for k in (1, 2, 4, 8, 16, 32, 48):
        st = G.k_stats(grad, u[:, :k], vh.T[:, :k])
        assert st["ker"] <= k + 1e-9 and st["dcov"] <= st["cov"] + 1e-12
        assert st["cov"] >= prev - 1e-12  # nested subspaces: coverage is monotone in K
        prev = st["cov"]
    # K-constrained ER is the ER of the diagonal core's magnitudes
    core = torch.diagonal(u[:, :8].T @ grad @ vh.T[:, :8])
    proj = u[:, :8] @ torch.diag(core) @ vh.T[:, :8].T
    assert float(sp.entropy_effective_rank(sp.singular_values(proj)[:8])) == pytest.approx(G.k_stats(grad, u[:, :8], vh.T[:, :8])["ker"])


def test_random_diagonal_null() -> None:
    er8 = G.random_diagonal_er(8, "halfnormal")
    assert 0.7 * 8 < er8 < 0.85 * 8
    assert 0.55 * 8 < G.random_diagonal_er(8, "product") < er8


def test_transitions(micro) -> None:
    s, c = micro
    model = lm.build_model(s, c.vocab, 0)
    ads = A.attach_adapters(model, 8, "svd")
    opt = torch.optim.Adam([a.alpha for a in ads.values()], lr=0.1)
    for a in ads.values():
        a.alpha.data.normal_()
    x, _ = lm.heldout_batches(c, s)[0]
    with torch.no_grad():
        before = model(x)
    A._change_k_smooth(ads, opt, 4)  # shrink: dropped α merged into W, function unchanged
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)
    assert all(int(a.mask.sum()) == 4 for a in ads.values())
    A._reset(ads, opt)
    assert all(float(a.alpha.detach().abs().sum()) == 0 for a in ads.values())
    assert A.smooth_schedule([(0, 8), (4, 16), (8, 16)], 9)[0] == (0, 8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("rank_series_cache")
    old = lm.CACHE
    lm.CACHE = d
    yield d
    lm.CACHE = old


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_micro(script: str, cache, tmp_path) -> None:
    mod = importlib.import_module(f"rank_series.{script}")
    mod.main(["--scale", "micro", "--seeds", "0", "--out", str(tmp_path)])
    stem = "paper" + script[5:7]
    data = json.loads((tmp_path / f"{stem}.json").read_text())
    assert data["config"]["scale"] == "micro" and data["wall_time_s"] >= 0 and data["results"]
    for ext in ("md", "png", "svg"):
        assert (tmp_path / f"{stem}.{ext}").stat().st_size > 0
