"""Segmentation metrics for the SAM3 fine-tune reproductions (Post 01 and Post 02).

Everything here is numpy-first; torch is only used by :func:`postprocess` (bilinear resize).
Scores are returned as fractions in [0, 1] (the posts print most of them as percentages).

Contents, and the tables they serve
-----------------------------------
* :func:`mask_iou`, :func:`dice`, :func:`pairwise_mask_iou` — basic mask overlap.
* :func:`union_iou`, :func:`watch_iou` — Post 01 "watch IoU" (Tables 4.1, 5.2, 9.x, e.g. 9.2 and
  the α / rank ladders): mean over (image, concept) tasks of IoU(union of kept predicted masks,
  union of GT masks).
* :func:`saco_eval`, :func:`evaluate_pair`, :func:`aggregate_saco` — SA-Co/Gold metrics as Meta's
  ``sam3/eval/cgf1_eval.py`` defines them (cgF1, IL_MCC, positive_micro_F1 = pmF1, ...), plus the
  posts' extra columns neg_correct, pos_mean_IoU and mean_mask_IoU (Post 01 Tables 1.1 / 5.2,
  Post 02 SA-Co tables).  Per-pair records are returned so callers can slice by subset or
  negative type and run paired statistics.
* :func:`lvis_positive_miou` — the posts' "LVIS mIoU" (positive-only mask mIoU).
* :func:`postprocess` — SAM3 inference read-out: score = σ(query logit)·σ(presence logit),
  keep score > 0.3, mask NMS, resize + binarise.
* :func:`presence_sigmoid`, :func:`presence_auc` — the presence-gate read-out of Post 01 §1 / §5
  (Fig. 1.1, Table 5.1) and a rank AUC for positive-vs-negative separation.

Conventions (all documented again at each function)
---------------------------------------------------
* Two empty masks: :func:`mask_iou` / :func:`dice` / :func:`union_iou` return ``empty_value``
  (default 1.0: "predicted nothing where there is nothing" is a perfect answer).
  :func:`pairwise_mask_iou` (used for instance matching) returns 0.0 for an empty union, which
  is what ``pycocotools.mask.iou`` returns, so matching agrees with Meta's evaluator.
* A positive task (non-empty GT) with nothing kept scores IoU 0; a negative task (empty GT)
  scores 1 if nothing is kept and 0 otherwise.

What was verified against Meta's ``cgf1_eval.py`` (facebookresearch/sam3, commit bc2090d)
-----------------------------------------------------------------------------------------
Read from the source, re-implemented here (no code copied):

1. Unit of evaluation: each (image, noun phrase) pair is one "image"; categories are ignored.
2. Predictions count iff ``score >= 0.5`` (``threshold=0.5``, inclusive).
3. GT annotations with ``iscrowd`` are *dropped* (COCOeval marks them ``ignore`` and
   ``evaluateImg`` discards ignored GTs); a prediction on a crowd region is therefore an FP,
   and a pair whose only GTs are crowd is a negative pair.
4. Matching: one Hungarian assignment per pair maximising total mask IoU
   (``linear_sum_assignment(-ious)``, predictions in their given order, GTs in annotation order),
   done once; a matched pair is a TP at threshold t iff IoU >= t.  FP = n_dt - TP,
   FN = n_gt - TP.  Thresholds are ``np.linspace(0.5, 0.95, 10)`` (COCOeval's iouThrs; note
   0.6, 0.7, 0.85 are a hair above their decimal values in floating point).
5. Image-level: IL_TP = GT>0 & dt>0, IL_FN = GT>0 & dt==0, IL_FP = GT==0 & dt>0,
   IL_TN = GT==0 & dt==0.  IL_MCC = (TP·TN − FP·FN) / (sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) + 1e-6).
   IL_MCC does not depend on the IoU threshold.
6. positive_micro_F1 (pmF1), per threshold: micro-summed TP over all pairs; FN summed over *all*
   pairs, including positive pairs with **no** detections (they contribute n_gt FNs to recall);
   FP summed only over positive pairs (GT>0) — FPs on negative pairs are excluded (those go to
   the plain ``precision``/``F1`` only).  So "counts only pairs with GT>0 and detections>0" is
   true of the FP side; the recall side also counts undetected positive pairs.
   precision = TP/(TP+FP+1e-4), recall = TP/(TP+FN+1e-4), F1 = 2PR/(P+R+1e-4).
7. cgF1[t] = pmF1[t] × IL_MCC; the headline cgF1 / pmF1 are the means over the 10 thresholds.
8. positive_macro_F1 = Σ(local F1 over pairs with GT>0, undetected pairs adding 0) /
   (number of pairs with GT>0 and dt>0) — Meta's (slightly odd) normaliser, kept as is.
9. ``is_instance_exhaustive=False`` pairs are excluded from evaluation entirely (Meta's
   ``CGF1Evaluator`` only evaluates exhaustive image ids) — not just from the F1.
10. Mask IoU equals ``pycocotools.mask.iou`` for non-crowd GT (checked in the tests).

Numerical cross-check (done once, outside the repo): Meta's ``CGF1Evaluator`` (repo HEAD 99d02f2,
whose metric logic is identical to bc2090d) was run on COCO/RLE files written from the hand-computed
test case and from five random 60-pair sets (crowd GTs, non-exhaustive pairs, scores around 0.5);
all 15 summary numbers it returns (cgF1, pmF1, IL_*, precision/recall/F1, positive_macro_F1,
@0.5/@0.75) agreed with :func:`saco_eval` to 0.0 difference.  The test
``test_cgf1_hand_computed`` pins Meta's output for the hand case (cgF1 = 0.2083114367).

``meta_eps=True`` (default) reproduces Meta's smoothing epsilons exactly; ``meta_eps=False``
uses exact fractions with 0/0 := 0 (e.g. IL_MCC = 0 when any marginal is empty).

Not covered: Meta's multi-annotator "oracle" mode (``CGF1Evaluator`` given several GT files picks
per pair the GT with the best mean local F1) — only a single GT per pair is supported; and box
(``bbox``) IoU evaluation.  neg_correct, pos_mean_IoU and mean_mask_IoU are not in
``cgf1_eval.py``; they are the posts' columns, defined here (see :func:`aggregate_saco`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import expit
from scipy.stats import rankdata

#: COCOeval's IoU thresholds 0.50:0.05:0.95 (exactly as ``pycocotools`` builds them).
IOU_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)

#: Meta's cgF1 score threshold (``CGF1Eval(threshold=0.5)``; predictions with score >= 0.5 count).
CGF1_SCORE_THRESHOLD = 0.5
#: The SAM3 processor's confidence threshold used in the posts (``score > 0.3``).
KEEP_THRESHOLD = 0.3

_EPS_PR = 1e-4  # Meta: precision / recall / F1 smoothing
_EPS_IL = 1e-6  # Meta: image-level metrics smoothing


# ----------------------------------------------------------------------------- basic overlap

def _as_bool(x: Any, name: str) -> np.ndarray:
    """Masks as a bool array; non-bool input is cast with ``!= 0`` (binarise probabilities first)."""
    a = np.asarray(x)
    if a.dtype != bool:
        a = a.astype(bool)
    return a


def _as_stack(x: Any, name: str, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Return masks as a bool array [K, H, W]; ``None`` / empty input gives K = 0 (needs ``hw``)."""
    if x is None:
        if hw is None:
            raise ValueError(f"{name}: None given and no (H, W) to build an empty stack")
        return np.zeros((0, *hw), dtype=bool)
    a = _as_bool(x, name)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        if a.size == 0:  # e.g. [] — an empty stack of the given (or unknown, 0x0) size
            return np.zeros((0, *(hw or (0, 0))), dtype=bool)
        raise ValueError(f"{name}: expected masks [K,H,W] or [H,W], got shape {a.shape}")
    return a


