"""Rank series, Paper 81 — fixed K vs dynamic K schedules.

Adapter-only training (fresh start by default; --start pretrained) with a fixed K=16 versus the ascending schedule
K: 2→4→8→16 and the descending schedule 16→8→4→2 (equal quarters of the step budget).  As Paper 86
describes the failed experiment, every change of K discards the adapter ("the K transitions destroyed
accumulated alpha information"): α ← 0 and the optimiser state is cleared.  The series table says
"Fixed K beats tested dynamic schedules".  Writes results/rank_series/paper-81.{json,md} and fig-paper-81.{png,svg}.
"""
from __future__ import annotations

import time

from common import cli, section
from common.claims import NotYetRun, Outcome, Results, claim, cmp, every
from rank_series import adapters as A
from rank_series import lm
from rank_series import report as R

TABLE = "paper-81"
REL = f"{R.SECTION}/{TABLE}"
FIXED = "fixed K=16"


def schedules(steps: int) -> dict[str, list[tuple[int, int]]]:
    q = max(1, steps // 4)
    return {FIXED: [(0, 16)],
            "ascending 2→4→8→16 (reset)": [(0, 2), (q, 4), (2 * q, 8), (3 * q, 16)],
            "descending 16→8→4→2 (reset)": [(0, 16), (q, 8), (2 * q, 4), (3 * q, 2)]}


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(__doc__, argv, extra=R.add_args)
    t0 = time.time()
    sch = schedules(lm.SCALES[args.scale].adapter_steps)
    start = args.start or "fresh"
    runs = {name: [A.train_adapter(args.scale, sd, s, mode="reset", start=start, corpus=args.corpus, recompute=args.force,
                                   label=name.split(" (")[0]) for sd in args.seeds] for name, s in sch.items()}
    rows, per_seed = R.split([{"schedule": n, "final_loss": R.ms(r["final_loss"] for r in rs)} for n, rs in runs.items()])
    page = R.series_claim("81")["printed"]
    return section.emit(args, TABLE, rows, t0=t0, config=R.config(args, schedules=sch, start=start, transition="reset"),
                        title="Rank series Paper 81 — fixed K vs ascending/descending K schedules",
                        extra={"schedules": sch, "per_seed": per_seed, "page_claim": page,
                               "curves": {n: [r["curve"] for r in rs] for n, rs in runs.items()}},
                        notes=f"Page (series table): {page}. Final held-out loss after adapter training, mean (`_sd`: sd) "
                              "over seeds; every change of K resets α and the optimiser.",
                        figure=figure, section=R.SECTION)


# ----------------------------------------------------------------------------- claims
@claim("rs-81-fixed-beats-dynamic", R.SOURCE, "Series table, Paper 81", table="series", reads=(REL,), scales=("tiny",),
       quote="Fixed K beats tested dynamic schedules",
       statement="fixed K=16 has a lower mean final held-out loss than both reset schedules, ascending 2→4→8→16 and "
                 "descending 16→8→4→2 (rows: schedule, final_loss)")
def fixed_beats_dynamic(r: Results) -> Outcome:
    L = r.column(REL, "final_loss", by="schedule")
    if FIXED not in L or len(L) < 2:
        raise NotYetRun(f"{REL}.json needs the {FIXED!r} row and a dynamic schedule")
    return every(*(cmp(L[FIXED], "<", v, f"{FIXED} vs {n}") for n, v in L.items() if n != FIXED))


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Held-out loss during adapter training (mean ± sd over seeds) of the fixed and the two reset schedules."""
    plt = R.plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    R.curves(ax, result["curves"])
    ax.set_title(f"Paper 81 — fixed K vs reset K schedules ({R.subtitle(result)}; the page prints no losses)", fontsize=10)
    R.legend_below(fig, [ax], ncol=3)
    return fig


if __name__ == "__main__":
    main()
