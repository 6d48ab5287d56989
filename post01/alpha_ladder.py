"""Post 01 §10, Table 9.15 + Fig 9.15 — the r=8 LoRA α ladder, α ∈ {16, 22, 40, 64, 96, 128, 160}.

Trains (or loads cached) r=8 LoRA on F[0..4] for each α at the default LR, scores watch IoU only
(the one metric the table needs), and reports per α: scaling α/r, rsLoRA c = α/√r, end loss
(per-sample, mean of the last 5 % of steps), watch IoU and ΔIoU vs α=22 (the rsLoRA-prescribed α).
Fig 9.15 overlays every α's smoothed per-sample training-loss curve.
Runs train in parallel worker processes (``--jobs``, default ``$JOBS`` or the CPU count).

Writes results/post01/table-9.15.{json,md} and fig-9.15.{png,svg}.
"""
from __future__ import annotations

import math
import time

from common import cli, curves, recipes, report, runpool, section

RANK = 8
LEARNED = 0.05  # minimum watch-IoU gain over base for the ladder's IoU ordering to mean anything
ALPHAS = recipes.ALPHA_LADDER  # (16, 22, 40, 64, 96, 128, 160)
RSLORA_ALPHA = recipes.RSLORA_ALPHA[RANK]  # 22
LABEL = {a: f"{a} (~rsLoRA)" if a == RSLORA_ALPHA else str(a) for a in ALPHAS}  # the post's row labels
PUBLISHED = report.columns("post01", "9.15", {
    "scaling": "scaling α/r", "rslora_c": "rsLoRA c = α/√r", "end_loss": "end-loss", "watch_iou": "watch IoU",
    "delta_iou_vs_22": "ΔIoU vs α=22"})


def add_args(ap):
    ap.add_argument("--jobs", type=int, default=None, help="parallel training processes (default $JOBS or CPU count)")


def main(argv=None) -> dict:
    args = cli.parse(__doc__, argv, extra=add_args)
    t0 = time.time()
    names = {a: recipes.lora_name(RANK, a) for a in ALPHAS}
    runs = runpool.train_and_score(["base", *names.values()], args.scale, suites=("watch",), jobs=args.jobs)
    base_iou = runs["base"][1]["watch"]["iou"]

    rows = []
    for a, name in names.items():
        run, scores = runs[name]
        rows.append({"row": LABEL[a], "alpha": a, "recipe": name, "scaling": a / RANK, "rslora_c": a / math.sqrt(RANK),
                     "end_loss": curves.end_loss(run.log), "end_loss_scaled": curves.end_loss(run.log, "loss_scaled"),
                     "watch_iou": scores["watch"]["iou"], "steps": run.summary["steps"],
                     "train_wall_s": run.summary["train_wall_s"]})
    ref = next(r["watch_iou"] for r in rows if r["alpha"] == RSLORA_ALPHA)
    for r in rows:
        r["delta_iou_vs_22"] = r["watch_iou"] - ref

    iou = {r["alpha"]: r["watch_iou"] for r in rows}
    loss = {r["alpha"]: r["end_loss"] for r in rows}
    peak = max(iou, key=iou.get)
    top = max(ALPHAS)
    learned = iou[peak] - base_iou >= LEARNED
    verdicts = [
        section.verdict(f"the ladder learned the watch task (peak IoU − base IoU ≥ {LEARNED})", learned,
                        f"peak {iou[peak]:.4f} vs base {base_iou:.4f}" + ("" if learned else
                        "; the fine-tunes did not learn the task at this scale, so the IoU ordering below is noise"),
                        "base 0.23 → 0.76–0.885"),
        section.verdict("IoU peak above the rsLoRA α (α > 22)", peak > RSLORA_ALPHA,
                        f"argmax α = {peak} (IoU {iou[peak]:.3f}; α=22: {iou[RSLORA_ALPHA]:.3f})", "peak at α=128, +0.123 vs α=22"),
        section.verdict("peak at the post's α = 128", peak == 128, f"our peak α = {peak}", "α=128 (c≈45)"),
        section.verdict("interior optimum: IoU at α=160 below the peak", iou[top] < iou[peak],
                        f"IoU(160) = {iou[top]:.3f} vs peak {iou[peak]:.3f}", "0.869 < 0.885"),
        section.verdict("loss climbs back at α=160 (end loss above the ladder's minimum)", loss[top] > min(loss.values()),
                        f"end loss(160) = {loss[top]:.3f}, min {min(loss.values()):.3f} at α={min(loss, key=loss.get)}",
                        "4.75 vs min 4.15 at α=96"),
    ]
    extra = {
        "curves": {str(a): curves.curve(runs[n][0].log) for a, n in names.items()},
        "peak_alpha": peak,
        "base_watch_iou": base_iou,
        "learned_task": learned,
        "eval_suites": ["watch"],
        "notes": ("The post's ΔIoU column uses 0.762 for α=22, which is its r=8 α=8 (standard) IoU; Tables 9.9/9.11 give "
                  "0.842 for r=8 α=22. Ours is measured against our α=22 run. End loss = mean per-sample loss over the "
                  "last 5 % of steps (the trainer's loss ÷ √(4 images per device))."),
    }
    section.emit(args, "9.15", rows, t0=t0, config={"rank": RANK, "alphas": list(ALPHAS), "recipes": names,
                                                     "scale": args.scale, "jobs": args.jobs},
                 script="post01/alpha_ladder.py", title="Table 9.15 — r=8 LoRA, full α-ladder",
                 published=PUBLISHED, verdicts=verdicts, extra=extra, figure=figure,
                 md_keys=["row", "alpha", "scaling", "rslora_c", "end_loss", "watch_iou", "delta_iou_vs_22"],
                 claim_ids=("p01-9.15-alpha-peak", "p01-9.15-interior-optimum"),
                 notes=extra["notes"])
    print(f"table 9.15 [{args.scale}] ({time.time() - t0:.0f} s): "
          + "; ".join(f"α={r['alpha']} IoU {r['watch_iou']:.3f} loss {r['end_loss']:.3f}" for r in rows))
    return {"rows": rows}