def mask_iou(a: np.ndarray, b: np.ndarray, empty_value: float = 1.0) -> float:
    """IoU |a∧b| / |a∨b| of two same-shape masks; ``empty_value`` (default 1.0) if both are empty."""
    a, b = _as_bool(a, "a"), _as_bool(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"mask_iou: shape mismatch {a.shape} vs {b.shape}")
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return float(empty_value)
    return int(np.count_nonzero(a & b)) / union


def dice(a: np.ndarray, b: np.ndarray, empty_value: float = 1.0) -> float:
    """Dice 2|a∧b| / (|a|+|b|) of two same-shape masks; ``empty_value`` (default 1.0) if both empty."""
    a, b = _as_bool(a, "a"), _as_bool(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"dice: shape mismatch {a.shape} vs {b.shape}")
    denom = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if denom == 0:
        return float(empty_value)
    return 2.0 * int(np.count_nonzero(a & b)) / denom


def _pairwise_intersections(a: np.ndarray, b: np.ndarray, max_elems: int = 1 << 24) -> np.ndarray:
    """|a_i ∧ b_j| for flattened bool masks a [N,P], b [M,P] via float32 matmul, chunked over P."""
    n, p = a.shape
    m = b.shape[0]
    out = np.zeros((n, m), dtype=np.float64)
    if n == 0 or m == 0 or p == 0:
        return out
    step = max(1, max_elems // max(n + m, 1))
    for s in range(0, p, step):
        aa = a[:, s:s + step].astype(np.float32)
        bb = b[:, s:s + step].astype(np.float32)
        out += aa @ bb.T  # exact: per-chunk counts < 2**24
    return out


def pairwise_mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU matrix [N, M] between masks a [N,H,W] and b [M,H,W] (bool).

    An empty union (both masks empty) gives 0.0, as ``pycocotools.mask.iou`` does — this is the
    matrix used for Hungarian matching and NMS.
    """
    a, b = _as_stack(a, "a"), _as_stack(b, "b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"pairwise_mask_iou: mask sizes differ {a.shape[1:]} vs {b.shape[1:]}")
    fa = a.reshape(a.shape[0], -1)
    fb = b.reshape(b.shape[0], -1)
    inter = _pairwise_intersections(fa, fb)
    area_a = fa.sum(1, dtype=np.int64).astype(np.float64)
    area_b = fb.sum(1, dtype=np.int64).astype(np.float64)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
    return iou


def union_mask(masks: Any, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Pixel-wise OR of a stack of masks [K,H,W] (or a single [H,W]); K=0 gives an empty [H,W]."""
    s = _as_stack(masks, "masks", hw)
    if s.shape[0] == 0:
        return np.zeros(s.shape[1:], dtype=bool)
    return s.any(axis=0)


def union_iou(pred_masks: Any, gt_masks: Any, empty_value: float = 1.0) -> float:
    """IoU between the union of ``pred_masks`` and the union of ``gt_masks`` (one task).

    Either argument may be [K,H,W], [H,W], or an empty stack [0,H,W] (or ``None`` if the other
    gives the size).  Conventions: GT non-empty & nothing predicted → 0; GT empty & nothing
    predicted → ``empty_value`` (1.0); GT empty & something predicted → 0.
    """
    hw = _common_hw(pred_masks, gt_masks) or (0, 0)
    p = union_mask(_stack_hw(pred_masks, "pred_masks", hw))
    g = union_mask(_stack_hw(gt_masks, "gt_masks", hw))
    return mask_iou(p, g, empty_value=empty_value)


def _stack_hw(x: Any, name: str, hw: tuple[int, int]) -> np.ndarray:
    """Masks as [K,H,W]; ``None`` or an empty stack of any size becomes an empty [0,*hw] stack."""
    if x is None:
        return np.zeros((0, *hw), dtype=bool)
    s = _as_stack(x, name, hw)
    return s if s.shape[0] else np.zeros((0, *hw), dtype=bool)


def _common_hw(*xs: Any) -> tuple[int, int] | None:
    """(H, W) from the first argument that holds at least one mask (else any 2-D/3-D one)."""
    best = None
    for x in xs:
        if x is None:
            continue
        shp = np.shape(x)
        if len(shp) == 2 or (len(shp) == 3 and shp[0] > 0):
            return tuple(shp[-2:])
        if len(shp) == 3 and best is None:
            best = tuple(shp[-2:])
    return best


# ----------------------------------------------------------------------------- watch IoU / LVIS

@dataclass
class TaskScores:
    """Mean of per-task scores plus the per-task values (for paired statistics)."""

    mean: float
    per_task: np.ndarray
    n_tasks: int
    n_positive: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "per_task": self.per_task.tolist(), "n_tasks": self.n_tasks,
                "n_positive": self.n_positive}


