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

from common import recipes
from common.io import ROOT, atomic_write_json
from common.model import load_state, save_checkpoint
from common.train import read_log

sys.path.insert(0, str(ROOT / "tests"))
from test_data import _write, files  # noqa: E402,F401  (the COCO / SA-Co fixture)


@pytest.fixture(autouse=True)
def runs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "RUNS", tmp_path / "runs")


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
    run = recipes.train("fusion_only", "micro", progress=False)
    state = load_state(run.final)
    dropped = sorted(state)[0]
    del state[dropped]
    save_checkpoint(state, run.final)
    with pytest.raises(KeyError, match=f"fusion_only lacks 1 tensor.*{dropped}"):
        recipes.load_model("fusion_only", "micro")


def test_diverging_run_stops_and_is_not_cached():
    r = recipes.replace(recipes.RECIPES["frozen_te"], name="frozen_te_lr1e3_diverges", lr=1e3, steps=30,
                        epochs=None, grad_accum=1, clip=0.0)
    with pytest.raises(FloatingPointError, match="frozen_te_lr1e3_diverges.*(diverged)"):
        recipes.train(r, "micro", progress=False)
    assert not (recipes.run_dir(r, "micro") / "done.json").exists()


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
