"""Post 01 §10, Table 9.14 — "Did the math hold?": the post's mathematical predictions vs our results.

Each of the post's seven predictions (MP ceiling ⇒ r=48 suffices; r=32/48 not rank-saturated; rsLoRA's
1/√r boost shape; rsLoRA's c ≈ 8 constant; the direction of the α-boost at r=48; same circuit under boost;
small OOD penalty) gets our verdict, computed from the results JSONs the other Post 01 scripts write
(results/post01/table-*.json, results/recipes.json) through the claims machinery of common/claims.py;
then the §11–§12 predictions (MP-rank settles early, e90 ≫ MP-rank, AdaLoRA init, MP-rank LoRA vs full FT).
A prediction whose results are missing reads "not yet run". Writes results/post01/table-9.14.{json,md}
and fig-9.14.{png,svg}. Run it last (after the scripts that write tables 9.1, 9.6, 9.9, 9.10, 9.11, 9.13,
9.15, 9.17, 9.19 and results/recipes.json).
"""
from __future__ import annotations

import math
import time
from typing import Callable

from common import claims, cli, section
from common import published as pub
from common.claims import NotYetRun, Results, cmp, within

LABEL = {True: "confirmed", False: "not confirmed"}
HOLDS = ("confirmed", "direction confirmed", "shape right")  # verdicts that count as "holds in direction"
#: The post's verdict column of Table 9.14, quoted (text, not a number; shown beside ours, never used as ours).
POST_VERDICT = {
    "mp_ceiling": "confirmed", "not_saturated": "confirmed", "rslora_shape": "confirmed",
    "rslora_constant": "shape right; constant 6× too low", "r48_direction": "direction confirmed; magnitude null",
    "same_circuit": "confirmed", "ood_penalty": "confirmed",
}
PREDICTIONS = {
    "mp_ceiling": "MP signal-rank ceiling at ~40 ⇒ r=48 is enough capacity",
    "not_saturated": "r=32 / r=48 are not rank-saturated under standard scaling",
    "rslora_shape": "rsLoRA: boost effect ∝ 1/√r relative to default ⇒ small-rank gets bigger gain",
    "rslora_constant": "rsLoRA prescribed constant c ≈ 8 is the right α magnitude",
    "r48_direction": "Direction of α-boost effect at r=48 (sign test still 113/65)",
    "same_circuit": "α boost preserves the same circuit (fusion[4] localisation, same heads)",
    "ood_penalty": "α boost incurs small OOD penalty",
}
RANKS = (8, 16, 32, 48)


# --------------------------------------------------------------------------- predicates (ours)
def _claim(r: Results, cid: str) -> tuple[bool, str]:
    """An existing claim's outcome, before its precondition gate (the scorecard applies :func:`gate` itself);
    NotYetRun / errors propagate as verdicts via ``evaluate``."""
    v = claims.evaluate(claims.by_id(cid), r, gate=False)
    if v.verdict == "not yet run":
        raise NotYetRun(v.detail)
    if v.verdict == "error":
        raise RuntimeError(v.detail)
    return v.verdict == "holds", f"[{cid}] {v.detail}"


def mp_ceiling(r: Results) -> tuple[str, str, dict]:
    top = r.cell("post01/table-9.1", "max", group="overall")
    ok_cap, d_cap = cmp(top, "<=", 48, "max MP signal rank (fusion_only, F[0..4]) vs r=48")
    try:  # the claim reads results/recipes.json; Table 9.13 (mp_prescription.py) holds the same two IoUs
        ok_iou, d_iou = _claim(r, "p01-9.2-r48-matches-fusion-only")
        r48, fo = r.metric("lora_r48", "watch", "iou"), r.metric("fusion_only", "watch", "iou")
    except NotYetRun:
        t = "post01/table-9.13"
        r48, fo = r.cell(t, "watch_iou", recipe="lora_r48_std"), r.cell(t, "watch_iou", recipe="fusion_only")
        ok_iou, d_iou = within(r48, fo, 0.02, "[table-9.13] IoU r=48 vs fusion_only")
    return LABEL[ok_cap and ok_iou], f"{d_cap}; {d_iou}", {"max_signal_rank": top, "r48_iou": r48, "fusion_only_iou": fo}