def watch_iou(tasks: Iterable[tuple[Any, Any]], *, skip_negative: bool = False,
              empty_value: float = 1.0) -> TaskScores:
    """Post 01 watch IoU: mean over (image, concept) tasks of IoU(∪ kept preds, ∪ GT).

    ``tasks`` yields ``(kept_pred_masks, gt_masks)``; each may be [K,H,W], [H,W] or empty
    (use :func:`postprocess` for the kept predictions).  Conventions: a positive task (non-empty GT
    union) with nothing kept scores 0; a negative task (empty GT union) scores ``empty_value``
    (1.0) if nothing is kept, else 0.  ``skip_negative=True`` averages over positive tasks only.
    Which (image, concept) tasks exist is the caller's choice (the posts score the annotated
    concepts of each test image).  Returns the mean and the per-task IoUs (NaN mean if no tasks).
    """
    vals, npos = [], 0
    for pred, gt in tasks:
        hw = _common_hw(pred, gt) or (0, 0)
        pos = bool(union_mask(_stack_hw(gt, "gt_masks", hw)).any())
        npos += pos
        if skip_negative and not pos:
            continue
        vals.append(union_iou(pred, gt, empty_value=empty_value))
    arr = np.asarray(vals, dtype=np.float64)
    return TaskScores(float(arr.mean()) if arr.size else float("nan"), arr, int(arr.size), npos)


