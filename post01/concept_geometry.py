"""Post 01 §07 — concept geometry: Fig 7.1 (predicted-mask confusability), Tables 7.2 / 7.3 / 7.4, Fig 7.5 (text
cosines), Fig 7.6 (3D UMAP) and the §07 text's fusion[4] saturation numbers (Table 7.0).

Three views of the 37 watch concepts, per checkpoint (base, frozen_te, fusion_only, all_trainable):

- **pred_IoU(A, B)**: on the watch test images whose GT contains both A and B, the IoU of the union of kept predicted
  masks for prompt A with that for prompt B (score σ(q)·σ(presence) > 0.3, mask NMS 0.5; ``common.evaluate.predict``),
  averaged over those images. An image where neither prompt keeps a mask is skipped (no overlap information; counted
  in ``n_both_empty``); pairs that never co-occur are null.
- **fus[4] cosine**: the output of fusion layer 4 (``fusion[4]``; in HF Sam3 the fusion residual is the
  prompt-conditioned *image* tokens, not the text token the post names) mean-pooled over the image tokens of one
  image gives one vector per prompt; per pair the cosine of A's and B's vectors, averaged over all watch test images
  (and separately on one all-black image). A model with other than 6 fusion layers uses the layer at the same
  relative depth (``fusion_slot`` in the config).
- **text cosine**: cosine of ``common.activations.text_embeddings`` (the text features the fusion encoder reads).

Per-checkpoint matrices are cached beside each run (``concept-geometry-<version>.json``). Writes
results/post01/table-7.0, fig-7.1, table-7.2, table-7.3, table-7.4, fig-7.5, fig-7.6 (.json, .md, .png, .svg).
"""
from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np

from common import cli, metrics, published, report, runs, section
from common.claims import LEARNED, NotMeasurable, NotYetRun, Outcome, Results, check, claim, cmp, every
from common.worlds import WATCH_CONCEPTS

P1 = "post01"
RECIPES = ("base", "frozen_te", "fusion_only", "all_trainable")
FINE_TUNES = ("frozen_te", "fusion_only", "all_trainable")
LABEL = {"base": "base", "frozen_te": "frozen-TE", "fusion_only": "fusion-only", "all_trainable": "all-trainable"}
CONCEPTS = tuple(WATCH_CONCEPTS)
VERSION = "v1"  # of the cached per-checkpoint matrices (bump when a definition changes)
T70, F71, T72, T73, T74, F75, F76 = (f"post01/{s}" for s in ("table-7.0", "fig-7.1", "table-7.2", "table-7.3",
                                                               "table-7.4", "fig-7.5", "fig-7.6"))

SYNONYMS = ("bezel ↔ lunette", "leather ↔ strap", "pearl ↔ pearls", "clockwork ↔ movement", "diamonds ↔ stones", "hour hand ↔ minute hand")
PERIPHERAL = ("lugs ↔ metal", "metal ↔ rehaut", "bezel ↔ rehaut", "bezel ↔ lugs", "dial ↔ lugs")
CROWN_PUSHER = "crown ↔ pusher"
COMPOUNDS = ("dial ↔ metal dial", "strap ↔ metal strap")

#: Numbers the §07 text prints outside its tables (printed string, where); shown beside ours, never copied into ours.
TEXT_70 = {"fus4_mean_watch": ("base 0.90; frozen-TE 0.93", "§07 ¶3: mean off-diagonal cosine 0.90 (base, watch); "
                                                            "frozen-TE on watch averages 0.93"),
           "fus4_share_above_0_9": ("base 65 %", "§07 ¶3: 65 % of pairs already above 0.9 (base, watch)"),
           "fus4_mean_black": ("base 0.93; frozen-TE 0.97; fusion-only 0.97",
                               "§07 ¶3: a pure black image pushes that mean to 0.93; frozen-TE on black 0.97; "
                               "fusion-only on black averages 0.97"),
           "pearson_fus4_pred_iou": ("0.22–0.52 across recipes", "§07 ¶3: Pearson between per-pair fusion[4] cosine "
                                                                 "and per-pair predicted-mask IoU")}
TEXT_72 = {"bezel ↔ lunette": "text cosine: base 0.42, all-trainable +0.19 (§07 synonyms, first reading)",
           "hour hand ↔ minute hand": "pred_IoU 0.16–0.36 across recipes (§07 synonyms, second reading)",
           "pearl ↔ pearls": "pred_IoU 0.33–0.99 across five recipes (§07 synonyms, third reading)",
           "diamonds ↔ stones": "pred_IoU 0.33 (fusion-only) to 0.98 (presence_only) (§07 caveats)"}
TEXT_73 = {CROWN_PUSHER: "pred_IoU 0.76 frozen-TE, fus[4] 0.98 in base (§07 peripheral-metal, last paragraph)"}

PUB_72 = report.columns(P1, "7.2", {"fus4_base": "fus[4], base", "fus4_frozen_te": "fus[4], frozen-TE",
                                    "fus4_fusion_only": "fus[4], fusion-only", "pred_iou_frozen_te": "pred_IoU, frozen-TE",
                                    "pred_iou_fusion_only": "pred_IoU, fusion-only"})
PUB_73 = report.columns(P1, "7.3", {p["key"]: p["column"] for p in PUB_72})
PUB_74 = report.columns(P1, "7.4", {"text_base": "text base", "text_all_trainable": "text all-trainable",
                                    "text_delta": "text all-trainable (Δ)", "fus4_ft_min": "fus[4] FT (range) (min)",
                                    "fus4_ft_max": "fus[4] FT (range) (max)", "pred_iou_frozen_te": "pred_IoU frozen-TE"})
