"""Rank series, Paper 88 (proposed by Paper 86) — the true-ER-matched K schedule 8→32→16.

Paper 86 proposes K=8 (steps 1–5) → K=32 (peak, steps 15–25) → K=16 (refinement) with *smooth*
transitions that keep the accumulated α.  We run it as a piecewise-linear K(t) through
(0,8), (12.5 %,8), (37.5 %,32), (62.5 %,32), (80 %,16) of the step budget; growing K keeps α and adds
new directions at α=0, shrinking K merges the dropped directions' α into the frozen weight.  Fresh start by default (--start pretrained).  Compared
with the same 8→32→16 in thirds with Paper-81-style resets, and with fixed K=16, 32, 64.
Writes results/rank_series/paper88.{json,md,png,svg}.
"""
from __future__ import annotations

from rank_series import adapters as A
from rank_series import lm
from rank_series import report as R
from rank_series.paper81_k_schedules import curves_figure


def schedules(steps: int) -> dict[str, tuple[list[tuple[int, int]], str]]:
    f = lambda x: int(round(x * steps))  # noqa: E731
    third = max(1, steps // 3)
    return {
        "ER-matched 8→32→16 (smooth, keeps α)": (A.smooth_schedule([(0, 8), (f(.125), 8), (f(.375), 32), (f(.625), 32),
                                                                    (f(.8), 16), (steps - 1, 16)], steps), "smooth"),
        "8→32→16 in thirds (reset)": ([(0, 8), (third, 32), (2 * third, 16)], "reset"),
        "fixed K=16": ([(0, 16)], "reset"),
        "fixed K=32": ([(0, 32)], "reset"),
        "fixed K=64": ([(0, 64)], "reset"),
    }


def main(argv: list[str] | None = None) -> dict:
    args = R.parse(__doc__, argv)
    t0 = R.now()
    sch = schedules(lm.SCALES[args.scale].adapter_steps)
    start = args.start or "fresh"
    runs = {n: [A.train_adapter(args.scale, sd, s, mode=mode, start=start, corpus=args.corpus, recompute=args.recompute,
                                label=n.split(" (")[0]) for sd in args.seeds] for n, (s, mode) in sch.items()}
    rows = [{"schedule": n, "final_loss": R.ms(r["final_loss"] for r in rs),
             "mean_active_K": sum(rs[0]["k_trace"]) / len(rs[0]["k_trace"])} for n, rs in runs.items()]
    L = {r["schedule"]: r["final_loss"]["mean"] for r in rows}
    ps = {n: [r["final_loss"] for r in rs] for n, rs in runs.items()}
    sm, rs_, f32, f64 = list(sch)[0], list(sch)[1], "fixed K=32", "fixed K=64"
    v = {
        "smooth_beats_reset": R.verdict(all(a < b for a, b in zip(ps[sm], ps[rs_])),
                                        "smooth α-keeping transitions give a lower final loss than resets in every seed"),
        "matched_beats_fixed32": R.verdict(all(a < b for a, b in zip(ps[sm], ps[f32])),
                                           "the ER-matched schedule beats fixed K=32 in every seed (Paper 86's hypothesis)",
                                           f"{L[sm]:.4f} vs {L[f32]:.4f}"),
        "matched_beats_fixed64": R.verdict(all(a < b for a, b in zip(ps[sm], ps[f64])),
                                           "the ER-matched schedule beats fixed K=64 in every seed",
                                           f"{L[sm]:.4f} vs {L[f64]:.4f}"),
    }
    res = {"schedules": {n: {"schedule": s, "mode": m} for n, (s, m) in sch.items()}, "table": rows, "verdicts": v,
           "curves": {n: [r["curve"] for r in rs] for n, rs in runs.items()},
           "page_claim": R.claim("88")["printed"] + " (a proposal; the page reports no result)"}
    md = R.md_table(rows, [("schedule", "schedule"), ("mean_active_K", "mean active K"), ("final_loss", "final loss")], nd=4)
    md += "\n\nPage: " + res["page_claim"] + "\n\n" + "\n".join(
        f"- **{k}**: {x['verdict']} — rule: {x['rule']}. {x.get('note', '')}" for k, x in v.items())
    R.write(args, "paper88", "Rank series Paper 88 — ER-matched K schedule 8→32→16 with smooth transitions",
            {"schedules": {n: s for n, s in sch.items()}, "start": start}, res, md, t0,
            curves_figure(res["curves"], "Paper 88 — ER-matched schedule"))
    return res


if __name__ == "__main__":
    main()
