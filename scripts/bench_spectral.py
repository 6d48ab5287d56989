"""Benchmark common.spectral: the full per-tensor spectral report of one state-dict diff, batched-by-shape
torch float64 SVD vs a per-tensor NumPy loop — on a synthetic diff shaped like a tiny SAM3 (200 tensors) and,
when that run is trained, on the real ``frozen_te`` − base checkpoint diff.

Usage: python scripts/bench_spectral.py [--tensors 200] [--repeats 3] [--recipe frozen_te] [--scale tiny]
Prints both timings and the ratio (loop / batched) and writes them to results/bench/spectral.json.
Timings depend on the machine's load: run it on an idle machine.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import spectral as sp
from common.io import RESULTS, atomic_write_json, run_meta

SHAPES = [(128, 128), (512, 128), (128, 512), (96, 96), (384, 128), (256, 256), (128, 1024), (64, 64)]


def synthetic_states(n_tensors: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Base / tuned state dicts: base ~ N(0, 0.02²), tuned = base + low-rank signal + small noise."""
    g = torch.Generator().manual_seed(seed)
    base, tuned = {}, {}
    for i in range(n_tensors):
        m, n = SHAPES[i % len(SHAPES)]
        w = 0.02 * torch.randn(m, n, generator=g)
        k = 1 + i % 16
        d = 1e-3 * torch.randn(m, k, generator=g) @ torch.randn(k, n, generator=g) + 1e-4 * torch.randn(m, n, generator=g)
        base[f"layer{i}.weight"], tuned[f"layer{i}.weight"] = w, w + d
        base[f"layer{i}.bias"] = tuned[f"layer{i}.bias"] = torch.zeros(m)
    return base, tuned


def numpy_loop_report(base: dict, tuned: dict) -> list[dict]:
    """The same per-tensor numbers as spectral_report, one np.linalg.svd call per tensor."""
    rows = []
    for k, b in base.items():
        if b.ndim < 2:
            continue
        bd = sp.as_matrix(b).numpy()
        d = sp.as_matrix(tuned[k]).numpy() - bd
        m, n = d.shape
        s = np.linalg.svd(d, compute_uv=False)
        fro = float(np.sqrt((s**2).sum()))
        e = s**2
        if fro == 0:  # an untouched tensor: common.spectral reports e90 = ER = 0
            rows.append({"name": k, "fro_delta": 0.0, "rel_change": 0.0, "mp_rank_fro": 0, "mp_rank_rms": 0,
                         "gd_rank": 0, "e90": 0, "entropy_er": 0.0, "entropy_er_energy": 0.0})
            continue
        p1, p2 = s / s.sum(), e / e.sum()
        rows.append({
            "name": k, "fro_delta": fro, "rel_change": fro / np.linalg.norm(bd),
            "mp_rank_fro": int((s > sp.mp_edge_fro(fro, m, n)).sum()),
            "mp_rank_rms": int((s > sp.mp_edge_rms(fro, m, n)).sum()),
            "gd_rank": int((s > sp.gd_omega(min(m, n) / max(m, n)) * np.median(s)).sum()),
            "e90": int(np.searchsorted(np.cumsum(e), 0.9 * e.sum() * (1 - 1e-12)) + 1),
            "entropy_er": float(np.exp(-(p1[p1 > 0] * np.log(p1[p1 > 0])).sum())),
            "entropy_er_energy": float(np.exp(-(p2[p2 > 0] * np.log(p2[p2 > 0])).sum())),
        })
    return rows


def time_both(base: dict, tuned: dict, repeats: int) -> dict:
    """Best-of-``repeats`` seconds of the batched report and of the NumPy loop on one diff (checked to agree)."""
    t_b, t_l = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        df = sp.spectral_report(base, tuned)
        t_b.append(time.perf_counter() - t)
        t = time.perf_counter()
        rows = numpy_loop_report(base, tuned)
        t_l.append(time.perf_counter() - t)
    ref = {r["name"]: r for r in rows}
    for r in df.itertuples():
        assert r.mp_rank_fro == ref[r.name]["mp_rank_fro"] and r.e90 == ref[r.name]["e90"], r.name
        assert abs(r.entropy_er - ref[r.name]["entropy_er"]) <= 1e-8 * r.entropy_er, r.name
    tb, tl = min(t_b), min(t_l)
    return {"tensors": len(df), "shapes": len({r.shape for r in df.itertuples()}),
            "torch_threads": torch.get_num_threads(), "batched_s": tb, "numpy_loop_s": tl,
            "ratio_loop_over_batched": tl / tb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tensors", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--recipe", default="frozen_te",
                    help="also time the real diff of this trained recipe vs base at --scale ('' to skip; "
                         "skipped with a message when the run is not trained)")
    ap.add_argument("--scale", default="tiny", choices=("micro", "tiny"))
    args = ap.parse_args()
    t0 = time.time()
    rows = [{"diff": f"synthetic ({args.tensors} tensors, tiny-SAM3 shapes)",
             **time_both(*synthetic_states(args.tensors), args.repeats)}]
    if args.recipe:
        from common import runs

        if runs.trained(args.recipe, args.scale):
            base = runs.load_model("base", args.scale).state_dict()
            tuned = runs.load_model(args.recipe, args.scale, train_if_missing=False).state_dict()
            rows.append({"diff": f"{args.recipe} − base ({args.scale})", **time_both(base, tuned, args.repeats)})
        else:
            print(f"{args.recipe} is not trained at {args.scale}: timing the synthetic diff only")
    for r in rows:
        print(f"{r['diff']}: {r['tensors']} tensors, {r['shapes']} shapes, torch threads={r['torch_threads']}: "
              f"batched torch float64 {r['batched_s']:.3f} s, per-tensor NumPy loop {r['numpy_loop_s']:.3f} s "
              f"(best of {args.repeats}): ratio {r['ratio_loop_over_batched']:.2f}x")
    atomic_write_json(RESULTS / "bench" / "spectral.json", {"meta": run_meta(vars(args), 0, t0), "rows": rows})


if __name__ == "__main__":
    main()
