"""Post 01 §01, Fig 1.1 — the weights barely moved, and they moved in a sliver of the available subspace.

Per fine parameter group (``common.model.FINE_GROUPS``, the presence gate folded into transformer_decoder as in Meta's
names and the post's figure), for each full recipe against base (frozen_te — the post's
figure — plus all_trainable and fusion_only): the mean effective rank of ΔW (singular directions holding 90 % of
‖ΔW‖²_F, ÷ min(m, n); ``common.weightdiff.effective_rank_fraction``) over the group's moved 2-D tensors, the
parameter-weighted relative L2 change (``common.weightdiff.group_rel_change``) and the cosine of the group's weights to
base (all its tensors flattened and concatenated). Writes results/post01/fig-1.1.{json,md,png,svg}.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from common import cli, published, report, runs, section, weightdiff
from common.claims import Outcome, Results, claim, cmp, every
from common.model import FINE_GROUPS, fine_group_of

F11 = "post01/fig-1.1"
P1 = "post01"
#: The recipes compared with base; frozen_te is the post's figure and takes the unsuffixed column keys.
RECIPES = ("frozen_te", "all_trainable", "fusion_only")
MEASURES = ("effective_rank_fraction", "rel_change", "cosine_to_base")
#: Fig 1.1's grouping: ``common.model.FINE_GROUPS`` with the presence gate folded into transformer_decoder, where Meta's
#: names put it (``transformer.decoder.presence_token*``); the post's figure has no presence_head entry.
POST_GROUP = {"presence_head": "transformer_decoder"}
GROUPS = tuple(g for g, _ in FINE_GROUPS if g not in POST_GROUP)
PUB = report.columns("post01", "fig-1.1", {"effective_rank_fraction": ("effective rank (90 % energy, % of full rank)", 100)})
#: Numbers the §01 text prints outside the figure (value, where); shown beside ours in the notes, never copied into ours.
TEXT = {"vision_trunk rel_change": (0.015, "§01 ¶4: the vision trunk moved with a weighted relative change of 1.5 %"),
        "min cosine_to_base": (0.99, "§01 ¶4: cosine-similarity-to-base column, every group above 0.99")}


def group_of(name: str) -> str:
    """The Fig 1.1 group of a parameter name (:func:`common.model.fine_group_of`, presence gate in the decoder)."""
    g = fine_group_of(name)
    return POST_GROUP.get(g, g)


def key(measure: str, recipe: str) -> str:
    """Row key of ``measure`` for ``recipe`` (frozen_te unsuffixed, the others with a ``_<recipe>`` suffix)."""
    return measure if recipe == "frozen_te" else f"{measure}_{recipe}"


def group_measures(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per Fig 1.1 group: mean effective rank fraction of ΔW over the group's moved 2-D tensors (None if none moved),
    the number of those matrices, the weighted rel_change, and the cosine of the concatenated end weights to start."""
    rel = weightdiff.group_rel_change(start, end, group_of=group_of)
    ers: dict[str, list[float]] = {}
    flat: dict[str, tuple[list, list]] = {}
    for name in start:
        g = group_of(name)
        er = weightdiff.effective_rank_fraction(start, end, name)
        if er is not None:
            ers.setdefault(g, []).append(er)
        a, b = flat.setdefault(g, ([], []))
        a.append(start[name].detach().double().flatten())
        b.append(end[name].detach().double().flatten())
    out = {}
    for g, (a, b) in flat.items():
        e = ers.get(g, [])
        out[g] = {"effective_rank_fraction": float(np.mean(e)) if e else None, "matrices_moved": len(e),
                  "rel_change": rel[g]["rel_change"], "cosine_to_base": weightdiff.cosine(torch.cat(b), torch.cat(a)),
                  "params": rel[g]["params"]}
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    base = runs.load_model("base", args.scale).state_dict()
    per = {r: group_measures(base, runs.load_model(r, args.scale).state_dict()) for r in RECIPES}
    n_matrices = {g: 0 for g in GROUPS}
    for name, w in base.items():
        n_matrices[group_of(name)] += int(w.ndim == 2)
    rows = []
    for g in GROUPS:
        if g not in per["frozen_te"]:
            continue
        row = {"row": g, "group": g}
        for r in RECIPES:
            row.update({key(m, r): per[r][g][m] for m in MEASURES})
        row.update({"matrices": n_matrices[g], "matrices_moved": per["frozen_te"][g]["matrices_moved"],
                    "params": per["frozen_te"][g]["params"]})
        rows.append(row)
    rows.sort(key=lambda x: -(x["effective_rank_fraction"] if x["effective_rank_fraction"] is not None else -1))
    trunk = next(x for x in rows if x["group"] == "vision_trunk")
    moved = [x for x in rows if x["rel_change"]]
    text = {"vision_trunk rel_change": trunk["rel_change"],
            "min cosine_to_base": min(x["cosine_to_base"] for x in moved) if moved else None}
    ers = [x["effective_rank_fraction"] for x in rows if x["effective_rank_fraction"] is not None]
    reading = (f"At this scale frozen_te's group entries span {100 * min(ers):.1f}–{100 * max(ers):.1f} % of full rank "
               "(the post: 9.6–39.9 %); the verdicts above say which of the post's statements reproduce. " if ers else "")
    section.emit(args, "fig-1.1", rows, t0=t0, figure=figure, published=PUB,
                 md_keys=["row", *(key(m, r) for r in RECIPES for m in MEASURES), "matrices_moved", "matrices"],
                 config={"recipes": RECIPES, "against": "base", "energy": 0.9, "scale": args.scale,
                         "groups": "common.model.FINE_GROUPS, presence_head folded into transformer_decoder",
                         "average": "unweighted mean over the group's moved 2-D tensors",
                         "excluded": "1-D tensors, conv kernels and other >2-D tensors (rank undefined); tensors with ΔW = 0"},
                 title="Fig 1.1 — effective rank of the weight delta (90 % energy, fraction of full rank), relative "
                       "change and cosine to base, per parameter group",
                 extra={"detail": per, "text_numbers": {k: {"ours": text[k], "published": v[0], "source": v[1]}
                                                        for k, v in TEXT.items()}},
                 notes=reading + "`effective_rank_fraction`: per 2-D tensor, the number of singular directions of ΔW = W_FT − "
                       "W_base holding 90 % of ‖ΔW‖²_F, divided by min(m, n); averaged (unweighted) over the group's 2-D "
                       "tensors that moved. Non-matrix tensors (biases, norms, conv kernels, the 3-D position "
                       "embedding) are excluded, as are tensors with ΔW = 0; a group with no moved matrix has no entry "
                       "(—), as in the post (frozen: text encoder and text resizer under frozen_te; the tiny neck is all "
                       "conv; the geometry encoder takes box prompts only and gets no gradient from text prompts). "
                       "The groups are `common.model.FINE_GROUPS` with the presence gate (token, LayerNorm, 3-layer head) "
                       "folded into transformer_decoder, where Meta's parameter names (`transformer.decoder.presence_"
                       "token*`) and so the post's figure put it. Matrices with min(m, n) ≤ 10 (box head output, query "
                       "embedding, reference points, presence token and output) weigh as much as 512×128 ones in this "
                       "unweighted mean and lift the decoder's entry, as they would in the post's. "
                       "`rel_change`: parameter-weighted mean of ‖ΔW‖_F / ‖W_base‖_F over the group's tensors. "
                       "`cosine_to_base`: cosine of the group's fine-tuned weights (all tensors, flattened and "
                       "concatenated) to base's. Unsuffixed columns are frozen_te (the post's figure); `_all_trainable` "
                       "/ `_fusion_only` the other two recipes against base. `matrices`: the group's 2-D tensors. "
                       "§01 text numbers (not in the figure): " + "; ".join(
                           f"{k} ours {text[k]:.4g} vs published {v[0]:g} ({v[1]})" if text[k] is not None else
                           f"{k}: — vs published {v[0]:g}" for k, v in TEXT.items()) + ".")
    for x in rows:
        er = x["effective_rank_fraction"]
        print(f"  {x['group']:26s} ER {'—' if er is None else f'{er:.3f}'}  rel {x['rel_change'] or 0:.4f}  "
              f"cos {x['cosine_to_base']:.5f}")
    print(f"fig 1.1 [{args.scale}] {time.time() - t0:.0f} s")
    return rows