def not_saturated(r: Results) -> tuple[str, str, dict]:
    ok, d = _claim(r, "p01-9.6-spare-capacity")
    t = "post01/table-9.6"
    nums = {f"mp_fraction_r{k}": r.cell(t, "mp_fraction", rank=k) for k in (32, 48)}
    return LABEL[ok], d, nums


def _boost_gains(r: Results) -> dict[int, float]:
    t = "post01/table-9.9"
    return {k: r.cell(t, "boost_iou", rank=k) - r.cell(t, "std_iou", rank=k) for k in RANKS}


def rslora_shape(r: Results) -> tuple[str, str, dict]:
    g = _boost_gains(r)
    mono = all(g[a] >= g[b] for a, b in zip(RANKS, RANKS[1:]))
    ok, d = _claim(r, "p01-9.9-boost-lowers-loss")
    detail = "Δ IoU (boost − std): " + ", ".join(f"r={k} {g[k]:+.3f}" for k in RANKS) + f"; monotone: {mono}; {d}"
    verdict = "confirmed" if ok and mono else ("direction confirmed, not monotone" if g[8] > g[48] else "not confirmed")
    return verdict, detail, {f"d_iou_r{k}": g[k] for k in RANKS}


def rslora_constant(r: Results) -> tuple[str, str, dict]:
    ious = r.column("post01/table-9.15", "watch_iou", by="alpha")
    if max(ious.values()) - min(ious.values()) < 1e-9:
        return "not confirmed (flat ladder)", f"all {len(ious)} α give watch IoU {max(ious.values()):.3f}", {}
    peak = float(max(ious, key=ious.get))
    c = peak / math.sqrt(8)
    gain = ious[max(ious, key=ious.get)] - ious[min(ious, key=lambda a: abs(float(a) - 22))]
    ok, d = _claim(r, "p01-9.15-alpha-peak")
    verdict = (f"shape right; constant {c / 7.95:.1f}× too low" if ok else "c ≈ 8 adequate (peak at α ≤ 22)")
    return verdict, f"r=8 α-ladder peaks at α={peak:g} (c = α/√8 ≈ {c:.1f}), IoU {gain:+.3f} over α=22; {d}", \
        {"peak_alpha": peak, "peak_c": c, "gain_over_alpha22": gain}


def _first(row: dict, keys: tuple[str, ...], what: str) -> float:
    for k in keys:
        if row.get(k) is not None:
            return float(row[k])
    raise NotYetRun(f"post01/table-9.10.json rank-48 row has no {what} key (tried {keys}; has {sorted(row)})")


def r48_direction(r: Results) -> tuple[str, str, dict]:
    row = r.row("post01/table-9.10", rank=48)
    p = _first(row, ("sign_test_p", "sign_p", "p_sign", "sign_test"), "sign-test p")
    md = _first(row, ("mean_delta", "mean_diff", "mean_d_iou", "delta_mean", "mean_delta_iou"), "mean Δ IoU")
    sig = p < 0.05
    small = abs(md) < 0.01
    verdict = ("direction confirmed; magnitude null" if sig and small else "direction confirmed" if sig
               else "not confirmed (sign test n.s.)")
    return verdict, f"r=48 boost vs std: sign-test p = {p:.3g}, mean Δ IoU = {md:+.4f}", {"sign_test_p": p, "mean_delta": md}


def same_circuit(r: Results) -> tuple[str, str, dict]:
    raise NotYetRun("no script here compares per-head ablation / patching curves before vs after the α boost "
                    "(not among the reproduced tables)")


