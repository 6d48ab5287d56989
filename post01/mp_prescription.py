"""Post 01 §12, Tables 9.12 / 9.13 — the per-tensor MP-rank LoRA prescription, and full-model LoRA trained from it.

Table 9.12: read each LoRA-able tensor's MP-rank (Table 9.17's edge) from the frozen-TE partial fine-tune
at the step where the median MP-rank has settled (the post: step 1200 of 15,939), give it a LoRA of that
rank with α = boost·max(4r, ⌈22√r⌉) (boost 4; also 2), skip MP-rank-0 tensors; summarise by module pattern
(vision q/k/v and proj, vision FFN, fusion/decoder attention q/k/v, out_proj, FFN) and export the peft
LoraConfig (rank_pattern / alpha_pattern).

Table 9.13: train the full-model LoRA from that prescription at 4× and 2× α and set its watch IoU and
trainable parameters beside base, LoRA F[0..4] r=48 (std α), r=8 α=128, fusion_only, frozen_te and
all_trainable. Writes results/post01/table-9.12.* and table-9.13.* (+ fig-9.12, fig-9.13).
"""
from __future__ import annotations

import statistics
import time

from common import cli, evaluate, lora, mprank, published, recipes, report, runs, section
from common.claims import LEARNED, Outcome, Results, iou_of, claim, cmp, every
from common.model import count_params, original_name

PATTERN_ROWS = {"vision_proj": "vision_trunk vision_proj", "vision_qkv": "vision_trunk vision_qkv",
                "vision_ffn": "vision_trunk FFN (fc1 / fc2)", "attn_in_proj": "fusion / decoder attention in_proj",
                "attn_out_proj": "fusion / decoder attention out_proj", "ffn": "fusion / decoder FFN (linear1 / linear2)",
                "other": None}
PUB_912 = report.columns("post01", "9.12", {
    "n_adapted": "# tensors", "rank_min": "rank (min)", "rank_max": "rank (max)", "rank_median": "rank (median)",
    "alpha_min": "α (4× formula) (min)", "alpha_max": "α (4× formula) (max)", "alpha_over_r": "α/r",
    "alpha_over_r_min": "α/r (min)", "alpha_over_r_max": "α/r (max)"})
BOOSTS = (4, 2)
#: Table 9.13's recipes: our key → (registered recipe or None for base / the prescription runs, published row label).
TABLE_913 = {
    "base": (None, "base SAM3 (no fine-tune)"),
    "lora_r48_std": (recipes.lora_name(48, 48), "LoRA F[0..4] r=48 (std α)"),
    "lora_r8_a128": (recipes.lora_name(8, 128), "LoRA F[0..4] r=8, α=128"),
    "fusion_only": ("fusion_only", "fusion04_only (full-rank)"),
    "full_lora_mp_2x": ("lora_mp_2x", "full-model LoRA, MP-rank + 2× α"),
    "full_lora_mp_4x": ("lora_mp_4x", "full-model LoRA, MP-rank + 4× α"),
    "frozen_te": ("frozen_te", "frozen-TE full FT"),
    "all_trainable": ("all_trainable", "all-trainable full FT"),
}
PUB_913 = report.columns("post01", "9.13", {"pct_of_base": "% of base", "watch_iou": "watch IoU"})
T913 = "post01/table-9.13"


# ----------------------------------------------------------------------------- claims
# p01-6-fusion-only-gap reads results/recipes.json and cites Table 9.13 (judged by `make compare`); the others are
# judged when table-9.13 is written.
@claim("p01-6-fusion-only-gap", "post01", "§6", table="9.13", needs=LEARNED, reads=("recipes",),
       quote="Most of the in-domain capacity of a vision-language fine-tune lives in the cross-attention fusion stack, not in the encoders or the decoder.",
       statement="fusion_only recovers ≥ 80 % of the base→frozen_te watch-IoU gap")
def _(r: Results) -> Outcome:
    b = iou_of(r, "base")
    return cmp((iou_of(r, "fusion_only") - b) / (iou_of(r, "frozen_te") - b), ">=", 0.8, "gap share")


