"""Known-answer tests for common/metrics.py (IoU, watch IoU, SA-Co cgF1, post-processing, AUC)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from common import metrics as M

H = W = 10


def box(r0: int, r1: int, c0: int, c1: int, h: int = H, w: int = W) -> np.ndarray:
    """Bool mask with rows r0..r1-1 and cols c0..c1-1 set."""
    m = np.zeros((h, w), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def stack(*ms: np.ndarray) -> np.ndarray:
    return np.stack(ms) if ms else np.zeros((0, H, W), dtype=bool)


# ----------------------------------------------------------------------------- IoU / Dice

def test_iou_dice_tiny():
    a = np.array([[1, 1, 0], [0, 0, 0]], bool)   # 2 px
    b = np.array([[0, 1, 1], [0, 0, 0]], bool)   # 2 px, overlap 1
    assert M.mask_iou(a, b) == pytest.approx(1 / 3)     # 1 / (2 + 2 - 1)
    assert M.dice(a, b) == pytest.approx(0.5)           # 2·1 / (2 + 2)
    assert M.mask_iou(a, a) == 1.0 and M.dice(a, a) == 1.0
    z = np.zeros_like(a)
    assert M.mask_iou(z, z) == 1.0 and M.dice(z, z) == 1.0          # empty ∪ empty convention
    assert M.mask_iou(z, z, empty_value=0.0) == 0.0
    assert M.mask_iou(a, z) == 0.0 and M.dice(a, z) == 0.0
    with pytest.raises(ValueError):
        M.mask_iou(a, np.zeros((3, 3), bool))


def test_pairwise_iou_matrix_and_pycocotools():
    a = stack(box(0, 2, 0, 2), box(0, 0, 0, 0))            # 4 px, empty
    b = stack(box(0, 2, 1, 3), box(5, 6, 5, 6), box(0, 0, 0, 0))
    iou = M.pairwise_mask_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(2 / 6)
    assert iou[0, 1] == 0.0 and iou[1, 2] == 0.0             # empty union → 0 (pycocotools rule)
    # agrees with pycocotools.mask.iou on random masks
    mu = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    da = rng.random((5, 17, 13)) > 0.6
    gb = rng.random((4, 17, 13)) > 0.5
    enc = lambda s: mu.encode(np.asfortranarray(s.transpose(1, 2, 0).astype(np.uint8)))
    ref = np.asarray(mu.iou(enc(da), enc(gb), [0] * 4))
    np.testing.assert_allclose(M.pairwise_mask_iou(da, gb), ref, atol=1e-12)


def test_pairwise_iou_chunking_exact():
    rng = np.random.default_rng(1)
    a = rng.random((3, 40, 50)) > 0.5
    b = rng.random((2, 40, 50)) > 0.5
    fa, fb = a.reshape(3, -1), b.reshape(2, -1)
    ref = (fa[:, None] & fb[None]).sum(-1)
    np.testing.assert_array_equal(M._pairwise_intersections(fa, fb, max_elems=37), ref)


# ----------------------------------------------------------------------------- watch IoU / LVIS

def test_watch_iou_with_empty_prediction():
    g = box(0, 2, 0, 5)
    tasks = [
        (stack(), stack(g)),                       # positive task, nothing kept      → 0
        (stack(box(0, 1, 0, 5), box(1, 2, 0, 5)), stack(g)),  # union of two preds = GT → 1
        (stack(), stack()),                        # negative task, nothing kept      → 1
        (stack(box(9, 10, 9, 10)), stack()),       # negative task, a false positive  → 0
    ]
    r = M.watch_iou(tasks)
    np.testing.assert_allclose(r.per_task, [0, 1, 1, 0])
    assert r.mean == pytest.approx(0.5) and r.n_positive == 2
    r2 = M.watch_iou(tasks, skip_negative=True)
    np.testing.assert_allclose(r2.per_task, [0, 1])
    assert r2.mean == pytest.approx(0.5)


def test_lvis_positive_miou_modes():
    g1, g2 = box(0, 2, 0, 5), box(5, 7, 0, 5)        # two 10 px instances
    p = box(0, 2, 0, 5)                              # finds g1 only
    tasks = [(stack(p), stack(g1, g2)), (stack(p), stack())]   # the negative task is skipped
    u = M.lvis_positive_miou(tasks)
    assert u.n_tasks == 1 and u.mean == pytest.approx(10 / 20)        # union: 10 / 20
    i = M.lvis_positive_miou(tasks, mode="instance")
    assert i.mean == pytest.approx((1.0 + 0.0) / 2)                    # best IoU per GT: 1, 0


# ----------------------------------------------------------------------------- SA-Co / cgF1

def _hand_pairs() -> list[M.PairInput]:
    """Seven (image, phrase) pairs on a 10x10 grid; arithmetic in test_cgf1_hand_computed."""
    A = box(0, 1, 0, 10)                          # 10 px
    B = box(2, 7, 0, 5)                           # 25 px
    d2 = box(2, 5, 0, 5) | box(5, 6, 0, 3)        # 18 px inside B → IoU 18/25 = 0.72
    d3 = box(8, 10, 5, 10)                        # 10 px, touches nothing → FP
    d4 = box(9, 10, 0, 1)                         # 1 px, score 0.4 (< 0.5: not in cgF1; kept at 0.3)
    C = box(3, 6, 6, 9)                           # 9 px
    return [
        # P1 positive: d1 = A (IoU 1), d2 ~ B (IoU 0.72), d3 FP, d4 below 0.5
        M.PairInput(stack(A, d2, d3, d4), [0.9, 0.8, 0.6, 0.4], stack(A, B), meta={"id": "P1"}),
        # P2 positive, only a 0.2 prediction → no detection (IL_FN), nothing kept at 0.3
        M.PairInput(stack(C), [0.2], stack(C), meta={"id": "P2"}),
        # P3 negative with a confident false positive (IL_FP)
        M.PairInput(stack(C), [0.9], stack(), meta={"id": "P3", "neg": True}),
        # P4, P5 negatives, nothing predicted (IL_TN)
        M.PairInput(stack(), [], stack(), meta={"id": "P4", "neg": True}),
        M.PairInput(stack(), [], stack(), meta={"id": "P5", "neg": True}),
        # P6 positive, perfect
        M.PairInput(stack(C), [0.95], stack(C), meta={"id": "P6"}),
        # P7 non-exhaustive: garbage, must be excluded everywhere
        M.PairInput(stack(d3), [0.99], stack(C), is_instance_exhaustive=False, meta={"id": "P7"}),
    ]


def test_cgf1_hand_computed():
    # Image level (score >= 0.5):  IL_TP = P1, P6 = 2;  IL_FN = P2 = 1;  IL_FP = P3 = 1;
    #   IL_TN = P4, P5 = 2;  P7 excluded (non-exhaustive).
    #   IL_MCC = (2·2 − 1·1) / sqrt((2+1)(2+1)(2+1)(2+1)) = 3 / 9 = 1/3.
    # Instance level, Hungarian in P1: d1↔A IoU 1.0, d2↔B IoU 0.72, d3 unmatched.
    #   t ∈ {.50,.55,.60,.65,.70}: TP = 2 (P1) + 1 (P6) = 3; pmFP = 1 (P1's d3; P3's FP is not a
    #     positive pair's); FN = 0 (P1) + 1 (P2, undetected) = 1 → P = 3/4, R = 3/4, pmF1 = 0.75.
    #   t ∈ {.75,...,.95}: TP = 1 + 1 = 2; pmFP = 2 (P1: d2, d3); FN = 1 (P1: B) + 1 (P2) = 2
    #     → P = R = 2/4, pmF1 = 0.5.
    #   pmF1 (mean over 10 thresholds) = (5·0.75 + 5·0.5)/10 = 0.625;  cgF1 = 0.625 · 1/3 = 0.208333.
    #   cgF1@50 = 0.75/3 = 0.25; cgF1@75 = 0.5/3 = 1/6.
    # Plain precision (FPs on negatives included), low t: 3/(3+1+1) = 0.6.
    # positive_macro_F1: local F1 P1 = 0.8 (P 2/3, R 1) low t / 0.4 (P 1/3, R 1/2) high t; P2 = 0;
    #   P6 = 1; divided by #(GT>0 & dt>0) = 2 → 0.9 low, 0.7 high → mean 0.8.
    # Union metrics (kept = score > 0.3): P1 preds ∪ = A∪d2∪d3∪d4 (29 px), GT ∪ = A∪B (35 px),
    #   inter = 28, union = 46 → 28/46.  P2: nothing kept → 0.  P6: 1.
    #   pos_mean_IoU = (28/46 + 0 + 1)/3;  negatives P3 (FP → 0), P4, P5 (→ 1):
    #   neg_correct = 2/3;  mean_mask_IoU = (28/46 + 0 + 1 + 0 + 1 + 1)/6.
    res = M.saco_eval(_hand_pairs(), keep_threshold=0.3, meta_eps=False)
    s = res.summary
    assert (s["IL_TP"], s["IL_FN"], s["IL_FP"], s["IL_TN"]) == (2, 1, 1, 2)
    assert s["n_pairs"] == 6 and s["n_excluded"] == 1
    assert s["IL_MCC"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(s["per_threshold"]["positive_micro_F1"], [0.75] * 5 + [0.5] * 5)
    assert s["pmF1"] == pytest.approx(0.625)
    assert s["cgF1"] == pytest.approx(0.625 / 3)
    assert s["cgF1@50"] == pytest.approx(0.25) and s["cgF1@75"] == pytest.approx(1 / 6)
    assert s["per_threshold"]["precision"][0] == pytest.approx(0.6)
    assert s["positive_macro_F1"] == pytest.approx(0.8)
    assert s["neg_correct"] == pytest.approx(2 / 3)
    assert s["pos_mean_IoU"] == pytest.approx((28 / 46 + 0 + 1) / 3)
    assert s["mean_mask_IoU"] == pytest.approx((28 / 46 + 0 + 1 + 0 + 1 + 1) / 6)

    # Meta's epsilons change the numbers only in the 4th decimal; these values are what Meta's
    # cgf1_eval.CGF1Evaluator printed for this exact data (run once on COCO/RLE files of it).
    sm = M.saco_eval(_hand_pairs(), keep_threshold=0.3).summary
    assert sm["cgF1"] == pytest.approx(0.2083114367066265, abs=1e-12)
    assert sm["IL_MCC"] == pytest.approx(0.33333329629630043, abs=1e-12)
    assert sm["pmF1"] == pytest.approx(0.6249343795570251, abs=1e-12)
    for k in ("cgF1", "pmF1", "IL_MCC", "positive_macro_F1"):
        assert sm[k] == pytest.approx(s[k], abs=1e-3)
        assert sm[k] < s[k]

    # per-pair records allow slicing: negatives only → neg_correct 2/3, no positives
    recs = {r.meta["id"]: r for r in res.records}
    assert [recs[k].il for k in ("P1", "P2", "P3", "P4", "P6")] == ["TP", "FN", "FP", "TN", "TP"]
    np.testing.assert_array_equal(recs["P1"].tps, [2] * 5 + [1] * 5)
    assert not recs["P7"].included
    neg = res.slice(lambda r: r.meta.get("neg", False), meta_eps=False)
    assert neg["n_positive"] == 0 and neg["neg_correct"] == pytest.approx(2 / 3)
    assert neg["IL_MCC"] == 0.0                                   # no positives → zero denominator
    assert recs["P1"].to_dict()["tps"][0] == 2


def test_threshold_averaging_match_at_072():
    # One positive pair matched at IoU 0.72 plus one true negative: IL_MCC = (1·1 − 0)/sqrt(1·1·1·1) = 1.
    # TP at t = .50 .55 .60 .65 .70 only → pmF1 per t = [1]*5 + [0]*5 → mean 0.5 = cgF1.
    gt = box(0, 5, 0, 5)                                   # 25 px
    pred = box(0, 3, 0, 5) | box(3, 4, 0, 3)               # 18 px inside → 0.72
    pairs = [M.PairInput(stack(pred), [0.9], stack(gt)), M.PairInput(stack(), [], stack())]
    s = M.saco_eval(pairs, meta_eps=False).summary
    np.testing.assert_array_equal(s["per_threshold"]["TPs"], [1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(s["per_threshold"]["cgF1"], [1] * 5 + [0] * 5)
    assert s["IL_MCC"] == pytest.approx(1.0) and s["cgF1"] == pytest.approx(0.5)


def test_score_threshold_inclusive_and_crowd_dropped():
    g = box(0, 2, 0, 5)
    # score exactly 0.5 counts (>=); a crowd GT is dropped, so a prediction on it is an FP
    r = M.evaluate_pair(M.PairInput(stack(g), [0.5], stack(g)))
    assert r.n_dt == 1 and r.il == "TP"
    r = M.evaluate_pair(M.PairInput(stack(g), [0.49], stack(g)))
    assert r.n_dt == 0 and r.il == "FN" and r.fns.tolist() == [1] * 10
    r = M.evaluate_pair(M.PairInput(stack(g), [0.9], stack(g), gt_iscrowd=[1]))
    assert r.n_gt == 0 and r.il == "FP" and r.fps.tolist() == [1] * 10


def test_il_mcc_edge_cases():
    assert M.il_mcc_from_counts(5, 0, 0, 5, meta_eps=False) == 1.0
    assert M.il_mcc_from_counts(0, 5, 5, 0, meta_eps=False) == -1.0
    assert M.il_mcc_from_counts(3, 0, 1, 0, meta_eps=False) == 0.0   # no negatives → 0
    assert M.il_mcc_from_counts(3, 0, 1, 0) == 0.0
    assert M.il_mcc_from_counts(0, 0, 0, 0) == 0.0


# ----------------------------------------------------------------------------- post-processing

def test_postprocess_scores_and_nms_removes_duplicate():
    sq = box(2, 6, 2, 6)                                   # 16 px
    dup = box(2, 6, 3, 7)                                  # shifted 1 px: IoU 12/20 = 0.6 > 0.5
    other = box(7, 9, 7, 9)
    logit = lambda m: np.where(m, 6.0, -6.0).astype(np.float32)
    masks = np.stack([logit(dup), logit(sq), logit(other), logit(sq)])
    q = np.array([1.5, 2.0, 1.0, -3.0], np.float32)
    pres = 3.0
    k = M.postprocess(q, pres, masks)
    sig = lambda x: 1 / (1 + math.exp(-x))
    # scores σ(q)·σ(3): .777, .838, .698, .045 → q3 dropped (< 0.3); q0 duplicates q1 → NMS drops it
    assert k.query_idx.tolist() == [1, 2]
    np.testing.assert_allclose(k.scores, [sig(2.0) * sig(3.0), sig(1.0) * sig(3.0)], rtol=1e-6)
    np.testing.assert_array_equal(k.masks[0], sq)
    k_no = M.postprocess(q, pres, masks, nms_iou=None)
    assert k_no.query_idx.tolist() == [1, 0, 2]
    # a closed presence gate (σ(−5) ≈ 0.0067) removes everything
    assert M.postprocess(q, -5.0, masks).masks.shape == (0, H, W)
    # torch inputs work as well
    torch = pytest.importorskip("torch")
    kt = M.postprocess(torch.from_numpy(q), torch.tensor([pres]), torch.from_numpy(masks))
    assert kt.query_idx.tolist() == [1, 2]


def test_postprocess_resize():
    m = np.full((1, 4, 4), -5.0, np.float32)
    m[0, :, :2] = 5.0                                      # left half on
    k = M.postprocess(np.array([5.0]), None, m, out_size=(8, 8))
    # bilinear (align_corners=False) on σ: output col 3 samples x=1.25 → .75·σ(5)+.25·σ(−5) ≈ .75 > .5,
    # col 4 samples x=1.75 → ≈ .25 < .5, so exactly the left 4 of 8 columns are on.
    expected = np.zeros((8, 8), bool)
    expected[:, :4] = True
    np.testing.assert_array_equal(k.masks[0], expected)


# ----------------------------------------------------------------------------- presence read-out

def test_presence_sigmoid_and_auc():
    assert M.presence_sigmoid(0.0) == 0.5
    assert M.presence_sigmoid(np.array([[2.0]])) == pytest.approx(1 / (1 + math.exp(-2)))
    # 9 (pos, neg) comparisons: .9 beats 3, .8 beats 3, .3 beats .1 and .2, ties .3 (½) → 8.5/9
    assert M.presence_auc([0.9, 0.8, 0.3], [0.1, 0.3, 0.2]) == pytest.approx(8.5 / 9)
    assert M.presence_auc([1, 2], [3, 4]) == 0.0
    assert math.isnan(M.presence_auc([], [1.0]))


def test_empty_inputs_any_form():
    g = box(0, 2, 0, 5)
    assert M.union_iou([], stack(g)) == 0.0 and M.union_iou(None, g) == 0.0
    assert M.union_iou([], []) == 1.0 and M.union_iou(np.zeros((0, 3, 3), bool), stack()) == 1.0
    r = M.evaluate_pair(M.PairInput([], [], []))                   # negative pair, nothing at all
    assert r.il == "TN" and r.union_iou == 1.0 and r.neg_correct is True
    r = M.evaluate_pair(M.PairInput(np.zeros((0, 4, 4), bool), [], stack(g)))
    assert r.il == "FN" and r.union_iou == 0.0
    assert M.watch_iou([(None, g), ([], [])]).per_task.tolist() == [0.0, 1.0]
