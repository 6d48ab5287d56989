"""Rank series, Paper 83 — ER of the K-projected gradient (K=32), the "natural ER ≈ 20".

Paper 83 computed ER(U_32 diag(∂L/∂α) V_32ᵀ) during K=32 adapter training and found ≈ 20 at every
step, concluding K=32 is natural; Paper 86 revised this ("it was the ER of what K=32 CAN express").
We measure (a) ER(|∂L/∂α|) of a K=32 adapter at steps 1, 5, 10, 20, 40 of adapter training
(fresh start by default, training-batch gradient), (b) the same for a random-orthonormal-basis K=32 adapter,
(c) the random-diagonal null (ER of 32 i.i.d. |N·N| … |N| values), and (d) beside it the true ER of
∂L/∂W from Paper 86's trajectory.  Writes results/rank_series/paper83.{json,md,png,svg}.
"""
from __future__ import annotations

from rank_series import adapters as A
from rank_series import gradients as G
from rank_series import report as R

K = 32


def main(argv: list[str] | None = None) -> dict:
    args = R.parse(__doc__, argv)
    t0 = R.now()
    start = args.start or "fresh"
    svd = [A.train_adapter(args.scale, sd, K, start=start, corpus=args.corpus, recompute=args.recompute, label=f"K={K}") for sd in args.seeds]
    rnd = [A.train_adapter(args.scale, sd, K, basis="random", start=start, corpus=args.corpus, recompute=args.recompute,
                           label=f"K={K} random") for sd in args.seeds]
    trajs = [G.gradient_trajectory(args.scale, start, sd, args.corpus, recompute=args.recompute) for sd in args.seeds]
    ku = int(trajs[0]["steps"]["1"]["K"][str(K)]["k_used"])
    null_lo, null_hi = G.random_diagonal_er(ku, "product"), G.random_diagonal_er(ku, "halfnormal")
    steps = sorted({int(s) for s in svd[0]["alpha_grad_er"]})
    rows = []
    for t in steps:
        k = str(t)
        row = {"step": t, "ker_svd": R.ms(r["alpha_grad_er"][k] for r in svd),
               "ker_random_basis": R.ms(r["alpha_grad_er"][k] for r in rnd),
               "rand_diag_product": null_lo, "rand_diag_halfnormal": null_hi, "page": R.claim("83")["value"]}
        if k in trajs[0]["steps"]:
            row["true_er_full_training"] = R.ms(tr["steps"][k]["true_er_mean"] for tr in trajs)
        rows.append(row)
    allv = [x for r in svd for x in r["alpha_grad_er"].values()]
    mean_all = sum(allv) / len(allv)
    v = {
        "k32_er_about_20": R.verdict(abs(mean_all - 20.0) <= 0.15 * 20.0 if ku == 32 else None,
                                     "mean K=32 ER over steps and seeds within ±15 % of the page's 20",
                                     f"ours {mean_all:.2f} (K used {ku})"),
        "page_value_explained_by_null": R.verdict(null_lo <= 20.0 <= null_hi,
                                                  "the page's 20 lies inside the random-diagonal band [|N·N|, |N|] ER for K=32",
                                                  f"band [{null_lo:.2f}, {null_hi:.2f}]"),
        "ours_explained_by_random_diagonal": R.verdict(null_lo * 0.9 <= mean_all <= null_hi * 1.1,
                                                  "our SVD-basis value within the random-diagonal band [|N·N|, |N|] ER ±10 %",
                                                  f"band [{null_lo:.2f}, {null_hi:.2f}]; random-basis adapter "
                                                  f"{sum(x for r in rnd for x in r['alpha_grad_er'].values()) / len(allv):.2f}"),
    }
    res = {"K": K, "k_used": ku, "table": rows, "verdicts": v, "page_claim": R.claim("83")["printed"]}
    md = R.md_table(rows, [("step", "adapter step"), ("ker_svd", "ER(∂L/∂α), SVD basis"),
                           ("ker_random_basis", "null: random basis"), ("rand_diag_product", "null: diag |N·N|"),
                           ("rand_diag_halfnormal", "null: diag |N|"), ("page", "page"),
                           ("true_er_full_training", "true ER of ∂L/∂W (Paper 86 traj.)")])
    md += "\n\nPage (series table): " + res["page_claim"] + "\n\n" + "\n".join(
        f"- **{k}**: {x['verdict']} — rule: {x['rule']}. {x.get('note', '')}" for k, x in v.items())
    R.write(args, "paper83", "Rank series Paper 83 — ER of the K=32-projected gradient",
            {"K": K, "start": start}, res, md, t0, figure(rows))
    return res


def figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    st = [r["step"] for r in rows]
    ax.errorbar(st, [r["ker_svd"]["mean"] for r in rows], [r["ker_svd"]["sd"] for r in rows], marker="o", label="K=32 SVD basis")
    ax.errorbar(st, [r["ker_random_basis"]["mean"] for r in rows], [r["ker_random_basis"]["sd"] for r in rows], marker="x",
                ls="--", label="null: K=32 random basis")
    ax.axhspan(rows[0]["rand_diag_product"], rows[0]["rand_diag_halfnormal"], color="grey", alpha=0.3, label="null: random diagonal")
    ax.axhline(20, color="k", ls=":", label="page ≈ 20")
    tr = [r for r in rows if "true_er_full_training" in r]
    ax.plot([r["step"] for r in tr], [r["true_er_full_training"]["mean"] for r in tr], "s-", color="tab:red", label="true ER (Paper 86)")
    ax.set(xlabel="step", ylabel="ER", title="Paper 83 — ER of the K-projected gradient")
    ax.legend(fontsize=7)
    return fig


if __name__ == "__main__":
    main()
