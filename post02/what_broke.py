"""Post 02 §01, Table 1.1 + Fig 1.1 — what actually broke: refusal, not masks.

- **Table 1.1**: base vs the watch fine-tune (``--recipe``, default ``frozen_te``) on the seven SA-Co/Gold-like and
  LVIS-like metrics (neg_correct, cgF1, IL_MCC, mean_mask_IoU, pmF1, pos_mean_IoU, LVIS mIoU) with Δ. Rows are
  metrics, as the post prints them; each row is compared in its printed unit (×100 except IL_MCC).
- **Fig 1.1**: the presence σ (the scalar that multiplies every box score) of both models on 12 SA-Co-like negative
  pairs (phrases absent from their image; one per image, drawn with ``--seed``), with the 0.3 keep threshold.

Both models are trained and scored through the recipe cache. Writes results/post02/table-1.1.{json,md} and
fig-1.1.{png,svg}.
"""
from __future__ import annotations

import time

import numpy as np

from common import cli, published, report, runs, section
from common.claims import Outcome, Results, claim, cmp, every
from common.data import load_pairs
from common.evaluate import predict, recipe_rows
from common.metrics import KEEP_THRESHOLD
from common.model import SPECS
from common.worlds import ensure_worlds

T11 = "post02/table-1.1"
#: Table 1.1's rows (published label → our key) and each row's factor to the printed unit.
METRICS = {"neg_correct": "neg_correct", "cgF1": "cgF1", "IL_MCC": "IL_MCC", "mean_mask_IoU": "mean_mask_IoU",
           "pmF1": "pmF1", "pos_mean_IoU": "pos_mean_IoU", "LVIS mIoU": "lvis_miou"}
ROW_FACTORS = {label: 1.0 if key == "IL_MCC" else 100.0 for label, key in METRICS.items()}
PUB = report.columns("post02", "1.1", {"base": "base SAM3", "fine_tune": "watch FT (frozen-TE)", "delta": "Δ"},
                     row_factors=ROW_FACTORS)
N_NEGATIVES = 12  # the post probes 12 SA-Co/Gold negative prompts


def add_args(ap) -> None:
    ap.add_argument("--recipe", default="frozen_te", help="the watch fine-tune to compare with base (default frozen_te)")


def negative_pairs(scale: str, seed: int, n: int = N_NEGATIVES) -> tuple[object, list]:
    """``n`` SA-Co-like negative pairs, one per image, drawn with ``seed`` (Fig 1.1's probe set)."""
    ds = load_pairs(ensure_worlds(scale=scale)["saco_gold"])
    by_image: dict[str, list] = {}
    for p in ds.negatives():
        by_image.setdefault(str(p.path), []).append(p)
    rng = np.random.default_rng(seed)
    images = sorted(by_image)
    chosen = [by_image[k][int(rng.integers(len(by_image[k])))] for k in rng.permutation(images)[:n]]
    return ds, sorted(chosen, key=lambda p: p.pair_id)


def presence_on(names: dict[str, str], scale: str, seed: int) -> list[dict]:
    """Per negative pair: phrase, image and each model's presence σ (Fig 1.1)."""
    ds, pairs = negative_pairs(scale, seed)
    tok = runs.tokenizer_for(scale)
    sig = {key: [p.presence_sigmoid for p in predict(runs.load_model(name, scale), ds, tok, SPECS[scale].image_size,
                                                     pairs=pairs)] for key, name in names.items()}
    return [{"pair_id": p.pair_id, "phrase": p.phrase, "image": p.file_name, "neg_type": p.neg_type,
             **{key: float(sig[key][i]) for key in names}} for i, p in enumerate(pairs)]


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli.parse(__doc__, argv, extra=add_args)
    t0 = time.time()
    models = {"base": "base", "fine_tune": args.recipe}
    by_recipe = recipe_rows({"base SAM3": "base", args.recipe: args.recipe}, args.scale)
    rows = report.transpose(by_recipe, METRICS, {"base": "base", "fine_tune": args.recipe})
    for r in rows:
        r["delta"] = None if r["base"] is None or r["fine_tune"] is None else r["fine_tune"] - r["base"]
    probe = presence_on(models, args.scale, args.seed)
    above = {k: sum(p[k] > KEEP_THRESHOLD for p in probe) for k in models}
    section.emit(args, "1.1", rows, t0=t0, section="post02", figure=figure, published=PUB,
                 config={"recipe": args.recipe, "scale": args.scale, "n_negatives": len(probe)},
                 title=f"Table 1.1 — SA-Co-like and LVIS-like metrics, base vs {args.recipe} (+ Fig 1.1, presence σ on "
                       f"{len(probe)} negatives)",
                 extra={"recipe": args.recipe, "presence_on_negatives": probe, "keep_threshold": KEEP_THRESHOLD},
                 notes=f"Stored as fractions; the published columns are compared ×100 except IL_MCC. Fig 1.1: presence σ "
                       f"above the {KEEP_THRESHOLD} keep threshold on {above['base']}/{len(probe)} negatives for base, "
                       f"{above['fine_tune']}/{len(probe)} for {args.recipe}.")
    for r in rows:
        print(f"  {r['row']:14s} base {r['base']:.3f}  {args.recipe} {r['fine_tune']:.3f}  Δ {r['delta']:+.3f}")
    print(f"presence σ > {KEEP_THRESHOLD} on negatives: base {above['base']}/{len(probe)}, {args.recipe} "
          f"{above['fine_tune']}/{len(probe)}  [{time.time() - t0:.0f} s]")
    return rows


