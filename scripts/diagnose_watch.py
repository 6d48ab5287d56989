"""Issue #3 diagnosis: do the watch fine-tunes learn the watch masks before they forget general segmentation?

The posts' headline (Post 01 §4, Post 02 §1): a watch fine-tune lifts watch IoU 0.23 → 0.92 while LVIS mIoU
barely moves (56.4 → 53.9) and refusal collapses. At tiny scale the watch IoU of every fine-tune stays near
zero. This script separates the possible reasons, on the fine-tunes' saved checkpoints:

- **kept vs best-query IoU** — kept IoU is the posts' read-out (σ(query)·σ(presence) > 0.3); best-query IoU
  is the best single query mask with no score gate. If best-query ≫ kept, the masks exist and only the
  scores are off (calibration); if both are ≈ 0, the model cannot draw the watch masks.
- **learning vs forgetting over the run** — watch IoU and LVIS-like mIoU (kept and best-query) at every
  saved checkpoint, for the standard ``frozen_te`` (lr 3e-4, 3 epochs), ``frozen_te_slow`` (lr 2e-5, 6 epochs)
  and ``frozen_te_long`` (lr 3e-4, 12 epochs): which comes first, a watch gain or an LVIS loss?
- **per concept** — best-query IoU per watch concept for base and each final model, beside the concept's
  GT area at the mask grid, its instances per image, and whether the base saw it in pre-training.
- **can the model draw watch masks at all** — (a) the resolution ceiling: the IoU of the GT itself after the
  round trip through the mask grid the loss sees (area-downsample, bilinear upsample, > 0.5), and through the
  ViT's token grid (8² at tiny: the grid the fusion encoder and the queries attend over), overall and per
  concept, with the rank correlation between a concept's token-grid ceiling and the base's IoU on it; (b) memorisation:
  full-batch AdamW on the positives of a few watch_train images (frozen_te's trainable set), best-query IoU on
  those same pairs before and after; (c) training-set fit: each final model's best-query IoU on watch_train
  itself. High ceiling + memorisation works + no training-set fit = the fine-tune underfits the task; the
  model's capacity and mask resolution are not the blocker.

Writes results/diagnostics/watch-learnability.{json,md} and fig-watch-learnability.{png,svg}.
Usage: python scripts/diagnose_watch.py [--scale tiny] [--recipes frozen_te,frozen_te_slow,...] [--memorize-steps 100]
"""
from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from common import claims, cli, published, recipes, runs, section
from common.data import load_pairs
from common.evaluate import eval_cache_path, evaluate_run, mask_readout
from common.forward import forward_pairs
from common.io import cached_json
from common.losses import make_target, set_loss
from common.metrics import mask_iou, union_mask
from common.model import SPECS, to_pixels
from common.report import markdown_table
from common.worlds import WATCH_PRETRAIN_CONCEPTS, ensure_worlds

RECIPES = ("frozen_te", "frozen_te_slow", "frozen_te_long", "frozen_te_long_lr1e4", "lvis_replay_long", "all_trainable",
           "fusion_only")
MIN_STEP = 6  # checkpoints before this are indistinguishable from base at tiny (frozen_te saves steps 1, 2, 3, ...)
GAIN = 0.05  # a watch gain / LVIS loss counts when it exceeds this (IoU points as a fraction)
CEILING = 0.8  # a resolution ceiling above this leaves room for the posts' watch IoU gains
RHO = 0.5  # a per-concept rank correlation at least this strong counts as 'the grid explains the IoU'
COLLAPSE = 0.2  # a fall of SA-Co-like neg_correct at least this large counts as the refusal collapse
RESOLVED = 0.5  # a concept whose GT keeps IoU ≥ this through the ViT token grid counts as resolved by it
MEMORIZE_IMAGES = 2  # watch_train images whose positives the memorisation check fits
MEMORIZED = 0.5  # best-query IoU the memorisation check must reach on its own pairs


