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
