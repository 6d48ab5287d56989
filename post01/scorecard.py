"""Post 01 §10, Table 9.14 — "Did the math hold?": the post's scorecard, read off the project's one judge.

Each of the post's seven predictions (MP ceiling ⇒ r=48 suffices; r=32/48 not rank-saturated; rsLoRA's 1/√r boost
shape; rsLoRA's c ≈ 8 constant; the direction of the α-boost at r=48; same circuit under boost; small OOD penalty)
names the registered claims (:func:`common.claims.registry`, the ``@claim``s beside the scripts that write Tables
9.1, 9.6, 9.9, 9.10, 9.11, 9.15 and ``results/recipes.json``) that test the post's empirical result in that row on
ours. The row's ``verdict`` is theirs, combined, in the one vocabulary (holds / fails / not measurable / not yet run /
error): holds when every claim holds; otherwise the first of error, fails, not yet run, not measurable that one of
them reads. A claim whose precondition fails (the watch fine-tune did not learn the task) reads "not measurable".
Each row also keeps our numbers the finding is about (a reading, not a verdict), and the post's own verdict and
empirical cells beside ours (``post_verdict``, ``post_empirical``: quoted, never used as ours). Then the §11–§12
predictions, one claim each.

Writes results/post01/table-9.14.{json,md} and fig-9.14.{png,svg}. Run it last (after the scripts that write Tables
9.1, 9.6, 9.9, 9.10, 9.11, 9.13, 9.15, 9.17, 9.19 and results/recipes.json).
"""
from __future__ import annotations

import math
import time
from typing import Callable

from common import claims, cli, recipes, section
from common import published as pub
from common.claims import LEARNED, NotYetRun, Results

#: The post's verdict column of Table 9.14, quoted (text, not a number; shown beside ours, never used as ours).
POST_VERDICT = {
    "mp_ceiling": "confirmed", "not_saturated": "confirmed", "rslora_shape": "confirmed",
    "rslora_constant": "shape right; constant 6× too low", "r48_direction": "direction confirmed; magnitude null",
    "same_circuit": "confirmed", "ood_penalty": "confirmed",
}
#: The post's verdicts that count as "holds in direction" (its "Score so far" line).
POST_IN_DIRECTION = ("confirmed", "direction confirmed")
#: prediction → (the post's row label, the claims that test the post's empirical result in that row)
PREDICTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mp_ceiling": ("MP signal-rank ceiling at ~40 ⇒ r=48 is enough capacity",
                   ("p01-9.1-ceiling-within-r48", "p01-9.2-r48-matches-fusion-only")),
    "not_saturated": ("r=32 / r=48 are not rank-saturated under standard scaling",
                      ("p01-9.6-spare-capacity", "p01-9.6-r32-r48-not-rank-limited")),
    "rslora_shape": ("rsLoRA: boost effect ∝ 1/√r relative to default ⇒ small-rank gets bigger gain",
                     ("p01-9.9-iou-gain-shrinks", "p01-9.9-boost-lowers-loss")),
    "rslora_constant": ("rsLoRA prescribed constant c ≈ 8 is the right α magnitude", ("p01-9.15-alpha-peak",)),
    "r48_direction": ("Direction of α-boost effect at r=48 (sign test still 113/65)", ("p01-9.10-r48-direction",)),
    "same_circuit": ("α boost preserves the same circuit (fusion[4] localisation, same heads)", ()),
    "ood_penalty": ("α boost incurs small OOD penalty", ("p01-9.11-ood-penalty", "p01-9.11-mean-ood-drop")),
}
#: Why a prediction has no claim yet.
NO_CLAIM = {"same_circuit": "no script here compares per-head ablation / patching curves before vs after the α boost "
                            "(not among the reproduced tables)"}
#: §11–§12 predictions, each one registered claim.
LATER = ("p01-9.1-ffn-widest", "p01-9.17-mp-converges", "p01-9.17-e90-noise", "p01-9.19-adalora-init",
         "p01-9.13-mp-lora-beats-ft", "p01-9.13-alpha-lever")
#: How a row's claims combine: all hold → holds; else the first of these that one of them reads.
PRECEDENCE = ("error", "fails", "not yet run", "not measurable")
RANKS = (8, 16, 32, 48)
RSLORA_ALPHA_8 = recipes.RSLORA_ALPHA[8]          # the rsLoRA-prescribed α at r=8
RSLORA_C = RSLORA_ALPHA_8 / math.sqrt(8)           # its c = α/√r


def combine(verdicts: list[str]) -> str:
    """One row's verdict from its claims' verdicts (no claim: not yet run)."""
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    return next((v for v in PRECEDENCE if v in verdicts), "not yet run")


