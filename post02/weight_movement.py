"""Post 02 §07, Table 6.1 — weight movement: every recipe moves the same circuit, by different amounts.

Per module group (the Fig 1.1 groups of ``common.model.FINE_GROUPS``; the post's eight are among them), the
parameter-weighted mean rel_change ‖ΔW‖/‖W‖ of each recipe against its starting checkpoint: frozen_te, lvis_replay,
lvis_replay_neg and presence_only against base, recovery against frozen_te (``common.weightdiff``). Recipes are
trained through the recipe cache. Writes results/post02/table-6.1.{json,md} and fig-6.1.{png,svg} (Table 6.1 as bars;
the post's own Fig 6.1, the recovery drift curve, is drawn in fig-5.1b by ``post02/activation_drift.py``).
"""
from __future__ import annotations

import time

from common import cli, published, report, runs, section, weightdiff
from common.claims import Outcome, Results, claim, cmp, every, spearman

T61 = "post02/table-6.1"
#: Our column key → (recipe, the checkpoint it is measured against, published column).
DIFFS = {"frozen_te": ("frozen_te", "base", "frozen_te − base"),
         "lvis_replay": ("lvis_replay", "base", "lvis_replay − base"),
         "lvis_replay_neg": ("lvis_replay_neg", "base", "lvis_replay_neg − base"),
         "presence_only": ("presence_only", "base", "presence_only − base"),
         "recovery": ("recovery_frozen_te_boost", "frozen_te", "recovery − frozen_te")}
PUB = report.columns("post02", "6.1", {k: v[2] for k, v in DIFFS.items()})
#: Our group name → the post's row label where they differ.
POST_LABEL = {"text_encoder": "text_encoder (frozen)"}
POST_GROUPS = ("dot_prod_scoring", "decoder_ca_text", "geometry_encoder", "fusion_encoder", "decoder_self_attn",
               "transformer_decoder", "vision_trunk")


def moving_groups(r: Results) -> list[str]:
    """The post's moving groups that frozen_te moved here (the geometry encoder takes box prompts; with text prompts
    only it gets no gradient at this scale and stays at 0 in every recipe, so it orders nothing)."""
    ref = r.column(T61, "frozen_te", by="group")
    return [g for g in POST_GROUPS if ref.get(g, 0) > 0]


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    states = {n: runs.load_model(n, args.scale).state_dict() for n in {x for d in DIFFS.values() for x in d[:2]}}
    per = {k: weightdiff.group_rel_change(states[start], states[end]) for k, (end, start, _) in DIFFS.items()}
    groups = list(per["frozen_te"])
    rows = [{"row": POST_LABEL.get(g, g), "group": g, **{k: per[k][g]["rel_change"] for k in DIFFS},
             "params": per["frozen_te"][g]["params"], "tensors": per["frozen_te"][g]["tensors"]} for g in groups]
    rows.sort(key=lambda r: -(r["frozen_te"] or 0))
    full_ft = ("frozen_te", "lvis_replay", "lvis_replay_neg", "presence_only")
    for r in rows:
        r["largest_of_full_ft"] = max(full_ft, key=lambda k: r[k] or 0) if any(r[k] for k in full_ft) else None
    section.emit(args, "6.1", rows, t0=t0, section="post02", figure=figure, published=PUB,
                 md_keys=["row", *DIFFS, "largest_of_full_ft", "params"],
                 config={"diffs": {k: {"recipe": v[0], "against": v[1]} for k, v in DIFFS.items()}, "scale": args.scale},
                 title="Table 6.1 — weighted mean rel_change per module group, each recipe vs its starting checkpoint",
                 extra={"detail": per},
                 notes="rel_change = ‖ΔW‖_F / ‖W_start‖_F per tensor, averaged over the group weighted by parameter count "
                       "(tensors with a zero start norm are left out and counted in `detail`). `largest_of_full_ft`: "
                       "the post's bold (largest of the four columns against base).")
    for r in rows:
        print(f"  {r['row']:26s} " + "  ".join(f"{k} {r[k]:.3f}" if r[k] is not None else f"{k} —" for k in DIFFS))
    print(f"table 6.1 [{args.scale}] {time.time() - t0:.0f} s")
    return rows


# ----------------------------------------------------------------------------- claims
@claim("p02-6.1-same-circuit", "post02", "Table 6.1", table="6.1", reads=(T61,),
       quote="The structural reading is every recipe moves the same circuit, just by different amounts.",
       statement="Spearman ρ of per-group rel_change between frozen_te and each of lvis_replay, lvis_replay_neg, "
                 "recovery ≥ 0.7, over the post's seven moving groups that move here")
def same_circuit(r: Results) -> Outcome:
    ref = r.column(T61, "frozen_te", by="group")
    outs = []
    for k in ("lvis_replay", "lvis_replay_neg", "recovery"):
        col = r.column(T61, k, by="group")
        gs = [g for g in moving_groups(r) if g in col]
        outs.append(cmp(spearman([ref[g] for g in gs], [col[g] for g in gs]), ">=", 0.7, f"ρ(frozen_te, {k})"))
    return every(*outs)


@claim("p02-6.1-neg-moves-more", "post02", "Table 6.1", table="6.1", reads=(T61,),
       quote="lvis_replay_neg pushes every cross-modal group further than lvis_replay does",
       statement="rel_change of dot_prod_scoring and decoder_ca_text: lvis_replay_neg ≥ lvis_replay")
def neg_moves_more(r: Results) -> Outcome:
    return every(*(cmp(r.cell(T61, "lvis_replay_neg", group=g), ">=", r.cell(T61, "lvis_replay", group=g), g)
                   for g in ("dot_prod_scoring", "decoder_ca_text")))


@claim("p02-6.1-recovery-smaller", "post02", "Table 6.1", table="6.1", reads=(T61,),
       quote="Recovery numbers are ~30 % smaller across the board",
       statement="recovery − frozen_te moves every one of the post's seven groups (those that move here) less than "
                 "frozen_te − base")
def recovery_smaller(r: Results) -> Outcome:
    gs = moving_groups(r)
    bigger = [g for g in gs if r.cell(T61, "recovery", group=g) >= r.cell(T61, "frozen_te", group=g)]
    return not bigger, f"{len(gs) - len(bigger)}/{len(gs)} groups smaller" + (f"; not: {bigger}" if bigger else "")


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Grouped bars per module group (log scale), ours; published as hollow markers."""
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in result["rows"] if any(r.get(k) for k in DIFFS)]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    xs = np.arange(len(rows))
    w = 0.8 / len(DIFFS)
    colours = plt.get_cmap("tab10")
    for i, (k, (_, _, col)) in enumerate(DIFFS.items()):
        x = xs - 0.4 + w * (i + 0.5)
        ax.bar(x, [r.get(k) or 0 for r in rows], w, color=colours(i), alpha=0.85, label=f"{col} (ours)")
        pub = [published.get("post02", "6.1", r["row"], col) for r in rows]
        ax.plot(x, [p if p else np.nan for p in pub], "o", mfc="none", mec=colours(i), ms=5)
    ax.plot([], [], "o", mfc="none", mec="grey", label="published (SAM3), same colour")
    ax.set_yscale("log")
    ax.set_xticks(xs, [r["row"] for r in rows], rotation=35, ha="right", fontsize=8)
    ax.set(ylabel="weighted mean rel_change (log)", title=f"Table 6.1 — weight movement per module group ({result['scale']})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
