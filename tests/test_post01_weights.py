"""Post 01 Fig 1.1 (weight_delta), Table 2.1 (swap_matrix) and the §08 numbers (out_of_domain): their helpers with
known answers, and each script at micro scale."""
from __future__ import annotations

import pytest
import torch

from common import claims, report
from common.io import ROOT, read_json
from common.report import load_script
from common.stats import gap_share

WD = load_script(ROOT / "post01" / "weight_delta.py")
SM = load_script(ROOT / "post01" / "swap_matrix.py")
OOD = load_script(ROOT / "post01" / "out_of_domain.py")


# ----------------------------------------------------------------------------- known answers
def test_group_measures_of_a_planted_update():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(10, 8, generator=g)
    u, v = torch.randn(10, 1, generator=g), torch.randn(1, 8, generator=g)
    start = {"dot_product_scoring.text_proj.weight": w, "dot_product_scoring.text_proj.bias": torch.ones(8),
             "detr_decoder.presence_head.layer1.weight": torch.eye(4), "detr_decoder.box_head.layer1.weight": torch.eye(4),
             "text_encoder.x.weight": torch.ones(3, 3)}
    end = {**start, "dot_product_scoring.text_proj.weight": w + u @ v,  # a rank-1 update: 1 of 8 directions
           "dot_product_scoring.text_proj.bias": torch.ones(8) * 2,     # a 1-D tensor: moves, but has no rank
           "detr_decoder.presence_head.layer1.weight": torch.eye(4) * 2}  # 4 of 4 directions; folded into the decoder
    m = WD.group_measures(start, end)
    assert set(m) == {"dot_prod_scoring", "transformer_decoder", "text_encoder"}  # no presence_head group in Fig 1.1
    assert m["dot_prod_scoring"]["effective_rank_fraction"] == pytest.approx(1 / 8)
    assert m["dot_prod_scoring"]["matrices_moved"] == 1
    # presence_head.layer1 moved (ER 1), box_head did not (excluded, not averaged in as 0)
    assert m["transformer_decoder"]["effective_rank_fraction"] == pytest.approx(1.0)
    assert m["transformer_decoder"]["matrices_moved"] == 1
    assert m["transformer_decoder"]["rel_change"] == pytest.approx(0.5)  # one tensor doubled, one unchanged, equal sizes
    assert m["transformer_decoder"]["cosine_to_base"] == pytest.approx(3 * 4 / (8 ** 0.5 * 20 ** 0.5))
    assert m["text_encoder"]["effective_rank_fraction"] is None and m["text_encoder"]["rel_change"] == 0
    assert m["text_encoder"]["cosine_to_base"] == pytest.approx(1.0)
    assert WD.key("rel_change", "frozen_te") == "rel_change" and WD.key("rel_change", "fusion_only") == "rel_change_fusion_only"


def test_gap_share_and_modules_label():
    assert gap_share(0.5, 0.2, 0.8) == pytest.approx(0.5)
    assert gap_share(0.2, 0.2, 0.8) == 0 and gap_share(0.8, 0.2, 0.8) == 1
    assert gap_share(0.5, 0.3, 0.3) is None  # no gap
    assert SM.modules_label("FD") == "F + D" and SM.modules_label("") == "nothing (all base)"
    assert [c[0] for c in SM.CELLS] == list("ABCDEFGH")


def test_head_share_of_the_posts_numbers():
    neg = {"base": 95.8, "all_trainable": 2.2, "frozen_te": 3.2, "fusion_only": 8.1}
    assert OOD.head_share(neg) == pytest.approx((8.1 - 2.7) / (95.8 - 2.7))  # ≈ 0.058, the post's "a twentieth"
    assert 1 / 25 < OOD.head_share(neg) < 1 / 15
    assert OOD.head_share({**neg, "base": 2.0}) is None  # no collapse to share


# ----------------------------------------------------------------------------- scripts at micro scale
SCRIPTS = {"weight_delta": "fig-1.1", "swap_matrix": "table-2.1", "out_of_domain": "table-8.1"}


@pytest.fixture(scope="module")
def outputs(runs_dir, tmp_path_factory):
    """Each script run once at micro scale into one results directory."""
    out = tmp_path_factory.mktemp("results")
    for name in SCRIPTS:
        load_script(ROOT / "post01" / f"{name}.py").main(["--scale", "micro", "--out", str(out)])
    return out


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_micro(outputs, script):
    rel = f"post01/{SCRIPTS[script]}"
    doc = read_json(outputs / f"{rel}.json")
    assert doc["rows"] and doc["script"] == f"post01/{script}.py" and doc["meta"]["base_hash"]
    assert (outputs / f"{rel}.md").exists()
    assert (outputs / "post01" / f"{report.figure_stem(SCRIPTS[script])}.png").exists()
    res = claims.Results(outputs)
    judged = {c.id: claims.evaluate(c, res, "micro").verdict for c in claims.claims_reading(rel)}
    assert judged and all(v in claims.VERDICTS and v != "error" for v in judged.values()), judged


def test_table_contents_micro(outputs):
    f11 = {r["group"]: r for r in read_json(outputs / "post01/fig-1.1.json")["rows"]}
    assert "presence_head" not in f11 and {"transformer_decoder", "fusion_encoder", "dot_prod_scoring"} <= set(f11)
    for r in f11.values():
        assert all(k in r for k in ("effective_rank_fraction", "rel_change", "cosine_to_base",
                                    "effective_rank_fraction_all_trainable", "cosine_to_base_fusion_only"))
        er = r["effective_rank_fraction"]
        assert er is None or 0 < er <= 1
    assert f11["text_encoder"]["effective_rank_fraction"] is None and f11["text_encoder"]["rel_change"] == 0  # frozen
    # fusion_only trains fusion layers only: every other group is byte-identical to base
    assert all(r["rel_change_fusion_only"] == 0 and r["cosine_to_base_fusion_only"] == pytest.approx(1.0)
               for g, r in f11.items() if g != "fusion_encoder")
    t21 = {r["cell"]: r for r in read_json(outputs / "post01/table-2.1.json")["rows"]}
    assert list(t21) == [*"ABCDEFGH", "C*"]
    assert t21["C"]["iou"] == t21["A"]["iou"] and t21["C"]["tensors_from_ft"] == 0  # frozen text encoder
    assert t21["A"]["tensors_from_ft"] == 0 and t21["C*"]["tensors_from_ft"] > 0
    if t21["B"]["iou"] > t21["A"]["iou"]:
        assert t21["A"]["gap_fraction"] == 0 and t21["B"]["gap_fraction"] == pytest.approx(1.0)
    t81 = read_json(outputs / "post01/table-8.1.json")["rows"]
    assert [r["row"] for r in t81[:4]] == list(OOD.RECIPES)
    neg = {r["recipe"]: r["neg_correct"] for r in t81[:4]}
    assert t81[4]["head_share"] == (pytest.approx(OOD.head_share(neg)) if OOD.head_share(neg) is not None else None)
    assert t81[4]["published_head_share"] == pytest.approx((8.1 - 2.7) / (95.8 - 2.7))
