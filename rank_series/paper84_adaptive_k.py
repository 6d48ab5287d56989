"""Rank series, Paper 84 — adaptive per-layer K vs uniform K.

Per-layer K from the K=32-constrained gradient ER of each layer at the start point (fresh by default) (Paper 83's
basis for its "K=28–36" assignments): K_l = round(32 · ER_l / mean_l ER_l), so the total budget matches
uniform K=32.  Adapter-only training compared with uniform K=32 and K=64.  The series table says
"Adaptive≈uniform; K=64 dominates by 0.697".  Writes results/rank_series/paper84.{json,md,png,svg}.
"""
from __future__ import annotations

from rank_series import adapters as A
from rank_series import gradients as G
from rank_series import lm
from rank_series import report as R
from rank_series.paper81_k_schedules import curves_figure


def adaptive_k(scale: str, seed: int, corpus: str | None, recompute: bool, start: str = "fresh") -> dict[str, int]:
    """{weight name: K} from the per-layer K=32-constrained ER at step 1 of Paper 86's trajectory from ``start``."""
    tr = G.gradient_trajectory(scale, start, seed, corpus, recompute=recompute)
    pl = tr["steps"]["1"]["per_layer"]
    mean = sum(p["ker32_svd"] for p in pl.values()) / len(pl)
    s = lm.SCALES[scale]
    c = lm.build_corpus(s.vocab, corpus)
    names = lm.block_weights(lm.build_model(s, c.vocab, 0))
    return {n: max(1, int(round(32 * pl[str(lm.layer_of(n))]["ker32_svd"] / mean))) for n in names}


def main(argv: list[str] | None = None) -> dict:
    args = R.parse(__doc__, argv)
    t0 = R.now()
    start = args.start or "fresh"
    runs = {"uniform K=32": [], "adaptive per-layer K (mean 32)": [], "uniform K=64": []}
    assigned = {}
    for sd in args.seeds:
        runs["uniform K=32"].append(A.train_adapter(args.scale, sd, 32, start=start, corpus=args.corpus, recompute=args.recompute, label="K=32"))
        ka = adaptive_k(args.scale, sd, args.corpus, args.recompute, start)
        assigned[sd] = sorted({lm.layer_of(n): k for n, k in ka.items()}.items())
        runs["adaptive per-layer K (mean 32)"].append(A.train_adapter(args.scale, sd, ka, start=start, corpus=args.corpus,
                                                                      recompute=args.recompute, label="adaptive"))
        runs["uniform K=64"].append(A.train_adapter(args.scale, sd, 64, start=start, corpus=args.corpus, recompute=args.recompute, label="K=64"))
    rows = [{"config": n, "final_loss": R.ms(r["final_loss"] for r in rs), "trainable": rs[0]["trainable"]} for n, rs in runs.items()]
    ps = {n: [r["final_loss"] for r in rs] for n, rs in runs.items()}
    u, a, k64 = ps["uniform K=32"], ps["adaptive per-layer K (mean 32)"], ps["uniform K=64"]
    diff = R.ms(x - y for x, y in zip(a, u))
    gap = R.ms(x - y for x, y in zip(u, k64))
    tol = max(2 * diff["sd"], 0.005)
    v = {"adaptive_approx_uniform": R.verdict(abs(diff["mean"]) <= tol,
                                              "|mean(adaptive − uniform K=32)| ≤ max(2·sd of the paired difference, 0.005)",
                                              f"difference {diff['mean']:+.4f} ± {diff['sd']:.4f}"),
         "k64_dominates": R.verdict(all(g > 0 for g in gap["per_seed"]), "K=64 final loss below K=32 in every seed",
                                    f"gap K32−K64 = {gap['mean']:.4f} ± {gap['sd']:.4f} (page 0.697 on its own model/steps; "
                                    "value not comparable)")}
    res = {"table": rows, "assigned_k_per_layer": assigned, "adaptive_minus_uniform": diff, "k32_minus_k64": gap,
           "page_gap": R.pval("series", "84", "K=64 minus K=32 loss gap"), "verdicts": v,
           "curves": {n: [r["curve"] for r in rs] for n, rs in runs.items()},
           "page_claim": R.claim("84")["printed"]}
    md = R.md_table(rows, [("config", "config"), ("trainable", "trainable α"), ("final_loss", "final loss")], nd=4)
    md += f"\n\nPer-layer K (seed {args.seeds[0]}): {assigned[args.seeds[0]]}\n\nPage (series table): {res['page_claim']}\n\n"
    md += "\n".join(f"- **{k}**: {x['verdict']} — rule: {x['rule']}. {x.get('note', '')}" for k, x in v.items())
    R.write(args, "paper84", "Rank series Paper 84 — adaptive per-layer K vs uniform K",
            {"start": start, "rule": "K_l = round(32·ER32_l/mean ER32)"}, res, md, t0,
            curves_figure(res["curves"], "Paper 84 — adaptive vs uniform K"))
    return res


if __name__ == "__main__":
    main()
