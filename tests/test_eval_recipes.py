"""`make eval` at micro scale: trains (cached) and scores recipes, writes recipes.json + the Markdown table."""
import json
import sys

from common import runs
from common.io import ROOT


def test_eval_recipes_micro(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import eval_recipes

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "runs"))
    out = tmp_path / "recipes.json"
    monkeypatch.setattr(sys, "argv", ["eval_recipes.py", "--scale", "micro", "--recipes", "base,frozen_te", "--out", str(out)])
    eval_recipes.main()
    doc = json.loads(out.read_text())
    assert set(doc["recipes"]) == {"base", "frozen_te"}
    for name in ("base", "frozen_te"):
        assert {"watch", "saco", "lvis"} <= set(doc["recipes"][name])
    assert doc["recipes"]["frozen_te"]["train"]["steps"] == 3
    table = out.with_suffix(".md").read_text()
    assert "frozen_te" in table and "saco_neg_correct" in table


def test_diagnose_watch_micro(tmp_path, monkeypatch):
    """scripts/diagnose_watch.py at micro: a row for base and each model, IoUs in [0, 1], per-concept stats."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import diagnose_watch

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "runs"))
    res = diagnose_watch.main(["--scale", "micro", "--recipes", "fusion_only", "--memorize-steps", "2",
                               "--out", str(tmp_path / "res")])
    assert [r["recipe"] for r in res["rows"]] == ["base", "fusion_only"]
    for r in res["rows"]:
        for k in ("watch_kept_iou", "watch_best_query_iou", "lvis_kept_miou", "lvis_best_query_miou"):
            assert 0 <= r[k] <= 1, (k, r[k])
    assert {v["verdict"] for v in res["verdicts"]} <= {"holds", "fails", "not measurable"}
    doc = json.loads((tmp_path / "res" / "diagnostics" / "watch-learnability.json").read_text())
    assert doc["per_concept"] and "gt_cells" in doc["per_concept"][0]
    assert len(doc["resolution_ceiling"]) == 2  # the mask grid and the ViT token grid
    for c in doc["resolution_ceiling"].values():
        assert 0 <= c["watch_test"] <= 1 and 0 <= c["lvis_val"] <= 1
    mask, token = (doc["resolution_ceiling"][k]["lvis_val"] for k in sorted(doc["resolution_ceiling"]))
    assert mask >= token  # the finer grid keeps at least as much of every mask
    assert all("token_grid_ceiling" in c for c in doc["per_concept"])
    mem = doc["memorization"]
    assert mem["steps"] == 2 and mem["pairs"] > 0 and 0 <= mem["best_query_iou_after"] <= 1
    assert [r["recipe"] for r in doc["train_fit"]] == ["base", "fusion_only"]
    assert [r["recipe"] for r in doc["headline"]] == ["base", "fusion_only"]
    assert all(0 <= r["saco_neg_correct"] <= 1 for r in doc["headline"])
    assert any("headline shape" in v.get("check", "") and "Table 3.1" in v.get("published", "") for v in doc["checks"])


def test_resolution_ceiling_is_one_at_full_resolution(monkeypatch):
    """The round trip through a mask grid as large as the image returns every GT mask exactly (IoU 1)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import diagnose_watch

    from common.data import load_pairs
    from common.worlds import ensure_worlds

    first = load_pairs(ensure_worlds(scale="micro")["watch_test"])[0]
    assert first.height == first.width
    size = first.height
    ceiling = diagnose_watch.resolution_ceiling("micro", "watch_test", size)
    assert set(ceiling.values()) == {1.0} and "all" in ceiling
    coarse = diagnose_watch.resolution_ceiling("micro", "watch_test", 2)
    assert coarse["all"] < 1.0  # a 2×2 grid cannot hold the watch parts



def test_learnability_micro(tmp_path, monkeypatch):
    """scripts/learnability.py at micro: two candidates under a 2-s budget, base rows, loss-term trends, verdicts."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import learnability

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "runs"))
    rows = learnability.main(["--scale", "micro", "--budget-s", "2", "--candidates", "A_v3_control,L_v4_lora_r8_a64",
                              "--out", str(tmp_path / "res")])
    assert set(rows) == {"base_v3", "base_v4", "A_v3_control", "L_v4_lora_r8_a64"}
    for name in ("A_v3_control", "L_v4_lora_r8_a64"):
        r = rows[name]
        assert r["steps"] >= 1 and r["s_per_step"] > 0 and 0 <= r["watch_iou"] <= 1 and 0 <= r["neg_correct"] <= 1
        assert set(r["terms"]["mask_dice"]) and len(r["terms"]["total"]) == 2 and r["per_concept"]
    doc = json.loads((tmp_path / "res" / "diagnostics" / "learnability.json").read_text())
    assert doc["meta"]["base_hash"] and {v["verdict"] for v in doc["checks"]} <= {"holds", "fails"}
    assert any("learns the watch task" in v["check"] for v in doc["checks"])