def lvis_positive_miou(tasks: Iterable[tuple[Any, Any]], *, mode: str = "union") -> TaskScores:
    """The posts' "LVIS mIoU": positive-only mask mIoU over (image, phrase) tasks.

    Tasks with an empty GT union are skipped (positive-only).  ``mode="union"`` (default, the
    same quantity as pos_mean_IoU): IoU(∪ kept preds, ∪ GT), 0 if nothing kept.
    ``mode="instance"``: for each GT instance the best IoU with any kept prediction (0 if none),
    averaged over the task's instances, then over tasks.
    """
    if mode not in ("union", "instance"):
        raise ValueError(f"lvis_positive_miou: mode must be 'union' or 'instance', got {mode!r}")
    vals = []
    for pred, gt in tasks:
        hw = _common_hw(gt, pred) or (0, 0)
        g = _stack_hw(gt, "gt_masks", hw)
        if g.shape[0] == 0 or not g.any():
            continue
        p = _stack_hw(pred, "pred_masks", hw)
        if mode == "union":
            vals.append(union_iou(p, g))
        else:
            g = g[g.reshape(g.shape[0], -1).any(1)]
            if p.shape[0] == 0:
                vals.append(0.0)
            else:
                vals.append(float(pairwise_mask_iou(g, p).max(axis=1).mean()))
    arr = np.asarray(vals, dtype=np.float64)
    return TaskScores(float(arr.mean()) if arr.size else float("nan"), arr, int(arr.size), int(arr.size))


# ----------------------------------------------------------------------------- SA-Co / cgF1

@dataclass
class PairInput:
    """One SA-Co (image, noun phrase) datapoint.

    pred_masks [N,H,W] bool and pred_scores [N] (all predictions, e.g. the output of
    :func:`postprocess`, in the order they would appear in a prediction file); gt_masks [M,H,W]
    bool; gt_iscrowd [M] (optional); ``is_instance_exhaustive`` as in SA-Co/Gold's image entries;
    ``meta`` is carried to the record (image_id, phrase, subset, negative type, ...).
    """

    pred_masks: Any
    pred_scores: Any
    gt_masks: Any
    gt_iscrowd: Any = None
    is_instance_exhaustive: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PairRecord:
    """Per-pair evaluation result (see :func:`evaluate_pair`)."""

    meta: dict[str, Any]
    included: bool          # False for non-exhaustive pairs (excluded from every aggregate)
    n_gt: int               # non-crowd GT instances (what cgF1 matches against)
    n_gt_all: int           # all GT annotations, crowd included (defines positive / negative pair)
    n_dt: int               # predictions with score >= cgF1 threshold (0.5)
    n_kept: int             # predictions counted as kept for the union metrics
    il: str                 # "TP" / "FP" / "FN" / "TN" (image-level, from n_gt and n_dt)
    tps: np.ndarray         # [T] int
    fps: np.ndarray         # [T] int
    fns: np.ndarray         # [T] int
    local_f1: np.ndarray | None  # [T] (None for IL_TN pairs, as in Meta's code)
    match_ious: np.ndarray  # IoUs of the Hungarian-matched (dt, gt) pairs
    union_iou: float        # IoU(∪ kept preds, ∪ GT) with empty/empty = 1

    @property
    def positive(self) -> bool:
        """The pair has at least one GT annotation (the posts' "present concept")."""
        return self.n_gt_all > 0

    @property
    def neg_correct(self) -> bool | None:
        """For a negative pair: True iff nothing was kept; None for positive pairs."""
        return None if self.positive else self.n_kept == 0

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "included": self.included, "n_gt": self.n_gt,
                "n_gt_all": self.n_gt_all, "n_dt": self.n_dt, "n_kept": self.n_kept, "il": self.il,
                "tps": self.tps.tolist(), "fps": self.fps.tolist(), "fns": self.fns.tolist(),
                "local_f1": None if self.local_f1 is None else self.local_f1.tolist(),
                "match_ious": self.match_ious.tolist(), "union_iou": self.union_iou}


