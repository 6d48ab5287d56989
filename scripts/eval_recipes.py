"""`make recipes` / `make eval`: train (cached) and score base + the Post 01 and Post 02 recipes.

Writes results/recipes.json (the one file later tables read: per recipe, watch / saco / lvis
scores with per-task values) and results/recipes.md (the headline table), and shows the posts'
headline phenomenon: after ``frozen_te`` watch IoU rises, SA-Co-like neg_correct collapses from
base, and LVIS-like positive mIoU stays within a few points of base (Post 01 Table 9.2, Post 02 §1).

Usage: python scripts/eval_recipes.py [--scale tiny] [--recipes a,b,...] [--train-only]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import recipes, runpool, runs
from common.io import RESULTS, atomic_write_json, atomic_write_text, exclusive, read_json, run_meta
from common.worlds import worlds_hash

DEFAULT = ("base",) + recipes.POST01 + recipes.POST01_LORA + recipes.POST02 + tuple(
    n for pair in recipes.SEED_REPEATS.items() for n in pair if n not in recipes.POST01)


def seed_spread(scores: dict[str, dict]) -> dict:
    """|seed 0 − seed 1| of every scalar metric for each recipe retrained with another seed
    (``recipes.SEED_REPEATS``), and the largest over them: ``{"pairs": {recipe: {"suite.metric": Δ}}, "max": {...}}``."""
    pairs = {}
    for a, b in recipes.SEED_REPEATS.items():
        if a in scores and b in scores:
            pairs[a] = {f"{suite}.{k}": abs(v - scores[b][suite][k]) for suite in ("watch", "saco", "lvis")
                        for k, v in scores[a].get(suite, {}).items()
                        if isinstance(v, (int, float)) and isinstance(scores[b].get(suite, {}).get(k), (int, float))}
    keys = sorted({k for p in pairs.values() for k in p})
    return {"pairs": pairs, "max": {k: max(p[k] for p in pairs.values() if k in p) for k in keys}}


def headline_rows(scores: dict[str, dict]) -> list[dict]:
    """One row per recipe: watch IoU (all concepts; those the base saw in pre-training; the unseen jargon) / Dice,
    SA-Co neg_correct / cgF1 / IL_MCC / pmF1 / pos_mean_IoU, LVIS mIoU / pmF1."""
    rows = []
    for name, s in scores.items():
        w, sa, lv = s.get("watch", {}), s.get("saco", {}), s.get("lvis", {})
        rows.append({"recipe": name, "watch_iou": w.get("iou"), "watch_iou_seen": w.get("iou_seen_concepts"),
                     "watch_iou_jargon": w.get("iou_unseen_concepts"), "watch_dice": w.get("dice"),
                     "saco_neg_correct": sa.get("neg_correct"), "saco_cgF1": sa.get("cgF1"),
                     "saco_IL_MCC": sa.get("IL_MCC"), "saco_pmF1": sa.get("pmF1"),
                     "saco_pos_mean_IoU": sa.get("pos_mean_IoU"), "lvis_mIoU": lv.get("mIoU"), "lvis_pmF1": lv.get("pmF1"),
                     "train_wall_s": s.get("train", {}).get("train_wall_s"), "steps": s.get("train", {}).get("steps")})
    return rows


def markdown(rows: list[dict]) -> str:
    import pandas as pd

    df = pd.DataFrame(rows).set_index("recipe")
    return df.to_markdown(floatfmt=".3f") + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="tiny", choices=("micro", "tiny"))
    ap.add_argument("--recipes", default=",".join(DEFAULT))
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--jobs", type=int, default=None, help="runs trained at once, one thread each (default $JOBS or CPUs)")
    ap.add_argument("--out", default=None, help="output JSON (default results/recipes.json; micro: results/micro/)")
    args = ap.parse_args()
    t0 = time.time()
    names = [n for n in args.recipes.split(",") if n]
    unknown = [n for n in names if n != "base" and n not in recipes.RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; known: {sorted(recipes.RECIPES)}")
    out = Path(args.out) if args.out else (RESULTS / "recipes.json" if args.scale == "tiny" else RESULTS / "micro" / "recipes.json")
    if args.train_only:
        for name in names:
            if name != "base":
                runs.train(name, args.scale)
        return
    # trained and scored in worker processes; every run and its evaluation is cached beside the run
    done = runpool.train_and_score(names, args.scale, suites=("watch", "saco", "lvis"), jobs=args.jobs)
    base = runs.base_hash(args.scale, worlds_hash(args.scale))
    with exclusive(out.with_suffix(".lock")):  # several `eval` processes may share one results file
        old = read_json(out) if out.exists() else {}
        scores = old.get("recipes", {}) if old.get("base_hash") == base else {}  # never mix two bases' scores
        for name, (run, s) in done.items():
            scores[name] = {**s, "train": run.summary if run else {}}
            print(name, {k: round(v, 3) if isinstance(v, float) else v for k, v in headline_rows({name: scores[name]})[0].items()})
        order = [n for n in DEFAULT if n in scores] + sorted(n for n in scores if n not in DEFAULT)
        scores = {n: scores[n] for n in order}
        atomic_write_json(out, {"meta": run_meta(vars(args), 0, t0), "scale": args.scale, "base_hash": base,
                                "recipes": scores, "seed_spread": seed_spread(scores)})
        atomic_write_text(out.with_suffix(".md"), f"# Recipes at {args.scale} scale\n\n" + markdown(headline_rows(scores)))


if __name__ == "__main__":
    main()
