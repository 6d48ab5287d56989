"""Post 01 §06 — what if we only train the fusion stack: Fig 6.1, Table 6.2, Fig 6.2 and the gauge-drift evidence.

- **Table 6.0** (the §06 text's numbers): fusion_only's watch IoU and share of the base → frozen-TE gap, trainable
  parameters; and the gauge-drift evidence — F[0]'s output CKA with base, F[0]'s residual (token) norm vs base, and the
  effective rank of the fusion encoder's *function* change (its output with the fine-tune's fusion weights minus its
  output with base's, on the same base inputs) vs that of its raw weight delta, for both recipes.
- **Fig 6.1**: forward-patching recovery per layer (base ← FT), frozen_te and fusion_only overlaid.
- **Table 6.2**: reverse patching into the decoder (FT ← base at D[i]), both recipes.
- **Fig 6.2**: per trainable fusion layer of fusion_only, weight rel-change vs functional contribution (the share of the
  base→FT gap its patched output recovers on the probe set).

Patching sweeps are shared with ``post01/activation_patching.py`` (cached beside each run; ``common.patching``); the
patched tensor at F[i] is the prompt-conditioned image tokens (HF Sam3Model's fusion residual; the post names the text
side). Writes results/post01/table-6.0, fig-6.1, table-6.2, fig-6.2 (.json, .md, .png, .svg).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from common import cli, patching, published, recipes, report, runs, section, weightdiff
from common.claims import LEARNED, Outcome, Results, check, claim, cmp, every
from common.data import load_pairs
from common.evaluate import evaluate_run
from common.model import count_params, hybrid_state, load_into
from common.spectral import e90
from common.stats import gap_share
from common.worlds import ensure_worlds

RECIPES = ("frozen_te", "fusion_only")
LABEL = {"frozen_te": "frozen-TE", "fusion_only": "fusion-only"}
T60, F61, T62, F62 = "post01/table-6.0", "post01/fig-6.1", "post01/table-6.2", "post01/fig-6.2"
#: Numbers the §06 text prints without a table (value, where); shown beside ours, never copied into ours.
TEXT = {"watch_iou": (0.870, "§06 ¶3: watch-test IoU lands at 0.870"),
        "gap_fraction": (0.925, "§06 ¶3: 92.5 % of the 0.230 → 0.922 gap"),
        "trainable_fraction": (0.0094, "§06 ¶2: 7.9 M parameters, 0.94 % of the model"),
        "f0_cka_base": (0.93, "§06 gauge drift: F[0]'s output has CKA 0.93 with base"),
        "f0_norm_ratio": (6.75 / 7.27, "§06 gauge drift: F[0] residual norm 6.75 vs base 7.27"),
        "fusion_function_er": (0.24, "§06 gauge drift: function-change effective rank 0.24 (fusion-only)"),
        "fusion_raw_er": (0.31, "§06 / Fig 1.1: fusion_encoder weight-delta effective rank 0.31 (frozen-TE)")}


def fusion_layer_of(name: str) -> str | None:
    """``F[i]`` for a parameter of fusion layer i, else None."""
    parts = name.split(".")
    return f"F[{parts[2]}]" if name.startswith("detr_encoder.layers.") else None


def gauge_evidence(recipe: str, scale: str, probe_ids: list[str]) -> dict:
    """F[0] CKA and mean token-norm ratio (FT / base) on the probe, and the effective rank (90 % energy, ÷ width) of the
    fusion encoder's function change on base's inputs vs the mean effective rank of its weight deltas."""
    ds = load_pairs(ensure_worlds(scale=scale)["watch_test"])
    by_id = {p.pair_id: p for p in ds}
    probe = [by_id[i] for i in probe_ids]
    base, ft = runs.load_model("base", scale), runs.load_model(recipe, scale)
    bs, fs = base.state_dict(), ft.state_dict()
    hybrid = runs.load_model("base", scale)  # base with the fine-tune's fusion weights: same inputs, new function
    load_into(hybrid, hybrid_state(fs, bs, "F"), source=f"{recipe} fusion weights on base")
    last = patching.slots(base, "fusion")[-1]
    a = {k: patching.donor_activations(m, ds, probe, ["fusion[0]", last], scale)
         for k, m in (("base", base), ("ft", ft), ("hybrid", hybrid))}
    change = (a["hybrid"][last] - a["base"][last]).double()
    change = change.reshape(-1, change.shape[-1])
    raw = [weightdiff.effective_rank_fraction(bs, fs, n) for n in bs if n.startswith("detr_encoder.")]
    raw = [x for x in raw if x is not None]
    norm = lambda t: float(t.double().norm(dim=-1).mean())  # noqa: E731 — mean L2 norm of a token
    return {"f0_cka_base": patching.cka_by_slot({"f": a["base"]["fusion[0]"]}, {"f": a["ft"]["fusion[0]"]})["f"],
            "f0_norm_ft": norm(a["ft"]["fusion[0]"]), "f0_norm_base": norm(a["base"]["fusion[0]"]),
            "f0_norm_ratio": norm(a["ft"]["fusion[0]"]) / norm(a["base"]["fusion[0]"]),
            "fusion_function_er": int(e90(torch.linalg.svdvals(change))) / change.shape[-1] if change.any() else None,
            "fusion_raw_er": float(np.mean(raw)) if raw else None, "function_change_slot": last}


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    sw = {(r, d): patching.sweep(r, args.scale, d, force=args.force) for r in RECIPES for d in ("forward", "reverse")}
    config = {"recipes": RECIPES, "n_probe": patching.N_PROBE, "patched_tensor": patching.PATCHED_TENSOR,
              "probe_rule": {r: sw[(r, "forward")]["probe_rule"] for r in RECIPES}, "scale": args.scale}
    probe_note = "Probe sets (per recipe: base IoU 0, FT IoU > 0, ≤ 40 stratified): " + "; ".join(
        f"{r}: {len(sw[(r, 'forward')]['probe'])} tasks by `{sw[(r, 'forward')]['probe_rule']}`, FT IoU "
        f"{sw[(r, 'forward')]['ft_iou']:.3f}" for r in RECIPES) + "."

    # Table 6.0: headline and gauge drift
    scores = {n: evaluate_run(n, args.scale)["watch"]["iou"] for n in ("base", *RECIPES)}
    model = runs.load_model("fusion_only", args.scale)
    trained = sorted(runs.trained_names(model, recipes.resolve("fusion_only", args.scale)))
    gauge = {r: gauge_evidence(r, args.scale, sw[(r, "forward")]["probe"]) for r in RECIPES}
    head = {"watch_iou": {r: scores[r] for r in RECIPES},
            "gap_fraction": {r: gap_share(scores[r], scores["base"], scores["frozen_te"]) for r in RECIPES},
            "trainable_fraction": {"fusion_only": count_params(model, trained) / count_params(model)}}
    rows60 = []
    for measure in ("watch_iou", "gap_fraction", "trainable_fraction", "f0_cka_base", "f0_norm_ratio",
                    "fusion_function_er", "fusion_raw_er"):
        vals = head.get(measure) or {r: gauge[r][measure] for r in RECIPES}
        rows60.append({"measure": measure, **{r: vals.get(r) for r in RECIPES},
                       "published": TEXT[measure][0], "published_source": TEXT[measure][1]})
    section.emit(args, "6.0", rows60, t0=t0, config=config, figure=None,
                 title="§06 in the text — fusion-only headline and the gauge-drift evidence (no table in the post)",
                 extra={"gauge": gauge, "watch_iou": scores, "trainable_params": count_params(model, trained)},
                 notes="`gap_fraction` = (IoU − base) / (frozen_te − base) on the whole watch test set. `f0_cka_base`: "
                       "linear CKA of F[0]'s output, FT vs base, token rows of the probe set; `f0_norm_ratio`: mean "
                       "token norm of F[0]'s output, FT ÷ base. `fusion_function_er`: directions holding 90 % of the "
                       "energy of (last fusion layer's output with FT fusion weights − with base's), on base's "
                       "inputs, ÷ width; `fusion_raw_er`: mean over the fusion encoder's matrices of the same on ΔW "
                       "(÷ min(m, n)). `published`: the number the post's text prints (`published_source`). " + probe_note)

    # Fig 6.1: forward recovery, both recipes
    fo_fwd = sw[("fusion_only", "forward")]
    rows61 = [{"recipe": r, "layer": patching.label(s), "slot": s, "patched_iou": v,
               "recovery": v / sw[(r, "forward")]["ft_iou"] if sw[(r, "forward")]["ft_iou"] > 0 else None}
              for r in RECIPES for s, v in sw[(r, "forward")]["patched"].items()]
    rows61 += [{"row": LABEL[r], "recovery_f0": next(x["recovery"] for x in rows61 if x["recipe"] == r and x["layer"] == "F[0]")}
               for r in RECIPES]
    # sanity: fusion_only trains F[0..4] only, so base patched with its F[4] (or F[5]) output runs exactly the fine-tune
    exact = [s for s in patching.slots(model, "fusion")[4:] if s in fo_fwd["patched"]]
    checks = [check(f"fusion_only: base patched at {s} reproduces the fine-tune's probe IoU (downstream weights are base's)",
                    abs(fo_fwd["patched"][s] - fo_fwd["ft_iou"]) < 1e-6,
                    f"patched {fo_fwd['patched'][s]:.6f} vs FT {fo_fwd['ft_iou']:.6f}") for s in exact]
    section.emit(args, "fig-6.1", rows61, t0=t0, config=config, figure=figure, checks=checks,
                 published=report.columns("post01", "fig-6.1", {"recovery_f0": ("patched IoU at F[0] (% of FT)", 100)}),
                 md_keys=["recipe", "layer", "patched_iou", "recovery", "row", "recovery_f0"],
                 title="Fig 6.1 — forward activation-patching recovery, frozen-TE vs fusion-only", notes=probe_note)

    # Table 6.2: reverse patch into the decoder
    dec = patching.slots(model, "decoder")
    rows62 = [{"row": s, "layer": s, **{f"{r}_iou": sw[(r, "reverse")]["patched"][s] for r in RECIPES}} for s in dec]
    section.emit(args, "6.2", rows62, t0=t0, config=config, figure=figure,
                 published=report.columns("post01", "6.2", {"frozen_te_iou": "frozen-TE FT", "fusion_only_iou": "fusion-only FT"}),
                 title="Table 6.2 — reverse patch into the decoder (FT receiving base's decoder activation), two recipes",
                 extra={"ft_iou_probe": {r: sw[(r, "reverse")]["ft_iou"] for r in RECIPES}},
                 notes="IoU of each fine-tune on its own probe set with decoder layer i's output replaced by base's "
                       "(unpatched: " + ", ".join(f"{r} {sw[(r, 'reverse')]['ft_iou']:.3f}" for r in RECIPES) + "). "
                       + probe_note)

    # Fig 6.2: weight motion vs functional contribution per trainable fusion layer of fusion_only
    rel = weightdiff.group_rel_change(runs.load_model("base", args.scale).state_dict(), model.state_dict(),
                                      group_of=lambda n: fusion_layer_of(n) or "other")
    fo = sw[("fusion_only", "forward")]
    layers = sorted({fusion_layer_of(n) for n in trained})
    rows6_2 = [{"row": lay, "layer": lay, "rel_change": rel[lay]["rel_change"],
                "contribution": gap_share(fo["patched"][f"fusion[{lay[2:-1]}]"], fo["base_iou"], fo["ft_iou"])}
               for lay in layers]
    section.emit(args, "fig-6.2", rows6_2, t0=t0, config=config, figure=figure,
                 published=report.columns("post01", "fig-6.2", {"rel_change": ("weight motion (rel-change %)", 100),
                                                               "contribution": ("functional contribution (% gap recovered)", 100)}),
                 title="Fig 6.2 — fusion-only: weight motion vs functional contribution per trainable fusion layer",
                 notes="`rel_change`: parameter-weighted mean ‖ΔW‖/‖W_base‖ over the layer's tensors; `contribution`: "
                       "(patched − base) / (FT − base) IoU on fusion_only's probe set when base receives the fine-tune's "
                       "output of that layer (Fig 6.1's fusion-only curve). " + probe_note)
    for r in rows60:
        print(f"  {r['measure']:20s} " + "  ".join(f"{k} {r[k]:.3f}" if r[k] is not None else f"{k} —" for k in RECIPES))
    print(f"§06 tables [{args.scale}] {time.time() - t0:.0f} s")
    return {"table_6_0": rows60, "fig_6_1": rows61, "table_6_2": rows62, "fig_6_2": rows6_2}


# ----------------------------------------------------------------------------- claims
@claim("p01-6.0-f0-function-kept", "post01", "§06 gauge drift", table="fig-6.2", needs=LEARNED, reads=(T60,),
       quote="F[0]’s output has CKA 0.93 with base — the function it implements has barely changed, even though the parameters have.",
       statement="fusion_only: linear CKA of F[0]'s output with base ≥ 0.9")
def _(r: Results) -> Outcome:
    return cmp(r.cell(T60, "fusion_only", measure="f0_cka_base"), ">=", 0.9, "F[0] CKA (fusion_only)")


@claim("p01-6.0-f0-norm-shrinks", "post01", "§06 gauge drift", table="fig-6.2", needs=LEARNED, reads=(T60,),
       quote="F[0]’s residual norm actually shrinks slightly relative to base (6.75 vs 7.27)",
       statement="fusion_only: mean token norm of F[0]'s output ÷ base's ≤ 1")
def _(r: Results) -> Outcome:
    return cmp(r.cell(T60, "fusion_only", measure="f0_norm_ratio"), "<=", 1.0, "F[0] norm ratio (fusion_only)")


@claim("p01-6.0-function-rank-lower", "post01", "§06 gauge drift", table="fig-6.2", needs=LEARNED, reads=(T60,),
       quote="the effective rank of the whole fusion-encoder update drops from 0.31 in frozen-TE to 0.24 here",
       statement="effective rank of fusion_only's fusion function change < frozen_te's fusion weight-delta effective rank")
def _(r: Results) -> Outcome:
    return cmp(r.cell(T60, "fusion_only", measure="fusion_function_er"), "<",
               r.cell(T60, "frozen_te", measure="fusion_raw_er"), "function ER (fusion_only) vs raw ER (frozen_te)")


@claim("p01-6.1-f0-smuggled", "post01", "Fig. 6.1", table="fig-6.1", needs=LEARNED, reads=(F61,),
       quote="In the fusion-only recipe (green), V is byte-identical to base, so F[0]’s cross-attention reads unchanged image features — recovery drops to 2 %.",
       statement="patch recovery at F[0]: fusion_only < frozen_te (rows: recipe, layer, recovery)")
def _(r: Results) -> Outcome:
    return cmp(r.cell(F61, "recovery", recipe="fusion_only", layer="F[0]"), "<", r.cell(F61, "recovery", recipe="frozen_te", layer="F[0]"), "F[0]")


@claim("p01-6.2-asymmetry-vanishes", "post01", "Table 6.2", table="6.2", needs=LEARNED, reads=(T62,),
       quote="the catastrophic asymmetry disappears entirely — no layer collapses to zero.",
       statement="reverse patch into the decoder: min over layers of fusion_only_iou > max over layers of frozen_te_iou")
def _(r: Results) -> Outcome:
    fo = r.column(T62, "fusion_only_iou", by="layer")
    ft = r.column(T62, "frozen_te_iou", by="layer")
    return cmp(min(fo.values()), ">", max(ft.values()), "min fusion-only vs max frozen-TE")


@claim("p01-6.2-most-moved-least", "post01", "Fig. 6.2", table="fig-6.2", reads=(F62,),
       quote="F[0]’s weights moved farthest of any fusion layer (18.9 % of base-norm magnitude) but contributed essentially nothing functionally.",
       statement="fusion-only: rel_change(F[0]) > rel_change(F[4]) and contribution(F[0]) < contribution(F[4])")
def _(r: Results) -> Outcome:
    return every(cmp(r.cell(F62, "rel_change", layer="F[0]"), ">", r.cell(F62, "rel_change", layer="F[4]"), "weight motion F[0] vs F[4]"),
                 cmp(r.cell(F62, "contribution", layer="F[0]"), "<", r.cell(F62, "contribution", layer="F[4]"), "contribution F[0] vs F[4]"))


# ----------------------------------------------------------------------------- figures
def figure(result: dict):
    """The figure of each table this script writes (``make figures`` redraws them from the JSON): Figs 6.1, 6.2 and
    Table 6.2's bars (drawn as fig-6.2-table); Table 6.0 has none."""
    return {"fig-6.1": figure_61, "fig-6.2": figure_62, "table-6.2": figure_t62}.get(result["table"], lambda _r: None)(result)


