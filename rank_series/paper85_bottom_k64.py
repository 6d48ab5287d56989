"""Rank series, Paper 85 — do the bottom directions of K=64 carry signal?

"Bottom K=64 directions" read as directions 33–64 of the K=64 SVD basis (the ones K=64 adds over
K=32).  Three measurements (fresh start by default; --start pretrained):
  1. gradient share: fraction of ‖∂L/∂W‖² on the diagonal coordinates u_iᵀGv_i, i = 33…64, versus the
     same for a random orthonormal basis (null);
  2. ablation: held-out loss of the trained K=64 adapter with α_33…64 zeroed (and, for scale, with
     α_1…32 zeroed) minus the full adapter's loss — > 0 in every seed means they carry learned signal;
  3. the "true ER ≥ 39" claim: the K=64-constrained ER against the random-diagonal null (≈ 37–48 for
     any gradient).
Writes results/rank_series/paper-85.{json,md} and fig-paper-85.{png,svg}.
"""
from __future__ import annotations

import time

from common import cli, section
from common.claims import NotMeasurable, Outcome, Results, claim, cmp, every
from common.report import mark_published
from rank_series import adapters as A
from rank_series import gradients as G
from rank_series import report as R

TABLE = "paper-85"
REL = f"{R.SECTION}/{TABLE}"
MEASURES = {
    "dloss_zero_alpha_33_64": "Δ held-out loss, trained K=64 adapter with α_33..64 zeroed",
    "dloss_zero_alpha_1_32": "Δ held-out loss, trained K=64 adapter with α_1..32 zeroed",
    "grad_share_33_64_svd": "share of ‖∂L/∂W‖² on diag 33..64 at step 1, SVD basis",
    "grad_share_33_64_random": "share of ‖∂L/∂W‖² on diag 33..64 at step 1, random basis (null)",
    "k64_constrained_er_step1": "K=64-constrained ER at step 1",
    "random_diag_er_product": "null: ER of 64 i.i.d. |N·N| values",
    "random_diag_er_halfnormal": "null: ER of 64 i.i.d. |N| values",
}


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(__doc__, argv, extra=R.add_args)
    t0 = time.time()
    start = args.start or "fresh"
    out = {"full": [], "no_bottom": [], "no_top": []}
    share = {"svd": [], "rand": []}
    ker64 = []
    for sd in args.seeds:
        run = A.train_adapter(args.scale, sd, 64, start=start, corpus=args.corpus, recompute=args.force, label="K=64")
        out["full"].append(run["final_loss"])
        out["no_bottom"].append(A.ablated_loss(args.scale, sd, run, lambda i: i < 32, args.corpus))
        out["no_top"].append(A.ablated_loss(args.scale, sd, run, lambda i: i >= 32, args.corpus))
        tr = G.gradient_trajectory(args.scale, start, sd, args.corpus, recompute=args.force)
        k = tr["steps"]["1"]["K"]
        for b in ("svd", "rand"):
            share[b].append(k["64"][f"dcov_{b}"] ** 2 - k["32"][f"dcov_{b}"] ** 2)
        ker64.append(k["64"]["ker_svd"])
    ku = int(tr["steps"]["1"]["K"]["64"]["k_used"])
    values = {"dloss_zero_alpha_33_64": R.ms(b - f for b, f in zip(out["no_bottom"], out["full"])),
              "dloss_zero_alpha_1_32": R.ms(b - f for b, f in zip(out["no_top"], out["full"])),
              "grad_share_33_64_svd": R.ms(share["svd"]), "grad_share_33_64_random": R.ms(share["rand"]),
              "k64_constrained_er_step1": R.ms(ker64),
              "random_diag_er_product": G.random_diagonal_er(ku, "product"),
              "random_diag_er_halfnormal": G.random_diagonal_er(ku, "halfnormal")}
    rows, per_seed = R.split([{"measure": m, "description": MEASURES[m], "value": v} for m, v in values.items()])
    page = R.series_claim("85")["printed"]
    return section.emit(args, TABLE, rows, t0=t0, config=R.config(args, start=start, bottom="basis directions 33-64"),
                        title="Rank series Paper 85 — are the bottom K=64 directions signal?",
                        extra={"k_used": ku, "losses": out, "per_seed": per_seed, "page_claim": page},
                        notes=f"Page (series table): {page}. `value`: mean over seeds (`value_sd`: sd); the random-diagonal "
                              "rows are the null for the K=64-constrained ER.", figure=figure, section=R.SECTION)


def _v(r: Results, measure: str) -> float:
    return r.cell(REL, "value", measure=measure)


# ----------------------------------------------------------------------------- claims
@claim("rs-85-bottom-dims-signal", R.SOURCE, "Series table, Paper 85", table="series", reads=(REL,), scales=("tiny",),
       quote="K=64 dims are signal",
       statement="zeroing α_33..64 of the trained K=64 adapter raises the held-out loss in every seed (rows: measure = "
                 "dloss_zero_alpha_33_64, value; per_seed; not measurable where the model has fewer than 64 directions)")
