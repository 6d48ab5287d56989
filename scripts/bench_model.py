"""Benchmark: parameter counts and seconds per training step of the micro/tiny SAM3 on this CPU.

One step = shared-vision forward of B images × P phrases, the full set loss, backward, AdamW.
Prints a table and writes results/bench/model.json. Usage: python scripts/bench_model.py [--steps 20]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common.forward import forward_pairs
from common.io import RESULTS, atomic_write_json, run_meta
from common.losses import LossWeights, make_target, set_loss
from common.model import SPECS, PRESENCE_PREFIXES, WordTokenizer, build_model, count_params, fine_group_of, module_of


def bench(scale: str, images: int, phrases: int, steps: int) -> dict:
    """Median s/step of a full training step (one positive per image, the rest negatives)."""
    from common.runs import tokenizer_for

    spec = SPECS[scale]
    tok = tokenizer_for(scale)  # the worlds' real word vocabulary
    words = tok.words[len(WordTokenizer.SPECIAL):]
    model = build_model(scale, len(tok)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    px = torch.randn(images, 3, spec.image_size, spec.image_size)
    ids, am = tok([f"{words[rng.integers(len(words))]} {words[rng.integers(len(words))]}" for _ in range(images * phrases)])
    idx = torch.arange(images).repeat_interleave(phrases)
    size = spec.mask_grid
    targets = []
    for i in range(images * phrases):
        m = np.zeros((1, spec.image_size, spec.image_size), bool)
        if i % phrases == 0:
            m[0, 20:60, 30:80] = True
            targets.append(make_target(m, size))
        else:
            targets.append(make_target(m[:0], size))
    rows = torch.arange(0, images * phrases, phrases)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        out = forward_pairs(model, px, ids, am, idx, mask_rows=rows)
        loss = set_loss(out, targets, LossWeights())["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    groups: dict[str, int] = {}
    for n, p in model.named_parameters():
        groups[fine_group_of(n)] = groups.get(fine_group_of(n), 0) + p.numel()
    modules: dict[str, int] = {}
    for n, p in model.named_parameters():
        modules[module_of(n)] = modules.get(module_of(n), 0) + p.numel()
    presence = [n for n, _ in model.named_parameters() if n.startswith(PRESENCE_PREFIXES)]
    return {"scale": scale, "params": count_params(model), "modules": modules, "groups": groups,
            "presence_head_params": count_params(model, presence), "presence_head_tensors": len(presence),
            "images": images, "phrases_per_image": phrases, "s_per_step_median": float(np.median(times[2:] or times)),
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    t0 = time.time()
    torch.manual_seed(0)
    rows = [bench("micro", 2, 1, args.steps), bench("tiny", 2, 1, args.steps), bench("tiny", 4, 4, args.steps)]
    for r in rows:
        print(f"{r['scale']:6s} params={r['params']:>9,d}  batch={r['images']} img × {r['phrases_per_image']} phrases  "
              f"{r['s_per_step_median']:.3f} s/step  (presence head {r['presence_head_params']:,} params, "
              f"{r['presence_head_tensors']} tensors)")
    atomic_write_json(RESULTS / "bench" / "model.json", {"meta": run_meta(vars(args), 0, t0), "rows": rows})


if __name__ == "__main__":
    main()