def readout(name: str, scale: str, split: str, step: int | None) -> dict[str, float]:
    """Means over the positive pairs of ``split`` of :func:`common.evaluate.mask_readout` for a run's checkpoint
    (best-query IoU, kept-union area, GT-union area), cached beside the run."""
    def compute() -> dict[str, float]:
        ds = load_pairs(ensure_worlds(scale=scale)[split])
        per = mask_readout(runs.load_model(name, scale, step=step), ds, runs.tokenizer_for(scale),
                           SPECS[scale].image_size)
        return {"per_pair": per, **{k: float(np.mean([v[k] for v in per.values()]))
                                    for k in ("best_query_iou", "kept_area", "gt_area")}}

    return cached_json(eval_cache_path(name, scale, (f"readout_{split}",), step), compute)


def checkpoints(name: str, scale: str) -> list[tuple[int | None, int]]:
    """(step argument, step number) of every saved checkpoint at or after MIN_STEP, then the final model."""
    total = runs.run_steps(name, scale)
    return [(s, s) for s in runs.saved_steps(name, scale) if MIN_STEP <= s < total] + [(None, total)]


def point(name: str, scale: str, step: int | None) -> dict:
    """Kept and best-query IoU on the watch test and the LVIS-like val for one model."""
    kept = evaluate_run(name, scale, ("watch", "lvis"), step=step)
    aw, al = readout(name, scale, "watch_test", step), readout(name, scale, "lvis_val", step)
    return {"watch_kept_iou": kept["watch"]["iou"], "watch_best_query_iou": aw["best_query_iou"],
            "lvis_kept_miou": kept["lvis"]["mIoU"], "lvis_best_query_miou": al["best_query_iou"],
            "watch_kept_area": aw["kept_area"], "watch_gt_area": aw["gt_area"],
            "lvis_kept_area": al["kept_area"], "lvis_gt_area": al["gt_area"],
            "watch_presence_sigmoid": kept["watch"]["pos_presence_sigmoid_mean"]}


def concept_stats(scale: str) -> dict[str, dict]:
    """Per watch concept, on watch_train: mean GT-union area at the mask grid and mean instances per image."""
    paths = ensure_worlds(scale=scale)
    ds = load_pairs(paths["watch_train"])
    grid = runs.mask_size(scale)
    acc: dict[str, list] = defaultdict(list)
    for p in ds:
        if p.masks:
            gt = ds.gt_masks(p, grid)
            acc[p.phrase].append((float(union_mask(gt).sum()), gt.shape[0]))
    return {c: {"gt_cells": float(np.mean([a for a, _ in v])), "instances": float(np.mean([n for _, n in v])),
                "seen_in_pretraining": c in WATCH_PRETRAIN_CONCEPTS} for c, v in acc.items()}


def per_concept(name: str, scale: str, concept_of: dict[str, str]) -> dict[str, float]:
    """Best-query IoU of a final model averaged per watch concept."""
    acc: dict[str, list] = defaultdict(list)
    for pid, v in readout(name, scale, "watch_test", None)["per_pair"].items():
        acc[concept_of[pid]].append(v["best_query_iou"])
    return {c: float(np.mean(v)) for c, v in acc.items()}


def resolution_ceiling(scale: str, split: str, grid: int) -> dict[str, float]:
    """IoU of each positive pair's GT union with itself after a round trip through a ``grid``² grid (area
    downsample, bilinear upsample, > 0.5), averaged per phrase and overall ("all"): what a model whose masks
    carry only that grid's detail could score. Run at the mask grid the loss sees and at the ViT token grid."""
    ds = load_pairs(ensure_worlds(scale=scale)[split])
    acc: dict[str, list] = defaultdict(list)
    for p in ds:
        if p.masks:
            gt = union_mask(ds.gt_masks(p))
            t = torch.from_numpy(gt.astype(np.float32))[None, None]
            up = F.interpolate(F.interpolate(t, size=(grid, grid), mode="area"), size=gt.shape, mode="bilinear",
                               align_corners=False)[0, 0].numpy() > 0.5
            acc[p.phrase].append(mask_iou(up, gt))
    return {"all": float(np.mean([v for vs in acc.values() for v in vs])),
            **{c: float(np.mean(v)) for c, v in acc.items()}}


