"""Post 01 §11, Table 9.17 — per-step MP-rank and e90 trajectory of a frozen-TE fine-tune.

A fresh `frozen_te` run saves checkpoints at the post's grad-steps 50/100/200/400/800/1200/2000 and the
ends of epochs 1/2/3, kept as fractions of its 15,939 steps (recipes.POST01_TRAJECTORY_STEPS). At each,
W(t) − W(0) of every LoRA-able 2-D Linear weight (all Linear layers outside the text encoder) is SVD'd:

* MP-rank: |{σ_i > σ₊}|, σ₊ = σ_rms(√m + √n)/√min(m, n) (MP variant (b), common.spectral.mp_edge_rms);
* e90: singular values holding 90 % of ‖ΔW‖²_F (signal + noise);

medians across tensors, with the train loss at that step from the run log. Also reports the step from
which the median MP-rank "settles" (stays within ±1 of its end value; the post: step ~1200 of 15,939).
Writes results/post01/table-9.17.{json,md} and fig-9.17.{png,svg}.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

from common import cli, mprank, published, report, section
from common.claims import NotYetRun, Outcome, Results, claim, cmp, every, within
from common.recipes import POST01_TRAJECTORY_STEPS
from common.runs import run_dir, run_steps, saved_steps
from common.train import read_log

RECIPE = "frozen_te"
POST_TOTAL = POST01_TRAJECTORY_STEPS[-1]  # 15,939 = end of epoch 3
#: grad-step → the post's row label of the epoch ends ("end ep 1" …), as data/published gives them
LABELS = {int(v["value"]): v["row"] for v in published.lookup("post01", "9.17", column="grad-step")}
PUBLISHED = report.columns("post01", "9.17", {"mp_rank": "MP-rank (signal)", "e90": "e90 (signal + noise)",
                                                "train_loss": "train loss"})


# ----------------------------------------------------------------------------- claims (judged when table-9.17 is written)
def _mp_at_quarter_epoch(r: Results) -> tuple[dict[str, Any], dict[str, Any]]:
    rows = sorted((x for x in r.rows("post01/table-9.17") if x.get("step") is not None), key=lambda x: x["step"])
    ep1 = [x for x in rows if str(x.get("label", "")).strip() == "end ep 1"]
    if not ep1:
        raise NotYetRun("post01/table-9.17.json has no row labelled 'end ep 1'")
    end_ep1 = published.get("post01", "9.17", "end ep 1", "grad-step")  # the post's grad-step at the end of epoch 1
    if end_ep1 is None:
        raise NotYetRun("data/published post01 Table 9.17 has no grad-step for 'end ep 1'")
    target = ep1[0]["step"] * 1200 / end_ep1
    early = min(rows, key=lambda x: abs(x["step"] - target))
    return early, rows[-1]


@claim("p01-9.17-mp-converges", "post01", "Table 9.17", table="9.17", reads=("post01/table-9.17",),
       quote="MP-rank stabilises by step ~1200— less than 25 % of one epoch — and stays at median 16 through another three full epochs.",
       statement="median MP-rank at the step nearest 22.6 % of epoch 1 (the post's step 1200) equals the final MP-rank within ±1 (rows: step, label, mp_rank, e90)")
def _(r: Results) -> Outcome:
    early, last = _mp_at_quarter_epoch(r)
    return within(early["mp_rank"], last["mp_rank"], 1, f"MP-rank step {early['step']} vs end")


@claim("p01-9.17-e90-noise", "post01", "Table 9.17", table="9.17", reads=("post01/table-9.17",),
       quote="Operationally: do not use e90 to size your LoRA. Do use MP-rank. The two diverge by 7× at convergence on this task.",
       statement="at the end, e90 ≥ 2 × MP-rank, and e90 grows after the MP-rank has settled")
def _(r: Results) -> Outcome:
    early, last = _mp_at_quarter_epoch(r)
    return every(cmp(last["e90"], ">=", 2 * last["mp_rank"], "e90 vs 2×MP-rank at end"), cmp(last["e90"], ">", early["e90"], "e90 end vs early"))


def post_row(post_step: int) -> str:
    """The post's row label of a grad-step ("50" … "2000", "end ep 1" …)."""
    return LABELS.get(post_step, str(post_step))


