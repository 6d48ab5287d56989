"""Post 01 §9, Table 9.2, Table 9.4 and Fig 9.3 — LoRA on the fusion stack F[0..4] at four ranks.

* Table 9.2: trainable params, watch IoU, LVIS mIoU, SA-Co cgF1 / pmF1 / neg_correct for base, the
  three full recipes (all_trainable, frozen_te, fusion_only) and LoRA F[0..4] r = 8, 16, 32, 48 at the
  standard α = r.
* Table 9.4: per rank, watch IoU / LVIS mIoU / SA-Co neg_correct and the fusion[5] norm-inflation
  ratio mean‖F[5] output‖(fine-tune) / mean‖F[5] output‖(base) on the watch test pairs, also for the
  full recipes. F[5] = ``detr_encoder.layers.5`` (Meta ``transformer.encoder.layers.5``); in the HF
  code the fusion residual stream is the **image tokens** (prompt-conditioned by cross-attention), so
  the norm is over image-token vectors — the post describes the stream the other way round.
* Fig 9.3: per-sample loss curves of the seven recipes, log y: the raw curves as SAM3's trainer shows
  them (× √(per-device batch): in the post full recipes ran 1 image per device with accumulation and LoRA 16; at
  tiny scale since base v4 both take 4 images per step, so the factor is the same) and the per-sample ones.

Writes results/post01/table-9.2, table-9.4, fig-9.3 {.json,.md} and fig-9.2 / fig-9.4 / fig-9.3 {.png,.svg}.
"""
from __future__ import annotations

import time

import warnings

from scipy.stats import spearmanr

from common import cli, curves, probes, recipes, report, runpool, section

RANKS = recipes.LORA_RANKS
LORA = {r: recipes.lora_name(r, r) for r in RANKS}
FULL = recipes.POST01  # all_trainable, frozen_te, fusion_only
#: our recipe → the post's Table 9.2 row label
ROW_92 = {"base": "base SAM3", "all_trainable": "all-trainable", "frozen_te": "frozen-TE",
          "fusion_only": "fusion-only F[0..4]", **{LORA[r]: f"LoRA F[0..4] r={r}" for r in RANKS}}
PUB_92 = report.columns("post01", "9.2", {"watch_iou": "Watch IoU", "lvis_miou": "LVIS mIoU", "cgF1": ("cgF1", 100),
                                          "pmF1": ("pmF1", 100), "neg_correct": ("neg-correct", 100)})
PUB_94 = report.columns("post01", "9.4", {"watch_iou": "Watch IoU (in-domain)", "lvis_miou": "LVIS-val mIoU (pos)",
                                          "neg_correct": ("SA-Co neg-correct", 100)})
#: Numbers the post gives in its text, not in a table (kept apart from our rows).
TEXT_94 = {"fusion5_norm_ratio": {"r=16": 1.135, "r=32": 1.110, "r=48": 1.093, "fusion_only": "≈1.093 (matches r=48)",
                                  "all_trainable / frozen_te": "~1.01"},
           "source": "Post 01 §9 'Out of domain' paragraph after Table 9.4"}
TEXT_93 = {"end_loss_per_sample": {"all_trainable": 3.21, "frozen_te": 3.21, "fusion_only": 4.26, "lora_r48": 4.37,
                                   "lora_r8": 5.02}, "source": "Post 01 §9 'Loss curves' readings after Fig 9.3"}