def ood_penalty(r: Results) -> tuple[str, str, dict]:
    ok, d = _claim(r, "p01-9.11-ood-penalty")
    if "vacuous" in d:
        return "not testable (boost helped IoU at no rank)", d, {}
    t = "post01/table-9.11"
    drops = {}
    for m in ("cgF1", "pmF1", "neg_correct"):
        vals = [r.cell(t, m, rank=k, variant="std") - r.cell(t, m, rank=k, variant="boost")
                for k in sorted({x["rank"] for x in r.rows(t) if x.get("variant") == "boost"})]
        drops[f"{m}_drop_mean_pp"] = 100 * sum(vals) / len(vals)
    return LABEL[ok], d + "; mean drop (pp): " + ", ".join(f"{k.split('_drop')[0]} {v:+.2f}" for k, v in drops.items()), drops


CHECKS: dict[str, Callable[[Results], tuple[str, str, dict]]] = {
    "mp_ceiling": mp_ceiling, "not_saturated": not_saturated, "rslora_shape": rslora_shape,
    "rslora_constant": rslora_constant, "r48_direction": r48_direction, "same_circuit": same_circuit,
    "ood_penalty": ood_penalty,
}
#: §11–§12 predictions, each one registered claim.
LATER = ("p01-9.1-ffn-widest", "p01-9.17-mp-converges", "p01-9.17-e90-noise", "p01-9.19-adalora-init",
         "p01-9.13-mp-lora-beats-ft", "p01-9.13-alpha-lever")


#: Scorecard predictions read off watch-IoU orderings: meaningless unless the fine-tunes learned the watch task.
#: (Registered claims say so themselves: ``needs=claims.LEARNED``.)
IOU_BASED = {"mp_ceiling", "rslora_shape", "rslora_constant", "r48_direction", "ood_penalty"}
LEARNED_GAIN = 0.3  # common.claims "p01-1-watch-task-learned": frozen_te − base watch IoU


def task_learned(r: Results) -> tuple[bool | None, str]:
    """Did the watch fine-tune learn the task at this scale? (the precondition of every IoU ordering)

    The registered claim p01-1-watch-task-learned (results/recipes.json), else the same test on Table 9.13;
    None when neither has been written."""
    v = claims.evaluate(claims.by_id("p01-1-watch-task-learned"), r)
    if v.verdict in ("holds", "fails"):
        return v.verdict == "holds", f"[p01-1-watch-task-learned] {v.detail}"
    try:
        t = "post01/table-9.13"
        gain = r.cell(t, "watch_iou", recipe="frozen_te") - r.cell(t, "watch_iou", recipe="base")
    except NotYetRun:
        return None, "unknown (neither recipes.json nor table-9.13 written)"
    ok, d = cmp(gain, ">=", LEARNED_GAIN, "[table-9.13] IoU gain frozen_te − base")
    return ok, d


def gate(key: str, verdict: str, detail: str, learned: tuple[bool | None, str]) -> tuple[str, str]:
    """An IoU-based verdict becomes "not measurable" when the fine-tunes did not learn the task."""
    iou_based = key in IOU_BASED or (key in LATER and claims.by_id(key).needs == claims.LEARNED)
    if iou_based and learned[0] is False and verdict not in ("not yet run", "error"):
        return "not measurable (task not learned)", f"{learned[1]} ✗ — IoU orderings are noise; would read “{verdict}”: {detail}"
    return verdict, detail


def score(r: Results, key: str, learned: tuple[bool | None, str] = (None, "")) -> dict:
    """One scorecard row: our verdict and empirical result (or "not yet run" / "error" / "not measurable")."""
    r.touched = {}
    try:
        verdict, detail, nums = CHECKS[key](r)
    except NotYetRun as e:
        verdict, detail, nums = "not yet run", str(e), {}
    except Exception as e:  # noqa: BLE001 - reported, never hidden
        verdict, detail, nums = "error", f"{type(e).__name__}: {e}", {}
    verdict, detail = gate(key, verdict, detail, learned)
    return {"verdict": verdict, "empirical": detail, "files": sorted(r.touched), **nums}


def published_empirical(label: str) -> str:
    """The post's empirical-result cells of a Table 9.14 row, as printed."""
    return "; ".join(f"{v['column'].removeprefix('Empirical result (').rstrip(')')} {v['printed']}"
                     for v in pub.lookup("post01", "9.14", row=label))


