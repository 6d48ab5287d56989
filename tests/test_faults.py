"""Issue #20: faults that used to pass silently or end in a traceback now stop with a message naming the
file / field / recipe / step (micro scale, seconds)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from common import recipes, runs
from common.io import ROOT, atomic_write_json
from common.model import load_state, save_checkpoint
from common.train import read_log

sys.path.insert(0, str(ROOT / "tests"))
from test_data import _write, files  # noqa: E402,F401  (the COCO / SA-Co fixture)


@pytest.fixture(autouse=True)
def runs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "runs"))


def _load_bad(files, tmp_path, segmentation: dict):
    from common.data import load_pairs

    doc = json.loads(files["coco"].read_text())
    doc["annotations"][0]["segmentation"] = segmentation
    return load_pairs(_write(tmp_path / "bad.json", doc))


def test_empty_rle_counts_is_an_error_not_a_garbage_mask(files, tmp_path):
    from common.data import DataFormatError

    with pytest.raises(DataFormatError, match=r"bad\.json: annotations\[0\] \(id=1\)\.segmentation\.counts"):
        _load_bad(files, tmp_path, {"size": [20, 30], "counts": ""})


def test_uncompressed_rle_larger_than_its_image_is_refused_at_load(files, tmp_path):
    from common.data import DataFormatError

    with pytest.raises(DataFormatError, match="summing to height × width = 600"):
        _load_bad(files, tmp_path, {"size": [20, 30], "counts": [100, 50, 500]})


def test_rle_runs_decode_pycocotools_strings():
    import numpy as np
    from pycocotools import mask as mask_utils

    from common.data import rle_runs

    m = np.zeros((7, 5), np.uint8)
    m[2:5, 1:3] = 1
    runs = rle_runs(mask_utils.encode(np.asfortranarray(m))["counts"])
    assert sum(runs) == 35 and runs == [9, 3, 4, 3, 16]


def test_checkpoint_with_nan_is_refused(tmp_path):
    p = save_checkpoint({"a": torch.ones(3), "b": torch.tensor([1.0, float("nan")])}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match=r"x\.safetensors.*NaN/inf.*'b'"):
        load_state(p)


def test_partial_fine_tune_checkpoint_fails_loudly():
    run = runs.train("fusion_only", "micro", progress=False)
    state = load_state(run.final)
    dropped = sorted(state)[0]
    del state[dropped]
    save_checkpoint(state, run.final)
    with pytest.raises(KeyError, match=f"fusion_only lacks 1 tensor.*{dropped}"):
        runs.load_model("fusion_only", "micro")


def test_diverging_run_stops_and_is_not_cached():
    r = recipes.replace(recipes.RECIPES["frozen_te"], name="frozen_te_lr1e3_diverges", lr=1e3, steps=30,
                        epochs=None, grad_accum=1, clip=0.0)
    with pytest.raises(FloatingPointError, match="frozen_te_lr1e3_diverges.*(diverged)"):
        runs.train(r, "micro", progress=False)
    assert not (runs.run_dir(r, "micro") / "done.json").exists()


def test_torn_last_log_line_is_dropped_with_a_note(tmp_path, capsys):
    p = tmp_path / "log.jsonl"
    p.write_text('{"step": 1, "total": 2.0}\n{"step": 2, "total": 1.5}\n{"step": 3, "to')
    assert [r["step"] for r in read_log(p)] == [1, 2]
    assert "torn last line (3)" in capsys.readouterr().out
    p.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"log\.jsonl: line 2"):
        read_log(p)


def test_results_files_are_world_readable(tmp_path):
    p = atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644


def test_sam3_scale_with_missing_or_empty_checkpoint_dir_is_a_clear_message(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for d in (tmp_path / "missing", tmp_path):
        res = subprocess.run([sys.executable, str(ROOT / "post01" / "signal_rank.py"), "--scale", "sam3",
                              "--checkpoint", str(d)], capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 2 and "not a SAM3 directory" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_spectral.py"), "--scale", "huge"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "invalid choice: 'huge'" in res.stderr and "Traceback" not in res.stderr


def test_iscrowd_is_carried_and_crowd_gt_is_dropped_like_metas_evaluator(tmp_path):
    """COCO ``iscrowd`` reaches the SA-Co metrics, which drop crowd GT (Meta's DemoEval marks it ``ignore``).

    Hand-computed: pair A has a normal GT and a crowd GT, and one kept prediction equal to the normal GT → with the
    crowd GT dropped TP 1, FP 0, FN 0 (counting the crowd GT would add a FN). Pair B's only GT is a
    crowd region and nothing is kept → an image-level true negative (counting it: a missed positive, IL_MCC 0). The
    posts' neg_correct still counts only pairs with no annotation at all (``common.metrics``)."""
    import numpy as np
    from PIL import Image

    from common import metrics
    from common.data import DataFormatError, load_pairs
    from common.evaluate import Prediction, _saco_inputs
    from common.worlds import encode_rle

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    sq = lambda x0: (lambda m: (m.__setitem__((slice(2, 10), slice(x0, x0 + 8)), True), m)[1])(np.zeros((20, 30), bool))  # noqa: E731
    doc = {"info": {"description": "crowd"}, "categories": [{"id": 1, "name": "object"}],
           "images": [{"id": i, "file_name": "a.png", "text_input": t, "width": 30, "height": 20,
                       "is_instance_exhaustive": 1} for i, t in ((1, "a"), (2, "b"))],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(sq(3)), "iscrowd": 0},
                           {"id": 2, "image_id": 1, "category_id": 1, "segmentation": encode_rle(sq(15)), "iscrowd": 1},
                           {"id": 3, "image_id": 2, "category_id": 1, "segmentation": encode_rle(sq(3)), "iscrowd": 1}]}
    path = tmp_path / "saco.json"
    path.write_text(json.dumps(doc))
    ds = load_pairs(path)
    a, b = list(ds)
    assert a.crowd_flags == [0, 1] and b.crowd_flags == [1]
    preds = [Prediction(a, metrics.Kept(sq(3)[None], np.array([0.9]), np.array([0])), np.zeros(1)),
             Prediction(b, metrics.Kept(np.zeros((0, 20, 30), bool), np.zeros(0), np.zeros(0, int)), np.zeros(1))]
    s = metrics.saco_eval(_saco_inputs(ds, preds)).summary
    assert s["pmF1"] == pytest.approx(1.0, abs=1e-3) and s["IL_MCC"] == pytest.approx(1.0, abs=1e-3)  # A IL_TP, B IL_TN
    flat = [metrics.PairInput(i.pred_masks, i.pred_scores, i.gt_masks, is_instance_exhaustive=True, meta=i.meta)
            for i in _saco_inputs(ds, preds)]  # the same pairs with every crowd flag lost
    s0 = metrics.saco_eval(flat).summary
    # positive-micro F1 over TP 1, FP 0, FN 2 (A's crowd and B's crowd missed): P 1, R 1/3 → 0.5; B is an IL_FN
    assert s0["pmF1"] == pytest.approx(0.5, abs=1e-3) and s0["IL_MCC"] == pytest.approx(0.0, abs=1e-3)
    doc["annotations"][0]["iscrowd"] = 2
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match="iscrowd"):
        load_pairs(path)
