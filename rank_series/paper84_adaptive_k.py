"""Rank series, Paper 84 — adaptive per-layer K vs uniform K.

Per-layer K from the K=32-constrained gradient ER of each layer at the start point (fresh by default) (Paper 83's
basis for its "K=28–36" assignments): K_l = round(32 · ER_l / mean_l ER_l), so the total budget matches
uniform K=32.  Adapter-only training compared with uniform K=32 and K=64.  The series table says
"Adaptive≈uniform; K=64 dominates by 0.697".  Writes results/rank_series/paper-84.{json,md} and fig-paper-84.{png,svg}.
"""
from __future__ import annotations

import time

from common import cli, section
from common import published as pub
from common.claims import Outcome, Results, claim, cmp
from common.report import columns, mark_published
from rank_series import adapters as A
from rank_series import gradients as G
from rank_series import lm
from rank_series import report as R

TABLE = "paper-84"
REL = f"{R.SECTION}/{TABLE}"
U32, ADA, U64 = "uniform K=32", "adaptive per-layer K (mean 32)", "uniform K=64"
DIFF, GAP = "adaptive − uniform K=32 (paired)", "uniform K=32 − uniform K=64 (paired)"
#: The series table's K=64 gap (row "84" of data/published's "series" table) beside our paired K=32 − K=64 difference.
PUBLISHED = columns(R.SOURCE, "series", {"loss_diff": "K=64 minus K=32 loss gap"})


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
    args = cli.parse(__doc__, argv, extra=R.add_args)
    t0 = time.time()
    start = args.start or "fresh"
    runs: dict[str, list[dict]] = {U32: [], ADA: [], U64: []}
    assigned = {}
    for sd in args.seeds:
        runs[U32].append(A.train_adapter(args.scale, sd, 32, start=start, corpus=args.corpus, recompute=args.force, label="K=32"))
        ka = adaptive_k(args.scale, sd, args.corpus, args.force, start)
        assigned[sd] = sorted({lm.layer_of(n): k for n, k in ka.items()}.items())
        runs[ADA].append(A.train_adapter(args.scale, sd, ka, start=start, corpus=args.corpus, recompute=args.force, label="adaptive"))
        runs[U64].append(A.train_adapter(args.scale, sd, 64, start=start, corpus=args.corpus, recompute=args.force, label="K=64"))
    ps = {n: [r["final_loss"] for r in rs] for n, rs in runs.items()}
    rows = [{"config": n, "trainable": rs[0]["trainable"], "final_loss": R.ms(ps[n]), "loss_diff": None} for n, rs in runs.items()]
    rows.append({"config": DIFF, "trainable": None, "final_loss": None, "loss_diff": R.ms(x - y for x, y in zip(ps[ADA], ps[U32]))})
    rows.append({"row": "84", "config": GAP, "trainable": None, "final_loss": None,
                 "loss_diff": R.ms(x - y for x, y in zip(ps[U32], ps[U64]))})
    flat, per_seed = R.split(rows)
    page = R.series_claim("84")["printed"]
    return section.emit(args, TABLE, flat, t0=t0, config=R.config(args, start=start, rule="K_l = round(32·ER32_l/mean ER32)"),
                        title="Rank series Paper 84 — adaptive per-layer K vs uniform K", published=PUBLISHED,
                        extra={"per_seed": per_seed, "assigned_k_per_layer": assigned, "page_claim": page,
                               "curves": {n: [r["curve"] for r in rs] for n, rs in runs.items()}},
                        notes=f"Page (series table): {page}. `loss_diff`: paired (same seed) difference of final held-out "
                              f"losses, mean (`_sd`: sd) over seeds; the page's gap is on its own model and step budget. "
                              f"Per-layer K (seed {args.seeds[0]}): {assigned[args.seeds[0]]}.",
                        md_keys=["config", "trainable", "final_loss", "final_loss_sd", "loss_diff", "loss_diff_sd"],
                        figure=figure, section=R.SECTION)


# ----------------------------------------------------------------------------- claims
@claim("rs-84-adaptive-approx-uniform", R.SOURCE, "Series table, Paper 84", table="series", reads=(REL,), scales=("tiny",),
       quote="Adaptive≈uniform",
       statement="|mean paired difference of final loss, adaptive − uniform K=32| ≤ max(2 · its sd over seeds, 0.005) "
                 "(rows: config, loss_diff, loss_diff_sd)")
def adaptive_approx_uniform(r: Results) -> Outcome:
    d = r.row(REL, config=DIFF)
    return cmp(abs(r.cell(REL, "loss_diff", config=DIFF)), "<=", max(2 * float(d.get("loss_diff_sd") or 0.0), 0.005),
               "|adaptive − uniform K=32| vs max(2·sd, 0.005)")


@claim("rs-84-k64-dominates", R.SOURCE, "Series table, Paper 84", table="series", reads=(REL,), scales=("tiny",),
       quote="K=64 dominates by 0.697",
       statement="uniform K=64's final loss is below uniform K=32's in every seed (the gap's size depends on the model and "
                 "step budget: ours beside the page's in the table, not judged) (rows: config, loss_diff; per_seed)")
def k64_dominates(r: Results) -> Outcome:
    gaps = R.seeds_of(r.load(REL), "loss_diff", config=GAP)
    ok, detail = cmp(min(gaps), ">", 0.0, "min over seeds of loss(K=32) − loss(K=64)")
    page = pub.get(R.SOURCE, "series", "84", "K=64 minus K=32 loss gap")
    return ok, detail + ("" if page is None else f"; mean gap {sum(gaps) / len(gaps):.4g} (page {page:g})")


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Left: held-out loss during adapter training (mean ± sd over seeds). Right: the paired K=32 − K=64 gap per seed and
    its mean ± sd beside the page's gap, and the adaptive − uniform K=32 difference."""
    plt = R.plt()
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    R.curves(ax[0], result["curves"])
    ax[0].set_title("adapter training")
    rows = [r for r in result["rows"] if r.get("loss_diff") is not None]
    xs = list(range(len(rows)))
    ax[1].bar(xs, [r["loss_diff"] for r in rows], yerr=[r["loss_diff_sd"] for r in rows], color=R.COLORS["ours"], alpha=0.8,
              capsize=3, label="ours: mean ± sd over seeds")
    for x, r in zip(xs, rows):
        s = R.seeds_of(result, "loss_diff", config=r["config"])
        ax[1].plot([x] * len(s), s, "k.", label="ours: one seed")
    mark_published(ax[1], xs, [pub.get(R.SOURCE, "series", r["row"], "K=64 minus K=32 loss gap") if r.get("row") else None
                               for r in rows], label="published (page): K=32 − K=64 gap", line=False)
    ax[1].axhline(0, color="k", lw=0.8)
    ax[1].set_xticks(xs, [r["config"].replace(" (paired)", "").replace(" − ", " −\n") for r in rows])
    ax[1].set(xlabel="pair of configurations (same seed)", ylabel="paired difference of final held-out loss",
              title="paired differences")
    fig.suptitle(f"Paper 84 — adaptive per-layer K vs uniform K ({R.subtitle(result)})", fontsize=10)
    R.legend_below(fig, ax, ncol=3)
    return fig


if __name__ == "__main__":
    main()
