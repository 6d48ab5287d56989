"""Post 01 claims of tables whose script is not written yet (§1–§8: Tables 2.1, 3.3, 4.2, 5.1, 6.2, 7.2–7.4;
Figs 1.1, 3.2, 4.3, 6.1, 6.2).

Each claim reads the results file its future script will write (``results/post01/<table-id>.json``, or
``results/recipes.json`` for Table 4.2) and reads "not yet run" until then. When a table's script lands, its claims
(and the helpers only they use: ``_gap`` for Table 2.1, ``SYNONYMS`` / ``PERIPHERAL`` for Tables 7.2 / 7.3) move into
that script, unchanged, and out of this file. Not a section script: it writes nothing and has no ``main``.
"""
from __future__ import annotations

from common.claims import LEARNED, NotYetRun, Outcome, Results, claim, cmp, every, vs

P1 = "post01"


@claim("p01-4.2-frozen-te-iou", P1, "Table 4.2", table="4.2", needs=LEARNED, reads=("recipes",),
       quote="Freezing the text encoder is strictly better on every metric we measured.",
       statement="watch IoU: frozen_te ≥ all_trainable")
def _(r: Results) -> Outcome:
    return vs(r, "frozen_te", ">=", "all_trainable")


@claim("p01-4.2-frozen-te-cgf1", P1, "Table 4.2", table="4.2", reads=("recipes",),
       quote="In-domain IoU is +0.006, Dice is +0.4, and the out-of-domain open-vocabulary cgF1 is +1.86.",
       statement="SA-Co cgF1: frozen_te ≥ all_trainable")
def _(r: Results) -> Outcome:
    return vs(r, "frozen_te", ">=", "all_trainable", "saco", "cgF1")


@claim("p01-4.3-earlier-commit", P1, "Fig. 4.3", table="fig-4.3", needs=LEARNED, reads=("post01/fig-4.3",),
       quote="Freezing the text encoder lets the vision encoder commit to its answer two blocks earlier (block 23 vs block 29) and at a higher peak probe IoU (0.836 vs 0.809).",
       statement="mask-lens probe: frozen_te peaks no later and no lower than all_trainable (rows: recipe, block, probe_iou)")
def _(r: Results) -> Outcome:
    peaks = {}
    for rec in ("frozen_te", "all_trainable"):
        rows = [x for x in r.rows("post01/fig-4.3") if x.get("recipe") == rec and x.get("probe_iou") is not None]
        if not rows:
            raise NotYetRun(f"post01/fig-4.3.json has no rows for {rec}")
        best = max(rows, key=lambda x: x["probe_iou"])
        peaks[rec] = (best["block"], best["probe_iou"])
    return every(cmp(peaks["frozen_te"][0], "<=", peaks["all_trainable"][0], "peak block"),
                 cmp(peaks["frozen_te"][1], ">=", peaks["all_trainable"][1], "peak probe IoU"))


SYNONYMS = ("bezel ↔ lunette", "leather ↔ strap", "pearl ↔ pearls", "clockwork ↔ movement", "diamonds ↔ stones", "hour hand ↔ minute hand")
PERIPHERAL = ("lugs ↔ metal", "metal ↔ rehaut", "bezel ↔ rehaut", "bezel ↔ lugs", "dial ↔ lugs")


@claim("p01-7.2-synonyms-overlap", P1, "Tables 7.2 / 7.3", table="7.2", reads=("post01/table-7.2", "post01/table-7.3"),
       quote="These are the pairs where we’d expect the model to behaviourally treat the prompts as referring to the same thing, and indeed at the predicted-mask level it mostly does",
       statement="frozen-TE: mean pred_iou_frozen_te over the synonym pairs (7.2) > mean over the five peripheral-metal pairs (7.3)")
def _(r: Results) -> Outcome:
    syn = r.column("post01/table-7.2", "pred_iou_frozen_te", by="pair")
    per = {k: v for k, v in r.column("post01/table-7.3", "pred_iou_frozen_te", by="pair").items() if k in PERIPHERAL}
    if not per:
        raise NotYetRun("post01/table-7.3.json has none of the peripheral pairs")
    return cmp(sum(syn.values()) / len(syn), ">", sum(per.values()) / len(per), "mean synonym vs mean peripheral pred_IoU")


@claim("p01-7.3-fusion-merge", P1, "Table 7.3", table="7.3", reads=("post01/table-7.3",),
       quote="they leapt from 0.49–0.66 in base on watch images to 0.89–0.96 in every fine-tune.",
       statement="fus[4] cosine rises from base to frozen-TE for at least 4 of the 5 peripheral-metal pairs (keys fus4_base, fus4_frozen_te)")
def _(r: Results) -> Outcome:
    base = r.column("post01/table-7.3", "fus4_base", by="pair")
    ft = r.column("post01/table-7.3", "fus4_frozen_te", by="pair")
    pairs = [p for p in PERIPHERAL if p in base and p in ft]
    if not pairs:
        raise NotYetRun("post01/table-7.3.json has none of the peripheral pairs")
    up = sum(ft[p] > base[p] for p in pairs)
    return cmp(up, ">=", min(4, len(pairs)), f"pairs with a rise (of {len(pairs)})")


@claim("p01-7.3-distinct-masks", P1, "Table 7.3", table="7.3", reads=("post01/table-7.3",),
       quote="The model has merged the residual stream for these prompts but is still producing different mask outputs",
       statement="mean pred_iou_frozen_te over the five peripheral-metal pairs < mean fus4_frozen_te cosine over them")
def _(r: Results) -> Outcome:
    pi = {k: v for k, v in r.column("post01/table-7.3", "pred_iou_frozen_te", by="pair").items() if k in PERIPHERAL}
    co = {k: v for k, v in r.column("post01/table-7.3", "fus4_frozen_te", by="pair").items() if k in PERIPHERAL}
    if not pi or not co:
        raise NotYetRun("post01/table-7.3.json has none of the peripheral pairs")
    return cmp(sum(pi.values()) / len(pi), "<", sum(co.values()) / len(co), "pred_IoU vs fus[4] cosine")


@claim("p01-7.4-compound-split", P1, "Table 7.4", table="7.4", reads=("post01/table-7.4",),
       quote="Text-encoder rotation in the all-trainable recipe pulls the compound apart by 0.32 and 0.40 cosine",
       statement="text-embedding cosine of both compound pairs drops from base to all-trainable (keys text_base, text_all_trainable)")
def _(r: Results) -> Outcome:
    b = r.column("post01/table-7.4", "text_base", by="pair")
    a = r.column("post01/table-7.4", "text_all_trainable", by="pair")
    return every(*(cmp(a[p], "<", b[p], p) for p in b if p in a))
