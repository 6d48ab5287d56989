"""Rank series: identities of the K-basis adapter and a micro-scale smoke test of every paper script.

Scripts run with ``--scale micro --seeds 0`` into a temp ``--out`` (files under ``<out>/rank_series/``), sharing one
temp run cache; each result is checked against the results contract (common/report.py), its claims are judged at
micro scale on it, and its ``figure(result)`` is redrawn from the JSON alone (what ``make figures`` does).
"""
from __future__ import annotations

import importlib
import json
import re

import pytest
import torch

from common import claims as C
from common import published as pub
from common import report
from common import spectral as sp
from rank_series import adapters as A
from rank_series import gradients as G
from rank_series import lm

#: script → the result stems it writes (results/rank_series/<stem>.json, figure fig-<…>.png/svg)
SCRIPTS = {"paper86_true_gradient_er": ["table-86.1", "table-86.2", "table-86.3"],
           "paper87_svd_coverage": ["paper-87"], "paper83_projected_gradient_er": ["paper-83"],
           "paper82_k_budget": ["paper-82"], "paper81_k_schedules": ["paper-81"], "paper84_adaptive_k": ["paper-84"],
           "paper85_bottom_k64": ["paper-85"], "paper88_er_matched_schedule": ["paper-88"]}


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


@pytest.fixture(scope="module")
def written(cache, tmp_path_factory):
    """Run every script once at micro scale into one temp results root (the order of ``make rank-series``)."""
    root = tmp_path_factory.mktemp("results_micro")
    for script in SCRIPTS:
        importlib.import_module(f"rank_series.{script}").main(["--scale", "micro", "--seeds", "0", "--out", str(root)])
    return root


SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_micro_contract(script: str, written) -> None:
    mod = importlib.import_module(f"rank_series.{script}")
    for stem in SCRIPTS[script]:
        path = written / "rank_series" / f"{stem}.json"
        doc = json.loads(path.read_text())
        assert doc["scale"] == "micro" and doc["section"] == "rank_series" and doc["table"] == stem
        assert doc["script"] == f"rank_series/{script}.py"
        assert doc["meta"]["seed"] == [0] and doc["meta"]["config"]["seeds"] == [0] and doc["meta"]["wall_time_s"] >= 0
        rows = doc["rows"]
        assert rows and all(isinstance(r, dict) for r in rows)
        for r in rows:
            assert all(SNAKE.match(k) for k in r), r
            assert all(v is None or isinstance(v, (int, float, str)) for v in r.values()), r  # no mean±sd dicts in rows
        assert isinstance(doc["published"], list)
        for p in doc["published"]:  # every mapped key exists, and at least one of our row labels is a published row
            assert {"source", "table", "column", "key", "factor"} <= set(p)
            assert any(p["key"] in r for r in rows), p
            assert any(pub.get(p["source"], p["table"], r["row"], p["column"]) is not None for r in rows if "row" in r), p
        assert isinstance(doc["verdicts"], list) and all(v["verdict"] in C.VERDICTS for v in doc["verdicts"])
        for ext in ("png", "svg"):
            assert (written / "rank_series" / f"{report.figure_stem(stem)}.{ext}").stat().st_size > 0
        assert (written / "rank_series" / f"{stem}.md").read_text().startswith("# ")
    # the script's claims, judged at micro scale on what it wrote: a verdict of the one vocabulary, never an error
    rels = {f"rank_series/{stem}" for stem in SCRIPTS[script]}
    mine = [c for c in C.registry() if c.origin == f"rank_series/{script}.py"]
    assert mine and all(set(c.reads) <= rels for c in mine)
    res = C.Results(written)
    for c in mine:
        v = C.evaluate(c, res, "micro")
        assert v.verdict in C.VERDICTS and v.verdict not in ("error", "not yet run"), (c.id, v.verdict, v.detail)
    assert mod.figure is not None


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_figure_from_json(script: str, written) -> None:
    """``figure(result)`` of the script that wrote a result redraws it from the JSON alone (as ``make figures`` does)."""
    import matplotlib.pyplot as plt

    report.style()
    for stem in SCRIPTS[script]:
        doc = json.loads((written / "rank_series" / f"{stem}.json").read_text())
        fig = report.load_script(doc["script"]).figure(doc)
        assert fig is not None and fig.axes
        for ax in fig.axes:
            assert ax.get_title() and ax.get_xlabel(), (stem, ax.get_title(), ax.get_xlabel())
        assert any(ax.get_ylabel() for ax in fig.axes)
        plt.close(fig)


def test_cli_seed_is_seeds() -> None:
    """--seed N is --seeds N (the one seed list the runs use is the one the meta records); --recompute is --force."""
    from common import cli
    from rank_series import report as R

    a = cli.parse("x", ["--scale", "micro", "--seed", "3", "--recompute"], extra=R.add_args)
    assert a.seeds == [3] and a.force and getattr(a, "seed", None) is None
    a = cli.parse("x", [], extra=R.add_args)
    assert a.seeds == [0, 1, 2] and not a.force and a.out == report.results_root("tiny")
