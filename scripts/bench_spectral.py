"""Benchmark common.spectral: the full per-tensor spectral report of one synthetic state-dict diff
shaped like a tiny SAM3 (200 tensors), batched-by-shape torch float64 SVD vs a per-tensor NumPy loop.

Usage: python scripts/bench_spectral.py [--tensors 200] [--repeats 3]
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
        bd = b.double().numpy()
        d = tuned[k].double().numpy() - bd
        m, n = d.shape
        s = np.linalg.svd(d, compute_uv=False)
        fro = float(np.sqrt((s**2).sum()))
        e = s**2
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tensors", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    t0 = time.time()
    base, tuned = synthetic_states(args.tensors)
    t_b, t_l = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        df = sp.spectral_report(base, tuned)
        t_b.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rows = numpy_loop_report(base, tuned)
        t_l.append(time.perf_counter() - t0)
    # sanity: both paths agree
    ref = {r["name"]: r for r in rows}
    for r in df.itertuples():
        assert r.mp_rank_fro == ref[r.name]["mp_rank_fro"] and r.e90 == ref[r.name]["e90"], r.name
        assert abs(r.entropy_er - ref[r.name]["entropy_er"]) < 1e-8 * r.entropy_er
    tb, tl = min(t_b), min(t_l)
    print(f"{len(df)} tensors, {len({r.shape for r in df.itertuples()})} shapes, torch threads={torch.get_num_threads()}")
    print(f"batched torch float64 spectral_report: {tb:.3f} s (best of {args.repeats})")
    print(f"per-tensor numpy np.linalg.svd loop:   {tl:.3f} s (best of {args.repeats})")
    print(f"ratio loop / batched: {tl / tb:.2f}x")
    row = {"tensors": len(df), "shapes": len({r.shape for r in df.itertuples()}), "torch_threads": torch.get_num_threads(),
           "batched_s": tb, "numpy_loop_s": tl, "ratio_loop_over_batched": tl / tb}
    atomic_write_json(RESULTS / "bench" / "spectral.json", {"meta": run_meta(vars(args), 0, t0), "rows": [row]})


if __name__ == "__main__":
    main()