# ----------------------------------------------------------------------------- claims
def _cell(r: Results, metric: str, col: str) -> float:
    return r.cell(T11, col, row=metric)


@claim("p02-1.1-presence-problem", "post02", "Table 1.1", table="1.1", reads=(T11,),
       quote="Catastrophic forgetting on SAM3-watch is a presence-detection problem, not a mask-quality problem.",
       statement="base→fine-tune drop in SA-Co-like neg_correct > 5 × the drop in pos_mean_IoU (rows neg_correct, "
                 "pos_mean_IoU; column delta)")
def presence_problem(r: Results) -> Outcome:
    dn, dp = -_cell(r, "neg_correct", "delta"), -_cell(r, "pos_mean_IoU", "delta")
    return cmp(dn, ">", 5 * max(dp, 0.0), "neg_correct drop vs 5 × pos_mean_IoU drop")


@claim("p02-1.1-gate-stuck-open", "post02", "Fig. 1.1", table="1.1", reads=(T11,),
       quote="The gate is stuck open.",
       statement="on 12 SA-Co-like negative pairs the fine-tune's presence σ exceeds the 0.3 keep threshold on ≥ 10 "
                 "and base's on ≤ 2")
def gate_stuck_open(r: Results) -> Outcome:
    probe = r.load(T11).get("presence_on_negatives") or []
    thr = r.load(T11).get("keep_threshold", KEEP_THRESHOLD)
    n = {k: sum(p[k] > thr for p in probe) for k in ("base", "fine_tune")}
    return every(cmp(n["fine_tune"], ">=", 10, f"fine-tune σ > {thr} (of {len(probe)})"),
                 cmp(n["base"], "<=", 2, f"base σ > {thr} (of {len(probe)})"))


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Fig 1.1 (presence σ per negative pair, base vs fine-tune, the keep threshold) beside Table 1.1 (Δ per metric,
    ours vs published, in the printed unit)."""
    import matplotlib.pyplot as plt

    probe, recipe = result["presence_on_negatives"], result.get("recipe", "fine-tune")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
    xs = np.arange(len(probe))
    ax.bar(xs - 0.2, [p["base"] for p in probe], 0.4, color="#d9c7a0", label="base")
    ax.bar(xs + 0.2, [p["fine_tune"] for p in probe], 0.4, color="#e0a030", label=recipe)
    ax.axhline(result.get("keep_threshold", KEEP_THRESHOLD), color="grey", ls=":", lw=1, label="keep threshold")
    ax.set_xticks(xs, [p["phrase"] for p in probe], rotation=40, ha="right", fontsize=7)
    ax.set(ylabel="presence σ", ylim=(0, 1.05), title=f"Fig 1.1 — presence σ on {len(probe)} negative pairs ({result['scale']})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.32), ncol=3)
    rows = result["rows"]
    ys = np.arange(len(rows))
    bx.barh(ys, [(r["delta"] or 0) * ROW_FACTORS[r["row"]] for r in rows], color=report.PALETTE["ours"], alpha=0.85,
            label=f"ours ({result['scale']})")
    pub = [published.get("post02", "1.1", r["row"], "Δ") for r in rows]
    bx.plot([p if p is not None else np.nan for p in pub], ys, "o", mfc="none", mec=report.PALETTE["published"],
            label="published (SAM3)")
    bx.axvline(0, color="black", lw=0.6)
    bx.set_yticks(ys, [r["row"] + ("" if ROW_FACTORS[r["row"]] == 1 else " (×100)") for r in rows], fontsize=8)
    bx.invert_yaxis()
    bx.set(xlabel="Δ = fine-tune − base (printed unit)", title="Table 1.1 — Δ per metric")
    bx.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.15), ncol=2)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
