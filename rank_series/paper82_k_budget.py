"""Rank series, Paper 82 — the K budget curve: final held-out loss vs adapter K.

Trains only the K-basis adapter α's (ΔW = U_K diag(α) V_Kᵀ on every block weight; fresh and pretrained
starts, or one with --start) for the scale's step budget at K ∈ {2, 4, 8, 16, 32, 64}, with a random-orthonormal-basis null at
K ∈ {16, 64}.  The series table says "K=16 dead zone; K=64 best quality" (and Paper 84/86: K=64 beats
K=32 by 0.697 loss units).  Writes results/rank_series/paper-82.{json,md} and fig-paper-82.{png,svg}.
"""
from __future__ import annotations

import time

from common import cli, section
from common.claims import NotYetRun, Outcome, Results, claim, cmp, every
from rank_series import adapters as A
from rank_series import report as R

KS = (2, 4, 8, 16, 32, 64)
NULL_KS = (16, 64)
TABLE = "paper-82"
REL = f"{R.SECTION}/{TABLE}"


def one_start(args, start: str) -> tuple[list[dict], dict]:
    """Rows (:func:`report.ms` over seeds) and held-out loss curves of the budget curve from one starting point."""
    runs = {K: [A.train_adapter(args.scale, sd, K, start=start, corpus=args.corpus, recompute=args.force,
                                label=f"K={K}") for sd in args.seeds] for K in KS}
    nulls = {K: [A.train_adapter(args.scale, sd, K, basis="random", start=start, corpus=args.corpus,
                                 recompute=args.force, label=f"K={K} random") for sd in args.seeds] for K in NULL_KS}
    rows = []
    for K in KS:
        row = {"start": start, "k": K, "trainable": runs[K][0]["trainable"], "loss0": R.ms(r["loss0"] for r in runs[K]),
               "final_loss": R.ms(r["final_loss"] for r in runs[K]), "final_loss_random_basis": None}
        if K in nulls:
            row["final_loss_random_basis"] = R.ms(r["final_loss"] for r in nulls[K])
        rows.append(row)
    return rows, {f"K={K}": [r["curve"] for r in runs[K]] for K in KS}


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(__doc__, argv, extra=R.add_args)
    t0 = time.time()
    starts = [args.start] if args.start else ["fresh", "pretrained"]
    rows, curves = [], {}
    for st in starts:
        r, curves[st] = one_start(args, st)
        rows += r
    flat, per_seed = R.split(rows)
    page = R.series_claim("82")["printed"]
    return section.emit(args, TABLE, flat, t0=t0, config=R.config(args, ks=KS, null_ks=NULL_KS, starts=starts),
                        title="Rank series Paper 82 — K budget curve (final loss vs K)",
                        extra={"per_seed": per_seed, "curves": curves, "page_claim": page},
                        notes=f"Page (series table): {page}. `loss0`: held-out loss before adapter training; "
                              "`final_loss_random_basis`: the same adapter on a random orthonormal basis (null); `_sd`: sd "
                              "over seeds.", figure=figure, section=R.SECTION)


def _by_start(r: Results, key: str = "final_loss") -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for x in r.rows(REL):
        if x.get(key) is not None:
            out.setdefault(x["start"], {})[int(x["k"])] = float(x[key])
    if not out:
        raise NotYetRun(f"{REL}.json has no {key!r}")
    return out


# ----------------------------------------------------------------------------- claims
@claim("rs-82-k64-best", R.SOURCE, "Series table, Paper 82", table="series", reads=(REL,), scales=("tiny",),
       quote="K=64 best quality",
       statement="in every start, K=64 has the lowest mean final held-out loss of all K, and a lower final loss than K=32 in "
                 "every seed (rows: start, k, final_loss; per-seed values in per_seed)")
def k64_best(r: Results) -> Outcome:
    doc, out = r.load(REL), []
    for st, L in _by_start(r).items():
        best = min(L, key=L.get)
        k64, k32 = R.seeds_of(doc, "final_loss", start=st, k=64), R.seeds_of(doc, "final_loss", start=st, k=32)
        out += [cmp(best, "==", 64, f"{st}: argmin_K final loss"),
                cmp(max(a - b for a, b in zip(k64, k32)), "<", 0.0, f"{st}: max over seeds of loss(K=64) − loss(K=32)")]
    return every(*out)


@claim("rs-82-k16-dead-zone", R.SOURCE, "Series table, Paper 82", table="series", reads=(REL,), scales=("tiny",),
       quote="K=16 dead zone",
       statement="'dead zone' read as: in every start, the 8→16 loss gain is smaller than both the 4→8 and the 16→32 gains "
                 "(rows: start, k, final_loss)")
def k16_dead_zone(r: Results) -> Outcome:
    out = []
    for st, L in _by_start(r).items():
        if not {4, 8, 16, 32} <= set(L):
            raise NotYetRun(f"{REL}.json, start {st}: needs K = 4, 8, 16, 32")
        g = {k: L[prev] - L[k] for prev, k in ((4, 8), (8, 16), (16, 32))}
        out.append(cmp(g[16], "<", min(g[8], g[32]), f"{st}: gain 8→16 vs min(gain 4→8 = {g[8]:.4f}, 16→32 = {g[32]:.4f})"))
    return every(*out)


@claim("rs-82-svd-beats-random", R.SOURCE, "Paper 86 (Paper 87 hypothesis), null of Paper 82", table="series", reads=(REL,),
       scales=("tiny",),
       quote="The SVD basis of size K includes vectors that better align with the true gradient direction.",
       statement="null check: in every start, the SVD-basis adapter's mean final loss is below the random-basis adapter's at "
                 "K=16 and K=64 (rows: start, k, final_loss, final_loss_random_basis)")
def svd_beats_random(r: Results) -> Outcome:
    svd, rnd = _by_start(r), _by_start(r, "final_loss_random_basis")
    return every(*(cmp(svd[st][k], "<", rnd[st][k], f"{st} K={k}: SVD vs random basis") for st in svd for k in sorted(rnd.get(st, {}))))


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Final held-out loss vs K, one panel per start (their losses differ by orders of magnitude): SVD basis and the
    random-basis null, mean ± sd over seeds."""
    plt = R.plt()
    rows = result["rows"]
    starts = list(dict.fromkeys(r["start"] for r in rows))
    fig, axs = plt.subplots(1, len(starts), figsize=(5.8 * len(starts), 4.2), squeeze=False)
    for ax, st in zip(axs[0], starts):
        rr = [r for r in rows if r["start"] == st]
        ks = [r["k"] for r in rr]
        ax.errorbar(ks, [r["final_loss"] for r in rr], [r["final_loss_sd"] for r in rr], marker="o", capsize=2,
                    color=R.COLORS["ours"], label="ours: SVD basis")
        nr = [r for r in rr if r.get("final_loss_random_basis") is not None]
        ax.errorbar([r["k"] for r in nr], [r["final_loss_random_basis"] for r in nr], [r["final_loss_random_basis_sd"] for r in nr],
                    marker="x", ls="none", capsize=2, color=R.COLORS["null"], label="ours: random basis (null)")
        ax.set(xscale="log", xlabel="adapter K", ylabel="held-out loss after adapter training", title=f"{st} start")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
    fig.suptitle(f"Paper 82 — K budget curve ({R.subtitle(result)}; the page prints no per-K losses)", fontsize=10)
    R.legend_below(fig, axs[0], ncol=2)
    return fig


if __name__ == "__main__":
    main()
