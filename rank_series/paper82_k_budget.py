"""Rank series, Paper 82 — the K budget curve: final held-out loss vs adapter K.

Trains only the K-basis adapter α's (ΔW = U_K diag(α) V_Kᵀ on every block weight; fresh and pretrained
starts, or one with --start) for the scale's step budget at K ∈ {2, 4, 8, 16, 32, 64}, with a random-orthonormal-basis null at
K ∈ {16, 64}.  The series table says "K=16 dead zone; K=64 best quality" (and Paper 84/86: K=64 beats
K=32 by 0.697 loss units).  Writes results/rank_series/paper82.{json,md,png,svg}.
"""
from __future__ import annotations

from rank_series import adapters as A
from rank_series import report as R

KS = (2, 4, 8, 16, 32, 64)
NULL_KS = (16, 64)


def one_start(args, start: str) -> dict:
    """Rows and verdicts of the budget curve from one starting point."""
    runs = {K: [A.train_adapter(args.scale, sd, K, start=start, corpus=args.corpus, recompute=args.recompute,
                                label=f"K={K}") for sd in args.seeds] for K in KS}
    nulls = {K: [A.train_adapter(args.scale, sd, K, basis="random", start=start, corpus=args.corpus,
                                 recompute=args.recompute, label=f"K={K} random") for sd in args.seeds] for K in NULL_KS}
    rows = []
    for K in KS:
        row = {"K": K, "final_loss": R.ms(r["final_loss"] for r in runs[K]), "loss0": R.ms(r["loss0"] for r in runs[K]),
               "trainable": runs[K][0]["trainable"]}
        if K in nulls:
            row["final_loss_random_basis"] = R.ms(r["final_loss"] for r in nulls[K])
        rows.append(row)
    L = {r["K"]: r["final_loss"]["mean"] for r in rows}
    per_seed = {K: [r["final_loss"] for r in runs[K]] for K in KS}
    gain = {K: L[KS[i - 1]] - L[K] for i, K in enumerate(KS) if i}
    v = {
        "k64_best": R.verdict(min(L, key=L.get) == 64, "K=64 has the lowest mean final loss of all K",
                              f"best K = {min(L, key=L.get)}"),
        "k16_dead_zone": R.verdict(gain[16] < min(gain[8], gain[32]),
                                   "'dead zone' read as: the 8→16 loss gain is smaller than both the 4→8 and 16→32 gains",
                                   "gains: " + ", ".join(f"{KS[i - 1]}→{K}: {gain[K]:.4f}" for i, K in enumerate(KS) if i)),
        "k64_beats_k32": R.verdict(all(a < b for a, b in zip(per_seed[64], per_seed[32])),
                                   "K=64 final loss below K=32 in every seed (page: by 0.697 loss units)",
                                   f"ours gap {L[32] - L[64]:.4f} vs page {R.pval('series', '84', 'K=64 minus K=32 loss gap')}"),
        "svd_basis_beats_random": R.verdict(all(L[K] < rows[KS.index(K)]["final_loss_random_basis"]["mean"] for K in NULL_KS),
                                            "null check: SVD basis final loss below the random-basis loss at K=16 and 64"),
    }
    return {"table": rows, "verdicts": v, "curves": {f"K={K}": [r["curve"] for r in runs[K]] for K in KS}}


def main(argv: list[str] | None = None) -> dict:
    args = R.parse(__doc__, argv)
    t0 = R.now()
    starts = [args.start] if args.start else ["fresh", "pretrained"]
    res: dict = {"starts": {st: one_start(args, st) for st in starts},
                 "page_claim": R.claim("82")["printed"]}
    md = []
    for st in starts:
        md.append(f"## Start: {st}\n")
        md.append(R.md_table(res["starts"][st]["table"], [
            ("K", "K"), ("trainable", "trainable α"), ("loss0", "start loss"), ("final_loss", "final loss"),
            ("final_loss_random_basis", "null: random basis")], nd=4))
        md.append("\n" + "\n".join(f"- **{k}**: {x['verdict']} — rule: {x['rule']}. {x.get('note', '')}"
                                   for k, x in res["starts"][st]["verdicts"].items()) + "\n")
    md.append("Page (series table): " + res["page_claim"])
    R.write(args, "paper82", "Rank series Paper 82 — K budget curve (final loss vs K)",
            {"ks": KS, "null_ks": NULL_KS, "starts": starts}, res, "\n".join(md), t0, figure(res))
    return res


def figure(res: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = list(res["starts"])
    fig, axs = plt.subplots(1, len(starts), figsize=(5.5 * len(starts), 4), squeeze=False)
    for ax, st in zip(axs[0], starts):
        rows = res["starts"][st]["table"]
        ks = [r["K"] for r in rows]
        ax.errorbar(ks, [r["final_loss"]["mean"] for r in rows], [r["final_loss"]["sd"] for r in rows], marker="o",
                    label="SVD basis")
        nr = [r for r in rows if "final_loss_random_basis" in r]
        ax.errorbar([r["K"] for r in nr], [r["final_loss_random_basis"]["mean"] for r in nr],
                    [r["final_loss_random_basis"]["sd"] for r in nr], marker="x", ls="--", label="null: random basis")
        ax.set(xscale="log", xlabel="K", ylabel="held-out loss after adapter training",
               title=f"Paper 82 — K budget curve ({st} start)")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
