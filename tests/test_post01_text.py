"""Post 01 §04: Fig 4.1 / Table 4.2 (post01/text_rotation.py) and Fig 4.3 + the vision SAE check (post01/mask_lens.py):
their small helpers with known answers, and each script at micro scale."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common import claims
from common.io import ROOT, read_json
from common.report import load_script
from common.worlds import WATCH_CONCEPTS


def _script(name: str):
    return load_script(ROOT / "post01" / f"{name}.py")


# ----------------------------------------------------------------------------- known answers
def test_rotation_cosine_and_relative_shift():
    rot = _script("text_rotation").rotation
    base = torch.tensor([[1.0, 0.0], [3.0, 4.0], [2.0, 0.0]], dtype=torch.float64)
    ft = torch.tensor([[0.0, 2.0], [3.0, 4.0], [-2.0, 0.0]], dtype=torch.float64)
    cos, shift = rot(base, ft)
    assert cos.tolist() == pytest.approx([0.0, 1.0, -1.0])
    assert shift.tolist() == pytest.approx([5 ** 0.5, 0.0, 2.0])


def test_text_tensors_identical_looks_only_at_the_text_encoder():
    same = _script("text_rotation").text_tensors_identical
    a = {"text_encoder.w": torch.ones(2), "text_projection.b": torch.zeros(1), "vision_encoder.w": torch.ones(3)}
    b = {**a, "vision_encoder.w": torch.zeros(3)}
    assert same(a, b) == (True, 2)
    assert same(a, {**b, "text_projection.b": torch.full((1,), 1e-12)})[0] is False


def test_same_fraction_block_maps_the_posts_blocks():
    f = _script("mask_lens").same_fraction_block
    assert [f(b, 32, 32) for b in (0, 23, 31)] == [0, 23, 31]  # identity at the post's depth
    assert [f(b, 32, 4) for b in (23, 29, 31)] == [2, 3, 3]  # (b + 1) / 32 of 4 blocks: 3, 3.75, 4 → 0-based 2, 3, 3
    assert [f(b, 32, 2) for b in (0, 23, 31)] == [0, 1, 1]


def test_union_area_fraction_pools_the_union_per_token():
    f = _script("mask_lens").union_area_fraction
    m = np.zeros((2, 4, 4), bool)
    m[0, :2, :2] = True  # token (0, 0) fully covered
    m[1, 0, 2] = True  # a quarter of token (0, 1)
    m[1, :2, :2] = True  # overlaps mask 0: the union counts it once
    assert f(m, (2, 2)).tolist() == pytest.approx([1.0, 0.25, 0.0, 0.0])


# ----------------------------------------------------------------------------- scripts at micro scale
SCRIPTS = {"text_rotation": ("fig-4.1", "table-4.2"), "mask_lens": ("fig-4.3",)}


@pytest.fixture(scope="module")
def outputs(runs_dir, tmp_path_factory):
    """Both scripts run once at micro scale into one results directory."""
    out = tmp_path_factory.mktemp("results")
    for name in SCRIPTS:
        _script(name).main(["--scale", "micro", "--out", str(out), "--threads", "1"])
    return out


@pytest.mark.parametrize("rel", [f"post01/{t}" for ts in SCRIPTS.values() for t in ts])
def test_script_micro(outputs, rel):
    doc = read_json(outputs / f"{rel}.json")
    assert doc["rows"] and doc["script"].startswith("post01/") and doc["meta"]["base_hash"]
    assert (outputs / f"{rel}.md").exists()
    assert (outputs / "post01" / (rel.split("/")[1].replace("table-", "fig-") + ".png")).exists()
    res = claims.Results(outputs)
    judged = {c.id: claims.evaluate(c, res, "micro").verdict for c in claims.claims_reading(rel)}
    assert judged and all(v in claims.VERDICTS and v != "error" for v in judged.values()), judged


def test_text_rotation_contents_micro(outputs):
    f41 = read_json(outputs / "post01/fig-4.1.json")
    rows = {r["concept"]: r for r in f41["rows"]}
    assert set(rows) == set(WATCH_CONCEPTS)
    assert all(-1 <= r["cos_all_trainable"] <= 1 + 1e-9 and r["shift_all_trainable"] >= 0 for r in rows.values())
    # frozen_te's text encoder is base's: cosine 1, shift 0, and the check says so
    assert all(r["cos_frozen_te"] == pytest.approx(1.0, abs=1e-12) and r["shift_frozen_te"] == 0 for r in rows.values())
    assert [c["verdict"] for c in f41["checks"]] == ["holds"]
    assert {rows[c]["post_group"] for c in ("rehaut", "lunette", "sealing")} == {"rotated most"}
    t42 = {r["recipe"]: r for r in read_json(outputs / "post01/table-4.2.json")["rows"]}
    assert set(t42) == {"all_trainable", "frozen_te", "base"}
    assert t42["frozen_te"]["row"] == "frozen-TE fine-tune"
    assert all(0 <= r[k] <= 1 for r in t42.values() for k in ("watch_iou", "watch_dice", "saco_cgf1"))


def test_mask_lens_contents_micro(outputs):
    doc = read_json(outputs / "post01/fig-4.3.json")
    depth = doc["meta"]["config"]["vit_blocks"] if "config" in doc["meta"] else None
    blocks = [r for r in doc["rows"] if r.get("recipe")]
    depth = depth or max(r["block"] for r in blocks) + 1
    assert {(r["recipe"], r["block"]) for r in blocks} == {(rec, b) for rec in ("base", "all_trainable", "frozen_te")
                                                           for b in range(depth)}
    assert all(0 <= r["probe_iou"] <= 1 for r in blocks)
    peaks = {r["peak_of"]: r for r in doc["rows"] if r.get("peak_of")}
    assert set(peaks) == {"base", "all_trainable", "frozen_te"} and peaks["frozen_te"]["row"] == "frozen-TE"
    for rec, p in peaks.items():
        assert p["peak_probe_iou"] == max(r["probe_iou"] for r in blocks if r["recipe"] == rec)
    assert doc["sae"] and all(0 <= s[k] <= 1 for s in doc["sae"]
                              for k in ("matched_ft_base", "matched_seed_control", "matched_ft_base_same_init"))
    assert all(s["l0_base_s0"] >= 0 and s["fvu_base_s0"] >= 0 for s in doc["sae"])
