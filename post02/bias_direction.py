"""Post 02 §08, Table 7.1 + Fig 8.1 — direction matters: recovery moves the right parameter the wrong way.

The presence gate's LayerNorm bias (Meta's ``transformer.decoder.presence_token_out_norm.bias``; HF
``detr_decoder.presence_layer_norm.bias``, d-dimensional) as each recipe moved it: ‖Δ‖ relative to base's bias, and
the cosine of each delta to the fine-tune's break (frozen_te − base) and to the full fix (presence_only − base).
Recovery is measured from its start (recovery − frozen_te). Fig 8.1 projects every delta onto the plane of the break
axis and the orthogonal component toward presence_only (recovery drawn from the frozen_te tip). The scalar sign
check: the sign of each recipe's move of the gate's last bias (``presence_token_head.layers.2.bias``, one number).
Writes results/post02/table-7.1.{json,md} and fig-7.1.{png,svg} (the post's Fig 8.1).
"""
from __future__ import annotations

import time

import numpy as np

from common import cli, report, runs, section, weightdiff
from common.claims import Outcome, Results, claim, cmp, every
from common.model import original_name

T71 = "post02/table-7.1"
BIAS = "detr_decoder.presence_layer_norm.bias"
SCALAR = "detr_decoder.presence_head.layer3.bias"
RECOVERY = "recovery_frozen_te_boost"
#: Our trajectory key → (recipe, its start, published row label).
TRAJ = {"frozen_te": ("frozen_te", "base", "frozen_te − base (the FT’s break)"),
        "lvis_replay": ("lvis_replay", "base", "lvis_replay − base"),
        "lvis_replay_neg": ("lvis_replay_neg", "base", "lvis_replay_neg − base (partial fix)"),
        "presence_only": ("presence_only", "base", "presence_only − base (full fix)"),
        "recovery": (RECOVERY, "frozen_te", "recovery@2000 − frozen_te")}
PUB = report.columns("post02", "7.1", {"norm_rel_base": "‖Δ‖ rel base", "cos_frozen_te": "cos to frozen_te − base",
                                       "cos_presence_only": "cos to presence_only − base"})


