"""Post 02 Tables 1.1, 3.1, 4.1, 5.1b, 5.3, 6.1, 7.1, 8.1: the shared pieces they stand on (weight deltas, metric-row tables
with per-row units, stream exposure) with known answers, and each script at micro scale."""
from __future__ import annotations

import pytest
import torch

from common import claims, report, runs, weightdiff
from common.io import ROOT, read_json
from common.report import load_script
from common.train import stream_counts, stream_for_step


# ----------------------------------------------------------------------------- known answers
def test_group_rel_change_is_the_parameter_weighted_mean():
    start = {"a.w": torch.ones(3, 1), "a.b": torch.ones(1) * 2, "b.w": torch.zeros(2), "c.w": torch.ones(4)}
    end = {"a.w": torch.ones(3, 1) * 2, "a.b": torch.ones(1) * 2, "b.w": torch.ones(2), "c.w": -torch.ones(4)}
    g = weightdiff.group_rel_change(start, end, group_of=lambda n: n.split(".")[0])
    # a.w moves by 100 % (3 params), a.b by 0 % (1 param): weighted mean 0.75; the group's joint L2 √3/√7
    assert g["a"]["rel_change"] == pytest.approx(0.75)
    assert g["a"]["group_rel_l2"] == pytest.approx((3 / 7) ** 0.5)
    assert g["b"]["rel_change"] is None and g["b"]["zero_start"] == 1  # zero start norm: no relative change
    assert g["c"]["rel_change"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="a.w"):
        weightdiff.rel_changes(start, {**end, "a.w": torch.ones(2)})
    with pytest.raises(KeyError, match="c.w"):
        weightdiff.rel_changes(start, {k: v for k, v in end.items() if k != "c.w"})


def test_delta_cosine_known_answers():
    assert weightdiff.cosine(torch.tensor([1.0, 0]), torch.tensor([0.0, 2])) == pytest.approx(0.0)
    assert weightdiff.cosine(torch.tensor([1.0, 1]), torch.tensor([-2.0, -2])) == pytest.approx(-1.0)
    assert weightdiff.cosine(torch.zeros(2), torch.ones(2)) is None


def test_transpose_and_per_row_factors():
    rows = [{"recipe": "base", "neg": 0.9, "mcc": 0.8}, {"recipe": "ft", "neg": 0.1, "mcc": 0.2}]
    t = report.transpose(rows, {"neg_correct": "neg", "IL_MCC": "mcc"}, {"b": "base", "f": "ft", "x": "missing"})
    assert t == [{"row": "neg_correct", "metric": "neg", "b": 0.9, "f": 0.1, "x": None},
                 {"row": "IL_MCC", "metric": "mcc", "b": 0.8, "f": 0.2, "x": None}]
    pub = report.columns("post02", "1.1", {"b": "base SAM3"}, row_factors={"neg_correct": 100, "IL_MCC": 1})
    ours = {p["row"]: p["ours"] for p in report.pairs({"rows": t, "published": pub})}
    assert ours == {"neg_correct": pytest.approx(90.0), "IL_MCC": pytest.approx(0.8)}  # each row in its printed unit


def test_stream_counts_match_the_cadence_rule():
    everys = [1, 10, 7]
    for steps in (0, 1, 9, 10, 70, 123):
        seen = [0, 0, 0]
        for s in range(1, steps + 1):
            seen[stream_for_step(s, everys)[0]] += 1
        assert stream_counts(steps, everys) == seen


# ----------------------------------------------------------------------------- scripts at micro scale

SCRIPTS = {"what_broke": "table-1.1", "headline": "table-3.1", "replay_vs_recovery": "table-4.1",
           "train_eval_overlap": "table-5.3", "weight_movement": "table-6.1", "bias_direction": "table-7.1",
           "activation_drift": "table-5.1b", "mech_interp": "table-8.1"}


@pytest.fixture(scope="module")
def outputs(runs_dir, tmp_path_factory):
    """Every script run once at micro scale into one results directory (later tables read earlier ones)."""
    out = tmp_path_factory.mktemp("results")
    for name in SCRIPTS:
        load_script(ROOT / "post02" / f"{name}.py").main(["--scale", "micro", "--out", str(out)])
    return out


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_micro(outputs, script):
    rel = f"post02/{SCRIPTS[script]}"
    doc = read_json(outputs / f"{rel}.json")
    assert doc["rows"] and doc["script"] == f"post02/{script}.py" and doc["meta"]["base_hash"]
    assert (outputs / f"{rel}.md").exists()
    if script != "train_eval_overlap":
        assert (outputs / "post02" / f"{report.figure_stem(SCRIPTS[script])}.png").exists()
    res = claims.Results(outputs)
    judged = {c.id: claims.evaluate(c, res, "micro").verdict for c in claims.claims_reading(rel)}
    assert judged and all(v in claims.VERDICTS and v != "error" for v in judged.values()), judged


