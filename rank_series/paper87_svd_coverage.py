"""Rank series, Paper 87 (proposed by Paper 86) — SVD-basis coverage of the true gradient vs K.

cos(G, proj_K G) = ‖U_Kᵀ G V_K‖_F / ‖G‖_F for K ∈ {2,4,8,16,32,64}, with U_K, V_K the top-K singular
vectors of the current weight, versus a random orthonormal basis (null), at every captured step of
Paper 86's trajectory (fresh and pretrained starts).  Also the diagonal coverage ‖diag(U_KᵀGV_K)‖/‖G‖,
the part a diagonal-core adapter's gradient can move.  Paper 86's test: "If K=64 cos_sim > K=32
cos_sim even when true ER < 32, this is the mechanism" — note the subspaces are nested, so K=64 ≥ K=32
always holds; the informative comparison is against the random basis.
Writes results/rank_series/paper-87.{json,md} and fig-paper-87.{png,svg}.
"""
from __future__ import annotations

import time

from common import cli, section
from common.claims import NotYetRun, Outcome, Results, claim, cmp, every
from rank_series import gradients as G
from rank_series import report as R

STARTS = ("fresh", "pretrained")
TABLE = "paper-87"
REL = f"{R.SECTION}/{TABLE}"
MD_KEYS = ["start", "step", "k", "k_used", "true_er", "cos_svd", "cos_svd_sd", "cos_rand", "cos_rand_sd", "dcos_svd", "dcos_rand"]


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(__doc__, argv, extra=R.add_args)
    t0 = time.time()
    rows = []
    for st in STARTS:
        trs = [G.gradient_trajectory(args.scale, st, sd, args.corpus, recompute=args.force) for sd in args.seeds]
        for step in trs[0]["steps"]:
            for K in G.TRAJ_KS:
                ks = [tr["steps"][step]["K"][str(K)] for tr in trs]
                rows.append({"start": st, "step": int(step), "k": K, "k_used": ks[0]["k_used"],
                             "cos_svd": R.ms(x["cov_svd"] for x in ks), "cos_rand": R.ms(x["cov_rand"] for x in ks),
                             "dcos_svd": R.ms(x["dcov_svd"] for x in ks), "dcos_rand": R.ms(x["dcov_rand"] for x in ks),
                             "true_er": R.ms(tr["steps"][step]["true_er_mean"] for tr in trs)})
    flat, per_seed = R.split(rows)
    page = R.series_claim("87")["printed"]
    return section.emit(args, TABLE, flat, t0=t0, config=R.config(args, starts=STARTS, ks=G.TRAJ_KS),
                        title="Rank series Paper 87 — SVD-basis coverage cos(G, proj_K G) vs K",
                        extra={"per_seed": per_seed, "page_claim": page + " (a proposal; the page reports no result)"},
                        notes=f"Page (series table, a proposal with no result): {page}. `cos_*`: coverage ‖U_KᵀGV_K‖/‖G‖; "
                              "`dcos_*`: its diagonal part (what a diagonal-core adapter's gradient can move); `*_rand`: "
                              "a random orthonormal basis (null); `_sd`: sd over seeds.",
                        md_keys=MD_KEYS, figure=figure, section=R.SECTION)


# ----------------------------------------------------------------------------- claims
@claim("rs-87-svd-coverage", R.SOURCE, "Paper 86, hypothesis for Paper 87", table="series", reads=(REL,), scales=("tiny",),
       quote="K=64’s advantage is SVD basis COVERAGE, not ER.",
       statement="in every start, at every captured step: cos(G, proj_64 G) ≥ cos(G, proj_32 G) (guaranteed by nesting), the "
                 "32→64 coverage gain summed over steps is larger in the SVD basis than in a random basis, and the K=32 "
                 "SVD-basis coverage is ≥ 1.2 × the random basis' (rows: start, step, k, cos_svd, cos_rand)")
def svd_coverage(r: Results) -> Outcome:
    rows = r.rows(REL)
    cos = {(x["start"], x["step"], x["k"], b): x[f"cos_{b}"] for x in rows for b in ("svd", "rand")}
    out = []
    for st in dict.fromkeys(x["start"] for x in rows):
        steps = sorted({x["step"] for x in rows if x["start"] == st})
        try:
            gain = {b: [cos[st, s, 64, b] - cos[st, s, 32, b] for s in steps] for b in ("svd", "rand")}
            ratio = [cos[st, s, 32, "svd"] / max(cos[st, s, 32, "rand"], 1e-12) for s in steps]
        except KeyError as e:
            raise NotYetRun(f"{REL}.json lacks K=32 / K=64 rows for start {st}: {e}") from None
        out += [cmp(min(gain["svd"]), ">=", 0.0, f"{st}: min over steps of cos K=64 − cos K=32"),
                cmp(sum(gain["svd"]), ">", sum(gain["rand"]), f"{st}: Σ 32→64 gain, SVD vs random basis"),
                cmp(min(ratio), ">=", 1.2, f"{st}: min over steps of cos K=32 SVD / random")]
    return every(*out)


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Coverage vs K, one panel per start: SVD basis (solid) and random basis (dashed, null), one colour per step."""
    plt = R.plt()
    rows = result["rows"]
    starts = list(dict.fromkeys(r["start"] for r in rows))
    fig, axs = plt.subplots(1, len(starts), figsize=(5.8 * len(starts), 4.2), sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, st in zip(axs[0], starts):
        rr = [r for r in rows if r["start"] == st]
        steps = sorted({r["step"] for r in rr})
        for i, s in enumerate(steps):
            c = cmap(i / max(len(steps) - 1, 1))
            sr = sorted((r for r in rr if r["step"] == s), key=lambda r: r["k"])
            ks = [r["k"] for r in sr]
            ax.errorbar(ks, [r["cos_svd"] for r in sr], [r["cos_svd_sd"] for r in sr], color=c, marker="o", markersize=4,
                        capsize=2, label=f"step {s}: SVD basis")
            ax.plot(ks, [r["cos_rand"] for r in sr], color=c, ls="--", marker="x", label=f"step {s}: random basis (null)")
        ks = sorted({r["k"] for r in rr})
        ax.set(xscale="log", xlabel="K", title=f"{st} start")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
    axs[0][0].set_ylabel("coverage cos(G, proj_K G)")
    fig.suptitle(f"Paper 87 — coverage of the true gradient by the top-K SVD basis vs K ({R.subtitle(result)}; "
                 "the page proposes this test, no published values)", fontsize=10)
    R.legend_below(fig, axs[0], ncol=5)
    return fig


if __name__ == "__main__":
    main()