def rho(a, b) -> float | None:
    """Spearman ρ, None where it is undefined (a constant input)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = float(spearmanr(a, b).statistic)
    return None if r != r else r


def add_args(ap):
    ap.add_argument("--jobs", type=int, default=None, help="parallel training processes (default $JOBS or CPU count)")


def main(argv=None) -> dict:
    args = cli.parse(__doc__, argv, extra=add_args)
    t0 = time.time()
    names = ["base", *FULL, *LORA.values()]
    runs = runpool.train_and_score(names, args.scale, jobs=args.jobs)
    norm = {n: probes.fusion_norm_run(n, args.scale, layer=5) for n in names}
    base_norm = norm["base"]["mean_norm"]

    def scores(n):
        s = runs[n][1]
        return {"watch_iou": s["watch"]["iou"], "lvis_miou": s["lvis"]["mIoU"], "cgF1": s["saco"]["cgF1"],
                "pmF1": s["saco"]["pmF1"], "neg_correct": s["saco"]["neg_correct"]}

    def trainable(n):
        return 0 if n == "base" else runs[n][0].summary["trainable_params"]

    # ---------------------------------------------------------------- Table 9.2
    rows92 = [{"row": ROW_92[n], "recipe": n, "rank": recipes.RECIPES[n].adapter.rank if n in LORA.values() else None,
               "trainable_params": trainable(n), **scores(n)} for n in names]
    base_params = sum(p.numel() for p in recipes.load_model("base", args.scale).parameters())
    for r in rows92:
        r["trainable_pct"] = 100.0 * r["trainable_params"] / base_params
    s92 = {r["recipe"]: r for r in rows92}
    lora_iou = [s92[LORA[k]]["watch_iou"] for k in RANKS]
    full_neg = max(s92["all_trainable"]["neg_correct"], s92["frozen_te"]["neg_correct"])
    v92 = [
        section.verdict("LoRA watch IoU rises with rank (Spearman ρ > 0)",
                        None if rho(RANKS, lora_iou) is None else rho(RANKS, lora_iou) > 0,
                        "IoU r=8..48: " + ", ".join(f"{x:.3f}" for x in lora_iou), "0.76 → 0.82 → 0.84 → 0.87"),
        section.verdict("r=48 matches fusion-only IoU (|Δ| ≤ 0.02)",
                        abs(s92[LORA[48]]["watch_iou"] - s92["fusion_only"]["watch_iou"]) <= 0.02,
                        f"r=48 {s92[LORA[48]]['watch_iou']:.3f} vs fusion-only {s92['fusion_only']['watch_iou']:.3f}", "0.87 vs 0.87"),
        section.verdict("full recipes beat LoRA r=48 in-domain",
                        min(s92['all_trainable']['watch_iou'], s92['frozen_te']['watch_iou']) > s92[LORA[48]]['watch_iou'],
                        f"all-trainable {s92['all_trainable']['watch_iou']:.3f}, frozen-TE {s92['frozen_te']['watch_iou']:.3f}, "
                        f"r=48 {s92[LORA[48]]['watch_iou']:.3f}", "0.92 / 0.92 vs 0.87"),
        section.verdict("refusal collapses under every fine-tune (neg_correct < base − 0.5)",
                        all(s92[n]["neg_correct"] < s92["base"]["neg_correct"] - 0.5 for n in names[1:]),
                        f"base {s92['base']['neg_correct']:.3f}; fine-tunes " +
                        ", ".join(f"{n} {s92[n]['neg_correct']:.3f}" for n in names[1:]), "95.8 % → 2.2–11.8 %"),
        section.verdict("LoRA refuses better than the full recipes (every rank's neg_correct > both full)",
                        all(s92[LORA[k]]["neg_correct"] > full_neg for k in RANKS),
                        f"max full {full_neg:.3f}; LoRA " + ", ".join(f"r={k} {s92[LORA[k]]['neg_correct']:.3f}" for k in RANKS),
                        "7.9–11.8 % vs 2.2 / 3.2 %"),
    ]
    section.emit(args, "9.2", rows92, t0=t0, config={"recipes": names, "scale": args.scale},
                 script="post01/lora_ranks.py", title="Table 9.2 — watch IoU vs trainable params, seven recipes",
                 published=PUB_92, verdicts=v92, figure=figure,
                 extra={"base_params": base_params, "notes": "cgF1 / pmF1 / neg_correct stored as fractions (post prints ×100). "
                        "Trainable params of the tiny model (6.8 M) are not comparable to SAM3's 840 M; not mapped."},
                 md_keys=["row", "trainable_params", "trainable_pct", "watch_iou", "lvis_miou", "cgF1", "pmF1", "neg_correct"],
                 claim_ids=("p01-9.2-lora-rank-iou", "p01-9.2-r48-matches-fusion-only", "p01-9.4-lora-protects-refusal"))

    # ---------------------------------------------------------------- Table 9.4
    rows94 = []
    for n in [*LORA.values(), *FULL, "base"]:
        s = scores(n)
        row = {"recipe": n, "rank": recipes.RECIPES[n].adapter.rank if n in LORA.values() else None,
               "watch_iou": s["watch_iou"], "lvis_miou": s["lvis_miou"], "neg_correct": s["neg_correct"],
               "fusion5_mean_norm": norm[n]["mean_norm"], "fusion5_norm_ratio": norm[n]["mean_norm"] / base_norm}
        if row["rank"] is not None:
            row = {"row": str(row["rank"]), **row}
        rows94.append(row)
    s94 = {r["recipe"]: r for r in rows94}
    neg = [s94[LORA[k]]["neg_correct"] for k in RANKS]
    ratio = [s94[LORA[k]]["fusion5_norm_ratio"] for k in RANKS]
    r_ratio_neg = rho(ratio, neg)
    v94 = [
        section.verdict("lower rank is worse on negatives (mean neg_correct r32/r48 > r8/r16)",
                        (neg[2] + neg[3]) / 2 > (neg[0] + neg[1]) / 2, "neg_correct r=8..48: " + ", ".join(f"{x:.3f}" for x in neg),
                        "8.5, 7.9, 11.8, 11.8 %"),
        section.verdict("lower rank protects LVIS positives (LVIS mIoU r=8 ≥ r=48)",
                        s94[LORA[8]]["lvis_miou"] >= s94[LORA[48]]["lvis_miou"],
                        f"r=8 {s94[LORA[8]]['lvis_miou']:.3f}, r=48 {s94[LORA[48]]['lvis_miou']:.3f}", "0.554 vs 0.532"),
        section.verdict("LoRA inflates fusion[5]'s norm (ratio > 1 at every rank)", all(x > 1 for x in ratio),
                        "ratio r=8..48: " + ", ".join(f"{x:.3f}" for x in ratio), "1.135 (r=16), 1.110, 1.093"),
        section.verdict("norm inflation traces neg_correct in reverse (Spearman ρ(ratio, neg_correct) < 0 over ranks)",
                        None if r_ratio_neg is None else r_ratio_neg < 0, f"ρ = {r_ratio_neg}",
                        "r=16 highest ratio & worst neg_correct"),
        section.verdict("full recipes hardly inflate fusion[5] (their ratio < every LoRA rank's)",
                        max(s94[n]["fusion5_norm_ratio"] for n in ("all_trainable", "frozen_te")) < min(ratio),
                        ", ".join(f"{n} {s94[n]['fusion5_norm_ratio']:.3f}" for n in FULL), "~1.01 vs 1.09–1.14"),
    ]
    section.emit(args, "9.4", rows94, t0=t0, config={"recipes": names, "scale": args.scale, "probe_layer": 5},
                 script="post01/lora_ranks.py", title="Table 9.4 — two-axis OOD trade-off across LoRA ranks (+ fusion[5] norm inflation)",
                 published=PUB_94, verdicts=v94, figure=figure,
                 extra={"probe": {k: v for k, v in norm["base"].items() if k != "mean_norm"}, "base_fusion5_mean_norm": base_norm,
                        "published_in_text": TEXT_94,
                        "notes": ("fusion5_norm_ratio = mean L2 norm of detr_encoder.layers.5's output image tokens (the HF "
                                  "fusion residual stream is the image tokens, conditioned on the prompt by cross-attention) "
                                  "over the watch-test positive pairs, fine-tune ÷ base.")},
                 md_keys=["row", "recipe", "watch_iou", "lvis_miou", "neg_correct", "fusion5_norm_ratio"],
                 claim_ids=("p01-9.4-lower-rank-worse-neg", "p01-9.4-lower-rank-lvis"))

    # ---------------------------------------------------------------- Fig 9.3
    trained = [*FULL, *LORA.values()]
    rows93 = []
    for n in trained:
        run = runs[n][0]
        rec = recipes.resolve(n, args.scale)
        per_device = max(s.images for s in rec.streams)
        rows93.append({"recipe": n, "per_device_images": per_device, "grad_accum": rec.grad_accum,
                       "sqrt_bs": per_device ** 0.5, "steps": run.summary["steps"],
                       "end_loss_scaled": curves.end_loss(run.log, "loss_scaled"), "end_loss": curves.end_loss(run.log)})
    e = {r["recipe"]: r["end_loss"] for r in rows93}
    lora_loss = [e[LORA[k]] for k in RANKS]
    v93 = [
        section.verdict("after √bs correction the LoRA curves stack monotonically by rank (r=8 highest)",
                        all(lora_loss[i] > lora_loss[i + 1] for i in range(3)),
                        "end loss r=8..48: " + ", ".join(f"{x:.3f}" for x in lora_loss), "5.02 … 4.37"),
        section.verdict("fusion-only plateaus above the full recipes", e["fusion_only"] > max(e["all_trainable"], e["frozen_te"]),
                        f"fusion-only {e['fusion_only']:.3f}, all-trainable {e['all_trainable']:.3f}, frozen-TE {e['frozen_te']:.3f}",
                        "4.26 vs 3.21"),
        section.verdict("LoRA plateaus above fusion-only (every rank)", min(lora_loss) > e["fusion_only"],
                        f"min LoRA {min(lora_loss):.3f} vs fusion-only {e['fusion_only']:.3f}", "4.37–5.02 vs 4.26"),
        section.verdict("all-trainable ≈ frozen-TE (|Δ end loss| < 5 %)",
                        abs(e["all_trainable"] - e["frozen_te"]) < 0.05 * e["frozen_te"],
                        f"{e['all_trainable']:.3f} vs {e['frozen_te']:.3f}", "both ≈ 3.21"),
    ]
    extra93 = {"curves": {n: {"per_sample": curves.curve(runs[n][0].log, "loss_per_sample"),
                              "scaled": curves.curve(runs[n][0].log, "loss_scaled")} for n in trained},
               "published_in_text": TEXT_93,
               "notes": ("loss_scaled = per-sample loss × √(per-device images), as SAM3's trainer reports it; "
                         "full recipes: 1 image/device × 4-step accumulation (×1); LoRA: 4 images/device (×2).")}
    section.emit(args, "fig-9.3", rows93, t0=t0, config={"recipes": trained, "scale": args.scale},
                 script="post01/lora_ranks.py", title="Fig 9.3 — per-sample loss curves, seven recipes (end losses)",
                 verdicts=v93, extra=extra93, figure=figure,
                 md_keys=["recipe", "per_device_images", "grad_accum", "sqrt_bs", "steps", "end_loss_scaled", "end_loss"])
    print(f"tables 9.2/9.4, fig 9.3 [{args.scale}] ({time.time() - t0:.0f} s): "
          + "; ".join(f"{r['recipe']} IoU {r['watch_iou']:.3f} neg {r['neg_correct']:.3f}" for r in rows92))
    return {"rows92": rows92, "rows94": rows94, "rows93": rows93}


# ----------------------------------------------------------------------------- figures
def figure(result: dict):
    t = result["table"]
    if t == "fig-9.3":
        return _fig_93(result)
    if t == "table-9.4":
        return _fig_94(result)
    return _fig_92(result)


def _pub(table: str, row, column: str):
    from common import published as pub

    try:
        return pub.value("post01", table, str(row), column)["value"]
    except KeyError:
        return None


def _fig_92(result: dict):
    import matplotlib.pyplot as plt

    rows = result["rows"]
    cols = [("watch_iou", "Watch IoU", 1), ("lvis_miou", "LVIS mIoU", 1), ("cgF1", "cgF1", 100), ("pmF1", "pmF1", 100),
            ("neg_correct", "neg-correct", 100)]
    fig, axes = plt.subplots(1, len(cols), figsize=(16, 3.8))
    xs = list(range(len(rows)))
    for ax, (k, col, f) in zip(axes, cols):
        ax.bar(xs, [(r[k] or 0) * f for r in rows], color=report.PALETTE["ours"], alpha=0.85, label=f"ours ({result['scale']})")
        report.mark_published(ax, xs, [_pub("9.2", r["row"], col) for r in rows], label="published (SAM3)", line=False)
        ax.set_xticks(xs, [r["row"].replace("LoRA F[0..4] ", "") for r in rows], rotation=45, ha="right", fontsize=7)
        ax.set_title(col + (" (%)" if f == 100 else ""))
    axes[0].legend(fontsize=7)
    fig.suptitle("Table 9.2 — seven recipes + base: in-domain vs open-vocabulary", fontsize=10)
    fig.tight_layout()
    return fig


def _fig_94(result: dict):
    import matplotlib.pyplot as plt

    lora = [r for r in result["rows"] if r.get("rank") is not None]
    full = [r for r in result["rows"] if r.get("rank") is None and r["recipe"] != "base"]
    ranks = [r["rank"] for r in lora]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax.plot(ranks, [r["neg_correct"] * 100 for r in lora], "o-", color=report.PALETTE["ours"], label=f"ours ({result['scale']})")
    report.mark_published(ax, ranks, [_pub("9.4", k, "SA-Co neg-correct") for k in ranks], label="published (SAM3)")
    for r in full:
        ax.axhline(r["neg_correct"] * 100, ls=":", lw=1, color="grey")
        ax.text(ranks[-1], r["neg_correct"] * 100, r["recipe"], fontsize=6, va="bottom", ha="right")
    ax.set_xlabel("LoRA rank (α = r)")
    ax.set_ylabel("SA-Co neg-correct (%)")
    ax.set_xticks(ranks)
    ax.legend(fontsize=7)
    ax.set_title("refusal vs rank")
    bx.plot(ranks, [r["fusion5_norm_ratio"] for r in lora], "o-", color=report.PALETTE["ours"], label="ours, LoRA")
    text = result.get("published_in_text", {}).get("fusion5_norm_ratio", {})
    report.mark_published(bx, [16, 32, 48], [text.get("r=16"), text.get("r=32"), text.get("r=48")], label="published (text)")
    for r in full:
        bx.axhline(r["fusion5_norm_ratio"], ls=":", lw=1, color="grey")
        bx.text(ranks[-1], r["fusion5_norm_ratio"], r["recipe"], fontsize=6, va="bottom", ha="right")
    bx.axhline(1.0, color="black", lw=0.6)
    bx.set_xlabel("LoRA rank (α = r)")
    bx.set_ylabel("‖F[5] out‖ FT / base")
    bx.set_xticks(ranks)
    bx.legend(fontsize=7)
    bx.set_title("fusion[5] norm inflation (image-token stream)")
    fig.tight_layout()
    return fig


def _fig_93(result: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    cmap = plt.get_cmap("tab10")
    for i, (n, c) in enumerate(result["curves"].items()):
        for ax, k in zip(axes, ("scaled", "per_sample")):
            ax.plot(c[k]["step"], c[k]["value"], color=cmap(i), lw=1.2, ls="-" if n.startswith("lora") else "--", label=n)
    for ax, title in zip(axes, ("raw: × √(per-device batch), as the trainer reports", "√bs-corrected per-sample loss")):
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("training loss (smoothed)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Fig 9.3 — loss curves, seven recipes ({result['scale']})", fontsize=10)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