def main(argv=None) -> dict:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    total = run_steps(RECIPE, args.scale)
    saved = saved_steps(RECIPE, args.scale)
    ours = {s: mprank.step_for_fraction(total, s / POST_TOTAL) for s in POST01_TRAJECTORY_STEPS}
    missing = sorted(set(ours.values()) - set(saved))
    if missing:
        raise FileNotFoundError(f"{run_dir(RECIPE, args.scale)} lacks step checkpoints {missing} (saved: {saved}); "
                                "the recipe's checkpoint_fractions should have produced them")
    traj = mprank.trajectory(RECIPE, args.scale, sorted(set(ours.values())), variant="rms")
    log = {r["step"]: r for r in read_log(run_dir(RECIPE, args.scale) / "log.jsonl")}
    window = max(1, total // 50)

    def loss_at(step: int, smooth: bool = False) -> float | None:
        keys = range(step - window + 1, step + 1) if smooth else (step,)
        vals = [log[k]["loss_scaled"] for k in keys if k in log]
        return float(statistics.fmean(vals)) if vals else None

    rows = []
    for post_step, step in ours.items():
        st = traj[step]
        rows.append({"row": post_row(post_step), "post_step": post_step, "label": LABELS.get(post_step, ""),
                     "step": step, "fraction": round(step / total, 5), "n_tensors": len(st),
                     "mp_rank": float(statistics.median(r["mp_rank"] for r in st.values())),
                     "e90": float(statistics.median(r["e90"] for r in st.values())),
                     "mp_rank_mean": float(statistics.fmean(r["mp_rank"] for r in st.values())),
                     "train_loss": loss_at(step), "train_loss_smoothed": loss_at(step, smooth=True)})

    medians = {r["step"]: r["mp_rank"] for r in rows}
    settle = mprank.settle_step(medians, tol=1)
    pub_mp = {v["row"]: v["value"] for v in published.lookup("post01", "9.17", column="MP-rank (signal)")}
    pub_settle = mprank.settle_step({s: pub_mp[post_row(s)] for s in POST01_TRAJECTORY_STEPS if post_row(s) in pub_mp})
    settle_info = {
        "rule": "first saved step from which the median MP-rank stays within ±1 of its end value",
        "step": settle, "fraction": None if settle is None else round(settle / total, 4),
        "post_equivalent_step": None if settle is None else round(settle / total * POST_TOTAL),
        "post_step_1200_ours": ours[1200],
        "published_rule_applied_to_published_rows": pub_settle,
        "note": "the post says 'stabilises by step ~1200'; by the same ±1 rule its own rows settle at step "
                f"{pub_settle}" + ("" if pub_settle is None else f" ({pub_mp[post_row(pub_settle)]:g} at step {pub_settle} is "
                                   f"within 1 of {pub_mp[post_row(POST_TOTAL)]:g})"),
    }
    extra = {"settle": settle_info, "total_steps": total, "saved_steps": saved, "step_map": {str(k): v for k, v in ours.items()},
             "mp_variant": "rms: edge = sigma_rms (sqrt m + sqrt n)/sqrt(min(m,n)), sigma_rms = ||dW||_F/sqrt(min(m,n))",
             "loss_note": f"train_loss = the run log's loss_scaled at that step (×√per-device batch = ×1 here, as the post's "
                          f"trainer reports); train_loss_smoothed = mean over the last {window} steps. The tiny model's loss "
                          "terms differ from SAM3's trainer, so loss values are not comparable, only their trend.",
             "per_tensor": {str(s): {n: [r["mp_rank"], r["e90"]] for n, r in traj[s].items()} for s in traj}}
    s_txt = "never" if settle is None else f"step {settle} of {total} ({settle / total:.1%} of the run ≈ post step {settle_info['post_equivalent_step']})"
    notes = (f"MP-rank settles (±1 of end) at {s_txt}; the post's step 1200 is our step {ours[1200]}. "
             f"Medians over {rows[0]['n_tensors']} LoRA-able tensors (post: every LoRA-able SAM3 matrix). {extra['loss_note']}")
    section.emit(args, "9.17", rows, t0=t0, config={"recipe": RECIPE, "scale": args.scale, "mp_variant": "rms"},
                published=PUBLISHED, extra=extra, title="Table 9.17 — per-step rank trajectory (frozen_te, median over LoRA-able tensors)",
                notes=notes, md_keys=["row", "post_step", "step", "fraction", "mp_rank", "e90", "train_loss", "train_loss_smoothed"],
                figure=figure)
    print(f"table 9.17 [{args.scale}]: " + "; ".join(f"{r['row']}→{r['step']}: MP {r['mp_rank']:g} e90 {r['e90']:g}" for r in rows)
          + f"; settles at {settle}")
    return {"rows": rows, "settle": settle_info}


def figure(result: dict):
    """Median MP-rank and e90 vs fraction of the run (ours solid, published hollow) and the train loss."""
    import matplotlib.pyplot as plt

    rows = sorted(result["rows"], key=lambda r: r["post_step"])
    x = [r["post_step"] / POST_TOTAL for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, col, c in (("mp_rank", "MP-rank (signal)", "C0"), ("e90", "e90 (signal + noise)", "C1")):
        a1.plot(x, [r[key] for r in rows], "-o", color=c, label=f"ours ({result['scale']}) {key}")
        pv = [published.get("post01", "9.17", r["row"], col) for r in rows]
        report.mark_published(a1, x, pv, label=f"published {key}", color=c)
    st = (result.get("settle") or {}).get("fraction")
    if st is not None:
        a1.axvline(st, color="grey", ls=":", lw=1, label="ours: MP-rank settled")
    a1.axvline(1200 / POST_TOTAL, color=report.PALETTE["published"], ls=":", lw=1, label="post: step 1200")
    a1.set_xscale("log")
    a1.set_xlabel("fraction of the 3-epoch run")
    a1.set_ylabel("median over LoRA-able tensors")
    a1.set_title("Table 9.17 — MP-rank vs e90 of W(t) − W(0)")
    a1.legend(fontsize=6)
    a2.plot(x, [r["train_loss_smoothed"] for r in rows], "-o", label=f"ours ({result['scale']}, smoothed)")
    a2b = a2.twinx()
    pl = [published.get("post01", "9.17", r["row"], "train loss") for r in rows]
    report.mark_published(a2b, x, pl, label="published (SAM3 trainer units, right axis)")
    a2.set_xscale("log")
    a2.set_xlabel("fraction of the 3-epoch run")
    a2.set_ylabel("train loss (ours)")
    a2.set_title("train loss keeps falling at constant MP-rank?")
    h1, l1 = a2.get_legend_handles_labels()
    h2, l2 = a2b.get_legend_handles_labels()
    a2.legend(h1 + h2, l1 + l2, fontsize=6)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