#: Fig 7.6's panels: (metric, checkpoint). "invented" = max(0, pred_IoU(FT) − pred_IoU(base)); "combined" = the mean
#: of text cosine and pred_IoU (a pair that never co-occurs counts pred_IoU 0).
PANELS = (("text", "base"), ("text", "all_trainable"), ("pred_iou", "frozen_te"), ("fus4", "frozen_te"),
          ("invented", "frozen_te"), ("combined", "frozen_te"))
METRIC_LABEL = {"text": "text-encoder cosine", "pred_iou": "pred_IoU", "fus4": "fus[4] cosine (watch)",
                "invented": "invented confusion (pred_IoU FT − base, ≥ 0)", "combined": "combined (text + pred_IoU) / 2"}
UMAP = {"n_neighbors": 8, "min_dist": 0.3, "n_components": 3, "metric": "precomputed (1 − similarity)",
        "init": "random", "knn_k": 5, "edges": "closest 10 % of pairs"}


def pair_label(a: str, b: str) -> str:
    """The post's row label of a concept pair: ``"bezel ↔ lunette"``."""
    return f"{a} ↔ {b}"


def split_label(label: str) -> tuple[str, str]:
    """``"bezel ↔ lunette"`` → ``("bezel", "lunette")``."""
    a, b = label.split(" ↔ ")
    return a, b


def fusion_slot(n_layers: int) -> str:
    """The slot at fusion[4]'s relative depth in a ``n_layers``-layer fusion encoder (SAM3 and tiny: 6 → fusion[4])."""
    return f"fusion[{round(4 * (n_layers - 1) / 5)}]"


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Pairwise cosine of the rows of ``x`` [..., n, d] → [..., n, n] (float64; a zero row gives 0)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    u = x / np.where(n > 0, n, 1.0)
    return u @ np.swapaxes(u, -1, -2)


def pair_iou_matrix(unions: dict[str, np.ndarray], present: set[str], concepts: tuple[str, ...]
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """One image's contribution to pred_IoU (§07, Fig 7.1): for every pair of ``concepts`` both in ``present`` (GT),
    the IoU of the two prompts' kept-mask unions. Returns (IoU sum [n, n], count [n, n], pairs where both unions are
    empty — skipped, as they carry no overlap information). Off-diagonal only."""
    n = len(concepts)
    s, c, empty = np.zeros((n, n)), np.zeros((n, n), dtype=int), 0
    for i, j in itertools.combinations(range(n), 2):
        a, b = concepts[i], concepts[j]
        if a not in present or b not in present:
            continue
        iou = metrics.mask_iou(unions[a], unions[b], empty_value=np.nan)
        if np.isnan(iou):
            empty += 1
            continue
        s[i, j] = s[j, i] = iou
        c[i, j] = c[j, i] = 1
    return s, c, empty


def pearson(x, y) -> float | None:
    """Pearson r over the finite pairs of ``x``, ``y`` (None with fewer than 3, or a constant side)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return None
    from scipy.stats import pearsonr

    return float(pearsonr(x[ok], y[ok]).statistic)


def _nan_to_none(m: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else round(float(v), 6) for v in row] for row in m]


def _arr(m: list) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in m], dtype=float)


def compute_geometry(name: str, scale: str) -> dict:
    """The three §07 views of one checkpoint on the watch test set: pred_IoU, fus[4] cosine (watch images, black
    image) and text cosine, each a 37 × 37 matrix over ``CONCEPTS`` (null where undefined)."""
    from common import activations
    from common.data import load_pairs
    from common.evaluate import predict
    from common.metrics import union_mask
    from common.worlds import ensure_worlds

    model, tok, size = runs.load_model(name, scale), runs.tokenizer_for(scale), runs.image_size(scale)
    ds = load_pairs(ensure_worlds(scale=scale)["watch_test"])
    groups = ds.by_image()
    keys = sorted(groups)
    # every concept prompted on every image (most are absent from an image's annotations: a pair with no masks)
    prompts = [dataclasses.replace(groups[k][0], phrase=c, pair_id=f"{groups[k][0].pair_id}~{c}", masks=[], boxes=[],
                                   iscrowd=(), neg_type=None) for k in keys for c in CONCEPTS]
    preds = predict(model, ds, tok, size, prompts)
    unions: dict[str, dict[str, np.ndarray]] = {k: {} for k in keys}
    area = {c: [] for c in CONCEPTS}
    for p in preds:
        hw = (p.pair.height, p.pair.width) if p.pair.height else (size, size)
        u = union_mask(p.kept.masks, hw)
        unions[str(p.pair.path)][p.pair.phrase] = u
        area[p.pair.phrase].append(float(u.mean()))
    n = len(CONCEPTS)
    tot, cnt, empty = np.zeros((n, n)), np.zeros((n, n), dtype=int), 0
    for k in keys:
        present = {p.phrase for p in groups[k] if p.masks}
        s, c, e = pair_iou_matrix(unions[k], present, CONCEPTS)
        tot, cnt, empty = tot + s, cnt + c, empty + e
    with np.errstate(invalid="ignore"):
        piou = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
    np.fill_diagonal(piou, np.nan)

    slot = fusion_slot(len(model.detr_encoder.layers))
    images = [ds.image(groups[k][0]) for k in keys]
    grid = activations.capture_grid(model, images, CONCEPTS, tok, size, [slot], progress=False)[slot]
    fus_watch = cosine_matrix(grid.double().mean(2).numpy()).mean(0)  # per image, then the mean over images
    black = np.zeros_like(images[0])
    grid_b = activations.capture_grid(model, [black], CONCEPTS, tok, size, [slot], progress=False)[slot]
    fus_black = cosine_matrix(grid_b.double().mean(2).numpy())[0]
    text = cosine_matrix(activations.text_embeddings(model, CONCEPTS, tok).numpy())
    return {"recipe": name, "concepts": list(CONCEPTS), "fusion_slot": slot, "n_images": len(keys),
            "pred_iou": _nan_to_none(piou), "n_cooccur": cnt.tolist(), "n_both_empty": empty,
            "fus4_watch": _nan_to_none(fus_watch), "fus4_black": _nan_to_none(fus_black), "text": _nan_to_none(text),
            "kept_area": {c: float(np.mean(v)) for c, v in area.items()}}


def geometry(name: str, scale: str, force: bool = False) -> dict:
    """:func:`compute_geometry`, cached beside the run (``<run dir>/concept-geometry-<VERSION>.json``)."""
    from common.io import cached_json

    path = runs.artifact_dir(name, scale) / f"concept-geometry-{VERSION}.json"
    return cached_json(path, lambda: compute_geometry(name, scale), force=force)


def off_diagonal(m: np.ndarray) -> np.ndarray:
    """The upper-triangle (i < j) values of a square matrix: one value per unordered pair."""
    return m[np.triu_indices(m.shape[0], k=1)]


def saturation_rows(mats: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """Table 7.0: per recipe the §07 ¶3 statistics (mean off-diagonal fus[4] cosine on watch / black images, share
    of pairs above 0.9, Pearson of per-pair fus[4] cosine with per-pair pred_IoU over co-occurring pairs)."""
    stats = {}
    for r, m in mats.items():
        fw, fb, pi = off_diagonal(m["fus4_watch"]), off_diagonal(m["fus4_black"]), off_diagonal(m["pred_iou"])
        stats[r] = {"fus4_mean_watch": float(fw.mean()), "fus4_share_above_0_9": float((fw > 0.9).mean()),
                    "fus4_mean_black": float(fb.mean()), "pearson_fus4_pred_iou": pearson(fw, pi),
                    "n_pairs_pred_iou": int(np.isfinite(pi).sum())}
    return [{"row": k, "measure": k, **{r: stats[r][k] for r in mats}, "published": TEXT_70[k][0],
             "published_source": TEXT_70[k][1]} for k in TEXT_70] + \
        [{"row": "n_pairs_pred_iou", "measure": "n_pairs_pred_iou", **{r: stats[r]["n_pairs_pred_iou"] for r in mats},
          "published": "666 pairs", "published_source": "§07 ¶3: the 666 concept pairs"}]


def pair_row(label: str, mats: dict[str, dict[str, np.ndarray]], geo: dict[str, dict]) -> dict:
    """One row of Tables 7.2 / 7.3 / 7.4: every view of one pair in every checkpoint."""
    a, b = split_label(label)
    i, j = CONCEPTS.index(a), CONCEPTS.index(b)
    val = lambda m: None if not np.isfinite(m[i, j]) else float(m[i, j])  # noqa: E731
    row = {"row": label, "pair": label, "n_images": int(geo["frozen_te"]["n_cooccur"][i][j])}
    row |= {f"fus4_{r}": val(mats[r]["fus4_watch"]) for r in mats}
    row |= {f"fus4_black_{r}": val(mats[r]["fus4_black"]) for r in mats}
    row |= {f"pred_iou_{r}": val(mats[r]["pred_iou"]) for r in mats}
    row |= {"text_base": val(mats["base"]["text"]), "text_all_trainable": val(mats["all_trainable"]["text"])}
    row["text_delta"] = row["text_all_trainable"] - row["text_base"]
    ft = [row[f"fus4_{r}"] for r in FINE_TUNES]
    row["fus4_ft_min"], row["fus4_ft_max"] = min(ft), max(ft)
    return row


def knn_sets(sim: np.ndarray, k: int) -> list[set[int]]:
    """Each concept's ``k`` most similar others under ``sim`` (NaN counts as least similar; ties by index)."""
    s = np.where(np.isfinite(sim), sim, -np.inf)
    np.fill_diagonal(s, -np.inf)
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in s]