# ----------------------------------------------------------------------------- claims
@claim("p01-1.1-low-rank", P1, "Fig. 1.1", table="fig-1.1", reads=("post01/fig-1.1",),
       quote="Nothing moves in a full-rank way.",
       statement="every parameter group's weight-delta effective rank (90 % energy, key effective_rank_fraction) is below 50 % of full rank")
def _(r: Results) -> Outcome:
    er = r.column("post01/fig-1.1", "effective_rank_fraction", by="group")
    g = max(er, key=er.get)
    return cmp(er[g], "<", 0.5, f"max over groups ({g})")


@claim("p01-1.1-rank-extremes", P1, "Fig. 1.1", table="fig-1.1", reads=(F11,),
       quote="The single smallest-rank update is dot_prod_scoring — the head that turns prompt×image into match "
             "logits — at 9.6 % effective rank. The largest is the transformer decoder at 40 %.",
       statement="frozen_te, over the groups with an effective rank entry: dot_prod_scoring has the smallest "
                 "effective_rank_fraction and transformer_decoder the largest")
def _(r: Results) -> Outcome:
    er = r.column(F11, "effective_rank_fraction", by="group")
    lo, hi = min(er, key=er.get), max(er, key=er.get)
    ok = lo == "dot_prod_scoring" and hi == "transformer_decoder"
    return ok, (f"smallest {lo} ({er[lo]:.3f}), largest {hi} ({er[hi]:.3f}); dot_prod_scoring "
                f"{er.get('dot_prod_scoring', float('nan')):.3f}, transformer_decoder "
                f"{er.get('transformer_decoder', float('nan')):.3f}, over {len(er)} groups")


