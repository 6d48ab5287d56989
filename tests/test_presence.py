"""Post 02 §5: the presence gate (common.presence), the hooks and the gate-input probe, and the
presence_only script at micro scale."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from common import claims, hooks, presence, recipes, runs
from common.data import load_pairs
from common.io import ROOT, read_json
from common.model import SPECS
from common.probes import logistic_probe_auc
from common.report import load_script
from common.worlds import ensure_worlds



def _items(n: int = 6):
    paths = ensure_worlds(scale="micro")
    pos_ds, neg_ds = load_pairs(paths["watch_train"]), load_pairs(paths["watch_negatives"])
    return presence.balanced_pairs([(pos_ds, p) for p in pos_ds if p.masks], [(neg_ds, p) for p in neg_ds if not p.masks],
                                   n, seed=0)


def test_gate_has_the_posts_nine_tensors_and_parameter_count():
    model = runs.load_model("scratch", "micro")
    shapes = presence.gate_tensors(model)
    d = SPECS["micro"].hidden
    assert len(shapes) == 9
    count = lambda d: d + 2 * d + 2 * (d * d + d) + d + 1  # token, LayerNorm, 3 linears d→d→d→1  # noqa: E731
    assert sum(int(np.prod(s)) for s in shapes.values()) == count(d)
    assert count(256) == 132_609  # the post's figure at SAM3's d = 256


def test_cached_gate_logit_equals_the_models_presence_logit():
    model = runs.load_model("scratch", "micro")
    items = _items()
    tok = runs.tokenizer_for("micro")
    cache = presence.cache_gate_inputs(model, items, tok, SPECS["micro"].image_size, progress=False)
    with torch.no_grad():
        _, full = presence.forward_q0(model, items, list(range(len(items))), tok, SPECS["micro"].image_size)
        cached = presence.gate_logit(model, cache.q0)
    assert torch.allclose(cached, full, atol=1e-5)
    assert cache.label.tolist() == [1.0] * (len(items) // 2) + [0.0] * (len(items) // 2)


def test_cached_training_follows_the_full_forward_trajectory(tmp_path):
    """The cached repair and the full-forward repair take the same steps (same batches, same tensors)."""
    recipe = replace(recipes.resolve("presence_only", "micro"), steps=4, lr=1e-2)
    items, tok = _items(), runs.tokenizer_for("micro")
    losses = {}
    for full in (False, True):
        model = runs.load_model("scratch", "micro")
        run = presence.train_gate(model, recipe, tmp_path / str(full), items, tok, SPECS["micro"].image_size,
                                  progress=False, full_forward=full)
        losses[full] = [r["loss"] for r in run.log]
        assert run.summary["trainable_params"] == sum(int(np.prod(s)) for n, s in presence.gate_tensors(model).items()
                                                      if n.startswith(presence.HEAD_PREFIXES))
    assert len(losses[False]) == 4 and np.allclose(losses[False], losses[True], atol=1e-5)
    assert losses[False][-1] != losses[False][0]  # the head did move


def test_hooks_capture_and_overwrite_and_clean_up():
    lin = torch.nn.Linear(3, 2)
    x = torch.ones(1, 3)
    with hooks.capture(lin, "input") as ins, hooks.capture(lin, "output") as outs:
        y = lin(x)
    assert torch.equal(ins[0], x) and torch.equal(outs[0], y)
    with hooks.overwrite(lin, lambda o: o * 0):
        assert torch.count_nonzero(lin(x)) == 0
    assert torch.equal(lin(x), y)  # hooks removed on exit
    with pytest.raises(ValueError):
        with hooks.capture(lin, "weights"):
            pass


def test_logistic_probe_auc_known_answers():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 100)
    signal = np.c_[y + 0.05 * rng.standard_normal(200), rng.standard_normal((200, 4))]
    assert logistic_probe_auc(signal[:100], y[:100], signal[100:], y[100:]) > 0.99
    noise = rng.standard_normal((200, 5))
    assert abs(logistic_probe_auc(noise[:100], y[:100], noise[100:], y[100:]) - 0.5) < 0.15


def test_table_steps_scale_the_posts_steps():
    assert presence.table_steps(1000) == [0, 75, 150, 250, 750, 999]
    assert presence.table_steps(20) == [0, 2, 3, 5, 15, 19]


def test_presence_only_script_micro(runs_dir, tmp_path):
    mod = load_script(ROOT / "post02" / "presence_only.py")
    out = mod.main(["--scale", "micro", "--out", str(tmp_path), "--pos-weight", "1"])
    t51, t52 = (read_json(tmp_path / "post02" / f"table-5.{i}.json") for i in (1, 2))
    assert [r["row"] for r in t51["rows"]] == ["0", "75", "150", "250", "750", "999"]
    assert t51["timing"]["full_forward_step_s"] > t51["timing"]["step_s"] > 0
    assert {r["recipe"] for r in t52["rows"]} == {"base", "lvis_replay", "recovery_frozen_te_boost", "lvis_replay_neg",
                                                  "presence_only"}
    assert {p["model"] for p in t52["probe"]} == {"base", "lvis_replay", "presence_only"}
    # the claims are judged at tiny / sam3 (none at micro); each reads the micro output without an error
    res = claims.Results(tmp_path)
    judged = {c.id: claims.evaluate(c, res, "micro").verdict for rel in ("post02/table-5.1", "post02/table-5.2")
              for c in claims.claims_reading(rel)}
    assert set(judged) >= {"p02-5.1-gate-learns", "p02-5.2-presence-only-order", "p02-5.2-watch-kept",
                           "p02-5.2-gate-input-carries-signal"}
    assert all(v in claims.VERDICTS and v != "error" for v in judged.values()), judged
    assert (tmp_path / "post02" / "fig-5.1.png").exists() and (tmp_path / "post02" / "fig-5.2.svg").exists()
    assert out["timing"]["n_pairs"]["pos"] == out["timing"]["n_pairs"]["neg"]
    # the repaired model is a recipe every later script loads by name: only the head differs from lvis_replay
    fixed, src = (runs.load_model(n, "micro").state_dict() for n in ("presence_only", "lvis_replay"))
    moved = {k for k in fixed if not torch.equal(fixed[k], src[k])}
    assert moved and all(k.startswith(presence.HEAD_PREFIXES) for k in moved)
