"""`make eval` at micro scale: trains (cached) and scores recipes, writes recipes.json + the Markdown table."""
import json
import sys

from common import recipes


def test_eval_recipes_micro(tmp_path, monkeypatch):
    sys.path.insert(0, str(recipes.RUNS.parent.parent / "scripts"))
    import eval_recipes

    monkeypatch.setattr(recipes, "RUNS", tmp_path / "runs")
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
    sys.path.insert(0, str(recipes.RUNS.parent.parent / "scripts"))
    import diagnose_watch

    monkeypatch.setattr(recipes, "RUNS", tmp_path / "runs")
    res = diagnose_watch.main(["--scale", "micro", "--recipes", "fusion_only", "--out", str(tmp_path / "res")])
    assert [r["recipe"] for r in res["rows"]] == ["base", "fusion_only"]
    for r in res["rows"]:
        for k in ("watch_kept_iou", "watch_best_query_iou", "lvis_kept_miou", "lvis_best_query_miou"):
            assert 0 <= r[k] <= 1, (k, r[k])
    assert {v["verdict"] for v in res["verdicts"]} <= {"holds", "does not hold", "not measurable"}
    doc = json.loads((tmp_path / "res" / "micro" / "diagnostics" / "watch-learnability.json").read_text())
    assert doc["per_concept"] and "gt_cells" in doc["per_concept"][0]


def test_pilot_watch_exposure_micro(tmp_path, monkeypatch):
    """scripts/pilot_watch_exposure.py at micro: the stage-3 pilot base and both fine-tunes train and are scored."""
    sys.path.insert(0, str(recipes.RUNS.parent.parent / "scripts"))
    import pilot_watch_exposure

    monkeypatch.setattr(recipes, "RUNS", tmp_path / "runs")
    monkeypatch.setitem(recipes.RECIPES, "trial_stage3_C", pilot_watch_exposure.stage3())
    res = pilot_watch_exposure.main(["--scale", "micro", "--out", str(tmp_path / "res")])
    models = [r["model"] for r in res["rows"]]
    assert models[:2] == ["base (committed)", "pilot base (stage 3)"]
    assert {m for m in models[2:]} == {f"frozen_te lr {lr:g}" for lr in pilot_watch_exposure.FT_LRS}
    assert all(0 <= r["saco_neg_correct"] <= 1 and 0 <= r["lvis_mIoU"] <= 1 for r in res["rows"])
    assert len(res["verdicts"]) == 1 + 3 * len(pilot_watch_exposure.FT_LRS)
