"""`make base` at micro scale: all three stages train, the model is scored, figures and JSON are written."""
import json

from common import runs
from common.io import ROOT


def test_make_base_micro(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import make_base

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "runs"))
    monkeypatch.setattr(sys, "argv", ["make_base.py", "--scale", "micro", "--out", str(tmp_path / "base")])
    make_base.main()
    out = json.loads((tmp_path / "base" / "base.json").read_text())
    assert set(out["train"]) == {"base_pretrain_stage1", "base_pretrain_stage2", "base_pretrain"}
    assert 0.0 <= out["scores"]["saco"]["neg_correct"] <= 1.0
    assert set(out["checks"]) == {"saco_neg_correct>=0.90", "positive_kept_iou>=0.5", "lvis_miou>=0.70", "watch_iou_low_not_zero"}
    assert -1.0 <= out["text_health"]["mean_offdiag_cos"] <= 1.0
    assert (tmp_path / "base" / "fig-base-curve.png").exists() and (tmp_path / "base" / "fig-text-health.svg").exists()