@claim("p01-9.13-mp-lora-beats-ft", "post01", "Table 9.13", table="9.13", needs=LEARNED, reads=("post01/table-9.13",),
       quote="The MP-rank LoRA at 4× α beats the frozen-TE full fine-tune: 0.9232 vs 0.9215.",
       statement="watch IoU: full_lora_mp_4x ≥ frozen_te (rows: recipe, watch_iou)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.13"
    return cmp(r.cell(t, "watch_iou", recipe="full_lora_mp_4x"), ">=", r.cell(t, "watch_iou", recipe="frozen_te"), "MP-LoRA 4× vs frozen-TE")


@claim("p01-9.13-alpha-lever", "post01", "Table 9.13", table="9.13", needs=LEARNED, reads=("post01/table-9.13",),
       quote="The +0.012 IoU between the two is pure α — the rank prescription is identical.",
       statement="watch IoU: full_lora_mp_4x > full_lora_mp_2x, with a trainable count < 5 % of frozen_te's (key trainable)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.13"
    return every(cmp(r.cell(t, "watch_iou", recipe="full_lora_mp_4x"), ">", r.cell(t, "watch_iou", recipe="full_lora_mp_2x"), "4× vs 2× α"),
                 cmp(r.cell(t, "trainable", recipe="full_lora_mp_4x"), "<", 0.05 * r.cell(t, "trainable", recipe="frozen_te"), "trainable vs 5 % of frozen-TE"))


@claim("p01-9.13-full-model-beats-fusion-stack", "post01", "Table 9.13", table="9.13", needs=LEARNED, reads=(T913,),
       quote="The outstanding question is whether the same diagnostic-driven recipe scales beyond the fusion stack",
       statement="watch IoU: full_lora_mp_4x > each fusion-stack recipe of Table 9.13 (lora_r48_std, lora_r8_a128, "
                 "fusion_only) (rows: recipe, watch_iou)")
def full_model_beats_fusion_stack(r: Results) -> Outcome:
    mp4 = r.cell(T913, "watch_iou", recipe="full_lora_mp_4x")
    return every(*(cmp(mp4, ">", r.cell(T913, "watch_iou", recipe=k), f"MP-LoRA 4× vs {k}")
                   for k in ("lora_r48_std", "lora_r8_a128", "fusion_only")))


def pattern_rows(ranks: dict[str, int], boost: float) -> list[dict]:
    """Table 9.12: per module pattern, the rank and α ranges over adapted tensors (MP-rank ≥ 1)."""
    rows = []
    for pat, label in PATTERN_ROWS.items():
        names = [n for n in ranks if mprank.module_pattern(n) == pat]
        if not names:
            continue
        rs = [ranks[n] for n in names if ranks[n] > 0]
        al = [lora.alpha_rule(r, boost) for r in rs]
        ar = [a / r for a, r in zip(al, rs)]
        row = {"pattern": pat, "n_tensors": len(names), "n_adapted": len(rs), "n_skipped": len(names) - len(rs)}
        if rs:
            row |= {"rank_min": min(rs), "rank_max": max(rs), "rank_median": float(statistics.median(rs)),
                    "alpha_min": min(al), "alpha_max": max(al), "alpha_over_r": float(statistics.median(ar)),
                    "alpha_over_r_min": min(ar), "alpha_over_r_max": max(ar)}
        rows.append(({"row": label} if label else {}) | row)
    return rows


def peft_export(ranks: dict[str, int], boost: float) -> dict:
    """The prescription as peft ``LoraConfig`` fields (rank-0 tensors skipped)."""
    d = lora.prescription_config(ranks, boost).to_dict()
    return {"r": d["r"], "lora_alpha": d["lora_alpha"], "target_modules": sorted(d["target_modules"]),
            "rank_pattern": d["rank_pattern"], "alpha_pattern": d["alpha_pattern"], "use_rslora": d["use_rslora"],
            "init_lora_weights": d["init_lora_weights"]}


def main(argv=None) -> dict:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    # ---- Table 9.12: the prescription, read where the MP-rank trajectory has settled
    presc = mprank.settled_prescription(args.scale)
    ranks = presc["ranks"]
    base_model = runs.load_model("base", args.scale)
    n_base = count_params(base_model)
    specs = {b: lora.prescription_spec(ranks, boost=b) for b in BOOSTS}
    lora_params = sum(lora.spec_param_counts(base_model, specs[4]).values())
    rows_912 = pattern_rows(ranks, 4)
    zero = sorted(n for n, r in ranks.items() if r == 0)
    extra_912 = {
        "prescription_step": presc["step"], "total_steps": presc["total_steps"], "post_step_1200_ours": presc["step_1200"],
        "median_trajectory": {str(k): v for k, v in presc["medians"].items()},
        "n_tensors": len(ranks), "n_adapted": len(ranks) - len(zero), "n_skipped": len(zero),
        "skipped": [{"name": n, "original": original_name(n + ".weight").removesuffix(".weight")} for n in zero],
        "lora_params": lora_params, "lora_pct_of_base": 100 * lora_params / n_base, "base_params": n_base,
        "per_tensor": [{"name": n, "original": original_name(n + ".weight").removesuffix(".weight"),
                        "pattern": mprank.module_pattern(n), "shape": presc["shapes"][n], "rank": r,
                        "alpha_4x": lora.alpha_rule(r, 4), "alpha_2x": lora.alpha_rule(r, 2)} for n, r in ranks.items()],
        "peft_lora_config": {f"{b}x": peft_export(ranks, b) for b in BOOSTS},
        "alpha_rule": "alpha = boost * max(4 r, ceil(22 sqrt r)), boost 4 (2x variant: boost 2); rank-0 tensors skipped",
        "patterns": "HF q/k/v_proj counted separately (LoRA targets are HF Linear modules); the post counts Meta's fused qkv/in_proj",
    }
    mp4_label = TABLE_913["full_lora_mp_4x"][1]
    post_params = published.value("post01", "9.13", mp4_label, "trainable")["printed"]
    post_pct = published.value("post01", "9.13", mp4_label, "% of base")["printed"]
    notes_912 = (f"Prescription read at frozen_te step {presc['step']} of {presc['total_steps']} (median MP-rank settled; the post's "
                 f"step 1200 ≈ our step {presc['step_1200']}). {len(ranks) - len(zero)} of {len(ranks)} tensors adapted, {len(zero)} "
                 f"skipped at MP-rank 0; LoRA parameters {lora_params:,} = {100 * lora_params / n_base:.2f} % of the "
                 f"{n_base:,}-parameter base (post: {post_params} = {post_pct}; every LoRA-able tensor adapted but the few "
                 "at MP-rank 0). α columns use the 4× rule.")
    section.emit(args, "9.12", rows_912, t0=t0, config={"recipe": "frozen_te", "scale": args.scale, "boosts": BOOSTS},
                published=PUB_912, extra=extra_912, title="Table 9.12 — heterogeneous per-tensor MP-rank prescription",
                notes=notes_912, md_keys=["row", "pattern", "n_tensors", "n_adapted", "rank_min", "rank_max", "rank_median",
                                          "alpha_min", "alpha_max", "alpha_over_r", "alpha_over_r_min", "alpha_over_r_max"],
                figure=figure)

    # ---- Table 9.13: train the full-model LoRA from the prescription, compare with the other recipes
    rows_913 = []
    for key, (name, label) in TABLE_913.items():
        if key == "base":
            iou, trainable = evaluate.evaluate_run("base", args.scale, ("watch",))["watch"]["iou"], 0
        else:
            recipe = recipes.with_ranks(name, ranks) if name.startswith("lora_mp_") else name
            run = runs.train(recipe, args.scale)
            iou = evaluate.evaluate_run(recipe, args.scale, ("watch",))["watch"]["iou"]
            trainable = int(run.summary["trainable_params"])
        rows_913.append({"row": label, "recipe": key, "trainable": trainable, "pct_of_base": 100 * trainable / n_base,
                         "watch_iou": iou})
    extra_913 = {"base_params": n_base, "prescription_step": presc["step"],
                 "note": "trainable = the run's trainable tensors (adapters for LoRA); % of base = trainable / base params. "
                         f"The post's counts are SAM3's ({published.value('post01', '9.13', TABLE_913['all_trainable'][1], 'trainable')['printed']}); "
                         "ours are the tiny model's, so compare % of base and IoU order."}
    section.emit(args, "9.13", rows_913, t0=t0, config={"scale": args.scale, "recipes": {k: v[0] for k, v in TABLE_913.items()}},
                published=PUB_913, extra=extra_913, title="Table 9.13 — watch IoU vs trainable parameters",
                notes=extra_913["note"], md_keys=["row", "recipe", "trainable", "pct_of_base", "watch_iou"], figure=figure)
    print(f"table 9.12 [{args.scale}]: step {presc['step']}, " + "; ".join(
        f"{r['pattern']} {r.get('rank_min')}–{r.get('rank_max')} (med {r.get('rank_median')})" for r in rows_912))
    print(f"table 9.13 [{args.scale}]: " + "; ".join(f"{r['recipe']} {r['watch_iou']:.3f} ({r['pct_of_base']:.2f} %)" for r in rows_913))
    return {"rows_912": rows_912, "rows_913": rows_913}


def figure(result: dict):
    """fig-9.12: per-tensor MP-rank by module pattern (ours dots, published median and range hollow);
    fig-9.13: watch IoU vs % of base trainable (ours filled, published hollow)."""
    import matplotlib.pyplot as plt

    if result["table"] == "table-9.12":
        fig, ax = plt.subplots(figsize=(8, 4))
        pats = [r["pattern"] for r in result["rows"]]
        for i, pat in enumerate(pats):
            vals = [t["rank"] for t in result["per_tensor"] if t["pattern"] == pat]
            ax.scatter([i - 0.12] * len(vals), vals, s=12, alpha=0.6, color=report.PALETTE["ours"],
                       label=f"ours ({result['scale']}), per tensor" if i == 0 else None)
            label = PATTERN_ROWS.get(pat)
            if label:
                p = {c: published.get("post01", "9.12", label, f"rank ({c})") for c in ("min", "median", "max")}
                if None not in p.values():
                    ax.errorbar([i + 0.15], [p["median"]], yerr=[[p["median"] - p["min"]], [p["max"] - p["median"]]], fmt="o",
                                mfc="none", capsize=4, color=report.PALETTE["published"],
                                label="published (SAM3) median, min–max" if i == 0 else None)
        ax.set_xticks(range(len(pats)), pats, rotation=20, fontsize=8)
        ax.set_ylabel("prescribed rank (MP-rank)")
        ax.set_title(f"Table 9.12 — MP-rank prescription at frozen_te step {result.get('prescription_step')}")
        ax.legend(fontsize=7)
        return fig
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in result["rows"]:
        x = max(r["pct_of_base"], 1e-3)
        ax.scatter([x], [r["watch_iou"]], color=report.PALETTE["ours"])
        ax.annotate(r["recipe"], (x, r["watch_iou"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        px, py = (published.get("post01", "9.13", r["row"], c) for c in ("% of base", "watch IoU"))
        if px is not None and py is not None:
            ax.scatter([max(px, 1e-3)], [py], facecolor="none", edgecolor=report.PALETTE["published"])
    ax.scatter([], [], color=report.PALETTE["ours"], label=f"ours ({result['scale']})")
    ax.scatter([], [], facecolor="none", edgecolor=report.PALETTE["published"], label="published (SAM3)")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters, % of base (base plotted at 0.001 %)")
    ax.set_ylabel("watch IoU")
    ax.set_title("Table 9.13 — watch IoU vs trainable parameters")
    ax.legend(fontsize=7)
    return fig


if __name__ == "__main__":
    main()
