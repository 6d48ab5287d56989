"""One call scores a model on the three benchmarks the posts use and returns one JSON-able dict.

- **watch** (Post 01's in-domain test): IoU and Dice of the union of kept masks vs the GT union,
  averaged over (image, concept) tasks; per-task scores kept for paired statistics (Table 9.10).
- **saco** (SA-Co/Gold-like, Post 01 §8 / Post 02): neg_correct, cgF1, IL_MCC, pmF1, pos_mean_IoU,
  mean_mask_IoU, overall, per subset, and neg_correct per negative type; presence σ statistics.
- **lvis** (LVIS-like val, positive-only): mIoU and pmF1.

Inference rule (the posts'): score = σ(query logit)·σ(presence logit), kept above 0.3, mask NMS.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import numpy as np
import torch

from common import metrics
from common.data import Pair, PairDataset
from common.forward import encode_vision, forward_pairs, image_batches, pairs_per_forward
from common.model import device_of, to_pixels


@dataclass
class Prediction:
    """Model output for one (image, phrase) pair after post-processing."""

    pair: Pair
    kept: metrics.Kept
    presence_logits: np.ndarray  # [L] unclamped, every decoder layer

    @property
    def presence_sigmoid(self) -> float:
        return metrics.presence_sigmoid(self.presence_logits[-1])


Edit = Callable[[list[int]], ContextManager]


def _forward_by_image(model: torch.nn.Module, ds: PairDataset, tokenizer, image_size: int,
                      pairs: Sequence[Pair] | None, images_per_batch: int, edit: Edit | None = None):
    """Yield (pair, query logits [Q], presence logits [L], mask logits [Q,h,w], (H, W)), one ViT pass per image; the
    pairs of a batch go through the rest of the model :func:`pairs_per_forward` at a time. ``edit(idx)``: a context
    held around the forward of the pairs at positions ``idx`` of ``pairs`` (activation patching, Post 01 §3–§6)."""
    model.eval()
    items = [(ds, p) for p in (pairs if pairs is not None else list(ds))]
    chunk = pairs_per_forward(model, masks=True)
    for idx, images, phrases, index in image_batches(items, images_per_batch):
        ids, am = tokenizer(phrases)
        with torch.no_grad():
            vision = encode_vision(model, to_pixels(images, image_size).to(device_of(model)))
            for c in range(0, len(idx), chunk):
                with edit(idx[c:c + chunk]) if edit is not None else nullcontext():
                    o = forward_pairs(model, None, ids[c:c + chunk], am[c:c + chunk], index[c:c + chunk],
                                      vision=vision).cpu()
                for r, i in enumerate(idx[c:c + chunk]):
                    yield items[i][1], o.logits[-1, r], o.presence[:, r], o.masks[r], images[index[c + r]].shape[:2]


def predict(model: torch.nn.Module, ds: PairDataset, tokenizer, image_size: int, pairs: Sequence[Pair] | None = None,
            images_per_batch: int = 8, threshold: float = metrics.KEEP_THRESHOLD,
            nms_iou: float | None = 0.5, edit: Edit | None = None) -> list[Prediction]:
    """Predictions for ``pairs`` (default: all of ``ds``), one vision forward per image; kept above ``threshold``,
    mask NMS at ``nms_iou`` (None: none). ``edit``: see :func:`_forward_by_image` (a patching hook)."""
    out: list[Prediction] = []
    for p, logits, presence, masks, hw in _forward_by_image(model, ds, tokenizer, image_size, pairs, images_per_batch,
                                                            edit):
        kept = metrics.postprocess(logits, presence[-1], masks, threshold=threshold, nms_iou=nms_iou, out_size=hw)
        out.append(Prediction(p, kept, presence.numpy().astype(np.float64)))
    return out


def mask_readout(model: torch.nn.Module, ds: PairDataset, tokenizer, image_size: int,
                 pairs: Sequence[Pair] | None = None, images_per_batch: int = 8) -> dict[str, dict[str, float]]:
    """Per positive pair (by ``pair_id``): ``best_query_iou`` — the best single query mask's IoU with the GT
    union, no score gate — and the areas (fractions of the image) of the kept-mask union and the GT union.

    Best-query IoU bounds what the read-out could keep: it separates "the model cannot draw the mask" from
    "it draws it but scores it below the keep threshold"; a kept area far below the GT area shows masks that
    hedge below 0.5 (the diagnosis of the watch fine-tunes, issue #3).
    """
    out: dict[str, dict[str, float]] = {}
    pos = [p for p in (pairs if pairs is not None else list(ds)) if p.masks]
    for p, logits, presence, masks, hw in _forward_by_image(model, ds, tokenizer, image_size, pos, images_per_batch):
        every = metrics.postprocess(torch.full((masks.shape[0],), 20.0), None, masks, threshold=0.0,
                                    nms_iou=None, out_size=hw).masks
        kept = metrics.postprocess(logits, presence[-1], masks, out_size=hw).masks
        gt = metrics.union_mask(ds.gt_masks(p), hw)
        out[p.pair_id] = {"best_query_iou": max((metrics.mask_iou(m, gt) for m in every), default=0.0),
                          "kept_area": float(metrics.union_mask(kept, hw).mean()), "gt_area": float(gt.mean())}
    return out


def _presence_stats(preds: Sequence[Prediction]) -> dict:
    pos = [p.presence_sigmoid for p in preds if p.pair.masks]
    neg = [p.presence_sigmoid for p in preds if not p.pair.masks]
    return {"pos_presence_sigmoid_mean": float(np.mean(pos)) if pos else None,
            "neg_presence_sigmoid_mean": float(np.mean(neg)) if neg else None,
            "presence_auc": metrics.presence_auc(pos, neg) if pos and neg else None}


def score_watch(ds: PairDataset, preds: Sequence[Prediction]) -> dict:
    """Watch IoU / Dice over positive (image, concept) tasks, with per-task values, and the IoU split by whether
    the base saw the concept in pre-training (``WATCH_PRETRAIN_CONCEPTS``) or not (the jargon)."""
    from common.worlds import WATCH_PRETRAIN_CONCEPTS

    pos = [p for p in preds if p.pair.masks]
    tasks = [(p.kept.masks, ds.gt_masks(p.pair)) for p in pos]
    iou = metrics.watch_iou(tasks)
    dice = [metrics.dice(metrics.union_mask(pm, gt.shape[-2:]), metrics.union_mask(gt, gt.shape[-2:])) for pm, gt in tasks]
    seen = [v for p, v in zip(pos, iou.per_task) if p.pair.phrase in WATCH_PRETRAIN_CONCEPTS]
    unseen = [v for p, v in zip(pos, iou.per_task) if p.pair.phrase not in WATCH_PRETRAIN_CONCEPTS]
    return {"iou": iou.mean, "dice": float(np.mean(dice)) if dice else None, "n_tasks": iou.n_tasks,
            "iou_seen_concepts": float(np.mean(seen)) if seen else None,
            "iou_unseen_concepts": float(np.mean(unseen)) if unseen else None,
            "per_task_iou": [round(float(v), 5) for v in iou.per_task],
            "task_ids": [p.pair.pair_id for p in pos], **_presence_stats(preds)}


def _saco_inputs(ds: PairDataset, preds: Sequence[Prediction]) -> list[metrics.PairInput]:
    return [metrics.PairInput(p.kept.masks, p.kept.scores, ds.gt_masks(p.pair), gt_iscrowd=p.pair.crowd_flags,
                              is_instance_exhaustive=p.pair.is_exhaustive,
                              meta={"pair_id": p.pair.pair_id, "subset": p.pair.subset, "neg_type": p.pair.neg_type,
                                    "presence_sigmoid": p.presence_sigmoid})
            for p in preds]


_SACO_KEYS = ("neg_correct", "cgF1", "IL_MCC", "pmF1", "pos_mean_IoU", "mean_mask_IoU")


def _pick(summary: dict) -> dict:
    return {k: summary.get(k) for k in _SACO_KEYS if k in summary} | {
        k: v for k, v in summary.items() if k.startswith("n_")}


def score_saco(ds: PairDataset, preds: Sequence[Prediction]) -> dict:
    """SA-Co/Gold metrics overall, per subset, and neg_correct per negative type."""
    res = metrics.saco_eval(_saco_inputs(ds, preds))
    out = {**_pick(res.summary), **_presence_stats(preds)}
    out["by_subset"] = {s: _pick(res.slice(lambda r, s=s: r.meta["subset"] == s))
                        for s in sorted({r.meta["subset"] for r in res.records if r.meta["subset"]})}
    types = sorted({r.meta["neg_type"] for r in res.records if r.meta["neg_type"]})
    out["neg_correct_by_type"] = {t: res.slice(lambda r, t=t: r.meta["neg_type"] == t).get("neg_correct") for t in types}
    out["per_pair_kept"] = {r.meta["pair_id"]: r.n_kept for r in res.records}
    return out


def score_lvis(ds: PairDataset, preds: Sequence[Prediction]) -> dict:
    """LVIS-like val: positive-only mIoU (union rule) and pmF1."""
    pos = [p for p in preds if p.pair.masks]
    miou = metrics.lvis_positive_miou([(p.kept.masks, ds.gt_masks(p.pair)) for p in pos])
    res = metrics.saco_eval(_saco_inputs(ds, pos))
    return {"mIoU": miou.mean, "pmF1": res.summary.get("pmF1"), "n_tasks": miou.n_tasks,
            "per_task_iou": [round(float(v), 5) for v in miou.per_task]}


SUITES = {"watch": ("watch_test", score_watch), "saco": ("saco_gold", score_saco), "lvis": ("lvis_val", score_lvis)}


def evaluate_model(model: torch.nn.Module, scale: str, suites: Sequence[str] = tuple(SUITES),
                   max_pairs: int | None = None) -> dict:
    """Score ``model`` on the named suites; ``max_pairs`` subsamples each suite deterministically."""
    from common.data import load_pairs
    from common import runs
    from common.worlds import ensure_worlds

    paths = ensure_worlds(scale=scale)
    tok = runs.tokenizer_for(scale)
    out = {}
    for name in suites:
        split, scorer = SUITES[name]
        ds = load_pairs(paths[split])
        pairs = list(ds)
        if max_pairs is not None and len(pairs) > max_pairs:
            keep = np.random.default_rng(0).choice(len(pairs), max_pairs, replace=False)
            pairs = [pairs[i] for i in sorted(keep)]
        out[name] = scorer(ds, predict(model, ds, tok, runs.image_size(scale), pairs))
    return out


#: The flat metric keys of :func:`flat_scores` (every metric a fraction in [0, 1], as recipes.json stores it).
FLAT_KEYS = ("watch_iou", "watch_dice", "neg_correct", "cgF1", "IL_MCC", "pmF1", "pos_mean_IoU", "mean_mask_IoU",
             "lvis_miou", "lvis_pmF1", "pos_presence_sigmoid_mean", "neg_presence_sigmoid_mean")


def flat_scores(scores: dict) -> dict[str, float | None]:
    """One table row's metrics from :func:`evaluate_model`'s nested scores (watch / saco / lvis; a suite not scored
    gives None): the columns of Post 02 Tables 1.1, 3.1, 4.1 and 5.2."""
    w, s, lv = (scores.get(k) or {} for k in ("watch", "saco", "lvis"))
    return {"watch_iou": w.get("iou"), "watch_dice": w.get("dice"),
            **{k: s.get(k) for k in ("neg_correct", "cgF1", "IL_MCC", "pmF1", "pos_mean_IoU", "mean_mask_IoU",
                                     "pos_presence_sigmoid_mean", "neg_presence_sigmoid_mean")},
            "lvis_miou": lv.get("mIoU"), "lvis_pmF1": lv.get("pmF1")}


def recipe_rows(labels: dict, scale: str) -> list[dict]:
    """One table row per ``{published row label: recipe}`` (a name, a Recipe, or "base"): ``row``, ``recipe`` and the
    recipe's :func:`flat_scores` (fractions), trained and scored through the caches (Post 02 Tables 1.1–5.2)."""
    return [{"row": label, "recipe": getattr(name, "name", name), **flat_scores(evaluate_run(name, scale))}
            for label, name in labels.items()]


def eval_cache_path(name, scale: str, suites: Sequence[str] = tuple(SUITES), step: int | None = None,
                    train_if_missing: bool = True):
    """The cache file of :func:`evaluate_run`: ``<artifact dir>/eval-<step|final>-<suites>.json``."""
    from common import runs

    d = runs.artifact_dir(name, scale, train_if_missing)
    return d / f"eval-{'final' if step is None else step}-{'-'.join(suites)}.json"


def evaluate_run(name, scale: str, suites: Sequence[str] = tuple(SUITES), step: int | None = None,
                 force: bool = False) -> dict:
    """Scores of recipe ``name`` (a name, a Recipe, or "base") — trained if needed — cached beside the run.

    The cache file is ``<run dir>/eval-<step|final>-<suites>.json`` (the base model's lives in
    ``data/runs/<scale>/base-<hash>/``), so every table that needs a run's scores computes them once.
    """
    from common import runs
    from common.io import cached_json

    return cached_json(eval_cache_path(name, scale, suites, step),
                       lambda: evaluate_model(runs.load_model(name, scale, step=step), scale, suites), force=force)