def _div(num: np.ndarray | float, den: np.ndarray | float, eps: float, meta_eps: bool) -> Any:
    """num / (den + eps) in Meta mode, else exact num / den with 0/0 := 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    if meta_eps:
        out = num / (den + eps)
    else:
        out = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)
    return out if out.ndim else float(out)


def _f1(tp: Any, fp: Any, fn: Any, meta_eps: bool) -> tuple[Any, Any, Any]:
    p = _div(tp, np.asarray(tp) + fp, _EPS_PR, meta_eps)
    r = _div(tp, np.asarray(tp) + fn, _EPS_PR, meta_eps)
    f = _div(2 * np.asarray(p) * r, np.asarray(p) + r, _EPS_PR, meta_eps)
    return p, r, f


def evaluate_pair(pair: PairInput, *, score_threshold: float = CGF1_SCORE_THRESHOLD,
                  keep_threshold: float | None = None,
                  iou_thresholds: np.ndarray = IOU_THRESHOLDS,
                  include_non_exhaustive: bool = False, meta_eps: bool = True) -> PairRecord:
    """Score one (image, phrase) pair the way ``cgf1_eval.CGF1Eval.evaluateImg`` does.

    Predictions with score >= ``score_threshold`` (0.5) enter matching; crowd GTs are dropped;
    one Hungarian assignment on mask IoU; TP[t] = #matches with IoU >= t.  For the union metrics,
    "kept" predictions are those with score > ``keep_threshold``, or all given predictions when it
    is None (the usual case: pass :func:`postprocess` output, already thresholded at 0.3).
    """
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    scores = np.asarray(pair.pred_scores, dtype=np.float64).reshape(-1)
    gt_all = np.asarray(pair.gt_masks)
    pred_all = np.asarray(pair.pred_masks)
    hw = _common_hw(gt_all, pred_all)
    gt_all = _as_stack(gt_all, "gt_masks", hw)
    pred_all = _as_stack(pred_all, "pred_masks", hw)
    if hw is not None:  # an empty stack takes the other side's size
        if gt_all.shape[0] == 0:
            gt_all = np.zeros((0, *hw), bool)
        if pred_all.shape[0] == 0:
            pred_all = np.zeros((0, *hw), bool)
    if pred_all.shape[0] != scores.shape[0]:
        raise ValueError(f"evaluate_pair {pair.meta}: {pred_all.shape[0]} pred masks but "
                         f"{scores.shape[0]} scores")
    if pred_all.shape[0] and gt_all.shape[0] and pred_all.shape[1:] != gt_all.shape[1:]:
        raise ValueError(f"evaluate_pair {pair.meta}: pred mask size {pred_all.shape[1:]} != "
                         f"GT mask size {gt_all.shape[1:]}")
    crowd = (np.zeros(gt_all.shape[0], dtype=bool) if pair.gt_iscrowd is None
             else np.asarray(pair.gt_iscrowd, dtype=bool).reshape(-1))
    if crowd.shape[0] != gt_all.shape[0]:
        raise ValueError(f"evaluate_pair {pair.meta}: gt_iscrowd has {crowd.shape[0]} entries "
                         f"for {gt_all.shape[0]} GT masks")

    gt = gt_all[~crowd]
    dt = pred_all[scores >= score_threshold]
    kept = pred_all if keep_threshold is None else pred_all[scores > keep_threshold]
    n_gt, n_dt, t = gt.shape[0], dt.shape[0], thr.shape[0]

    if n_gt > 0 and n_dt > 0:
        il = "TP"
    elif n_gt > 0:
        il = "FN"
    elif n_dt > 0:
        il = "FP"
    else:
        il = "TN"

    if n_gt > 0 and n_dt > 0:
        ious = pairwise_mask_iou(dt, gt)
        rows, cols = linear_sum_assignment(-ious)
        match = ious[rows, cols]
    else:
        match = np.zeros(0, dtype=np.float64)
    tps = (match[None, :] >= thr[:, None]).sum(1).astype(np.int64)
    fps = n_dt - tps
    fns = n_gt - tps
    if il == "TN":
        local_f1 = None
    elif il == "FN":
        local_f1 = np.zeros(t, dtype=np.float64)  # Meta hard-codes zeros here
    else:
        local_f1 = np.asarray(_f1(tps, fps, fns, meta_eps)[2], dtype=np.float64)

    return PairRecord(
        meta=dict(pair.meta), included=bool(pair.is_instance_exhaustive) or include_non_exhaustive,
        n_gt=int(n_gt), n_gt_all=int(gt_all.shape[0]), n_dt=int(n_dt), n_kept=int(kept.shape[0]),
        il=il, tps=tps, fps=fps, fns=fns, local_f1=local_f1, match_ious=match,
        union_iou=union_iou(kept, gt_all, empty_value=1.0))


def aggregate_saco(records: Sequence[PairRecord], *, iou_thresholds: np.ndarray = IOU_THRESHOLDS,
                   meta_eps: bool = True) -> dict[str, Any]:
    """Aggregate per-pair records into SA-Co/Gold metrics (``CGF1Eval.accumulate`` + the posts').

    Only ``record.included`` records count, so a caller can slice (by subset, negative type, ...)
    and call this again.  Returned keys (fractions, not percentages):

    * ``cgF1``, ``positive_micro_F1`` (pmF1), ``precision``, ``recall``, ``F1``,
      ``positive_micro_precision``, ``positive_macro_F1``: means over the IoU thresholds
      (the headline numbers, Post 01 Table 1.1 / 5.2); ``cgF1@50`` / ``cgF1@75`` etc. at one
      threshold; ``per_threshold``: the arrays per threshold.
    * ``IL_MCC``, ``IL_precision``, ``IL_recall``, ``IL_F1``, ``IL_FPR``, ``IL_TP`` .. ``IL_TN``.
    * ``neg_correct``: fraction of negative pairs (no GT annotation) with nothing kept.
    * ``pos_mean_IoU``: mean over positive pairs of IoU(∪ kept preds, ∪ GT) (0 if nothing kept).
    * ``mean_mask_IoU``: the same union IoU averaged over all pairs, a negative pair scoring 1 if
      nothing is kept and 0 otherwise.
    * ``n_pairs``, ``n_positive``, ``n_negative``, ``n_excluded``.

    Zero denominators: with ``meta_eps`` Meta's epsilons make them 0 (IL_MCC → 0); without, 0/0 := 0.
    neg_correct / pos_mean_IoU / mean_mask_IoU are NaN when there are no negative / positive /
    any pairs; positive_macro_F1 is 0 when no pair has GT>0 and dt>0 (Meta would divide by 0).
    """
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    t = thr.shape[0]
    recs = [r for r in records if r.included]
    tp = np.zeros(t, np.int64)
    fp = np.zeros(t, np.int64)
    fn = np.zeros(t, np.int64)
    pm_fp = np.zeros(t, np.int64)
    local_sum = np.zeros(t, np.float64)
    valid_f1 = 0
    il = {"TP": 0, "FP": 0, "FN": 0, "TN": 0}
    for r in recs:
        il[r.il] += 1
        if r.il == "TN":
            continue  # Meta: no instance-level entries for true negatives
        tp += r.tps
        fp += r.fps
        fn += r.fns
        if r.n_gt > 0:  # Meta's "local_positive_F1s" pairs: IL_TP and IL_FN
            local_sum += r.local_f1
            pm_fp += r.fps
            if r.n_dt > 0:
                valid_f1 += 1

    precision, recall, f1 = _f1(tp, fp, fn, meta_eps)
    pm_precision = _div(tp, tp + pm_fp, _EPS_PR, meta_eps)
    pm_f1 = _div(2 * np.asarray(pm_precision) * recall, np.asarray(pm_precision) + recall, _EPS_PR, meta_eps)
    pos_macro = local_sum / valid_f1 if valid_f1 else np.zeros(t)

    itp, ifp, ifn, itn = il["TP"], il["FP"], il["FN"], il["TN"]
    il_rec = _div(itp, itp + ifn, _EPS_IL, meta_eps)
    il_prec = _div(itp, itp + ifp, _EPS_IL, meta_eps)
    il_f1 = _div(2 * il_prec * il_rec, il_prec + il_rec, _EPS_IL, meta_eps)
    il_fpr = _div(ifp, ifp + itn, _EPS_IL, meta_eps)
    il_mcc = il_mcc_from_counts(itp, ifp, ifn, itn, meta_eps=meta_eps)
    cg = np.asarray(pm_f1) * il_mcc

    pos = [r for r in recs if r.positive]
    neg = [r for r in recs if not r.positive]
    nan = float("nan")
    per_t = {"iou_thresholds": thr, "cgF1": cg, "positive_micro_F1": np.asarray(pm_f1),
             "precision": np.asarray(precision), "recall": np.asarray(recall), "F1": np.asarray(f1),
             "positive_micro_precision": np.asarray(pm_precision), "positive_macro_F1": pos_macro,
             "TPs": tp, "FPs": fp, "FNs": fn, "positive_micro_FPs": pm_fp}
    out: dict[str, Any] = {k: float(np.mean(v)) for k, v in per_t.items()
                           if k not in ("iou_thresholds", "TPs", "FPs", "FNs", "positive_micro_FPs")}
    out["pmF1"] = out["positive_micro_F1"]
    for tv, tag in ((0.5, "50"), (0.75, "75")):
        idx = np.where(np.isclose(thr, tv))[0]
        if idx.size:
            out[f"cgF1@{tag}"] = float(cg[idx[0]])
            out[f"pmF1@{tag}"] = float(np.asarray(pm_f1)[idx[0]])
    out.update({
        "IL_MCC": float(il_mcc), "IL_precision": float(il_prec), "IL_recall": float(il_rec),
        "IL_F1": float(il_f1), "IL_FPR": float(il_fpr),
        "IL_TP": itp, "IL_FP": ifp, "IL_FN": ifn, "IL_TN": itn,
        "neg_correct": float(np.mean([r.n_kept == 0 for r in neg])) if neg else nan,
        "pos_mean_IoU": float(np.mean([r.union_iou for r in pos])) if pos else nan,
        "mean_mask_IoU": float(np.mean([r.union_iou for r in recs])) if recs else nan,
        "n_pairs": len(recs), "n_positive": len(pos), "n_negative": len(neg),
        "n_excluded": len(records) - len(recs),
        "per_threshold": {k: np.asarray(v).tolist() for k, v in per_t.items()},
    })
    return out


def il_mcc_from_counts(tp: int, fp: int, fn: int, tn: int, *, meta_eps: bool = True) -> float:
    """Image-level Matthews correlation (TP·TN − FP·FN)/sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)).

    ``meta_eps=True`` adds Meta's 1e-6 to the denominator; with either setting a zero
    denominator (some marginal empty, e.g. no negative pairs) gives 0.
    """
    num = float(tp) * float(tn) - float(fp) * float(fn)
    den = (float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn)) ** 0.5
    if meta_eps:
        return num / (den + _EPS_IL)
    return num / den if den > 0 else 0.0


@dataclass
class SacoResult:
    """Aggregates (``summary``) and per-pair ``records`` of :func:`saco_eval`."""

    summary: dict[str, Any]
    records: list[PairRecord]

    def slice(self, predicate: Any, **kw: Any) -> dict[str, Any]:
        """Aggregate only the records for which ``predicate(record)`` is true."""
        return aggregate_saco([r for r in self.records if predicate(r)], **kw)


def saco_eval(pairs: Iterable[PairInput], *, score_threshold: float = CGF1_SCORE_THRESHOLD,
              keep_threshold: float | None = None, iou_thresholds: np.ndarray = IOU_THRESHOLDS,
              include_non_exhaustive: bool = False, meta_eps: bool = True) -> SacoResult:
    """SA-Co/Gold evaluation (Post 01 Tables 1.1 / 5.2; Post 02 SA-Co columns).

    Evaluates every pair with :func:`evaluate_pair` and aggregates with :func:`aggregate_saco`
    (see the module docstring for what matches Meta's ``cgf1_eval.py``).  Non-exhaustive pairs
    get records with ``included=False`` and are left out of every aggregate unless
    ``include_non_exhaustive``.
    """
    recs = [evaluate_pair(p, score_threshold=score_threshold, keep_threshold=keep_threshold,
                          iou_thresholds=iou_thresholds, include_non_exhaustive=include_non_exhaustive,
                          meta_eps=meta_eps) for p in pairs]
    return SacoResult(aggregate_saco(recs, iou_thresholds=iou_thresholds, meta_eps=meta_eps), recs)


# ----------------------------------------------------------------------------- post-processing

@dataclass
class Kept:
    """Kept predictions of one (image, phrase) pair, sorted by descending score."""

    masks: np.ndarray      # [K, H, W] bool
    scores: np.ndarray     # [K] float
    query_idx: np.ndarray  # [K] int, index into the Q decoder queries


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def mask_nms(masks: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy mask NMS: indices to keep, highest score first; drops a mask whose IoU with an
    already-kept mask is > ``iou_threshold`` (strict, as torchvision's box NMS)."""
    masks = _as_stack(masks, "masks")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    if order.size <= 1:
        return order
    ious = pairwise_mask_iou(masks[order], masks[order])
    suppressed = np.zeros(order.size, dtype=bool)
    keep = []
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= ious[i] > iou_threshold
    return order[np.asarray(keep, dtype=np.int64)]


def postprocess(pred_logits: Any, presence_logit: Any, pred_masks: Any, *,
                threshold: float = KEEP_THRESHOLD, nms_iou: float | None = 0.5,
                out_size: tuple[int, int] | None = None, mask_threshold: float = 0.5) -> Kept:
    """SAM3 read-out for one (image, phrase) pair (Post 01 §5's processor code, plus NMS).

    score_q = σ(pred_logits[q]) · σ(presence_logit); queries with score > ``threshold`` (0.3) are
    kept.  Masks: σ(mask logits), bilinearly resized to ``out_size`` (H, W) with
    ``align_corners=False`` if given, then > ``mask_threshold`` (0.5) — exactly the order of the
    HF ``Sam3ImageProcessor.post_process_instance_segmentation``.  Then greedy mask NMS at
    ``nms_iou`` on the binarised masks (None disables it; the HF/Meta processors do no NMS).
    ``presence_logit=None`` means no presence gate.  Inputs may be torch tensors or arrays.
    """
    logits = _to_numpy(pred_logits).reshape(-1)
    masks = _to_numpy(pred_masks)
    if masks.ndim != 3 or masks.shape[0] != logits.shape[0]:
        raise ValueError(f"postprocess: pred_masks must be [Q,h,w] with Q={logits.shape[0]}, "
                         f"got {masks.shape}")
    scores = expit(logits.astype(np.float64))
    if presence_logit is not None:
        scores = scores * float(expit(float(_to_numpy(presence_logit).reshape(-1)[0])))
    idx = np.nonzero(scores > threshold)[0]
    hw = tuple(out_size) if out_size is not None else masks.shape[1:]
    if idx.size == 0:
        return Kept(np.zeros((0, *hw), bool), np.zeros(0, np.float64), idx.astype(np.int64))
    probs = expit(masks[idx].astype(np.float32))
    if out_size is not None and tuple(out_size) != probs.shape[1:]:
        import torch
        import torch.nn.functional as F

        probs = F.interpolate(torch.from_numpy(probs)[None], size=tuple(int(s) for s in out_size),
                              mode="bilinear", align_corners=False)[0].numpy()
    binm = probs > mask_threshold
    sc = scores[idx]
    if nms_iou is None:
        order = np.argsort(-sc, kind="stable")
    else:
        order = mask_nms(binm, sc, nms_iou)
    return Kept(binm[order], sc[order], idx[order].astype(np.int64))


# ----------------------------------------------------------------------------- presence read-out

def presence_sigmoid(presence_logit: Any) -> float:
    """σ(presence logit) for one (image, phrase) pair — the gate of Post 01 Fig. 1.1 / Table 5.1."""
    return float(expit(float(_to_numpy(presence_logit).reshape(-1)[0])))


def presence_auc(pos_scores: Any, neg_scores: Any) -> float:
    """ROC AUC of separating positive from negative pairs by a score (e.g. presence σ or logit).

    Mann–Whitney U / (n_pos·n_neg) with average ranks, so ties count 1/2; equals
    P(score_pos > score_neg) + ½·P(tie).  NaN if either group is empty.
    """
    pos = np.asarray(_to_numpy(pos_scores), dtype=np.float64).reshape(-1)
    neg = np.asarray(_to_numpy(neg_scores), dtype=np.float64).reshape(-1)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


__all__ = [
    "IOU_THRESHOLDS", "CGF1_SCORE_THRESHOLD", "KEEP_THRESHOLD",
    "mask_iou", "dice", "pairwise_mask_iou", "union_mask", "union_iou",
    "TaskScores", "watch_iou", "lvis_positive_miou",
    "PairInput", "PairRecord", "evaluate_pair", "aggregate_saco", "il_mcc_from_counts",
    "SacoResult", "saco_eval",
    "Kept", "mask_nms", "postprocess", "presence_sigmoid", "presence_auc",
]