def figure(result: dict):
    """Fig 9.15: per-sample loss curves across the α ladder (log y); watch IoU and end loss vs α beside them."""
    import matplotlib.pyplot as plt

    from common import published as pub

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.5, 1]})
    rows = {str(r["alpha"]): r for r in result["rows"]}
    cmap = plt.get_cmap("viridis")
    for i, (a, c) in enumerate(result["curves"].items()):
        r = rows[a]
        ax.plot(c["step"], c["value"], color=cmap(i / max(1, len(rows) - 1)), lw=1.2,
                label=f"α={a} (IoU {r['watch_iou']:.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("per-sample loss (smoothed)")
    ax.set_title(f"r=8 LoRA α ladder — training loss ({result['scale']})")
    ax.legend(fontsize=7)
    alphas = [r["alpha"] for r in result["rows"]]
    bx.plot(alphas, [r["watch_iou"] for r in result["rows"]], "o-", color=report.PALETTE["ours"],
            label=f"ours ({result['scale']})")
    pubv = []
    for r in result["rows"]:
        try:
            pubv.append(pub.value("post01", "9.15", r["row"], "watch IoU")["value"])
        except KeyError:
            pubv.append(None)
    report.mark_published(bx, alphas, pubv, label="published (SAM3)")
    bx.set_xscale("log", base=2)
    bx.set_xticks(alphas, [str(a) for a in alphas])
    bx.set_xlabel("α (r = 8)")
    bx.set_ylabel("watch IoU")
    cx = bx.twinx()
    cx.plot(alphas, [r["end_loss"] for r in result["rows"]], "s:", color="grey", ms=4, label="our end loss")
    cx.set_ylabel("end loss (per-sample)", color="grey")
    cx.grid(False)
    bx.axvline(22, color="grey", lw=0.8, ls="--")
    bx.legend(fontsize=7, loc="lower right")
    bx.set_title("watch IoU vs α (dashed: rsLoRA α=22)")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
