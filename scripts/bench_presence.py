"""Benchmark (Post 02 §5): the presence_only repair trained on the cached gate input vs through the full forward.

Runs :func:`common.presence.train_gate` on the recipe's balanced watch pairs, in a temporary directory (the
recipe cache is not touched): the one-time cache of decoder[5].q0, the cached steps, and — in the same
process, on the same batches — forward + backward through the whole model for a few steps. Prints the
per-step ratio and the whole repair's wall time, and writes results/bench/presence.json.

Usage: python scripts/bench_presence.py [--scale tiny] [--from lvis_replay] [--threads N]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from common import recipes, runs
from common.io import RESULTS, atomic_write_json, run_meta

TARGET_SPEEDUP, TARGET_REPAIR_S = 100.0, 30.0  # issue #17: ≥ 100× per step, whole tiny repair ≤ 30 s


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="tiny", choices=("micro", "tiny"))
    ap.add_argument("--from", dest="source", default="lvis_replay")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench" / "presence.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    recipe = replace(recipes.resolve(recipes.PRESENCE_ONLY, args.scale), init=args.source)
    model = runs.load_model(args.source, args.scale)
    from common.data import load_pairs
    from common.model import SPECS
    from common.presence import PAIRS_PER_CLASS, balanced_pairs, train_gate
    from common.worlds import ensure_worlds

    paths = ensure_worlds(scale=args.scale)
    pos_ds, neg_ds = (load_pairs(paths[s.split]) for s in recipe.streams[:2])
    items = balanced_pairs([(pos_ds, p) for p in pos_ds if p.masks], [(neg_ds, p) for p in neg_ds if not p.masks],
                           PAIRS_PER_CLASS[args.scale], recipe.seed)
    with tempfile.TemporaryDirectory() as d:
        s = train_gate(model, recipe, Path(d), items, runs.tokenizer_for(args.scale), SPECS[args.scale].image_size,
                       progress=False).summary
    row = {k: s[k] for k in ("n_pairs", "steps", "cache_wall_s", "train_wall_s", "step_s", "full_forward_step_s",
                             "speedup_per_step", "repair_wall_s")}
    row.update(threads=torch.get_num_threads(), speedup_target=TARGET_SPEEDUP, repair_target_s=TARGET_REPAIR_S,
               speedup_met=row["speedup_per_step"] >= TARGET_SPEEDUP, repair_met=row["repair_wall_s"] <= TARGET_REPAIR_S)
    atomic_write_json(args.out, {"meta": run_meta(vars(args) | {"out": str(args.out)}, recipe.seed, t0), "rows": [row]})
    print(f"presence_only repair [{args.scale}, {row['threads']} thread(s)]: cache {row['cache_wall_s']:.1f} s for "
          f"{sum(row['n_pairs'].values())} pairs; {row['steps']} cached steps {row['train_wall_s']:.2f} s "
          f"({row['step_s'] * 1e3:.2f} ms/step); full forward {row['full_forward_step_s']:.3f} s/step → "
          f"{row['speedup_per_step']:.0f}× per step (target ≥ {TARGET_SPEEDUP:.0f}×); whole repair "
          f"{row['repair_wall_s']:.1f} s (target ≤ {TARGET_REPAIR_S:.0f} s)")
    return row


if __name__ == "__main__":
    main()