# --------------------------------------------------------------------------- our readings (numbers, not verdicts)
def _ceiling(r: Results) -> tuple[str, dict]:
    top = r.cell("post01/table-9.1", "max", group="overall")
    try:  # results/recipes.json, else Table 9.13 (mp_prescription.py) holds the same two IoUs
        r48, fo = r.metric("lora_r48", "watch", "iou"), r.metric("fusion_only", "watch", "iou")
    except NotYetRun:
        t = "post01/table-9.13"
        r48, fo = r.cell(t, "watch_iou", recipe="lora_r48_std"), r.cell(t, "watch_iou", recipe="fusion_only")
    return (f"max MP signal rank (fusion_only, F[0..4]) {top:g}; watch IoU r=48 {r48:.4f} vs fusion_only {fo:.4f}",
            {"max_signal_rank": top, "r48_iou": r48, "fusion_only_iou": fo})


def _saturation(r: Results) -> tuple[str, dict]:
    nums = {f"mp_fraction_r{k}": r.cell("post01/table-9.6", "mp_fraction", rank=k) for k in (32, 48)}
    return "share of the rank budget above the MP edge: " + ", ".join(f"{k} {v:.3f}" for k, v in nums.items()), nums


def _shape(r: Results) -> tuple[str, dict]:
    t = "post01/table-9.9"
    g = {k: r.cell(t, "boost_iou", rank=k) - r.cell(t, "std_iou", rank=k) for k in RANKS}
    return "Δ IoU (boost − std): " + ", ".join(f"r={k} {g[k]:+.3f}" for k in RANKS), {f"d_iou_r{k}": g[k] for k in RANKS}


def _constant(r: Results) -> tuple[str, dict]:
    ious = r.column("post01/table-9.15", "watch_iou", by="alpha")
    if max(ious.values()) - min(ious.values()) < 1e-9:
        return f"flat ladder: all {len(ious)} α give watch IoU {max(ious.values()):.3f}", {}
    peak = float(max(ious, key=ious.get))
    c = peak / math.sqrt(8)
    gain = ious[max(ious, key=ious.get)] - ious[min(ious, key=lambda a: abs(float(a) - RSLORA_ALPHA_8))]
    return (f"r=8 α-ladder peaks at α={peak:g} (c = α/√8 ≈ {c:.1f}, {c / RSLORA_C:.1f}× the rsLoRA default), IoU "
            f"{gain:+.3f} over α={RSLORA_ALPHA_8}", {"peak_alpha": peak, "peak_c": c, "gain_over_alpha22": gain})


def _direction(r: Results) -> tuple[str, dict]:
    p = r.cell("post01/table-9.10", "sign_test_p", rank=48)
    md = r.cell("post01/table-9.10", "mean_delta_iou", rank=48)
    return f"r=48 boost vs std: sign-test p = {p:.3g}, mean Δ IoU = {md:+.4f}", {"sign_test_p": p, "mean_delta": md}


def _ood(r: Results) -> tuple[str, dict]:
    t = "post01/table-9.11"
    ranks = sorted({x["rank"] for x in r.rows(t) if x.get("variant") == "boost"})
    if not ranks:
        raise NotYetRun(f"{t}.json has no boost rows")
    drops = {}
    for m in ("cgF1", "pmF1", "neg_correct"):
        vals = [r.cell(t, m, rank=k, variant="std") - r.cell(t, m, rank=k, variant="boost") for k in ranks]
        drops[f"{m}_drop_mean_pp"] = 100 * sum(vals) / len(vals)
    return "mean drop std → boost (pp): " + ", ".join(f"{k.split('_drop')[0]} {v:+.2f}" for k, v in drops.items()), drops


READINGS: dict[str, Callable[[Results], tuple[str, dict]]] = {
    "mp_ceiling": _ceiling, "not_saturated": _saturation, "rslora_shape": _shape, "rslora_constant": _constant,
    "r48_direction": _direction, "ood_penalty": _ood,
}


def score(r: Results, key: str, scale: str) -> dict:
    """One scorecard row: the combined verdict of the row's claims, their details, and our reading."""
    ids = PREDICTIONS[key][1]
    vs = [claims.evaluate(claims.by_id(cid), r, scale) for cid in ids]
    files = {f for v in vs for f in v.files}
    parts = [f"[{v.claim}] {v.verdict}: {v.detail}" for v in vs] or [NO_CLAIM[key]]
    nums: dict = {}
    if key in READINGS:
        r.touched = {}
        try:
            text, nums = READINGS[key](r)
            parts.append(f"reading: {text}")
        except NotYetRun:
            pass
        files |= set(r.touched)
    return {"verdict": combine([v.verdict for v in vs]), "claims": list(ids), "empirical": "; ".join(parts),
            "files": sorted(files), **nums}