def bottom_dims_signal(r: Results) -> Outcome:
    doc = r.load(REL)
    if doc.get("k_used") is not None and doc["k_used"] < 64:
        raise NotMeasurable(f"the model's weights allow only K={doc['k_used']} < 64 directions: there are no directions 33–64")
    d = R.seeds_of(doc, "value", measure="dloss_zero_alpha_33_64")
    return cmp(min(d), ">", 0.0, f"min over seeds of Δloss (mean {_v(r, 'dloss_zero_alpha_33_64'):+.4f})")


@claim("rs-85-svd-bottom-beats-random", R.SOURCE, "Paper 86 on Paper 85", table="series", reads=(REL,), scales=("tiny",),
       quote="Paper 85 showed K=64 dims are real signal (not noise).",
       statement="SVD directions 33–64 hold more of the step-1 gradient energy (diagonal share) than random directions 33–64 "
                 "(rows: measure = grad_share_33_64_svd / _random, value)")
def svd_bottom_beats_random(r: Results) -> Outcome:
    return cmp(_v(r, "grad_share_33_64_svd"), ">", _v(r, "grad_share_33_64_random"), "gradient energy share, SVD vs random")


@claim("rs-85-er39-null", R.SOURCE, "Paper 86 on Paper 85", table="series", reads=(REL,), scales=("tiny",),
       quote="K=64 is massively over-parameterized relative to true gradient ER (K=64 ER=39 vs true ER 5–19).",
       statement="the ≈ 39 is the K=64-constrained ER, what 64 random magnitudes give: the page's value lies in the "
                 "random-diagonal band [ER of 64 |N·N|, ER of 64 |N|] and ours (k64_constrained_er_step1) within ±10 % of it")
def er39_null(r: Results) -> Outcome:
    lo, hi, ours = _v(r, "random_diag_er_product"), _v(r, "random_diag_er_halfnormal"), _v(r, "k64_constrained_er_step1")
    page = R.series_value("85")
    return every(cmp(page, ">=", lo, "page vs |N·N| ER"), cmp(page, "<=", hi, "page vs |N| ER"),
                 cmp(ours, ">=", 0.9 * lo, "ours vs 0.9·|N·N| ER"), cmp(ours, "<=", 1.1 * hi, "ours vs 1.1·|N| ER"))


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Three panels, one unit each: the ablation Δloss, the gradient energy share of directions 33–64 (SVD vs random
    basis), and the K=64-constrained ER against the random-diagonal null and the page's value."""
    plt = R.plt()
    val = {r["measure"]: r for r in result["rows"]}
    fig, ax = plt.subplots(1, 3, figsize=(13, 4))

    def bars(a, measures: list[str], labels: list[str], colors: list[str]) -> None:
        xs = list(range(len(measures)))
        a.bar(xs, [val[m]["value"] for m in measures], yerr=[val[m].get("value_sd") or 0.0 for m in measures], color=colors,
              alpha=0.8, capsize=3)
        for x, m in zip(xs, measures):
            s = R.seeds_of(result, "value", measure=m)
            a.plot([x] * len(s), s, "k.", label="ours: one seed")
        a.set_xticks(xs, labels)

    bars(ax[0], ["dloss_zero_alpha_33_64", "dloss_zero_alpha_1_32"], ["zero α 33–64", "zero α 1–32"], [R.COLORS["ours"]] * 2)
    ax[0].axhline(0, color="k", lw=0.8)
    ax[0].set(xlabel="α zeroed", ylabel="Δ held-out loss vs the full K=64 adapter", title="ablation of the trained K=64 adapter")
    bars(ax[1], ["grad_share_33_64_svd", "grad_share_33_64_random"], ["SVD basis", "random basis (null)"],
         [R.COLORS["ours"], R.COLORS["null"]])
    ax[1].set(xlabel="basis of directions 33–64", ylabel="share of ‖∂L/∂W‖² on diag 33–64", title="gradient energy at step 1")
    er = val["k64_constrained_er_step1"]
    ax[2].axhspan(val["random_diag_er_product"]["value"], val["random_diag_er_halfnormal"]["value"], color="grey", alpha=0.3,
                  label=f"null: ER of {result.get('k_used', 64)} random |N·N| … |N| values")
    ax[2].errorbar([0], [er["value"]], [er.get("value_sd") or 0.0], marker="o", color=R.COLORS["ours"], capsize=3,
                   label="ours: K=64-constrained ER")
    mark_published(ax[2], [0], [R.series_value("85")], label="published (page): 'true ER ≥ 39'", line=False)
    ax[2].set_xticks([0], ["1"])
    ax[2].set(xlim=(-1, 1), xlabel="training step", ylabel="effective rank", title="K=64-constrained ER vs the null")
    fig.suptitle(f"Paper 85 — are directions 33–64 of K=64 signal? ({R.subtitle(result)})", fontsize=10)
    R.legend_below(fig, ax, ncol=4)
    return fig


if __name__ == "__main__":
    main()
