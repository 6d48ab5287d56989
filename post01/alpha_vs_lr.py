"""Post 01 §10, Table 9.21 — α-boost vs LR-boost: is raising α the same as raising the learning rate?

r=8 LoRA on F[0..4] at boost k ∈ {1, 8, 12, 16}: the α-boost runs α = 8k at the default LR, the
LR-boost runs α = 8 with the LR × k. In plain SGD both give the same per-step ΔW (η·(α/r) is what
matters); under Adam they differ. Reports watch IoU of both, Δ (LR − α), end losses, and a paired
per-task test of the two at each k.

Writes results/post01/table-9.21.{json,md} and fig-9.21.{png,svg}.
"""
from __future__ import annotations

import time

from common import cli, curves, recipes, report, runpool, section, stats

RANK = 8
KS = (1, *recipes.LR_BOOSTS)  # 1, 8, 12, 16
LABEL = {1: "baseline (k=1)", **{k: f"{k}×" for k in recipes.LR_BOOSTS}}
PUBLISHED = report.columns("post01", "9.21", {"alpha_boost_iou": "α-boost (α=8k, LR=default)",
                                              "lr_boost_iou": "LR-boost (α=8, LR=k×)", "delta_lr_minus_alpha": "Δ (LR − α)"})


def add_args(ap):
    ap.add_argument("--jobs", type=int, default=None, help="parallel training processes (default $JOBS or CPU count)")


