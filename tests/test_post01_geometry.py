"""Post 01 §07 (concept geometry, post01/concept_geometry.py): its helpers with known answers (pred_IoU of one image,
cosines, Pearson, the fusion[4] slot at relative depth, neighbour sets) and the script at micro scale."""
from __future__ import annotations

import numpy as np
import pytest

from common import claims, report
from common.io import ROOT, read_json
from common.report import load_script

CG = load_script(ROOT / "post01" / "concept_geometry.py")
OUTPUTS = ("table-7.0", "fig-7.1", "table-7.2", "table-7.3", "table-7.4", "fig-7.5", "fig-7.6")


# ----------------------------------------------------------------------------- known answers
def test_pair_iou_matrix_of_one_image():
    m = lambda *cells: np.isin(np.arange(16).reshape(4, 4), cells)  # noqa: E731 — a 4×4 mask with these cells set
    unions = {"a": m(0, 1, 2, 3), "b": m(2, 3, 4, 5), "c": m(), "d": m(), "e": m(9)}
    s, c, empty = CG.pair_iou_matrix(unions, {"a", "b", "c", "d"}, ("a", "b", "c", "d", "e"))
    assert s[0, 1] == s[1, 0] == pytest.approx(2 / 6) and c[0, 1] == 1  # |a∧b| = 2, |a∨b| = 6
    assert s[0, 2] == 0 and c[0, 2] == 1  # one prompt keeps nothing: IoU 0, counted
    assert c[2, 3] == 0 and empty == 1  # neither keeps a mask: skipped, counted as empty
    assert c[:, 4].sum() == 0  # "e" is not in the image's GT: no pair with it
    assert np.all(np.diag(c) == 0)


def test_cosine_pearson_slot_and_neighbours():
    x = np.array([[1.0, 0], [0, 2], [-3, 0], [0, 0]])
    cos = CG.cosine_matrix(x)
    assert cos[0, 1] == pytest.approx(0) and cos[0, 2] == pytest.approx(-1) and cos[1, 1] == pytest.approx(1)
    assert cos[3, 0] == 0  # a zero vector: cosine 0, not NaN
    assert CG.cosine_matrix(np.stack([x, 2 * x])).shape == (2, 4, 4)
    assert CG.pearson([1, 2, 3, np.nan], [2, 4, 6, 0]) == pytest.approx(1.0)
    assert CG.pearson([1, 2], [1, 2]) is None and CG.pearson([1, 1, 1], [1, 2, 3]) is None
    assert CG.fusion_slot(6) == "fusion[4]" and CG.fusion_slot(2) == "fusion[1]"
    sim = np.array([[1, 0.9, 0.1, np.nan], [0.9, 1, 0.5, 0.2], [0.1, 0.5, 1, 0.3], [np.nan, 0.2, 0.3, 1]])
    assert CG.knn_sets(sim, 1) == [{1}, {0}, {1}, {2}]
    assert CG.off_diagonal(np.arange(9).reshape(3, 3)).tolist() == [1, 2, 5]
    assert CG.split_label(CG.pair_label("hour hand", "minute hand")) == ("hour hand", "minute hand")


def test_pair_labels_are_the_published_rows():
    from common import published
    from common.worlds import WATCH_CONCEPTS

    for tid, labels in (("7.2", CG.SYNONYMS), ("7.3", (*CG.PERIPHERAL, CG.CROWN_PUSHER)), ("7.4", CG.COMPOUNDS)):
        assert {v["row"] for v in published.lookup("post01", tid)} == set(labels)
        assert all(c in WATCH_CONCEPTS for lab in labels for c in CG.split_label(lab))


# ----------------------------------------------------------------------------- the script at micro scale
@pytest.fixture(scope="module")
def outputs(runs_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    CG.main(["--scale", "micro", "--out", str(out)])
    return out


@pytest.mark.parametrize("stem", OUTPUTS)
def test_script_micro(outputs, stem):
    rel = f"post01/{stem}"
    doc = read_json(outputs / f"{rel}.json")
    assert doc["rows"] and doc["script"] == "post01/concept_geometry.py" and doc["meta"]["base_hash"]
    assert (outputs / f"{rel}.md").exists()
    assert (outputs / "post01" / f"{report.figure_stem(stem, 'post01')}.png").exists()
    res = claims.Results(outputs)
    judged = {c.id: claims.evaluate(c, res, "micro").verdict for c in claims.claims_reading(rel)}
    if stem not in ("fig-7.5", "fig-7.6"):  # the figures with no claim of their own
        assert judged
    assert all(v in claims.VERDICTS and v != "error" for v in judged.values()), judged


def test_table_contents_micro(outputs):
    rows = {s: read_json(outputs / f"post01/{s}.json") for s in OUTPUTS}
    t70 = {r["measure"]: r for r in rows["table-7.0"]["rows"]}
    assert set(t70) >= {"fus4_mean_watch", "fus4_share_above_0_9", "fus4_mean_black", "pearson_fus4_pred_iou"}
    assert all(-1 <= t70["fus4_mean_watch"][r] <= 1 and 0 <= t70["fus4_share_above_0_9"][r] <= 1 for r in CG.RECIPES)
    assert rows["table-7.0"]["meta"]["config"]["fusion_slot"] == "fusion[1]"  # micro: 2 fusion layers
    assert [r["pair"] for r in rows["table-7.2"]["rows"]] == list(CG.SYNONYMS)
    assert [r["pair"] for r in rows["table-7.3"]["rows"]] == [*CG.PERIPHERAL, CG.CROWN_PUSHER]
    for r in rows["table-7.2"]["rows"] + rows["table-7.3"]["rows"]:
        assert all(k in r for k in ("fus4_base", "fus4_frozen_te", "fus4_fusion_only", "pred_iou_frozen_te",
                                    "pred_iou_fusion_only", "text_base", "text_all_trainable", "n_images"))
        assert (r["pred_iou_frozen_te"] is None) == (r["n_images"] == 0) or r["n_images"] > 0
        assert all(r[f"pred_iou_{k}"] is None or 0 <= r[f"pred_iou_{k}"] <= 1 for k in CG.RECIPES)
    for r in rows["table-7.4"]["rows"]:
        assert r["text_delta"] == pytest.approx(r["text_all_trainable"] - r["text_base"])
        assert r["fus4_ft_min"] <= r["fus4_ft_max"] and 0 <= r["text_delta_percentile"] <= 1
    f71 = rows["fig-7.1"]
    assert len(f71["pred_iou"]["frozen_te"]) == 37 and all(len(x) == 37 for x in f71["pred_iou"]["frozen_te"])
    assert all(f71["pred_iou"]["frozen_te"][i][i] is None for i in range(37))
    f75 = rows["fig-7.5"]
    assert len(f75["rows"]) == 12 and all(c["verdict"] == "holds" for c in f75["checks"])  # frozen TE: text unchanged
    f76 = rows["fig-7.6"]
    assert len(f76["rows"]) == len(CG.PANELS) and all(np.array(v).shape == (37, 3) for v in f76["coords"].values())
