"""Rank series, Paper 81 — fixed K vs dynamic K schedules.

Adapter-only training (fresh start by default; --start pretrained) with a fixed K=16 versus the ascending schedule
K: 2→4→8→16 and the descending schedule 16→8→4→2 (equal quarters of the step budget).  As Paper 86
describes the failed experiment, every change of K discards the adapter ("the K transitions destroyed
accumulated alpha information"): α ← 0 and the optimiser state is cleared.  The series table says
"Fixed K beats tested dynamic schedules".  Writes results/rank_series/paper81.{json,md,png,svg}.
"""
from __future__ import annotations

from rank_series import adapters as A
from rank_series import lm
from rank_series import report as R


def schedules(steps: int) -> dict[str, list[tuple[int, int]]]:
    q = max(1, steps // 4)
    return {"fixed K=16": [(0, 16)],
            "ascending 2→4→8→16 (reset)": [(0, 2), (q, 4), (2 * q, 8), (3 * q, 16)],
            "descending 16→8→4→2 (reset)": [(0, 16), (q, 8), (2 * q, 4), (3 * q, 2)]}


def main(argv: list[str] | None = None) -> dict:
    args = R.parse(__doc__, argv)
    t0 = R.now()
    sch = schedules(lm.SCALES[args.scale].adapter_steps)
    start = args.start or "fresh"
    runs = {name: [A.train_adapter(args.scale, sd, s, mode="reset", start=start, corpus=args.corpus, recompute=args.recompute,
                                   label=name.split(" (")[0]) for sd in args.seeds] for name, s in sch.items()}
    rows = [{"schedule": n, "final_loss": R.ms(r["final_loss"] for r in rs)} for n, rs in runs.items()]
    L = {r["schedule"]: r["final_loss"]["mean"] for r in rows}
    fixed = "fixed K=16"
    v = {"fixed_beats_dynamic": R.verdict(all(L[fixed] < L[n] for n in L if n != fixed),
                                          "fixed K=16 has a lower mean final loss than both reset schedules",
                                          ", ".join(f"{n}: {x:.4f}" for n, x in L.items()))}
    res = {"schedules": {n: s for n, s in sch.items()}, "table": rows, "verdicts": v,
           "curves": {n: [r["curve"] for r in rs] for n, rs in runs.items()},
           "page_claim": R.claim("81")["printed"]}
    md = R.md_table(rows, [("schedule", "schedule"), ("final_loss", "final loss")], nd=4)
    md += "\n\nPage (series table): " + res["page_claim"] + "\n\n" + "\n".join(
        f"- **{k}**: {x['verdict']} — rule: {x['rule']}. {x.get('note', '')}" for k, x in v.items())
    R.write(args, "paper81", "Rank series Paper 81 — fixed K vs ascending/descending K schedules",
            {"schedules": sch, "start": start, "transition": "reset"}, res, md, t0, curves_figure(res["curves"], "Paper 81"))
    return res


def curves_figure(curves: dict[str, list[dict]], title: str):
    """Held-out loss curves (mean over seeds) of several adapter runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, cs in curves.items():
        steps = sorted(int(s) for s in cs[0])
        ax.plot(steps, [sum(c[str(s)] for c in cs) / len(cs) for s in steps], marker="o", label=name)
    ax.set(xlabel="adapter step", ylabel="held-out loss (mean over seeds)", title=title)
    ax.legend(fontsize=8)
    return fig


if __name__ == "__main__":
    main()
