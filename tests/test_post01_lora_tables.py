"""Post 01 §9–§10 LoRA tables at micro scale: each script writes its JSON (rows, keys, published
mapping), Markdown and figure; unit tests for the helpers they share (curves, probes, runpool, section)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from common import claims, curves, probes, recipes, report, runpool, runs, section
from common.io import ROOT, read_json


@pytest.fixture(scope="module", autouse=True)
def _shared_runs(runs_dir):
    """Every test of this module shares one runs cache (tests/conftest.py)."""
    yield runs_dir


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_t_{name}", ROOT / "post01" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(name: str, out: Path, *extra: str):
    mod = _script(name)
    mod.main(["--scale", "micro", "--out", str(out), "--jobs", "1", *extra] if name != "rank_saturation"
             else ["--scale", "micro", "--out", str(out), *extra])
    return mod


def _result(out: Path, stem: str) -> dict:
    p = out / "post01" / f"{stem}.json"  # --out is the scale's results directory
    assert p.exists(), p
    for ext in (".md",):
        assert p.with_suffix(ext).exists()
    return read_json(p)


def _check(doc: dict, labels: list[str], keys: list[str], published_keys: list[str]) -> None:
    rows = {r.get("row"): r for r in doc["rows"]}
    for lab in labels:
        assert lab in rows, f"{doc['table']}: no row {lab!r}"
        for k in keys:
            assert k in rows[lab], f"{doc['table']} row {lab!r} lacks {k!r}"
    assert {p["key"] for p in doc["published"]} == set(published_keys)
    pairs = report.pairs(doc)
    for k in published_keys:  # every mapped column has at least one published value beside ours
        assert any(p["key"] == k and p["published"] is not None for p in pairs), f"{doc['table']}: no published {k}"
    assert doc["meta"]["wall_time_s"] >= 0 and doc["scale"] == "micro"


def _judged(out: Path, doc: dict, null_ok: frozenset[str] = frozenset()) -> dict[str, str]:
    """The one judge: the JSON's verdicts are those of the registered claims reading this table at its scale (none
    at micro: claims are expected at tiny / sam3); each of those claims, run on the file the script just wrote,
    reads it without error and finds every row and key it needs (``null_ok``: claims whose key is null at micro,
    where a statistic is undefined, so they read "not yet run")."""
    rel = f"post01/{doc['table']}"
    assert {v["claim"] for v in doc["verdicts"]} == {c.id for c in claims.claims_reading(rel) if doc["scale"] in c.scales}
    got = {c.id: claims.evaluate(c, claims.Results(out), doc["scale"]) for c in claims.claims_reading(rel)}
    for cid, v in got.items():
        assert v.verdict in ("holds", "fails", "not measurable") or (cid in null_ok and v.verdict == "not yet run"), \
            (cid, v.verdict, v.detail)
    return {cid: v.verdict for cid, v in got.items()}


def _figures(out: Path, *stems: str) -> None:
    for s in stems:
        assert (out / "post01" / f"{s}.png").exists(), s
        assert (out / "post01" / f"{s}.svg").exists(), s


# ----------------------------------------------------------------------------- scripts (micro)
def test_alpha_ladder(out):
    mod = _run("alpha_ladder", out)
    doc = _result(out, "table-9.15")
    labels = ["16", "22 (~rsLoRA)", "40", "64", "96", "128", "160"]
    _check(doc, labels, ["alpha", "scaling", "rslora_c", "end_loss", "watch_iou", "delta_iou_vs_22"],
           ["scaling", "rslora_c", "end_loss", "watch_iou", "delta_iou_vs_22"])
    rows = {r["alpha"]: r for r in doc["rows"]}
    assert rows[128]["scaling"] == 16 and rows[128]["rslora_c"] == pytest.approx(128 / math.sqrt(8))
    assert rows[22]["delta_iou_vs_22"] == 0
    assert set(doc["curves"]) == {str(a) for a in recipes.ALPHA_LADDER}
    judged = _judged(out, doc)
    assert set(judged) == {"p01-9.15-alpha-peak", "p01-9.15-interior-optimum", "p01-9.15-loss-climbs-back"}
    assert set(judged.values()) <= {"holds", "fails"}  # no recipes.json here: the precondition gates nothing
    _figures(out, "fig-9.15")
    # only the watch suite was evaluated
    assert (runs.run_dir("lora_r8_a128", "micro") / "eval-final-watch.json").exists()
    assert mod.figure(doc) is not None


def test_lora_ranks(out):
    _run("lora_ranks", out)
    d92 = _result(out, "table-9.2")
    _check(d92, ["base SAM3", "all-trainable", "frozen-TE", "fusion-only F[0..4]", *(f"LoRA F[0..4] r={r}" for r in (8, 16, 32, 48))],
           ["trainable_params", "watch_iou", "lvis_miou", "cgF1", "pmF1", "neg_correct"],
           ["watch_iou", "lvis_miou", "cgF1", "pmF1", "neg_correct"])
    rows = {r["recipe"]: r for r in d92["rows"]}
    assert rows["base"]["trainable_params"] == 0
    assert rows["lora_r8_a8"]["trainable_params"] < rows["lora_r48_a48"]["trainable_params"] < rows["all_trainable"]["trainable_params"]
    d94 = _result(out, "table-9.4")
    _check(d94, ["8", "16", "32", "48"], ["watch_iou", "lvis_miou", "neg_correct", "fusion5_norm_ratio"],
           ["watch_iou", "lvis_miou", "neg_correct", "fusion5_norm_ratio"])  # the ratio: the post's text (table 9.4-text)
    recipes94 = {r["recipe"]: r for r in d94["rows"]}
    assert set(recipes94) >= {"all_trainable", "frozen_te", "fusion_only", "base"}
    assert recipes94["base"]["fusion5_norm_ratio"] == pytest.approx(1.0)
    assert d94["probe"]["module"].startswith("detr_encoder.layers.")
    d93 = _result(out, "fig-9.3")
    per = {r["recipe"]: r for r in d93["rows"]}
    assert {p["table"] for p in d93["published"]} == {"fig-9.3"}  # the end losses the text gives, beside ours
    assert {p["row"] for p in report.pairs(d93) if p["published"] is not None} == {
        "all_trainable", "frozen_te", "fusion_only", "lora_r48", "lora_r8"}
    # base v4 (issue #15): full recipes and LoRA both take 4 images per step, so the √bs factor is the same (2)
    assert per["lora_r8_a8"]["sqrt_bs"] == 2 and per["frozen_te"]["sqrt_bs"] == 2 and per["frozen_te"]["grad_accum"] == 1
    assert per["lora_r8_a8"]["end_loss_scaled"] == pytest.approx(2 * per["lora_r8_a8"]["end_loss"], rel=1e-4)
    assert set(d93["curves"]["fusion_only"]) == {"per_sample", "scaled"}
    assert set(_judged(out, d92)) >= {"p01-9.2-full-beats-lora", "p01-9.2-refusal-collapses-everywhere"}
    assert set(_judged(out, d94)) >= {"p01-9.4-norm-inflation", "p01-9.4-norm-traces-neg", "p01-9.4-full-hardly-inflate"}
    assert len(_judged(out, d93)) == 4
    _figures(out, "fig-9.2", "fig-9.4", "fig-9.3")


def test_rank_saturation(out):
    _run("rank_saturation", out)
    d95 = _result(out, "table-9.5")
    _check(d95, ["σr / σ1", "|{σi > σ+}| / r", "reff / r"], ["rank_limited_if"], ["rank_limited_if"])
    assert [p["ours"] for p in report.pairs(d95)] == [p["published"] for p in report.pairs(d95)]  # 0.1, 70, 70
    d96 = _result(out, "table-9.6")
    _check(d96, ["8", "16", "32", "48"], ["tail_ratio", "mp_fraction", "reff_fraction", "verdict"],
           ["tail_ratio", "mp_fraction", "reff_fraction"])
    for r in d96["rows"]:
        assert 0 <= r["mp_fraction"] <= 1 and 0 < r["reff_fraction"] <= 1
        assert r["verdict"] in ("rank-limited", "borderline", "not rank-limited")
    assert "\\|{σi > σ+}\\|" in (out / "post01" / "table-9.5.md").read_text()  # pipes escaped
    assert "p01-9.6-spare-capacity" in _judged(out, d96) and not _judged(out, d95)
    _figures(out, "fig-9.6")


def test_rslora_boost(out):
    _run("rslora_boost", out)
    d97 = _result(out, "table-9.7")
    _check(d97, ["8", "16", "32", "48"], ["alpha", "scaling", "vs_default_pct"], ["alpha", "scaling", "vs_default_pct"])
    for p in report.pairs(d97):  # the prescription is arithmetic: it matches the post to its rounding
        assert p["ours"] == pytest.approx(p["published"], abs=0.51), p
    d99 = _result(out, "table-9.9")
    _check(d99, ["8", "16", "32", "48"], ["std_loss", "boost_loss", "delta_loss", "std_iou", "boost_iou", "delta_iou"],
           ["std_loss", "boost_loss", "delta_loss", "std_iou", "boost_iou", "delta_iou"])
    d910 = _result(out, "table-9.10")
    _check(d910, ["r=16 α=32 vs r=16", "r=32 α=45 vs r=32", "r=48 α=55 vs r=48", "r=8 α=128 vs r=8"],
           ["rank", "alpha_over_r", "mean_delta_iou", "wins", "losses", "sign_test_p", "cohens_d"],
           ["alpha_over_r", "mean_delta_iou", "wins", "losses", "sign_test_p", "paired_t_p", "cohens_d"])
    d911 = _result(out, "table-9.11")
    _check(d911, ["base SAM3", "r=16 std", "r=16 α=32", "r=32 std", "r=32 α=45", "r=48 std", "r=48 α=55", "r=8 α=22", "r=8 std"],
           ["cgF1", "pmF1", "neg_correct", "watch_iou"], ["cgF1", "pmF1", "neg_correct", "watch_iou"])
    assert _judged(out, d911)["p01-9.11-ood-penalty"] in ("holds", "fails")
    for d in (d97, d99):
        _judged(out, d)
    # 3-step micro runs are identical, so every per-task Δ is 0 and Cohen's d is undefined (stored as null)
    assert all(r["cohens_d"] is None for r in d910["rows"])
    assert _judged(out, d910, null_ok=frozenset({"p01-9.10-r8-strongest"}))["p01-9.10-d-shrinks-with-boost"] == "not measurable"
    _figures(out, "fig-9.7", "fig-9.9", "fig-9.10", "fig-9.11")


def test_alpha_vs_lr(out):
    _run("alpha_vs_lr", out)
    doc = _result(out, "table-9.21")
    _check(doc, ["baseline (k=1)", "8×", "12×", "16×"], ["k", "alpha_boost_iou", "lr_boost_iou", "delta_lr_minus_alpha"],
           ["alpha_boost_iou", "lr_boost_iou", "delta_lr_minus_alpha"])
    base = next(r for r in doc["rows"] if r["k"] == 1)
    assert base["alpha_boost_iou"] == base["lr_boost_iou"] and base["delta_lr_minus_alpha"] == 0
    assert {r["k"]: r["lr"] for r in doc["rows"]}[16] == pytest.approx(16 * recipes.RECIPES["lora_r8_a8"].lr)
    assert "p01-9.21-alpha-beats-lr" in _judged(out, doc)
    _figures(out, "fig-9.21")


# ----------------------------------------------------------------------------- helpers
def test_curves_smooth_end_loss_downsample():
    assert curves.smooth([1, 2, 3, 4], 2).tolist() == [1, 1.5, 2.5, 3.5]
    assert curves.smooth([5.0], None).tolist() == [5.0]
    log = [{"step": i + 1, "loss_per_sample": float(i), "loss_scaled": 2.0 * i} for i in range(100)]
    log.insert(3, {"step": 999, "loss_per_sample": float("nan")})
    s, v = curves.series(log)
    assert len(v) == 100 and 999 not in s  # non-finite rows skipped
    assert curves.end_loss(log) == pytest.approx(np.mean(range(95, 100)))  # last 5 % of 100 steps
    assert curves.end_loss(log, "loss_scaled") == pytest.approx(2 * curves.end_loss(log))
    st, sv = curves.downsample(range(1000), np.arange(1000.0), n=50)
    assert len(st) == 50 and st[0] == 0 and st[-1] == 999
    c = curves.curve(log, n=20)
    assert len(c["step"]) == 20 and c["window"] == 5
    with pytest.raises(ValueError):
        curves.series([{"step": 1}])


def test_fusion_norm_probe_sees_the_layer_output():
    model = runs.load_model("base", "micro")
    a = probes.fusion_output_norm(model, "micro", layer=5)
    n_layers = len(model.detr_encoder.layers)
    assert a["layer"] == min(5, n_layers - 1) and a["mean_norm"] > 0 and a["n_pairs"] > 0
    assert probes.fusion_output_norm(model, "micro", layer=5)["mean_norm"] == pytest.approx(a["mean_norm"])
    h = model.detr_encoder.layers[a["layer"]].register_forward_hook(lambda m, i, o: 2 * o)  # runs before the probe's hook
    try:
        b = probes.fusion_output_norm(model, "micro", layer=5)
    finally:
        h.remove()
    assert b["mean_norm"] == pytest.approx(2 * a["mean_norm"], rel=1e-5)
    c = probes.fusion_norm_run("base", "micro")
    assert c["mean_norm"] == pytest.approx(a["mean_norm"], rel=1e-5)


def test_runpool_cached_and_in_process():
    got = runpool.train_and_score(["base", "lora_r8_a8"], "micro", suites=("watch",), jobs=1, verbose=False)
    assert got["base"][0] is None and "watch" in got["base"][1]
    assert got["lora_r8_a8"][0].summary["steps"] == 3
    assert runpool.is_cached("lora_r8_a8", "micro", ("watch",))
    assert runpool.default_jobs() >= 1


def test_section_clean_and_markdown():
    assert section.clean({"a": float("nan"), "b": [1.0, float("inf")], "c": np.float64(2.0)}) == {"a": None, "b": [1.0, None], "c": 2.0}
    md = section.markdown_table([{"row": "|{σi > σ+}| / r", "x": 0.5}], keys=["row", "x"])
    assert "\\|{σi > σ+}\\| / r" in md and md.count("\n") == 3


def test_runpool_spawned_workers_use_the_callers_runs_dir(runs_dir):
    """Two spawned workers (jobs=2) score a new suite for trained runs; the cache lands in the caller's runs directory ($SAM3_REPRO_RUNS, inherited)."""
    runs.train("lora_r8_a8", "micro", progress=False)
    runs.train("fusion_only", "micro", progress=False)
    got = runpool.train_and_score(["lora_r8_a8", "fusion_only"], "micro", suites=("lvis",), jobs=2, verbose=False)
    assert all("lvis" in s for _, s in got.values())
    assert str(runs.run_dir("fusion_only", "micro")).startswith(str(runs_dir))
    assert (runs.run_dir("fusion_only", "micro") / "eval-final-lvis.json").exists()