def published_empirical(label: str) -> str:
    """The post's empirical-result cells of a Table 9.14 row, as printed."""
    return "; ".join(f"{v['column'].removeprefix('Empirical result (').rstrip(')')} {v['printed']}"
                     for v in pub.lookup("post01", "9.14", row=label))


def main(argv=None) -> dict:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    res = Results(args.out)
    learned = claims.evaluate(claims.by_id(LEARNED), res, args.scale)
    rows = []
    for key, (label, _) in PREDICTIONS.items():
        rows.append({"row": label, "key": key, **score(res, key, args.scale), "post_verdict": POST_VERDICT[key],
                     "post_empirical": published_empirical(label) or None})
    later = []
    for cid in LATER:
        c, v = claims.by_id(cid), claims.evaluate(claims.by_id(cid), res, args.scale)
        later.append({"key": cid, "source": c.source, "prediction": c.statement, "quote": c.quote,
                      "verdict": v.verdict, "empirical": v.detail})
    counts = {k: sum(r["verdict"] == k for r in rows) for k in ("holds", *PRECEDENCE)}
    post_direction = sum(v.startswith(POST_IN_DIRECTION) for v in POST_VERDICT.values())
    extra = {"later_predictions": later,
             "task_learned": {"claim": LEARNED, "verdict": learned.verdict, "detail": learned.detail},
             "summary": {**counts, "of": len(rows), "post_in_direction": post_direction}}
    later_md = ["", "## §11–§12 predictions (claims)", "", "| claim | source | verdict | ours |", "|---|---|---|---|"]
    later_md += [f"| {x['key']} | {x['source']} | {x['verdict']} | {x['empirical'].replace('|', chr(92) + '|')} |" for x in later]
    notes = (f"Our verdict: does the post's empirical result in this row hold on our results (the row's claims, "
             f"combined)? {counts['holds']} of {len(rows)} hold, " + ", ".join(f"{n} {k}" for k, n in counts.items()
                                                                                 if k != "holds" and n) +
             f"; the post counts {post_direction} of {len(POST_VERDICT)} of its predictions holding in direction. "
             f"Precondition [{LEARNED}]: {learned.verdict} ({learned.detail}) — in-domain IoU orderings read "
             "\"not measurable\" where it fails. `post_empirical` / `post_verdict` are the post's cells, shown beside ours.\n"
             + "\n".join(later_md))
    section.emit(args, "9.14", rows, t0=t0, config={"scale": args.scale, "results_root": str(res.root)},
                 extra=extra, title="Table 9.14 — mathematical predictions vs our results", notes=notes,
                 md_keys=["row", "verdict", "empirical", "post_verdict", "post_empirical"], figure=figure)
    print(f"table 9.14 [{args.scale}]: " + "; ".join(f"{r['key']}: {r['verdict']}" for r in rows)
          + " | " + "; ".join(f"{x['key']}: {x['verdict']}" for x in later))
    return {"rows": rows, "later": later}


def figure(result: dict):
    """A verdict grid: our verdict per prediction (Table 9.14 and the §11–§12 claims) beside the post's verdict text."""
    import matplotlib.pyplot as plt

    items = [(r["row"], r["verdict"], r.get("post_verdict")) for r in result["rows"]]
    items += [(f"{x['source']}: {x['key']}", x["verdict"], None) for x in result.get("later_predictions", [])]
    colour = {"holds": "#2e8b57", "fails": "#c0392b"}
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(items) + 1))
    for i, (label, ours, post) in enumerate(items):
        y = len(items) - i
        ax.text(0.0, y, label[:70], va="center", fontsize=7)
        ax.scatter([0.62], [y], s=120, color=colour.get(ours, "#bbbbbb"), marker="s")
        ax.text(0.635, y, ours, va="center", fontsize=6.5)
        if post:
            ax.text(0.80, y, post[:34], va="center", fontsize=6.5, color="#555555")
    ax.text(0.62, len(items) + 1, f"ours ({result['scale']})", ha="center", fontsize=8, weight="bold")
    ax.text(0.80, len(items) + 1, "post's verdict", ha="left", fontsize=8, weight="bold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0.3, len(items) + 1.6)
    ax.axis("off")
    ax.set_title("Table 9.14 — does the post's finding hold on ours? (green holds, red fails, grey not measurable / "
                 "not yet run)", fontsize=10)
    return fig


if __name__ == "__main__":
    main()