@claim("p01-1.1-cosine", P1, "§01 / Fig. 1.1", table="fig-1.1", reads=(F11,),
       quote="Combined with the cosine-similarity-to-base column from the same artifact (every group above 0.99)",
       statement="frozen_te: every group's cosine_to_base > 0.99")
def _(r: Results) -> Outcome:
    cos = r.column(F11, "cosine_to_base", by="group")
    g = min(cos, key=cos.get)
    return cmp(cos[g], ">", 0.99, f"min over groups ({g})")


@claim("p01-1.1-trunk-small", P1, "§01 / Fig. 1.1", table="fig-1.1", reads=(F11,),
       quote="The decoder and fusion-stack deltas are larger in magnitude but still rank-constrained.",
       statement="frozen_te rel_change: vision_trunk < fusion_encoder and vision_trunk < transformer_decoder")
def _(r: Results) -> Outcome:
    t = r.cell(F11, "rel_change", group="vision_trunk")
    return every(cmp(t, "<", r.cell(F11, "rel_change", group="fusion_encoder"), "vision_trunk vs fusion_encoder"),
                 cmp(t, "<", r.cell(F11, "rel_change", group="transformer_decoder"), "vision_trunk vs transformer_decoder"))


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Horizontal bars of effective rank (% of full rank) per group, frozen_te (ours) with the other recipes thinner;
    published (SAM3, frozen-TE) as hollow markers, as in the post's figure."""
    import matplotlib.pyplot as plt

    rows = [x for x in result["rows"] if any(x.get(key("effective_rank_fraction", r)) is not None for r in RECIPES)
            or published.get("post01", "fig-1.1", x["row"], PUB[0]["column"]) is not None]
    rows = rows[::-1]  # largest on top
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    ys = np.arange(len(rows))
    colours = {"frozen_te": report.PALETTE["ours"], "all_trainable": "#7fb3d5", "fusion_only": "#a9dfbf"}
    h = 0.8 / len(RECIPES)
    for i, r in enumerate(RECIPES):
        vals = [100 * (x.get(key("effective_rank_fraction", r)) or 0) for x in rows]
        ax.barh(ys + 0.4 - h * (i + 0.5), vals, h, color=colours[r], label=f"{r} (ours)")
    pub = [published.get("post01", "fig-1.1", x["row"], PUB[0]["column"]) for x in rows]
    ax.plot([p if p is not None else np.nan for p in pub], ys + 0.4 - h / 2, "o", mfc="none",
            mec=report.PALETTE["published"], ms=7, label="published (SAM3, frozen-TE)")
    ax.set_yticks(ys, [x["row"] for x in rows], fontsize=8)
    ax.set(xlabel="mean effective rank (90 % energy) · % of full rank",
           title=f"Fig 1.1 — effective rank of ΔW per parameter group ({result['scale']})")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