def test_table_contents_micro(outputs):
    t11 = read_json(outputs / "post02/table-1.1.json")
    assert [r["row"] for r in t11["rows"]] == ["neg_correct", "cgF1", "IL_MCC", "mean_mask_IoU", "pmF1", "pos_mean_IoU",
                                               "LVIS mIoU"]
    assert all(r["delta"] == pytest.approx(r["fine_tune"] - r["base"]) for r in t11["rows"])
    probe = t11["presence_on_negatives"]
    assert 1 <= len(probe) <= 12 and all(0 <= p["base"] <= 1 and 0 <= p["fine_tune"] <= 1 for p in probe)
    t31 = read_json(outputs / "post02/table-3.1.json")
    assert {r["recipe"] for r in t31["rows"]} >= {"base", "frozen_te", "presence_only", "recovery_frozen_te_boost"}
    assert set(t31["best"]) == {"watch_iou", "lvis_miou", "lvis_pmF1", "pmF1", "cgF1", "IL_MCC", "pos_mean_IoU", "neg_correct"}
    t41 = {r["row"]: r for r in read_json(outputs / "post02/table-4.1.json")["rows"]}
    assert t41["Total LVIS exposure"]["base"] == 0 and t41["Total LVIS exposure"]["recovery"] > 0
    t53 = {r["row"]: r for r in read_json(outputs / "post02/table-5.3.json")["rows"]}
    assert t53["Vocabulary overlap (train ∩ eval)"]["overlap"] == 0 and t53["Positive-NP source"]["training"] > 0
    t61 = {r["group"]: r for r in read_json(outputs / "post02/table-6.1.json")["rows"]}
    assert t61["text_encoder"]["frozen_te"] == 0  # frozen by recipe
    # presence_only moves only the gate's head on top of lvis_replay: every other group moved as lvis_replay did
    assert all(r["presence_only"] == pytest.approx(r["lvis_replay"]) for g, r in t61.items() if g != "presence_head")
    t71 = {r["trajectory"]: r for r in read_json(outputs / "post02/table-7.1.json")["rows"]}
    assert t71["frozen_te"]["cos_frozen_te"] == pytest.approx(1.0)
    assert t71["presence_only"]["cos_presence_only"] == pytest.approx(1.0)
    t51b = {r["row"]: r for r in read_json(outputs / "post02/table-5.1b.json")["rows"]}
    keys = [f"{a}_{b}" for a in ("f4", "q0", "d5") for b in ("watch", "lvis", "saco")]
    assert all(0 <= t51b["frozen_te"][k] < 10 for k in keys) and "recovery @ step 2000" in t51b
    # presence_only's upstream is lvis_replay's: the gate's input drifts identically
    assert t51b["presence_only"]["q0_lvis"] == pytest.approx(t51b["lvis_replay"]["q0_lvis"], abs=1e-9)


def test_activation_slots_and_relative_drift():
    from common import activations

    model = runs.load_model("scratch", "micro")
    assert activations.slot_module(model, "decoder[-1]") is model.detr_decoder.layers[-1]
    with pytest.raises(ValueError, match="slot"):
        activations.slot_module(model, "fusion4")
    with pytest.raises(IndexError, match="fusion layers"):
        activations.slot_module(model, "fusion[99]")
    ref = torch.ones(2, 3, 4)
    drift = activations.relative_drift(ref * 1.5, ref, dims=1)
    assert drift.shape == (2, 3) and torch.allclose(drift, torch.full((2, 3), 0.5, dtype=torch.float64))


def test_sae_recovers_planted_sparse_directions():
    from common import sae

    g = torch.Generator().manual_seed(0)
    true = torch.linalg.qr(torch.randn(16, 4, generator=g))[0]  # 4 orthonormal directions in 16-d
    codes = torch.rand(2000, 4, generator=g) * (torch.rand(2000, 4, generator=g) < 0.25)  # each active 1 time in 4
    fit = sae.train_sae(codes @ true.T, n_features=8, l1=1e-3, steps=1500, lr=1e-2, seed=0)
    assert fit.mse < 0.1 and fit.l0 < 4
    assert sae.matched_fraction(true, fit.sae.W_d.detach(), threshold=0.9) == 1.0  # every planted direction is found
    assert torch.allclose(fit.sae.W_d.norm(dim=0), torch.ones(8), atol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        sae.train_sae(torch.full((4, 3), float("nan")), 2)


def test_head_contributions_sum_to_o_proj_and_capture_pairs_keeps_item_order():
    from common import activations
    from common.data import load_pairs
    from common.model import SPECS
    from common.worlds import ensure_worlds

    mi = load_script(ROOT / "post02" / "mech_interp.py")
    model = runs.load_model("scratch", "micro")
    ds = load_pairs(ensure_worlds(scale="micro")["saco_gold"])
    items = [(ds, p) for p in list(ds)[::-1][:10]]  # reversed: not grouped by image
    o = model.detr_decoder.layers[-1].text_cross_attn.o_proj
    tok, size = runs.tokenizer_for("micro"), SPECS["micro"].image_size
    acts, logit = activations.capture_pairs(model, items, tok, size, {"in": (o, "input"), "out": (o, "output")},
                                            images_per_batch=3)
    c = mi.head_contributions(acts["in"], o, mi.heads_of(model))
    assert torch.allclose(c.sum(1) + o.bias.double(), acts["out"][:, 0].double(), atol=1e-5)
    one = [activations.capture_pairs(model, [it], tok, size, {"in": (o, "input")})[1] for it in items]
    assert torch.allclose(torch.cat(one), logit, atol=1e-5)  # item i's logit is item i's, whatever the batching