def memorize(scale: str, steps: int, n_images: int = MEMORIZE_IMAGES, lr: float = 3e-4, seed: int = 0) -> dict:
    """Fit the base model (frozen_te's trainable set, one LR, full batch) to the positives of the first
    ``n_images`` watch_train images; best-query IoU on those same pairs before and after ``steps`` steps."""
    torch.manual_seed(seed)
    ds = load_pairs(ensure_worlds(scale=scale)["watch_train"])
    groups = ds.by_image()
    keys = sorted(groups)[:n_images]
    pairs = [p for k in keys for p in groups[k] if p.masks]
    sub = ds.subset(pairs)
    tok, size = runs.tokenizer_for(scale), SPECS[scale].image_size
    model = runs.load_model("base", scale)
    recipe = recipes.resolve("frozen_te", scale)
    trainable = runs.trainable_params(model, recipe)
    pixels = to_pixels([ds.image(groups[k][0]) for k in keys], size)
    index = torch.tensor([keys.index(str(p.path)) for p in pairs])
    ids, am = tok([p.phrase for p in pairs])
    targets = [make_target(ds.gt_masks(p), runs.mask_size(scale)) for p in pairs]

    def best_query() -> float:
        return float(np.mean([v["best_query_iou"] for v in mask_readout(model, sub, tok, size).values()]))

    before = best_query()
    opt = torch.optim.AdamW(list(trainable.values()), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = set_loss(forward_pairs(model, pixels, ids, am, index), targets, recipe.loss)
        if not torch.isfinite(loss["total"]):
            raise FloatingPointError(f"memorisation check: non-finite loss {float(loss['total'].detach())}")
        opt.zero_grad(set_to_none=True)
        loss["total"].backward()
        opt.step()
    return {"images": n_images, "pairs": len(pairs), "steps": steps, "lr": lr, "best_query_iou_before": before,
            "best_query_iou_after": best_query(), "mask_dice_loss_end": float(loss["mask_dice"].detach()) if steps else None}


def first_step(traj: list[dict], test) -> int | None:
    return next((r["step"] for r in traj if test(r)), None)


def main(argv=None) -> dict:
    def extra(ap):
        ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipes to diagnose")
        ap.add_argument("--memorize-steps", type=int, default=100, help="full-batch steps of the memorisation check")

    args = cli.parse(__doc__, argv, extra=extra)
    t0 = time.time()
    names = [n for n in args.recipes.split(",") if n]
    base = {"recipe": "base", "step": 0, "fraction": 0.0, **point("base", args.scale, None)}
    rows, verdicts = [base], []
    for name in names:
        ck = checkpoints(name, args.scale)
        total = ck[-1][1]
        traj = [{"recipe": name, "step": s, "fraction": round(s / total, 3), **point(name, args.scale, arg)}
                for arg, s in ck]
        rows += traj
        learned = first_step(traj, lambda r: r["watch_best_query_iou"] >= base["watch_best_query_iou"] + GAIN)
        forgot = first_step(traj, lambda r: r["lvis_kept_miou"] <= base["lvis_kept_miou"] - GAIN)
        best = max(traj, key=lambda r: r["watch_best_query_iou"])
        verdicts.append(claims.check(
            f"{name}: the watch masks are learned (best-query IoU ≥ base + {GAIN}) before LVIS mIoU falls {GAIN}",
            learned is not None and (forgot is None or learned < forgot),
            f"first watch gain at step {learned}, first LVIS loss at step {forgot} (of {total}); best watch "
            f"best-query IoU {best['watch_best_query_iou']:.3f} at step {best['step']} (base "
            f"{base['watch_best_query_iou']:.3f}), LVIS kept mIoU there {best['lvis_kept_miou']:.3f} (base "
            f"{base['lvis_kept_miou']:.3f})",
            "Post 01 Table 4.2 / Post 02 §1: watch IoU 0.23 → 0.92, LVIS mIoU 56.4 → 53.9"))
        fin = traj[-1]
        verdicts.append(claims.check(
            f"{name}: kept masks keep their size on LVIS (kept area ≥ ½ of base's at the end)",
            fin["lvis_kept_area"] >= 0.5 * base["lvis_kept_area"],
            f"LVIS kept-mask area {fin['lvis_kept_area']:.3f} vs base {base['lvis_kept_area']:.3f} (GT "
            f"{base['lvis_gt_area']:.3f}); watch {fin['watch_kept_area']:.4f} vs base {base['watch_kept_area']:.4f} "
            f"(GT {base['watch_gt_area']:.3f})"))
        verdicts.append(claims.check(
            f"{name}: the score read-out is not the blocker (best-query − kept watch IoU < 0.02 at the end)",
            fin["watch_best_query_iou"] - fin["watch_kept_iou"] < 0.02,
            f"best-query {fin['watch_best_query_iou']:.3f} vs kept {fin['watch_kept_iou']:.3f}"))

    paths = ensure_worlds(scale=args.scale)
    concept_of = {p.pair_id: p.phrase for p in load_pairs(paths["watch_test"]) if p.masks}
    stats = concept_stats(args.scale)
    models = ["base", *names]
    per = {m: per_concept(m, args.scale, concept_of) for m in models}
    concepts = [{"concept": c, **stats[c], **{f"best_query_iou_{m}": per[m].get(c) for m in models}}
                for c in sorted(stats, key=lambda c: -stats[c]["gt_cells"]) if c in per["base"]]
    big = [c for c in concepts if c["gt_cells"] >= runs.mask_size(args.scale) ** 2 / 16]
    for m in names:
        gain = float(np.mean([c[f"best_query_iou_{m}"] - c["best_query_iou_base"] for c in big])) if big else None
        verdicts.append(claims.check(
            f"{m}: even the large concepts (GT ≥ 1/16 of the mask grid) gain ≥ {GAIN} best-query IoU",
            None if gain is None else gain >= GAIN,
            f"mean gain over {len(big)} large concepts " + ("n/a" if gain is None else f"{gain:+.3f}")))

    grids = {"mask": runs.mask_size(args.scale), "token": SPECS[args.scale].grid}
    ceil = {g: {split: resolution_ceiling(args.scale, split, n) for split in ("watch_test", "lvis_val")}
            for g, n in grids.items()}
    ceiling = {f"{g}_grid_{n}": {split: c["all"] for split, c in ceil[g].items()} for g, n in grids.items()}
    for g, what in (("mask", "the mask grid the loss sees"), ("token", "the ViT token grid")):
        c = ceil[g]
        verdicts.append(claims.check(
            f"{what} is not the blocker (watch resolution ceiling ≥ {CEILING})", c["watch_test"]["all"] >= CEILING,
            f"GT through the {grids[g]}² grid: watch_test IoU {c['watch_test']['all']:.3f}, "
            f"lvis_val {c['lvis_val']['all']:.3f}"))
    for c in concepts:
        c["token_grid_ceiling"] = ceil["token"]["watch_test"].get(c["concept"])
    paired = [(c["token_grid_ceiling"], c["best_query_iou_base"]) for c in concepts
              if c["token_grid_ceiling"] is not None and c["best_query_iou_base"] is not None]
    rho, pval = spearmanr(*zip(*paired))
    verdicts.append(claims.check(
        f"the base segments the concepts the token grid resolves (Spearman ρ ≥ {RHO} over concepts, token-grid "
        "ceiling vs base best-query IoU)", bool(rho >= RHO),
        f"ρ = {rho:.2f} (p = {pval:.2g}) over {len(paired)} concepts"))
    by_res = {}
    for m in names:
        gains = {res: [c[f"best_query_iou_{m}"] - c["best_query_iou_base"] for c in concepts
                       if c["token_grid_ceiling"] is not None and (c["token_grid_ceiling"] >= RESOLVED) == (res == "resolved")]
                 for res in ("resolved", "sub_token")}
        by_res[m] = {res: {"concepts": len(g), "mean_gain": float(np.mean(g)) if g else None} for res, g in gains.items()}
        hi, lo = by_res[m]["resolved"]["mean_gain"], by_res[m]["sub_token"]["mean_gain"]
        verdicts.append(claims.check(
            f"{m}: its watch gains sit on the concepts the token grid resolves (mean best-query gain on concepts with "
            f"token-grid ceiling ≥ {RESOLVED} exceeds the rest's by ≥ {GAIN})",
            None if hi is None or lo is None else hi - lo >= GAIN,
            f"{hi:+.3f} over {by_res[m]['resolved']['concepts']} resolved concepts vs {lo:+.3f} over "
            f"{by_res[m]['sub_token']['concepts']} sub-token ones" if hi is not None and lo is not None else "n/a"))
    mem = memorize(args.scale, args.memorize_steps)
    verdicts.append(claims.check(
        f"the model can draw watch masks it is fitted to (memorisation best-query IoU ≥ {MEMORIZED})",
        mem["best_query_iou_after"] >= MEMORIZED,
        f"{mem['pairs']} pairs on {mem['images']} watch_train images, {mem['steps']} full-batch steps at lr {mem['lr']:g}: "
        f"best-query IoU {mem['best_query_iou_before']:.3f} → {mem['best_query_iou_after']:.3f}"))
    train_fit = [{"recipe": m, "watch_train_best_query_iou": readout(m, args.scale, "watch_train", None)["best_query_iou"],
                  "watch_test_best_query_iou": readout(m, args.scale, "watch_test", None)["best_query_iou"]} for m in models]
    for r in train_fit[1:]:
        verdicts.append(claims.check(
            f"{r['recipe']}: fits its own training pairs (watch_train best-query IoU ≥ base + {GAIN})",
            r["watch_train_best_query_iou"] >= train_fit[0]["watch_train_best_query_iou"] + GAIN,
            f"watch_train {r['watch_train_best_query_iou']:.3f} vs base {train_fit[0]['watch_train_best_query_iou']:.3f} "
            f"(watch_test {r['watch_test_best_query_iou']:.3f} vs {train_fit[0]['watch_test_best_query_iou']:.3f})"))

    def pub(column: str) -> str:
        return " → ".join(published.value("post02", "3.1", r, column)["printed"]
                          for r in ("base SAM3", "frozen-TE FT (no replay)"))

    headline_published = (f"Post 02 Table 3.1, base SAM3 → frozen-TE FT (no replay): watch IoU {pub('Watch IoU')}, "
                          f"neg_correct {pub('SA-Co neg_correct')}, LVIS mIoU {pub('LVIS mIoU')}")
    # The posts' headline on each final model (Post 01 Table 4.2 / Post 02 Table 3.1): watch IoU up, SA-Co-like
    # refusal down, LVIS-like mIoU kept.
    final = {r["recipe"]: r for r in rows}  # the last row of each recipe is its final model
    headline = []
    for m in models:
        sc = evaluate_run(m, args.scale, ("saco",))["saco"]
        headline.append({"recipe": m, "watch_iou": final[m]["watch_kept_iou"], "lvis_miou": final[m]["lvis_kept_miou"],
                         "saco_neg_correct": sc["neg_correct"], "saco_cgF1": sc["cgF1"]})
    b = headline[0]
    for h in headline[1:]:
        dw, dn, dl = h["watch_iou"] - b["watch_iou"], h["saco_neg_correct"] - b["saco_neg_correct"], h["lvis_miou"] - b["lvis_miou"]
        verdicts.append(claims.check(
            f"{h['recipe']}: the posts' headline shape (watch IoU ≥ base + {GAIN}, SA-Co-like neg_correct ≤ base − "
            f"{COLLAPSE}, LVIS-like mIoU ≥ base − {GAIN})", dw >= GAIN and dn <= -COLLAPSE and dl >= -GAIN,
            f"watch IoU {b['watch_iou']:.3f} → {h['watch_iou']:.3f} ({dw:+.3f}), neg_correct "
            f"{b['saco_neg_correct']:.3f} → {h['saco_neg_correct']:.3f} ({dn:+.3f}), LVIS mIoU {b['lvis_miou']:.3f} → "
            f"{h['lvis_miou']:.3f} ({dl:+.3f})",
            headline_published))

    notes = ("Best-query IoU = the best single query mask (σ > 0.5, resized to the image) against the GT union, with "
             "no score gate; kept IoU = the posts' read-out. `gt_cells` = mean GT-union area on the "
             f"{runs.mask_size(args.scale)}×{runs.mask_size(args.scale)} mask grid the loss sees. "
             "Rows are checkpoints; `fraction` = step / run length. `token_grid_ceiling` = the concept's GT through "
             f"the {grids['token']}² ViT token grid.\n\n### Per watch concept (watch_test best-query IoU)\n\n"
             + markdown_table(concepts))
    section.emit(args, "watch-learnability", rows, t0=t0, config={"recipes": names, "scale": args.scale,
                                                                  "min_step": MIN_STEP, "gain": GAIN,
                                                                  "memorize_steps": args.memorize_steps},
                 title="Issue #3 diagnosis — watch learning vs forgetting",
                 checks=verdicts, extra={"per_concept": concepts, "resolution_ceiling": ceiling,
                                                    "token_ceiling_vs_base_iou": {"spearman_rho": float(rho),
                                                                                  "p_value": float(pval)},
                                                    "gain_by_token_resolution": by_res,
                                                    "headline": headline,
                                                    "memorization": mem, "train_fit": train_fit}, notes=notes, figure=figure,
                 section="diagnostics")
    for v in verdicts:
        print(f"[{v['verdict']}] {v['check']}: {v['detail']}")
    return {"rows": rows, "verdicts": verdicts}


def figure(result: dict):
    """Watch IoU and LVIS-like mIoU against the fraction of each run (solid = kept, dashed = best query), and per
    watch concept the base's and the best fine-tune's best-query IoU against the concept's token-grid ceiling."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    rows = result["rows"]
    base = rows[0]
    for ax, (kept, bestq, title) in zip(axes, (("watch_kept_iou", "watch_best_query_iou", "watch test IoU"),
                                               ("lvis_kept_miou", "lvis_best_query_miou", "LVIS-like val mIoU"))):
        for i, name in enumerate(dict.fromkeys(r["recipe"] for r in rows[1:])):
            tr = [base] + [r for r in rows if r["recipe"] == name]
            x = [r["fraction"] for r in tr]
            c = f"C{i}"
            ax.plot(x, [r[kept] for r in tr], "-o", ms=3, color=c, label=f"{name} kept")
            ax.plot(x, [r[bestq] for r in tr], "--", color=c, alpha=0.7, label=f"{name} best query")
        ax.set(xlabel="fraction of the fine-tune", title=title, ylim=(0, 1))
    axes[0].legend(fontsize=7)
    concepts = [c for c in result.get("per_concept", []) if c.get("token_grid_ceiling") is not None]
    models = [k[len("best_query_iou_"):] for k in (concepts[0] if concepts else {}) if k.startswith("best_query_iou_")]
    tuned = [m for m in models if m != "base"]
    best = max(tuned, key=lambda m: np.mean([c[f"best_query_iou_{m}"] for c in concepts])) if tuned else None
    for i, m in enumerate(["base"] + ([best] if best else [])):  # base and the fine-tune that learned most
        axes[2].scatter([c["token_grid_ceiling"] for c in concepts], [c[f"best_query_iou_{m}"] for c in concepts],
                        s=14, color=f"C{i}", alpha=0.8, label=m)
    axes[2].plot([0, 1], [0, 1], ":", color="grey")
    axes[2].set(xlabel="token-grid ceiling (GT through the ViT grid)", ylabel="best-query IoU",
                title="per watch concept", xlim=(0, 1), ylim=(0, 1))
    axes[2].legend(fontsize=7)
    fig.suptitle(f"Watch learning vs forgetting ({result['scale']})")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