def panel_similarity(metric: str, ckpt: str, mats: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
    """Fig 7.6's similarity matrix for one panel (definitions at :data:`PANELS`)."""
    if metric == "text":
        return mats[ckpt]["text"]
    if metric == "fus4":
        return mats[ckpt]["fus4_watch"]
    pi = np.nan_to_num(mats[ckpt]["pred_iou"], nan=0.0)
    if metric == "pred_iou":
        return pi
    if metric == "invented":
        return np.clip(pi - np.nan_to_num(mats["base"]["pred_iou"], nan=0.0), 0.0, None)
    if metric == "combined":
        return (mats[ckpt]["text"] + pi) / 2
    raise ValueError(f"unknown Fig 7.6 metric {metric!r}")


def umap_panels(mats: dict[str, dict[str, np.ndarray]], seed: int) -> tuple[list[dict], dict]:
    """Fig 7.6: a 3D UMAP embedding per panel (distance 1 − similarity, precomputed) and, per panel, how far its
    neighbourhoods agree with the base text view (mean Jaccard of the 5-NN sets in the similarity matrix)."""
    import warnings

    import umap

    ref = knn_sets(panel_similarity("text", "base", mats), UMAP["knn_k"])
    rows, coords = [], {}
    for metric, ckpt in PANELS:
        sim = panel_similarity(metric, ckpt, mats)
        d = np.clip(1.0 - np.nan_to_num(sim, nan=0.0), 0.0, None)
        np.fill_diagonal(d, 0.0)
        d = (d + d.T) / 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            emb = umap.UMAP(n_components=3, n_neighbors=UMAP["n_neighbors"], min_dist=UMAP["min_dist"],
                            metric="precomputed", init="random", random_state=seed).fit_transform(d)
        nn = knn_sets(sim, UMAP["knn_k"])
        jac = float(np.mean([len(x & y) / len(x | y) for x, y in zip(nn, ref)]))
        key = f"{metric}|{ckpt}"
        coords[key] = np.round(emb, 5).tolist()
        rows.append({"row": key, "metric": METRIC_LABEL[metric], "checkpoint": LABEL[ckpt],
                     "knn_jaccard_vs_text_base": jac, "similarity_mean": float(off_diagonal(np.nan_to_num(sim)).mean())})
    return rows, coords


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    geo = {r: geometry(r, args.scale, force=args.force) for r in RECIPES}
    mats = {r: {k: _arr(geo[r][k]) for k in ("pred_iou", "fus4_watch", "fus4_black", "text")} for r in RECIPES}
    slot = geo["base"]["fusion_slot"]
    config = {"recipes": RECIPES, "concepts": len(CONCEPTS), "fusion_slot": slot, "images": "watch_test, all "
              f"{geo['base']['n_images']} images (no subsample)", "keep_threshold": 0.3, "nms_iou": 0.5,
              "cache": f"concept-geometry-{VERSION}.json beside each run", "scale": args.scale}
    defs = (f"pred_IoU(A, B): on watch test images whose GT has both A and B, IoU of the unions of kept masks for "
            f"prompts A and B (score > 0.3, NMS 0.5), averaged over those images; an image where neither prompt keeps "
            f"a mask is skipped (n_both_empty); never co-occurring → null. fus[4] cosine: `{slot}` output (HF Sam3's "
            f"fusion residual is the prompt-conditioned image tokens, not the text token the post names), mean-pooled "
            f"over image tokens per (image, prompt), cosine per pair, averaged over the {geo['base']['n_images']} "
            f"watch test images (fus4_black_*: one all-black image). text cosine: cosine of the text features the "
            f"fusion encoder reads, averaged over the phrase's tokens. Our pred_IoU comes from a tiny fine-tune that "
            f"learns only part of the watch task, so it sits far below the post's SAM3 values.")

    # Table 7.0: the §07 text's saturation numbers
    rows70 = saturation_rows(mats)
    section.emit(args, "7.0", rows70, t0=t0, config=config, figure=figure,
                 title="§07 in the text — fusion[4] saturation: mean off-diagonal cosine on watch vs black images, "
                       "share of pairs > 0.9, Pearson(fus[4] cosine, pred_IoU) (no table in the post)",
                 md_keys=["measure", *RECIPES, "published", "published_source"],
                 extra={"scatter": {r: {"fus4": off_diagonal(mats[r]["fus4_watch"]).round(5).tolist(),
                                        "pred_iou": [None if not np.isfinite(v) else round(float(v), 5)
                                                     for v in off_diagonal(mats[r]["pred_iou"])]} for r in RECIPES},
                        "n_both_empty": {r: geo[r]["n_both_empty"] for r in RECIPES}},
                 notes="Columns are checkpoints; `published`: the numbers the §07 text prints (`published_source`), "
                       "for the real SAM3. Pearson over the pairs with a pred_IoU (co-occurring in the test set). " + defs)

    # Fig 7.1: the predicted-mask confusability matrices
    rows71 = []
    for r in RECIPES:
        pi = off_diagonal(mats[r]["pred_iou"])
        fin = pi[np.isfinite(pi)]
        iu = np.triu_indices(len(CONCEPTS), k=1)
        top = sorted(((float(mats[r]["pred_iou"][i, j]), pair_label(CONCEPTS[i], CONCEPTS[j])) for i, j in zip(*iu)
                      if np.isfinite(mats[r]["pred_iou"][i, j])), reverse=True)[:5]
        rows71.append({"recipe": r, "n_pairs_defined": int(fin.size), "mean_pred_iou": float(fin.mean()) if fin.size else None,
                       "median_pred_iou": float(np.median(fin)) if fin.size else None,
                       "share_below_0_3": float((fin < 0.3).mean()) if fin.size else None,
                       "mean_kept_area": float(np.mean(list(geo[r]["kept_area"].values()))),
                       "n_both_empty": geo[r]["n_both_empty"], "top_pairs": "; ".join(f"{p} {v:.2f}" for v, p in top)})
    section.emit(args, "fig-7.1", rows71, t0=t0, config=config, figure=figure,
                 title="Fig 7.1 — predicted-mask confusability (pred_IoU over the 37 concepts), per checkpoint",
                 extra={"concepts": list(CONCEPTS), "pred_iou": {r: geo[r]["pred_iou"] for r in RECIPES},
                        "n_cooccur": geo["frozen_te"]["n_cooccur"],
                        "kept_area": {r: geo[r]["kept_area"] for r in RECIPES}},
                 notes="The post draws frozen-TE (12 of 37 concepts shown); we draw all 37 for four checkpoints (grey: "
                       "the pair never co-occurs in the test set). `mean_kept_area`: mean fraction of the image the "
                       "kept-mask union covers per (image, prompt) — the mask aggressiveness the §07 caveats name. " + defs)

    # Tables 7.3, 7.2 (7.3 first: the synonym claim reads both; 7.3 is re-emitted after 7.2 so its verdicts are current)
    rows73 = [pair_row(p, mats, geo) | {"group": "peripheral metal" if p in PERIPHERAL else "co-located",
                                        "published_text": TEXT_73.get(p)} for p in (*PERIPHERAL, CROWN_PUSHER)]
    rows72 = [pair_row(p, mats, geo) | {"published_text": TEXT_72.get(p)} for p in SYNONYMS]
    keys = ["pair", "n_images", "fus4_base", "fus4_frozen_te", "fus4_fusion_only", "fus4_all_trainable",
            "pred_iou_base", "pred_iou_frozen_te", "pred_iou_fusion_only", "pred_iou_all_trainable"]
    kw73 = dict(t0=t0, config=config, figure=figure, published=PUB_73, md_keys=[*keys, "published_text"],
                title="Table 7.3 — peripheral-metal pairs (and crown ↔ pusher) across recipes: fus[4] cosine vs pred_IoU",
                notes="`n_images`: test images with both concepts (pred_IoU averages over them; crown ↔ pusher "
                      "co-occurs in few). `published_text`: numbers the §07 text prints beside the table. " + defs)
    section.emit(args, "7.3", rows73, **kw73)
    section.emit(args, "7.2", rows72, t0=t0, config=config, figure=figure, published=PUB_72,
                 md_keys=[*keys, "text_base", "text_all_trainable", "published_text"],
                 title="Table 7.2 — synonym pairs across recipes: fus[4] cosine vs pred_IoU",
                 notes="`published_text`: numbers the §07 text prints about these pairs outside the table. " + defs)
    section.emit(args, "7.3", rows73, **kw73)

    # Table 7.4: compound nouns
    delta = off_diagonal(mats["all_trainable"]["text"] - mats["base"]["text"])
    ft_pi = off_diagonal(mats["frozen_te"]["pred_iou"])
    all_mean = float(ft_pi[np.isfinite(ft_pi)].mean()) if np.isfinite(ft_pi).any() else None
    rows74 = []
    for p in COMPOUNDS:
        r = pair_row(p, mats, geo)
        r["text_delta_percentile"] = float((np.abs(delta) < abs(r["text_delta"])).mean())
        r["pred_iou_frozen_te_all_pairs_mean"] = all_mean
        rows74.append(r)
    section.emit(args, "7.4", rows74, t0=t0, config=config, figure=figure, published=PUB_74,
                 md_keys=["pair", "n_images", "text_base", "text_all_trainable", "text_delta", "text_delta_percentile",
                          "fus4_base", "fus4_ft_min", "fus4_ft_max", "pred_iou_frozen_te",
                          "pred_iou_frozen_te_all_pairs_mean"],
                 title="Table 7.4 — compound nouns in two views: text cosine (base → all-trainable), fus[4], pred_IoU",
                 notes="`fus4_ft_min`/`max`: the range over frozen_te, fusion_only, all_trainable. "
                       "`text_delta_percentile`: share of the 666 pairs whose |Δ text cosine| is smaller. "
                       "`pred_iou_frozen_te_all_pairs_mean`: frozen_te's mean pred_IoU over every co-occurring pair. " + defs)

    # Fig 7.5: text-cosine heatmaps base / all-trainable / Δ
    iu = np.triu_indices(len(CONCEPTS), k=1)
    order = np.argsort(-np.abs(delta), kind="stable")
    rows75 = []
    for rank, q in enumerate(order[:12], 1):
        i, j = iu[0][q], iu[1][q]
        rows75.append({"rank": rank, "pair": pair_label(CONCEPTS[i], CONCEPTS[j]),
                       "text_base": float(mats["base"]["text"][i, j]),
                       "text_all_trainable": float(mats["all_trainable"]["text"][i, j]), "delta": float(delta[q])})
    same = {r: float(np.abs(mats[r]["text"] - mats["base"]["text"]).max()) for r in ("frozen_te", "fusion_only")}
    checks = [check(f"{LABEL[r]} keeps base's text encoder: its 37 × 37 text cosines equal base's", v < 1e-9,
                    f"max |Δ| {v:.2e}") for r, v in same.items()]
    section.emit(args, "fig-7.5", rows75, t0=t0, config=config, figure=figure, checks=checks,
                 title="Fig 7.5 — text-encoder pairwise cosine, base vs all-trainable: the 12 largest |Δ|",
                 extra={"concepts": list(CONCEPTS), "text_base": geo["base"]["text"],
                        "text_all_trainable": geo["all_trainable"]["text"],
                        "abs_delta_mean": float(np.abs(delta).mean()), "abs_delta_median": float(np.median(np.abs(delta)))},
                 notes=f"Over all 666 pairs: mean |Δ| {np.abs(delta).mean():.3f}, median {np.median(np.abs(delta)):.3f}. "
                       "frozen_te and fusion_only keep base's text encoder (checks above). " + defs)

    # Fig 7.6: 3D UMAP per (metric, checkpoint)
    rows76, coords = umap_panels(mats, args.seed)
    sims = {f"{m}|{c}": np.round(panel_similarity(m, c, mats), 5).tolist() for m, c in PANELS}
    section.emit(args, "fig-7.6", rows76, t0=t0, config={**config, "umap": UMAP}, figure=figure,
                 title="Fig 7.6 — 3D UMAP of concept geometry, one panel per (metric, checkpoint)",
                 extra={"concepts": list(CONCEPTS), "coords": coords, "similarity": sims},
                 notes="UMAP (umap-learn, 3 components, precomputed distance 1 − similarity, random init, seed "
                       f"{args.seed}). `knn_jaccard_vs_text_base`: mean Jaccard overlap of each concept's 5 nearest "
                       "neighbours (in the similarity matrix, not the embedding) with its neighbours under base's text "
                       "cosine — low values mean concepts close in one view are not close in the other. "
                       "invented confusion = max(0, pred_IoU(frozen_te) − pred_IoU(base)); combined = (text cosine + "
                       "pred_IoU) / 2, pairs that never co-occur counting pred_IoU 0.")
    for r in rows70:
        print(f"  {r['measure']:24s} " + "  ".join(f"{k} {r[k]:.3f}" if isinstance(r[k], float) else f"{k} {r[k]}"
                                                   for k in RECIPES))
    print(f"§07 concept geometry [{args.scale}] {time.time() - t0:.0f} s")
    return {"7.0": rows70, "fig-7.1": rows71, "7.2": rows72, "7.3": rows73, "7.4": rows74, "fig-7.5": rows75,
            "fig-7.6": rows76}


# ----------------------------------------------------------------------------- claims
def _mean(d: dict) -> float:
    return sum(d.values()) / len(d)


@claim("p01-7.2-synonyms-overlap", P1, "Tables 7.2 / 7.3", table="7.2", reads=("post01/table-7.2", "post01/table-7.3"),
       quote="These are the pairs where we’d expect the model to behaviourally treat the prompts as referring to the same thing, and indeed at the predicted-mask level it mostly does",
       statement="frozen-TE: mean pred_iou_frozen_te over the synonym pairs (7.2) > mean over the five peripheral-metal pairs (7.3)")
def _(r: Results) -> Outcome:
    syn = r.column("post01/table-7.2", "pred_iou_frozen_te", by="pair")
    per = {k: v for k, v in r.column("post01/table-7.3", "pred_iou_frozen_te", by="pair").items() if k in PERIPHERAL}
    if not per:
        raise NotYetRun("post01/table-7.3.json has none of the peripheral pairs")
    return cmp(sum(syn.values()) / len(syn), ">", sum(per.values()) / len(per), "mean synonym vs mean peripheral pred_IoU")


@claim("p01-7.3-fusion-merge", P1, "Table 7.3", table="7.3", reads=("post01/table-7.3",),
       quote="they leapt from 0.49–0.66 in base on watch images to 0.89–0.96 in every fine-tune.",
       statement="fus[4] cosine rises from base to frozen-TE for at least 4 of the 5 peripheral-metal pairs (keys fus4_base, fus4_frozen_te)")
def _(r: Results) -> Outcome:
    base = r.column("post01/table-7.3", "fus4_base", by="pair")
    ft = r.column("post01/table-7.3", "fus4_frozen_te", by="pair")
    pairs = [p for p in PERIPHERAL if p in base and p in ft]
    if not pairs:
        raise NotYetRun("post01/table-7.3.json has none of the peripheral pairs")
    up = sum(ft[p] > base[p] for p in pairs)
    return cmp(up, ">=", min(4, len(pairs)), f"pairs with a rise (of {len(pairs)})")


@claim("p01-7.3-distinct-masks", P1, "Table 7.3", table="7.3", reads=("post01/table-7.3",),
       quote="The model has merged the residual stream for these prompts but is still producing different mask outputs",
       statement="mean pred_iou_frozen_te over the five peripheral-metal pairs < mean fus4_frozen_te cosine over them")
def _(r: Results) -> Outcome:
    pi = {k: v for k, v in r.column("post01/table-7.3", "pred_iou_frozen_te", by="pair").items() if k in PERIPHERAL}
    co = {k: v for k, v in r.column("post01/table-7.3", "fus4_frozen_te", by="pair").items() if k in PERIPHERAL}
    if not pi or not co:
        raise NotYetRun("post01/table-7.3.json has none of the peripheral pairs")
    return cmp(sum(pi.values()) / len(pi), "<", sum(co.values()) / len(co), "pred_IoU vs fus[4] cosine")


@claim("p01-7.4-compound-split", P1, "Table 7.4", table="7.4", reads=("post01/table-7.4",),
       quote="Text-encoder rotation in the all-trainable recipe pulls the compound apart by 0.32 and 0.40 cosine",
       statement="text-embedding cosine of both compound pairs drops from base to all-trainable (keys text_base, text_all_trainable)")
def _(r: Results) -> Outcome:
    b = r.column("post01/table-7.4", "text_base", by="pair")
    a = r.column("post01/table-7.4", "text_all_trainable", by="pair")
    return every(*(cmp(a[p], "<", b[p], p) for p in b if p in a))


@claim("p01-7.4-prompt-specific", P1, "Table 7.4", table="7.4", reads=("post01/table-7.4",),
       quote="substantial and prompt-specific, and the one mechanism only that recipe produces",
       statement="each compound pair's |Δ text cosine| (all-trainable − base) is larger than that of at least half of "
                 "the 666 pairs (text_delta_percentile ≥ 0.5)")
def _(r: Results) -> Outcome:
    pct = r.column("post01/table-7.4", "text_delta_percentile", by="pair")
    return every(*(cmp(v, ">=", 0.5, f"{p} percentile") for p, v in pct.items()))


@claim("p01-7.4-masks-still-overlap", P1, "Table 7.4", table="7.4", reads=("post01/table-7.4",), needs=LEARNED,
       quote="predicted masks still substantially overlap (pred_IoU 0.59 and 0.69) in every recipe",
       statement="frozen-TE: each compound pair's pred_IoU exceeds frozen-TE's mean pred_IoU over all co-occurring pairs")
def _(r: Results) -> Outcome:
    pi = r.column("post01/table-7.4", "pred_iou_frozen_te", by="pair")
    ref = r.column("post01/table-7.4", "pred_iou_frozen_te_all_pairs_mean", by="pair")
    return every(*(cmp(v, ">", ref[p], f"{p} vs all-pair mean") for p, v in pi.items()))


@claim("p01-7.3-crown-pusher-top", P1, "Table 7.3", table="7.3", reads=("post01/table-7.3",), needs=LEARNED,
       quote="crown ↔ pusher is the genuine exception in this group: pred_IoU 0.76 in frozen-TE",
       statement="frozen-TE: crown ↔ pusher has the highest pred_iou_frozen_te of Table 7.3's six pairs")
def _(r: Results) -> Outcome:
    pi = r.column("post01/table-7.3", "pred_iou_frozen_te", by="pair")
    if CROWN_PUSHER not in pi:
        raise NotMeasurable("crown and pusher never co-occur in this scale's watch test set")
    rest = {k: v for k, v in pi.items() if k != CROWN_PUSHER}
    top = max(rest, key=rest.get) if rest else None
    n = r.cell("post01/table-7.3", "n_images", pair=CROWN_PUSHER)
    return cmp(pi[CROWN_PUSHER], ">", rest[top] if top else float("-inf"), f"crown ↔ pusher (n_images {n:g}) vs {top}")


@claim("p01-7.3-crown-pusher-base", P1, "Table 7.3", table="7.3", reads=("post01/table-7.3",),
       quote="the only pair where both probes were already agreeing in base that the masks substantially overlap",
       statement="base: crown ↔ pusher's fus[4] cosine exceeds that of each of the five peripheral-metal pairs")
def _(r: Results) -> Outcome:
    f = r.column("post01/table-7.3", "fus4_base", by="pair")
    if CROWN_PUSHER not in f:
        raise NotYetRun("post01/table-7.3.json has no crown ↔ pusher row")
    per = {k: v for k, v in f.items() if k in PERIPHERAL}
    top = max(per, key=per.get)
    return cmp(f[CROWN_PUSHER], ">", per[top], f"crown ↔ pusher vs {top}")


@claim("p01-7.0-fusion-saturated", P1, "§07 ¶3", table="7.3", reads=(T70,),
       quote="even base SAM3 on real watch images has a mean off-diagonal cosine of 0.90 at fusion[4]",
       statement="base: mean off-diagonal fus[4] cosine over the 666 pairs on watch test images ≥ 0.8")
def _(r: Results) -> Outcome:
    return cmp(r.cell(T70, "base", measure="fus4_mean_watch"), ">=", 0.8, "base mean fus[4] cosine (watch)")


@claim("p01-7.0-black-tighter", P1, "§07 ¶3", table="7.3", reads=(T70,),
       quote="Replacing the watch images with a pure black image pushes that mean to 0.93.",
       statement="base and frozen-TE: mean off-diagonal fus[4] cosine on a black image ≥ on the watch test images")
def _(r: Results) -> Outcome:
    return every(*(cmp(r.cell(T70, k, measure="fus4_mean_black"), ">=", r.cell(T70, k, measure="fus4_mean_watch"),
                       f"{k} black vs watch") for k in ("base", "frozen_te")))


@claim("p01-7.0-ft-tighter", P1, "§07 ¶3", table="7.3", reads=(T70,),
       quote="In the fine-tunes the manifold is even tighter",
       statement="mean off-diagonal fus[4] cosine on watch images: frozen-TE ≥ base")
def _(r: Results) -> Outcome:
    return cmp(r.cell(T70, "frozen_te", measure="fus4_mean_watch"), ">=", r.cell(T70, "base", measure="fus4_mean_watch"),
               "frozen-TE vs base")


@claim("p01-7.0-not-same-thing", P1, "§07 ¶3", table="7.3", reads=(T70,),
       quote="these two measures are not measuring the same thing",
       statement="Pearson(per-pair fus[4] cosine, per-pair pred_IoU) < 0.6 in each fine-tune (frozen-TE, fusion-only, "
                 "all-trainable); the post measured 0.22–0.52")
def _(r: Results) -> Outcome:
    row = r.row(T70, measure="pearson_fus4_pred_iou")
    vals = {k: row.get(k) for k in FINE_TUNES}
    if any(v is None for v in vals.values()):
        raise NotMeasurable(f"too few co-occurring pairs for a correlation: {vals}")
    return every(*(cmp(v, "<", 0.6, k) for k, v in vals.items()))


@claim("p01-7.1-mostly-distinct", P1, "Fig. 7.1", table="7.3", reads=(F71,), needs=LEARNED,
       quote="Most cells are dark — the model produces distinct masks for most prompt pairs.",
       statement="frozen-TE: at least half of the co-occurring concept pairs have pred_IoU < 0.3")
def _(r: Results) -> Outcome:
    return cmp(r.cell(F71, "share_below_0_3", recipe="frozen_te"), ">=", 0.5, "share of pairs with pred_IoU < 0.3")


# ----------------------------------------------------------------------------- figures
def figure(result: dict):
    """The figure of each result this script writes (``make figures`` redraws them from the JSON)."""
    draw = {"table-7.0": figure_70, "fig-7.1": figure_71, "table-7.2": figure_pairs, "table-7.3": figure_pairs,
            "table-7.4": figure_74, "fig-7.5": figure_75, "fig-7.6": figure_76}
    return draw.get(result["table"], lambda _r: None)(result)


def figure_70(result: dict):
    """Per-pair fus[4] cosine (watch) vs pred_IoU, one panel per checkpoint, Pearson r in the title."""
    import matplotlib.pyplot as plt

    sc = result["scatter"]
    r = {x["measure"]: x for x in result["rows"]}["pearson_fus4_pred_iou"]
    fig, axes = plt.subplots(1, len(sc), figsize=(3.2 * len(sc), 3.2), sharey=True)
    for ax, (rec, d) in zip(np.atleast_1d(axes), sc.items()):
        x = np.array(d["fus4"], dtype=float)
        y = np.array([np.nan if v is None else v for v in d["pred_iou"]], dtype=float)
        ax.scatter(x, y, s=8, alpha=0.6)
        rr = r.get(rec)
        ax.set(title=f"{LABEL[rec]}: r = {rr:.2f}" if rr is not None else LABEL[rec], xlabel="fus[4] cosine (watch)")
    np.atleast_1d(axes)[0].set_ylabel("pred_IoU")
    fig.suptitle(f"§07 — per-pair fus[4] cosine vs pred_IoU ({result['scale']}); post: r = 0.22–0.52", fontsize=10)
    fig.tight_layout()
    return fig


def figure_71(result: dict):
    """The 37 × 37 pred_IoU matrix per checkpoint (grey: never co-occurring)."""
    import matplotlib.pyplot as plt

    cs, mats = result["concepts"], result["pred_iou"]
    cols = 2 if len(mats) > 2 else len(mats)
    rows = -(-len(mats) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 6.2 * rows), squeeze=False)
    for ax in axes.flat[len(mats):]:
        ax.set_visible(False)
    cmap = plt.get_cmap("magma").with_extremes(bad="#d9d9d9")
    for ax, (rec, m) in zip(axes.flat, mats.items()):
        a = np.ma.masked_invalid(_arr(m))
        im = ax.imshow(a, cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks(range(len(cs)), cs, rotation=90, fontsize=5)
        ax.set_yticks(range(len(cs)), cs, fontsize=5)
        ax.grid(False)
        ax.set_title(LABEL[rec], fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.5, label="pred_IoU")
    fig.suptitle(f"Fig 7.1 — predicted-mask confusability on watch test images ({result['scale']}); grey: the pair "
                 "never co-occurs, or neither prompt keeps a mask", fontsize=11)
    return fig


def figure_pairs(result: dict):
    """Tables 7.2 / 7.3: per pair, fus[4] cosine (left) and pred_IoU (right) per checkpoint; published hollow."""
    import matplotlib.pyplot as plt

    tid = result["table"].removeprefix("table-")
    rows = result["rows"]
    xs = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharex=True)
    for ax, what, col in ((axes[0], "fus4", "fus[4]"), (axes[1], "pred_iou", "pred_IoU")):
        w = 0.8 / len(RECIPES)
        for i, rec in enumerate(RECIPES):
            x = xs - 0.4 + w * (i + 0.5)
            ax.bar(x, [r.get(f"{what}_{rec}") or 0 for r in rows], w, color=plt.get_cmap("tab10")(i),
                   label=f"{LABEL[rec]} (ours)")
            pub = [published.get(P1, tid, r["row"], f"{col}, {LABEL[rec]}") for r in rows]
            ax.plot(x, [p if p is not None else np.nan for p in pub], "o", mfc="none", mec=plt.get_cmap("tab10")(i), ms=6)
        ax.set_xticks(xs, [r["pair"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set(ylim=(min(0, *(r.get(f"{what}_{k}") or 0 for r in rows for k in RECIPES)), 1.02), ylabel=col)
    axes[1].plot([], [], "o", mfc="none", mec="grey", label="published (SAM3), same colour")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(f"Table {tid} — fus[4] cosine vs pred_IoU ({result['scale']})", fontsize=11)
    fig.tight_layout()
    return fig


def figure_74(result: dict):
    """Table 7.4: text cosine base → all-trainable, fus[4] FT range and pred_IoU (frozen-TE) per compound pair."""
    import matplotlib.pyplot as plt

    rows = result["rows"]
    keys = [("text_base", "text base"), ("text_all_trainable", "text all-trainable"),
            ("fus4_ft_min", "fus[4] FT (range) (min)"), ("fus4_ft_max", "fus[4] FT (range) (max)"),
            ("pred_iou_frozen_te", "pred_IoU frozen-TE")]
    xs = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    w = 0.8 / len(rows)
    for i, r in enumerate(rows):
        x = xs - 0.4 + w * (i + 0.5)
        c = plt.get_cmap("tab10")(i)
        ax.bar(x, [r.get(k) or 0 for k, _ in keys], w, color=c, label=f"{r['pair']} (ours)")
        pub = [published.get(P1, "7.4", r["row"], col) for _, col in keys]
        ax.plot(x, [p if p is not None else np.nan for p in pub], "o", mfc="none", mec=c, ms=7)
    ax.plot([], [], "o", mfc="none", mec="grey", label="published (SAM3), same colour")
    ax.set_xticks(xs, [k for k, _ in keys], rotation=20, fontsize=8)
    ax.set(ylabel="cosine / IoU", title=f"Table 7.4 — compound nouns in two views ({result['scale']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_75(result: dict):
    """37 × 37 text-cosine heatmaps: base, all-trainable, Δ (diverging: red = apart, green = closer)."""
    import matplotlib.pyplot as plt

    cs = result["concepts"]
    b, a = _arr(result["text_base"]), _arr(result["text_all_trainable"])
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.8))
    lim = max(float(np.nanmax(np.abs(a - b))), 1e-6)
    for ax, m, title, kw in ((axes[0], b, "base", {"cmap": "viridis", "vmin": -1, "vmax": 1}),
                             (axes[1], a, "all-trainable", {"cmap": "viridis", "vmin": -1, "vmax": 1}),
                             (axes[2], a - b, "Δ (all-trainable − base)", {"cmap": "RdYlGn", "vmin": -lim, "vmax": lim})):
        im = ax.imshow(m, **kw)
        ax.set_xticks(range(len(cs)), cs, rotation=90, fontsize=5)
        ax.set_yticks(range(len(cs)), cs, fontsize=5)
        ax.grid(False)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(f"Fig 7.5 — text-encoder pairwise cosine ({result['scale']})", fontsize=11)
    return fig


def figure_76(result: dict):
    """One static 3D scatter per Fig 7.6 panel: the UMAP embedding, edges for the closest 10 % of pairs."""
    import matplotlib.pyplot as plt

    cs = result["concepts"]
    panels = result["rows"]
    fig = plt.figure(figsize=(5.2 * 3, 4.8 * ((len(panels) + 2) // 3)))
    cmap = plt.get_cmap("coolwarm")
    for n, p in enumerate(panels, 1):
        ax = fig.add_subplot((len(panels) + 2) // 3, 3, n, projection="3d")
        xyz = np.array(result["coords"][p["row"]])
        sim = _arr(result["similarity"][p["row"]])
        iu = np.triu_indices(len(cs), k=1)
        vals = sim[iu]
        cut = np.nanquantile(vals, 0.9)
        lo, hi = cut, np.nanmax(vals)
        for i, j, v in zip(*iu, vals):
            if np.isfinite(v) and v >= cut and v > 0:
                ax.plot(*xyz[[i, j]].T, color=cmap((v - lo) / (hi - lo) if hi > lo else 1.0), lw=0.6, alpha=0.7)
        ax.scatter(*xyz.T, s=10, color="black")
        for k, c in enumerate(cs):
            ax.text(*xyz[k], c, fontsize=5)
        ax.set_title(f"{p['metric']}\n{p['checkpoint']} (5-NN Jaccard vs text·base {p['knn_jaccard_vs_text_base']:.2f})",
                     fontsize=8)
        ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    fig.suptitle(f"Fig 7.6 — 3D UMAP of concept geometry ({result['scale']}); edges: closest 10 % of pairs, "
                 "blue → red = weaker → stronger", fontsize=10)
    return fig


if __name__ == "__main__":
    main()
