"""Post 01 §08 — every checkpoint failed out of domain: the §8 text's numbers (the post has no numbered §8 table).

base, all_trainable, frozen_te and fusion_only on the SA-Co-like suite (neg_correct, cgF1) and the watch test set (IoU),
from the cached full scores (``common.evaluate.evaluate_run``), beside the post's values (its Table 9.2 rows). Then the
§8 "one twentieth" reading: the share of the refusal collapse attributable to the downstream head's parameters,
(neg_correct(fusion_only) − mean(neg_correct(frozen_te), neg_correct(all_trainable))) / (neg_correct(base) − that
mean) — fusion_only keeps the decoder and every head at base, so what it still loses is upstream drift — and the
upstream share 1 − that; ours and the one the post's own numbers give. Writes results/post01/table-8.1.{json,md} and
fig-8.1.{png,svg}.
"""
from __future__ import annotations

import time

import numpy as np

from common import cli, published, report, section
from common.claims import NotMeasurable, Outcome, Results, claim, cmp
from common.evaluate import evaluate_run

T81 = "post01/table-8.1"
P1 = "post01"
#: The post's row label (Table 9.2) → recipe.
RECIPES = {"base SAM3": "base", "all-trainable": "all_trainable", "frozen-TE": "frozen_te",
           "fusion-only F[0..4]": "fusion_only"}
PUB = report.columns("post01", "9.2", {"neg_correct": ("neg-correct", 100), "cgF1": ("cgF1", 100),
                                       "watch_iou": "Watch IoU"})
SHARE_ROW = "share of the refusal collapse: downstream head"
SHARE_SOURCE = ("§08 ¶4: “roughly a twentieth of the collapse is the downstream head’s parameters moving, and roughly "
                "nineteen-twentieths is the upstream residual stream drifting”; computed here from the post's Table 9.2 "
                "neg-correct values")


def head_share(neg: dict[str, float]) -> float | None:
    """§08's share of the refusal collapse carried by the downstream head's parameters, from neg_correct per recipe:
    (fusion_only − mean(frozen_te, all_trainable)) / (base − that mean); None where base does not exceed the mean."""
    std = (neg["frozen_te"] + neg["all_trainable"]) / 2
    return (neg["fusion_only"] - std) / (neg["base"] - std) if neg["base"] > std else None


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    rows = []
    for label, name in RECIPES.items():
        s = evaluate_run(name, args.scale, ("watch", "saco", "lvis"))
        rows.append({"row": label, "recipe": name, "neg_correct": s["saco"]["neg_correct"], "cgF1": s["saco"]["cgF1"],
                     "watch_iou": s["watch"]["iou"]})
    neg = {r["recipe"]: r["neg_correct"] for r in rows}
    pub_neg = {name: published.get("post01", "9.2", label, "neg-correct") for label, name in RECIPES.items()}
    ours, theirs = head_share(neg), head_share(pub_neg)
    rows.append({"row": SHARE_ROW, "recipe": None, "head_share": ours,
                 "upstream_share": None if ours is None else 1 - ours,
                 "published_head_share": theirs, "published_upstream_share": None if theirs is None else 1 - theirs,
                 "published_source": SHARE_SOURCE})
    reading = ("no collapse at this scale, so no share" if ours is None else
               f"At this scale the head share is {ours:.2f} against the post's {theirs:.3f}: "
               + ("the “one twentieth” reading reproduces." if ours < 0.25 else
                  "fusion_only keeps much more of base's refusal here than in the post, so the “one twentieth, "
                  "nineteen-twentieths upstream” reading does NOT reproduce at this scale."))
    section.emit(args, "8.1", rows, t0=t0, figure=figure, published=PUB,
                 md_keys=["row", "recipe", "neg_correct", "cgF1", "watch_iou", "head_share", "upstream_share",
                          "published_head_share", "published_upstream_share"],
                 config={"recipes": RECIPES, "suites": ("watch", "saco", "lvis"), "scale": args.scale,
                         "head_share": "(neg(fusion_only) − mean(neg(frozen_te), neg(all_trainable))) / "
                                       "(neg(base) − that mean)"},
                 title="§08 in the text — out-of-domain failure of every checkpoint and the head vs upstream share of "
                       "the refusal collapse (no numbered table in the post; published values from its Table 9.2)",
                 extra={"published_neg_correct_percent": pub_neg},
                 notes="neg_correct: share of SA-Co-like negative prompts (the phrase is absent from the image) the model "
                       "correctly refuses; cgF1: SA-Co/Gold's concept-grouped F1 (both fractions here, ×100 in the post). "
                       "`head_share`: fusion_only holds the decoder and every head byte-identical to base, so the part "
                       "of the collapse it avoids, relative to the standard recipes' mean, is read as the head's "
                       "parameters' share; `upstream_share` = 1 − that. `published_head_share` is computed from the "
                       "post's Table 9.2 neg-correct values; the post's §08 ¶4 rounds it to “roughly a twentieth”. " + reading)
    for r in rows[:-1]:
        print(f"  {r['row']:22s} neg_correct {r['neg_correct']:.3f}  cgF1 {r['cgF1']:.4f}  watch IoU {r['watch_iou']:.4f}")
    print(f"  head share ours {ours if ours is None else f'{ours:.3f}'} vs published {theirs if theirs is None else f'{theirs:.3f}'}")
    print(f"table 8.1 [{args.scale}] {time.time() - t0:.0f} s")
    return rows


# ----------------------------------------------------------------------------- claims
@claim("p01-8-head-twentieth", P1, "§8", table="9.2", reads=(T81,),
       quote="roughly a twentieth of the collapse is the downstream head’s parameters moving, and roughly "
             "nineteen-twentieths is the upstream residual stream drifting off the input distribution the head expects",
       statement="the downstream head's share of the refusal collapse, (neg(fusion_only) − mean(neg(frozen_te), "
                 "neg(all_trainable))) / (neg(base) − that mean), is below 0.25 (key head_share)")
def _(r: Results) -> Outcome:
    v = r.row(T81, row=SHARE_ROW).get("head_share")
    if v is None:
        raise NotMeasurable("table-8.1: base neg_correct does not exceed the standard recipes' mean; no collapse to share")
    return cmp(v, "<", 0.25, "head share")


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """neg_correct and cgF1 (%) per recipe, ours as bars, published (SAM3) as hollow markers; the head share in the title."""
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("recipe")]
    share = next((r for r in result["rows"] if r.get("row") == SHARE_ROW), {})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = np.arange(len(rows))
    for ax, (k, col) in zip(axes, (("neg_correct", "neg-correct"), ("cgF1", "cgF1"))):
        ax.bar(xs, [100 * (r.get(k) or 0) for r in rows], 0.6, color=report.PALETTE["ours"], label="ours")
        pub = [published.get("post01", "9.2", r["row"], col) for r in rows]
        ax.plot(xs, [p if p is not None else np.nan for p in pub], "o", mfc="none", mec=report.PALETTE["published"],
                ms=8, label="published (SAM3)")
        ax.set_xticks(xs, [r["recipe"] for r in rows], fontsize=8)
        ax.set(ylabel=f"{k} (%)" if k == "neg_correct" else "cgF1 (×100)", title=k)
        ax.legend(fontsize=8)
    hs, ps = share.get("head_share"), share.get("published_head_share")
    fig.suptitle(f"§08 — out of domain ({result['scale']}); head share of the collapse: ours "
                 f"{'—' if hs is None else f'{hs:.2f}'}, published {'—' if ps is None else f'{ps:.2f}'}", fontsize=10)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