def main(argv=None) -> dict:
    args = cli.parse(__doc__, argv, extra=add_args)
    t0 = time.time()
    alpha_run = {k: recipes.lora_name(RANK, RANK * k) for k in KS}
    lr_run = {k: recipes.lora_name(RANK, RANK, lr_mult=k) for k in KS}  # k=1: the same run (α=8, default LR)
    names = list(dict.fromkeys([*alpha_run.values(), *lr_run.values()]))
    runs = runpool.train_and_score(["base", *names], args.scale, suites=("watch",), jobs=args.jobs)
    base_iou = runs["base"][1]["watch"]["iou"]

    rows = []
    for k in KS:
        (ra, sa), (rl, sl) = runs[alpha_run[k]], runs[lr_run[k]]
        row = {"row": LABEL[k], "k": k, "alpha_recipe": alpha_run[k], "lr_recipe": lr_run[k],
               "alpha_boost_iou": sa["watch"]["iou"], "lr_boost_iou": sl["watch"]["iou"],
               "delta_lr_minus_alpha": sl["watch"]["iou"] - sa["watch"]["iou"],
               "alpha_boost_end_loss": curves.end_loss(ra.log), "lr_boost_end_loss": curves.end_loss(rl.log),
               "lr": recipes.RECIPES[lr_run[k]].lr}
        if k != 1:
            ps = stats.paired_stats(dict(zip(sl["watch"]["task_ids"], sl["watch"]["per_task_iou"])),
                                    dict(zip(sa["watch"]["task_ids"], sa["watch"]["per_task_iou"])))
            row.update({"wins_lr": ps.wins, "wins_alpha": ps.losses, "paired_t_p": ps.t_p, "cohens_d": ps.cohens_d})
        rows.append(row)
    by = {r["k"]: r for r in rows}
    best = max(max(r["alpha_boost_iou"], r["lr_boost_iou"]) for r in rows)
    v = [
        section.verdict("the runs learned the watch task (best IoU − base IoU ≥ 0.05)", best - base_iou >= 0.05,
                        f"best {best:.4f} vs base {base_iou:.4f}" + ("" if best - base_iou >= 0.05 else
                        "; the fine-tunes did not learn the task at this scale, so the comparisons below are noise"),
                        "base 0.23 → 0.76–0.885"),
        section.verdict("both boosts beat the k=1 baseline at every k",
                        all(by[k]["alpha_boost_iou"] > by[1]["alpha_boost_iou"] and by[k]["lr_boost_iou"] > by[1]["lr_boost_iou"]
                            for k in KS[1:]),
                        ", ".join(f"k={k}: α {by[k]['alpha_boost_iou']:.3f} / LR {by[k]['lr_boost_iou']:.3f}" for k in KS),
                        "0.836–0.885 vs 0.762"),
        section.verdict("at k=8 the LR-boost wins", by[8]["delta_lr_minus_alpha"] > 0,
                        f"Δ(LR − α) = {by[8]['delta_lr_minus_alpha']:+.3f}", "+0.034"),
        section.verdict("at k=12 and k=16 the α-boost wins", by[12]["delta_lr_minus_alpha"] < 0 and by[16]["delta_lr_minus_alpha"] < 0,
                        f"Δ = {by[12]['delta_lr_minus_alpha']:+.3f}, {by[16]['delta_lr_minus_alpha']:+.3f}", "−0.022, −0.022"),
        section.verdict("substitution approximate: |Δ(LR − α)| ≤ 0.05 at every k",
                        all(abs(by[k]["delta_lr_minus_alpha"]) <= 0.05 for k in KS),
                        ", ".join(f"{by[k]['delta_lr_minus_alpha']:+.3f}" for k in KS), "|Δ| ≤ 0.034"),
    ]
    extra = {"curves": {f"alpha_k{k}": curves.curve(runs[alpha_run[k]][0].log) for k in KS}
             | {f"lr_k{k}": curves.curve(runs[lr_run[k]][0].log) for k in KS[1:]},
             "eval_suites": ["watch"], "base_watch_iou": base_iou,
             "notes": "k=1 is one run (α=8, default LR) shared by both columns. wins_lr / wins_alpha: per-task wins of the "
                      "LR-boost / α-boost run; paired_t_p, cohens_d on Δ = LR − α per task."}
    section.emit(args, "9.21", rows, t0=t0, config={"rank": RANK, "ks": list(KS), "scale": args.scale},
                 script="post01/alpha_vs_lr.py", title="Table 9.21 — α-vs-LR exchange, r=8 LoRA",
                 published=PUBLISHED, verdicts=v, extra=extra, figure=figure, notes=extra["notes"],
                 md_keys=["row", "alpha_boost_iou", "lr_boost_iou", "delta_lr_minus_alpha", "alpha_boost_end_loss",
                          "lr_boost_end_loss", "wins_lr", "wins_alpha", "paired_t_p"],
                 claim_ids=("p01-9.21-alpha-beats-lr",))
    print(f"table 9.21 [{args.scale}] ({time.time() - t0:.0f} s): " + "; ".join(
        f"k={r['k']} α {r['alpha_boost_iou']:.3f} LR {r['lr_boost_iou']:.3f}" for r in rows))
    return {"rows": rows}


def figure(result: dict):
    import matplotlib.pyplot as plt

    from common import published as pub

    rows = result["rows"]
    ks = [r["k"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(ks, [r["alpha_boost_iou"] for r in rows], "o-", color=report.PALETTE["ours"], label=f"α-boost, ours ({result['scale']})")
    ax.plot(ks, [r["lr_boost_iou"] for r in rows], "s-", color="#e69f00", label=f"LR-boost, ours ({result['scale']})")
    for col, name in (("α-boost (α=8k, LR=default)", "α-boost"), ("LR-boost (α=8, LR=k×)", "LR-boost")):
        vals = []
        for r in rows:
            try:
                vals.append(pub.value("post01", "9.21", r["row"], col)["value"])
            except KeyError:
                vals.append(None)
        report.mark_published(ax, ks, vals, label=f"{name}, published",
                              color=report.PALETTE["published"] if name == "α-boost" else "#8e44ad")
    ax.set_xticks(ks, [f"{k}×" for k in ks])
    ax.set_xlabel("boost k (α = 8k, or LR × k at α = 8)")
    ax.set_ylabel("watch IoU")
    ax.set_title("Table 9.21 — α-boost vs LR-boost, r=8")
    ax.legend(fontsize=7)
    return fig


if __name__ == "__main__":
    main()