def plane(break_dir: np.ndarray, fix_dir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fig 8.1's axes: x along the break, y the unit component of the fix orthogonal to it."""
    x = break_dir / np.linalg.norm(break_dir)
    y = fix_dir - (fix_dir @ x) * x
    n = np.linalg.norm(y)
    return x, (y / n if n > 0 else y)


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    states = {n: runs.load_model(n, args.scale).state_dict() for n in {x for t in TRAJ.values() for x in t[:2]}}
    d = {k: weightdiff.delta(states[start], states[end], BIAS) for k, (end, start, _) in TRAJ.items()}
    base_norm = float(states["base"][BIAS].double().norm())
    ax, ay = plane(d["frozen_te"].numpy(), d["presence_only"].numpy())
    origin = {"recovery": d["frozen_te"].numpy()}  # recovery starts at the frozen_te tip
    rows = []
    for k, (end, start, label) in TRAJ.items():
        v = d[k].numpy()
        o = origin.get(k, np.zeros_like(v))
        scalar = float(weightdiff.delta(states[start], states[end], SCALAR).sum())  # one number
        rows.append({"row": label, "trajectory": k, "recipe": end, "start": start,
                     "norm_rel_base": float(np.linalg.norm(v)) / base_norm,
                     "cos_frozen_te": weightdiff.cosine(d[k], d["frozen_te"]),
                     "cos_presence_only": weightdiff.cosine(d[k], d["presence_only"]),
                     "proj_x0": float(o @ ax), "proj_y0": float(o @ ay),
                     "proj_x": float((o + v) @ ax), "proj_y": float((o + v) @ ay),
                     "scalar_bias_delta": scalar, "scalar_bias_sign": int(np.sign(scalar))})
    section.emit(args, "7.1", rows, t0=t0, section="post02", figure=figure, published=PUB,
                 md_keys=["row", "norm_rel_base", "cos_frozen_te", "cos_presence_only", "scalar_bias_sign"],
                 config={"tensor": BIAS, "tensor_original_name": original_name(BIAS), "scalar": SCALAR,
                         "scalar_original_name": original_name(SCALAR), "scale": args.scale,
                         "trajectories": {k: {"recipe": v[0], "start": v[1]} for k, v in TRAJ.items()}},
                 title=f"Table 7.1 — the presence gate's LayerNorm bias ({len(d['frozen_te'])}-d): how far and which way "
                       "each recipe moved it (+ Fig 8.1)",
                 extra={"dim": len(d["frozen_te"]), "base_norm": base_norm},
                 notes=f"`{BIAS}` = Meta's `{original_name(BIAS)}`. `scalar_bias_sign`: the sign of each recipe's move "
                       f"of `{original_name(SCALAR)}` (one number), the post's degenerate check.")
    for r in rows:
        print(f"  {r['trajectory']:16s} ‖Δ‖/‖b‖ {r['norm_rel_base']:.3f}  cos→break {r['cos_frozen_te']:+.3f}  "
              f"cos→fix {r['cos_presence_only']:+.3f}  scalar sign {r['scalar_bias_sign']:+d}")
    print(f"table 7.1 [{args.scale}] {time.time() - t0:.0f} s")
    return rows


# ----------------------------------------------------------------------------- claims
def _cos(r: Results, traj: str, key: str = "cos_frozen_te") -> float:
    return r.cell(T71, key, trajectory=traj)


@claim("p02-7.1-replay-same-direction", "post02", "Table 7.1", table="7.1", reads=(T71,),
       quote="The FT’s break and lvis_replay’s movement are essentially the same direction (cos = +0.96).",
       statement="presence-norm bias delta: cos(lvis_replay − base, frozen_te − base) > 0.8")
def replay_same_direction(r: Results) -> Outcome:
    return cmp(_cos(r, "lvis_replay"), ">", 0.8, "cos")


@claim("p02-7.1-presence-only-flips", "post02", "Table 7.1", table="7.1", reads=(T71,),
       quote="The recipes that fix refusal flip the direction.",
       statement="cos(presence_only − base, frozen_te − base) < 0 and cos(lvis_replay_neg − base, ·) < cos(lvis_replay − base, ·)")
def presence_only_flips(r: Results) -> Outcome:
    return every(cmp(_cos(r, "presence_only"), "<", 0.0, "presence_only"),
                 cmp(_cos(r, "lvis_replay_neg"), "<", _cos(r, "lvis_replay"), "replay_neg vs replay"))


@claim("p02-7.1-recovery-continues", "post02", "Table 7.1", table="7.1", reads=(T71,),
       quote="The recovery training is geometrically identical to a continuation of the FT’s break.",
       statement="cos(recovery − frozen_te, frozen_te − base) > 0")
def recovery_continues(r: Results) -> Outcome:
    return cmp(_cos(r, "recovery"), ">", 0.0, "cos")


@claim("p02-7.1-scalar-sign", "post02", "§08", table="7.1", reads=(T71,),
       quote="frozen_te, lvis_replay, lvis_replay_neg, and recovery all push it in the same sign; presence_only is the "
             "only recipe that flips it.",
       statement="the gate's scalar last bias: frozen_te, lvis_replay, lvis_replay_neg and recovery move it with one "
                 "sign, presence_only with the other")
def scalar_sign(r: Results) -> Outcome:
    s = {t: r.cell(T71, "scalar_bias_sign", trajectory=t) for t in TRAJ}
    same = {s[t] for t in ("frozen_te", "lvis_replay", "lvis_replay_neg", "recovery")}
    ok = len(same) == 1 and 0 not in same and s["presence_only"] == -same.pop()
    return ok, "signs: " + ", ".join(f"{t} {int(v):+d}" for t, v in s.items())


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Fig 8.1: each recipe's bias delta as an arrow in the (break, orthogonal-toward-fix) plane; recovery from the
    frozen_te tip."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5))
    colours = plt.get_cmap("tab10")
    for i, r in enumerate(result["rows"]):
        ax.annotate("", xy=(r["proj_x"], r["proj_y"]), xytext=(r["proj_x0"], r["proj_y0"]),
                    arrowprops={"arrowstyle": "->", "color": colours(i), "lw": 2})
        ax.plot([], [], color=colours(i), lw=2, label=f"{r['row']} (cos→break {r['cos_frozen_te']:+.2f})")
    xs = [v for r in result["rows"] for v in (r["proj_x0"], r["proj_x"])]
    ys = [v for r in result["rows"] for v in (r["proj_y0"], r["proj_y"])]
    pad = 0.1 * max(max(map(abs, xs)), max(map(abs, ys)), 1e-9)
    ax.set(xlim=(min(xs + [0]) - pad, max(xs + [0]) + pad), ylim=(min(ys + [0]) - pad, max(ys + [0]) + pad))
    ax.axhline(0, color="grey", lw=0.6)
    ax.axvline(0, color="grey", lw=0.6)
    ax.plot(0, 0, "ko", ms=4)
    ax.set(xlabel="along the FT break (frozen_te − base)", ylabel="orthogonal, toward presence_only − base",
           title=f"Fig 8.1 — presence-norm bias deltas, projected ({result['scale']}, {result.get('dim')}-d)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.14))
    return fig


if __name__ == "__main__":
    main()