def figure_t62(result: dict):
    """Table 6.2 as grouped bars: each fine-tune's IoU with base's decoder activation patched in, per decoder layer."""
    import matplotlib.pyplot as plt

    rows = result["rows"]
    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for off, r, colour in ((-0.2, "frozen_te", "tab:orange"), (0.2, "fusion_only", "tab:green")):
        ax.bar(xs + off, [x[f"{r}_iou"] for x in rows], 0.4, color=colour, label=f"{LABEL[r]} (ours)")
        pub = [published.get("post01", "6.2", x["row"], f"{LABEL[r]} FT") for x in rows]
        ax.plot(xs + off, [p if p is not None else np.nan for p in pub], "o", mfc="none", mec=colour)
    ax.plot([], [], "o", mfc="none", mec="grey", label="published (SAM3), same colour")
    ax.set_xticks(xs, [x["row"] for x in rows])
    ax.set(ylabel="watch IoU on the probe set", ylim=(0, 1.02),
           title=f"Table 6.2 — reverse patch into the decoder ({result['scale']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_61(result: dict):
    """Recovery (% of FT IoU) per patched layer, one line per recipe; published F[0] values as hollow markers."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8))
    for r, colour in zip(RECIPES, ("tab:orange", "tab:green")):
        rows = [x for x in result["rows"] if x.get("recipe") == r]
        ax.plot(range(len(rows)), [100 * (x["recovery"] or 0) for x in rows], "o-", color=colour, label=f"{LABEL[r]} (ours)")
        pub = published.get("post01", "fig-6.1", LABEL[r], "patched IoU at F[0] (% of FT)")
        if pub is not None:
            ax.plot([0], [pub], "s", mfc="none", mec=colour, ms=9, label=f"{LABEL[r]} F[0] (published)")
    ax.set_xticks(range(len(rows)), [x["layer"] for x in rows])
    ax.set(ylabel="patched IoU as % of FT", title=f"Fig 6.1 — forward patching recovery ({result['scale']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_62(result: dict):
    """Per trainable fusion layer: weight rel-change and functional contribution (%), ours bars, published markers."""
    import matplotlib.pyplot as plt

    rows = result["rows"]
    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for off, key, col, colour in ((-0.2, "rel_change", "weight motion (rel-change %)", "tab:orange"),
                                  (0.2, "contribution", "functional contribution (% gap recovered)", "tab:green")):
        ax.bar(xs + off, [100 * (x[key] or 0) for x in rows], 0.4, color=colour, label=f"{col} (ours)")
        pub = [published.get("post01", "fig-6.2", x["row"], col) for x in rows]
        ax.plot(xs + off, [p if p is not None else np.nan for p in pub], "o", mfc="none", mec="k")
    ax.plot([], [], "o", mfc="none", mec="k", label="published (SAM3)")
    ax.set_xticks(xs, [x["row"] for x in rows])
    ax.set(ylabel="percent", title=f"Fig 6.2 — fusion-only: weight motion vs contribution ({result['scale']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