def main(argv=None) -> dict:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    from common.report import results_root as rr

    res = Results(rr(args.scale, section.results_root(args.out, args.scale)))
    learned = task_learned(res)
    rows = []
    for key, label in PREDICTIONS.items():
        rows.append({"row": label, "key": key, **score(res, key, learned), "post_verdict": POST_VERDICT[key],
                     "post_empirical": published_empirical(label) or None})
    later = []
    for cid in LATER:
        v = claims.evaluate(claims.by_id(cid), res, args.scale, gate=False)  # gated below, like the rows
        c = claims.by_id(cid)
        verdict, detail = gate(cid, {"holds": "confirmed", "fails": "not confirmed"}.get(v.verdict, v.verdict), v.detail, learned)
        later.append({"key": cid, "source": c.source, "prediction": c.statement, "quote": c.quote,
                      "verdict": verdict, "empirical": detail})
    n = {k: sum(r["verdict"].startswith(k) for r in rows) for k in ("confirmed", "not confirmed", "not yet run")}
    directional = sum(r["verdict"].startswith(HOLDS) for r in rows)
    extra = {"later_predictions": later, "task_learned": {"learned": learned[0], "detail": learned[1]},
             "summary": {"directional_holds": directional, "of": len(rows), **n, "post": "6 of 7 in direction"}}
    later_md = ["", "## §11–§12 predictions (claims)", "", "| claim | source | verdict | ours |", "|---|---|---|---|"]
    later_md += [f"| {x['key']} | {x['source']} | {x['verdict']} | {x['empirical'].replace('|', chr(92) + '|')} |" for x in later]
    notes = (f"Score: {directional} of {len(rows)} predictions hold in direction (post: 6 of 7 in direction). "
             f"Did the watch fine-tune learn the task at this scale? {learned[1]} — IoU-based predictions are "
             "\"not measurable\" where it did not. "
             "`post_empirical` / `post_verdict` are the post's cells, shown beside ours.\n" + "\n".join(later_md))
    section.emit(args, "9.14", rows, t0=t0, config={"scale": args.scale, "results_root": str(res.root)},
                extra=extra, title="Table 9.14 — mathematical predictions vs our results", notes=notes,
                md_keys=["row", "verdict", "empirical", "post_verdict", "post_empirical"], figure=figure,
                script="post01/scorecard.py")
    print(f"table 9.14 [{args.scale}]: " + "; ".join(f"{r['key']}: {r['verdict']}" for r in rows)
          + " | " + "; ".join(f"{x['key']}: {x['verdict']}" for x in later))
    return {"rows": rows, "later": later}


def figure(result: dict):
    """A verdict grid: ours vs the post's, one line per prediction (Table 9.14 and the §11–§12 claims)."""
    import matplotlib.pyplot as plt

    items = [(r["row"], r["verdict"], r.get("post_verdict")) for r in result["rows"]]
    items += [(f"{x['source']}: {x['key']}", x["verdict"], "confirmed (post's text)") for x in result.get("later_predictions", [])]
    colour = lambda v: ("#2e8b57" if v.startswith(HOLDS) else  # noqa: E731
                        "#bbbbbb" if v.startswith(("not yet run", "error", "not measurable", "not testable")) else "#c0392b")
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(items) + 1))
    for i, (label, ours, post) in enumerate(items):
        y = len(items) - i
        ax.text(0.0, y, label[:70], va="center", fontsize=7)
        ax.scatter([0.72], [y], s=120, color=colour(ours), marker="s")
        ax.text(0.735, y, ours[:34], va="center", fontsize=6.5)
        if post:
            ax.scatter([0.90], [y], s=120, facecolor="none", edgecolor=colour(post), marker="s")
    ax.text(0.72, len(items) + 1, f"ours ({result['scale']})", ha="center", fontsize=8, weight="bold")
    ax.text(0.90, len(items) + 1, "post", ha="center", fontsize=8, weight="bold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0.3, len(items) + 1.6)
    ax.axis("off")
    ax.set_title("Table 9.14 — did the math hold? (green holds, red not, grey not yet run / not measurable)", fontsize=10)
    return fig


if __name__ == "__main__":
    main()
