"""Rank series, Paper 88 (proposed by Paper 86) — the true-ER-matched K schedule 8→32→16.

Paper 86 proposes K=8 (steps 1–5) → K=32 (peak, steps 15–25) → K=16 (refinement) with *smooth*
transitions that keep the accumulated α.  We run it as a piecewise-linear K(t) through
(0,8), (12.5 %,8), (37.5 %,32), (62.5 %,32), (80 %,16) of the step budget; growing K keeps α and adds
new directions at α=0, shrinking K merges the dropped directions' α into the frozen weight.  Fresh start by default (--start pretrained).  Compared
with the same 8→32→16 in thirds with Paper-81-style resets, and with fixed K=16, 32, 64.
Writes results/rank_series/paper-88.{json,md} and fig-paper-88.{png,svg}.
"""
from __future__ import annotations

import time

from common import cli, section
from common.claims import Outcome, Results, claim, cmp, every
from rank_series import adapters as A
from rank_series import lm
from rank_series import report as R

TABLE = "paper-88"
REL = f"{R.SECTION}/{TABLE}"
SMOOTH, RESET = "ER-matched 8→32→16 (smooth, keeps α)", "8→32→16 in thirds (reset)"


def schedules(steps: int) -> dict[str, tuple[list[tuple[int, int]], str]]:
    f = lambda x: int(round(x * steps))  # noqa: E731
    third = max(1, steps // 3)
    return {
        SMOOTH: (A.smooth_schedule([(0, 8), (f(.125), 8), (f(.375), 32), (f(.625), 32), (f(.8), 16), (steps - 1, 16)], steps),
                 "smooth"),
        RESET: ([(0, 8), (third, 32), (2 * third, 16)], "reset"),
        "fixed K=16": ([(0, 16)], "reset"),
        "fixed K=32": ([(0, 32)], "reset"),
        "fixed K=64": ([(0, 64)], "reset"),
    }


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(__doc__, argv, extra=R.add_args)
    t0 = time.time()
    sch = schedules(lm.SCALES[args.scale].adapter_steps)
    start = args.start or "fresh"
    runs = {n: [A.train_adapter(args.scale, sd, s, mode=mode, start=start, corpus=args.corpus, recompute=args.force,
                                label=n.split(" (")[0]) for sd in args.seeds] for n, (s, mode) in sch.items()}
    rows, per_seed = R.split([{"schedule": n, "mode": sch[n][1], "mean_active_k": sum(rs[0]["k_trace"]) / len(rs[0]["k_trace"]),
                               "final_loss": R.ms(r["final_loss"] for r in rs)} for n, rs in runs.items()])
    page = R.series_claim("88")["printed"]
    return section.emit(args, TABLE, rows, t0=t0, config=R.config(args, schedules={n: s for n, (s, _) in sch.items()}, start=start),
                        title="Rank series Paper 88 — ER-matched K schedule 8→32→16 with smooth transitions",
                        extra={"schedules": {n: {"schedule": s, "mode": m} for n, (s, m) in sch.items()}, "per_seed": per_seed,
                               "curves": {n: [r["curve"] for r in rs] for n, rs in runs.items()},
                               "page_claim": page + " (a proposal; the page reports no result)"},
                        notes=f"Page (a proposal with no result): {page}. Final held-out loss after adapter training, mean "
                              "(`_sd`: sd) over seeds; `mean_active_k`: K averaged over the steps.",
                        figure=figure, section=R.SECTION)


def _every_seed(r: Results, a: str, b: str) -> Outcome:
    doc = r.load(REL)
    x, y = R.seeds_of(doc, "final_loss", schedule=a), R.seeds_of(doc, "final_loss", schedule=b)
    return cmp(max(p - q for p, q in zip(x, y)), "<", 0.0, f"max over seeds of loss({a}) − loss({b})")


# ----------------------------------------------------------------------------- claims
@claim("rs-88-smooth-beats-reset", R.SOURCE, "Paper 86 on Paper 81 (Paper 88 hypothesis)", table="series", reads=(REL,),
       scales=("tiny",),
       quote="Paper 81 failure was implementation, not concept.",
       statement="the 8→32→16 schedule with smooth α-keeping transitions reaches a lower final loss than the same schedule "
                 "with resets, in every seed (rows: schedule, final_loss; per_seed)")
def smooth_beats_reset(r: Results) -> Outcome:
    return _every_seed(r, SMOOTH, RESET)


@claim("rs-88-matched-beats-fixed", R.SOURCE, "Paper 86, Paper 88 hypothesis", table="series", reads=(REL,), scales=("tiny",),
       quote="IDEAL schedule: K=8 → K=32 → K=16 with smooth transitions (Paper 88)",
       statement="the smooth ER-matched schedule reaches a lower final loss than fixed K=32 and than fixed K=64, in every "
                 "seed (rows: schedule, final_loss; per_seed)")
def matched_beats_fixed(r: Results) -> Outcome:
    return every(_every_seed(r, SMOOTH, "fixed K=32"), _every_seed(r, SMOOTH, "fixed K=64"))


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Left: held-out loss during adapter training (mean ± sd over seeds). Right: final loss vs the K the schedule keeps
    active on average."""
    plt = R.plt()
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    R.curves(ax[0], result["curves"])
    ax[0].set_title("adapter training")
    colors = {ln.get_label(): ln.get_color() for ln in ax[0].get_lines()}
    for r in result["rows"]:
        ax[1].errorbar([r["mean_active_k"]], [r["final_loss"]], [r["final_loss_sd"]], marker="o", capsize=3,
                       color=colors.get(r["schedule"]), label=r["schedule"])
    ax[1].set(xscale="log", xlabel="mean active K over the steps", ylabel="final held-out loss", title="final loss vs mean K")
    ks = sorted({round(r["mean_active_k"], 1) for r in result["rows"]})
    ax[1].set_xticks(ks, [f"{k:g}" for k in ks])
    ax[1].minorticks_off()
    fig.suptitle(f"Paper 88 — ER-matched K schedule vs resets and fixed K ({R.subtitle(result)}; a proposal, no published "
                 "values)", fontsize=10)
    R.legend_below(fig, ax, ncol=3)
    return fig


if __name__ == "__main__":
    main()
