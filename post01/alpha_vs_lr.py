"""Post 01 §10, Table 9.21 — α-boost vs LR-boost: is raising α the same as raising the learning rate?

r=8 LoRA on F[0..4] at boost k ∈ {1, 8, 12, 16}: the α-boost runs α = 8k at the default LR, the
LR-boost runs α = 8 with the LR × k. In plain SGD both give the same per-step ΔW (η·(α/r) is what
matters); under Adam they differ. Reports watch IoU of both, Δ (LR − α), end losses, and a paired
per-task test of the two at each k.

Writes results/post01/table-9.21.{json,md} and fig-9.21.{png,svg}.
"""
from __future__ import annotations

import time

from common import cli, curves, published, recipes, report, runpool, section, stats
from common.claims import LEARNED, Outcome, Results, claim, cmp, every

RANK = 8
KS = (1, *recipes.LR_BOOSTS)  # 1, 8, 12, 16
LABEL = {1: "baseline (k=1)", **{k: f"{k}×" for k in recipes.LR_BOOSTS}}
PUBLISHED = report.columns("post01", "9.21", {"alpha_boost_iou": "α-boost (α=8k, LR=default)",
                                              "lr_boost_iou": "LR-boost (α=8, LR=k×)", "delta_lr_minus_alpha": "Δ (LR − α)"})
T921 = "post01/table-9.21"


# ----------------------------------------------------------------------------- claims (judged when table-9.21 is written)
@claim("p01-9.21-alpha-beats-lr", "post01", "Table 9.21", table="9.21", needs=LEARNED, reads=("post01/table-9.21",),
       quote="At 12× and 16× the α-boost wins.",
       statement="at k=16, α-boost IoU ≥ LR-boost IoU (rows: k, alpha_boost_iou, lr_boost_iou)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.21"
    return cmp(r.cell(t, "alpha_boost_iou", k=16), ">=", r.cell(t, "lr_boost_iou", k=16), "k=16")


@claim("p01-9.21-both-boosts-help", "post01", "Table 9.21", table="9.21", needs=LEARNED, reads=(T921,),
       quote="The α-boost is just an offset that gets the adapter’s effective LR back into a useful range.",
       statement="at every boost k > 1, both the α-boost and the LR-boost watch IoU exceed the k=1 baseline "
                 "(rows: k, alpha_boost_iou, lr_boost_iou)")
def both_boosts_help(r: Results) -> Outcome:
    base = r.cell(T921, "alpha_boost_iou", k=1)
    ks = sorted(k for k in r.column(T921, "alpha_boost_iou", by="k") if float(k) != 1)
    return every(*(cmp(r.cell(T921, col, k=k), ">", base, f"{what} k={k} vs k=1")
                   for k in ks for col, what in (("alpha_boost_iou", "α"), ("lr_boost_iou", "LR"))))


@claim("p01-9.21-lr-wins-at-8", "post01", "Table 9.21", table="9.21", needs=LEARNED, reads=(T921,),
       quote="At 8× the LR-boost actually wins.",
       statement="at k=8, LR-boost watch IoU > α-boost watch IoU (rows: k, delta_lr_minus_alpha = LR − α)")
def lr_wins_at_8(r: Results) -> Outcome:
    ok, detail = cmp(r.cell(T921, "delta_lr_minus_alpha", k=8), ">", 0.0, "Δ (LR − α) at k=8")
    post = published.get("post01", "9.21", LABEL[8], "Δ (LR − α)")
    return ok, detail + ("" if post is None else f" (post: {post:+g})")


@claim("p01-9.21-substitution-approximate", "post01", "Table 9.21", table="9.21", needs=LEARNED, reads=(T921,),
       quote="The substitution is approximately right but not exact",
       statement="|Δ (LR − α)| ≤ 0.05 watch IoU at every k (rows: k, delta_lr_minus_alpha)")
def substitution_approximate(r: Results) -> Outcome:
    d = r.column(T921, "delta_lr_minus_alpha", by="k")
    return every(*(cmp(abs(v), "<=", 0.05, f"|Δ| k={k}") for k, v in sorted(d.items(), key=lambda kv: float(kv[0]))))


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
    extra = {"curves": {f"alpha_k{k}": curves.curve(runs[alpha_run[k]][0].log) for k in KS}
             | {f"lr_k{k}": curves.curve(runs[lr_run[k]][0].log) for k in KS[1:]},
             "eval_suites": ["watch"], "base_watch_iou": base_iou,
             "notes": "k=1 is one run (α=8, default LR) shared by both columns. wins_lr / wins_alpha: per-task wins of the "
                      "LR-boost / α-boost run; paired_t_p, cohens_d on Δ = LR − α per task."}
    section.emit(args, "9.21", rows, t0=t0, config={"rank": RANK, "ks": list(KS), "scale": args.scale},
                 title="Table 9.21 — α-vs-LR exchange, r=8 LoRA", published=PUBLISHED, extra=extra, figure=figure,
                 notes=extra["notes"],
                 md_keys=["row", "alpha_boost_iou", "lr_boost_iou", "delta_lr_minus_alpha", "alpha_boost_end_loss",
                          "lr_boost_end_loss", "wins_lr", "wins_alpha", "paired_t_p"])
    print(f"table 9.21 [{args.scale}] ({time.time() - t0:.0f} s): " + "; ".join(
        f"k={r['k']} α {r['alpha_boost_iou']:.3f} LR {r['lr_boost_iou']:.3f}" for r in rows))
    return {"rows": rows}


def figure(result: dict):
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ks = [r["k"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(ks, [r["alpha_boost_iou"] for r in rows], "o-", color=report.PALETTE["ours"], label=f"α-boost, ours ({result['scale']})")
    ax.plot(ks, [r["lr_boost_iou"] for r in rows], "s-", color="#e69f00", label=f"LR-boost, ours ({result['scale']})")
    for col, name in (("α-boost (α=8k, LR=default)", "α-boost"), ("LR-boost (α=8, LR=k×)", "LR-boost")):
        vals = [published.get("post01", "9.21", r["row"], col) for r in rows]
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
