"""Claims registry: verbatim quotes, and honest verdicts on crafted results (holds / fails / not yet run / error)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common import claims as C
from common.io import ROOT, SHARED

SEEDS = {"post01": "000_c9eda1532dbf2c80.txt", "post02": "001_50283a501871824e.txt", "rank_series": "004_03bdc2d5fe7b49dc.txt"}


def _write(root: Path, rel: str, doc: dict) -> None:
    p = root / f"{rel}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc))


def _recipes(**overrides: dict) -> dict:
    base = {"watch": {"iou": 0.2, "dice": 0.3}, "saco": {"neg_correct": 0.95, "cgF1": 0.5, "pos_mean_IoU": 0.6}, "lvis": {"mIoU": 0.5}}
    rec = {"base": base,
           "all_trainable": {"watch": {"iou": 0.80}, "saco": {"neg_correct": 0.03, "cgF1": 0.05}},
           "frozen_te": {"watch": {"iou": 0.85}, "saco": {"neg_correct": 0.04, "cgF1": 0.07}}}
    rec.update(overrides)
    return {"meta": {}, "scale": "tiny", "recipes": rec}


def _verdict(root: Path, cid: str) -> C.Verdict:
    return C.evaluate(C.by_id(cid), C.Results(root))


def test_registry_shape() -> None:
    assert len(C.registry()) >= 30
    ids = [c.id for c in C.registry()]
    assert len(ids) == len(set(ids))
    for c in C.registry():
        assert c.post in SEEDS and c.reads and c.statement and set(c.scales) <= {"micro", "tiny", "sam3"}
    from common import published
    for c in C.registry():  # every claim's table id exists in the published data
        if c.table and c.post in ("post01", "post02"):
            assert c.table in published.load(c.post)["tables"], c.id


#: The 40 Post 01 claims common/claims.py held before they moved beside their scripts: none may be lost.
P01_MOVED = {
    "p01-1-watch-task-learned", "p01-1.1-low-rank", "p01-2.1-text-zero", "p01-2.1-distributed", "p01-2.1-downstream",
    "p01-3.2-plateau", "p01-3.2-decoder-zero", "p01-3.3-patch-beats-swap", "p01-4.2-frozen-te-iou", "p01-4.2-frozen-te-cgf1",
    "p01-4.3-earlier-commit", "p01-5.1-decoder-coadapted", "p01-6-fusion-only-gap", "p01-6.1-f0-smuggled",
    "p01-6.2-asymmetry-vanishes", "p01-6.2-most-moved-least", "p01-7.2-synonyms-overlap", "p01-7.3-fusion-merge",
    "p01-7.3-distinct-masks", "p01-7.4-compound-split", "p01-8-refusal-collapse", "p01-8-fusion-only-less",
    "p01-9.1-ffn-widest", "p01-9.2-lora-rank-iou", "p01-9.2-r48-matches-fusion-only", "p01-9.4-lora-protects-refusal",
    "p01-9.4-lower-rank-worse-neg", "p01-9.4-lower-rank-lvis", "p01-9.6-spare-capacity", "p01-9.9-boost-lowers-loss",
    "p01-9.10-r8-strongest", "p01-9.11-ood-penalty", "p01-9.13-mp-lora-beats-ft", "p01-9.13-alpha-lever",
    "p01-9.15-alpha-peak", "p01-9.15-interior-optimum", "p01-9.17-mp-converges", "p01-9.17-e90-noise",
    "p01-9.19-adalora-init", "p01-9.21-alpha-beats-lr"}


def _emits(script: str) -> set[str]:
    """The table ids a post01 script writes (``section.emit(args, "<id>", …)``)."""
    import re

    return set(re.findall(r'emit\(args, "([^"]+)"', (ROOT / script).read_text(encoding="utf-8")))


def test_post01_claims_live_beside_the_script_of_their_table() -> None:
    """Every Post 01 claim is declared in post01/: in the script that writes each post01 table it reads (a claim
    reading only recipes.json: the script that writes the table it cites), or, while no script writes that table
    yet, in post01/pending_claims.py."""
    p01 = {c.id: c for c in C.registry() if c.post == "post01"}
    assert P01_MOVED <= set(p01), sorted(P01_MOVED - set(p01))
    written = {t for f in (ROOT / "post01").glob("*.py") for t in _emits(f"post01/{f.name}")}
    for c in p01.values():
        assert c.origin.startswith("post01/"), (c.id, c.origin)
        tables = {rel.split("/", 1)[1].removeprefix("table-") for rel in c.reads if rel.startswith("post01/")}
        tables = tables or {c.table}
        if c.origin == "post01/pending_claims.py":
            assert not tables & written, (c.id, "its table has a script now: move the claim there")
        else:
            assert tables <= _emits(c.origin), (c.id, c.origin, tables)


@pytest.mark.parametrize("post", ["post01", "post02", "rank_series"])
def test_quotes_are_verbatim(post: str) -> None:
    path = SHARED / "seeds" / SEEDS[post]
    if not path.exists():
        pytest.skip("seeds absent")
    text = path.read_text()
    bad = [c.id for c in C.registry() if c.post == post and c.quote not in text]
    assert not bad, bad


def test_missing_file_is_not_yet_run(tmp_path: Path) -> None:
    vs = C.evaluate_all(tmp_path)
    assert vs and all(v.verdict == "not yet run" for v in vs)
    assert C.summary_line(vs) == f"{len(vs)} claims: 0 hold, 0 fail, 0 not measurable, {len(vs)} not yet run"


def test_holds_and_fails_on_crafted_recipes(tmp_path: Path) -> None:
    _write(tmp_path, "recipes", _recipes())
    assert _verdict(tmp_path, "p01-4.2-frozen-te-iou").verdict == "holds"
    assert _verdict(tmp_path, "p01-8-refusal-collapse").verdict == "holds"
    # a fine-tune that keeps refusing: the collapse claim must be reported as failing
    _write(tmp_path, "recipes", _recipes(frozen_te={"watch": {"iou": 0.7}, "saco": {"neg_correct": 0.9}}))
    v = _verdict(tmp_path, "p01-8-refusal-collapse")
    assert v.verdict == "fails" and "base − frozen_te" in v.detail
    assert _verdict(tmp_path, "p01-4.2-frozen-te-iou").verdict == "fails"
    assert v.files == {"recipes": "tiny"}


def test_missing_recipe_or_key_is_not_yet_run(tmp_path: Path) -> None:
    _write(tmp_path, "recipes", _recipes())
    v = _verdict(tmp_path, "p02-5.2-presence-only-order")  # post02/presence_only.py has not run
    assert v.verdict == "not yet run" and "table-5.2" in v.detail
    v = _verdict(tmp_path, "p01-4.2-frozen-te-cgf1")
    assert v.verdict == "holds"
    _write(tmp_path, "recipes", _recipes(frozen_te={"watch": {"iou": 0.85}, "saco": {}}))
    assert _verdict(tmp_path, "p01-4.2-frozen-te-cgf1").verdict == "not yet run"


def test_percent_instead_of_fraction_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "recipes", _recipes(frozen_te={"watch": {"iou": 0.85}, "saco": {"neg_correct": 3.2}}))
    v = _verdict(tmp_path, "p01-8-refusal-collapse")
    assert v.verdict == "error" and "fraction" in v.detail


def test_alpha_ladder_peak(tmp_path: Path) -> None:
    rows = [{"row": str(a), "alpha": a, "watch_iou": iou} for a, iou in [(16, 0.5), (22, 0.4), (64, 0.6), (128, 0.7), (160, 0.65)]]
    _write(tmp_path, "post01/table-9.15", {"scale": "tiny", "rows": rows})
    assert _verdict(tmp_path, "p01-9.15-alpha-peak").verdict == "holds"
    assert _verdict(tmp_path, "p01-9.15-interior-optimum").verdict == "holds"
    rows[0]["watch_iou"] = 0.9  # peak at α = 16: the post's finding fails here
    _write(tmp_path, "post01/table-9.15", {"scale": "tiny", "rows": rows})
    v = _verdict(tmp_path, "p01-9.15-alpha-peak")
    assert v.verdict == "fails" and "16" in v.detail


def test_mp_rank_convergence(tmp_path: Path) -> None:
    rows = [{"step": s, "mp_rank": m, "e90": e} for s, m, e in [(10, 3, 5), (100, 8, 40), (200, 9, 60)]]
    rows += [{"step": 440, "label": "end ep 1", "mp_rank": 9, "e90": 70}, {"step": 1320, "label": "end ep 3", "mp_rank": 9, "e90": 80}]
    _write(tmp_path, "post01/table-9.17", {"scale": "tiny", "rows": rows})
    assert _verdict(tmp_path, "p01-9.17-mp-converges").verdict == "holds"
    rows[-1]["mp_rank"] = 20
    _write(tmp_path, "post01/table-9.17", {"scale": "tiny", "rows": rows})
    assert _verdict(tmp_path, "p01-9.17-mp-converges").verdict == "fails"


def test_sam3_scale_root(tmp_path: Path) -> None:
    _write(tmp_path / "sam3", "recipes", _recipes())
    vs = {v.claim: v for v in C.evaluate_all(tmp_path / "sam3", "sam3")}
    assert vs["p01-4.2-frozen-te-iou"].verdict == "holds" and vs["p01-4.2-frozen-te-iou"].scale == "sam3"


def test_unlearned_task_makes_in_domain_orderings_not_measurable(tmp_path: Path) -> None:
    """frozen_te ≥ all_trainable in watch IoU 'holds' on these numbers, but the fine-tune gained 0.01 IoU over base:
    the precondition claim fails, so the ordering is reported as not measurable (its reading kept in the detail)."""
    _write(tmp_path, "recipes", _recipes(frozen_te={"watch": {"iou": 0.21}, "saco": {"neg_correct": 0.9}},
                                         all_trainable={"watch": {"iou": 0.20}, "saco": {"neg_correct": 0.9}}))
    assert _verdict(tmp_path, C.LEARNED).verdict == "fails"
    v = _verdict(tmp_path, "p01-4.2-frozen-te-iou")
    assert v.verdict == "not measurable" and "would read “holds”" in v.detail
    assert C.evaluate(C.by_id("p01-4.2-frozen-te-iou"), C.Results(tmp_path), gate=False).verdict == "holds"
    assert _verdict(tmp_path, "p01-8-refusal-collapse").verdict == "fails"  # refusal claims are not gated


def test_recipe_orderings_are_read_against_the_seed_spread(tmp_path: Path) -> None:
    """An ordering of two recipes holds only by a margin beyond the run-to-run spread; inside it, not measurable."""
    doc = _recipes()  # frozen_te 0.85 vs all_trainable 0.80 watch IoU: margin 0.05
    _write(tmp_path, "recipes", doc)
    v = _verdict(tmp_path, "p01-4.2-frozen-te-iou")
    assert v.verdict == "holds" and "seed spread" not in v.detail  # no spread measured: read as is
    doc["seed_spread"] = {"max": {"watch.iou": 0.03}}
    _write(tmp_path, "recipes", doc)
    v = _verdict(tmp_path, "p01-4.2-frozen-te-iou")
    assert v.verdict == "holds" and "seed spread 0.03" in v.detail
    doc["seed_spread"] = {"max": {"watch.iou": 0.06}}
    _write(tmp_path, "recipes", doc)
    v = _verdict(tmp_path, "p01-4.2-frozen-te-iou")
    assert v.verdict == "not measurable" and "within the seed spread 0.06" in v.detail
