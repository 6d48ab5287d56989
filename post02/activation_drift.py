"""Post 02 §06, Table 5.1 (the post's second, id 5.1b) + Figs 6.1 and 6.2 — activation drift from base per recipe.

Every phrase of three prompt groups runs on the same fixed watch_test images (the post: 20 images; 37 watch
components, 30 LVIS-style names, 30 SA-Co/Gold positive NPs; here the worlds' watch concepts and up to 30 of each
other group). At three slots — fusion[4] (the image tokens conditioned on the prompt), decoder[5].q0 (the presence
slot, the gate's input) and the mean of decoder[5]'s object queries — each checkpoint's activation is compared with
base's on the same (image, phrase): rel_Δ = ‖a − a_base‖ / ‖a_base‖, averaged over images, then over the group's
phrases (``common.activations``). Rows: frozen_te, the replay recipes, recovery at the post's steps (scaled to our
run) and presence_only.

Fig 6.1 (left): recovery's fusion[4] drift over its steps, the during-FT recipes as reference lines. Fig 6.2 (right):
decoder[5].q0 drift on LVIS prompts vs SA-Co-like neg_correct per recipe: presence_only shares lvis_replay's input
and sits off the data-side trend. Writes results/post02/table-5.1b.{json,md} and fig-5.1b.{png,svg}.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from common import activations, cli, published, report, runs, section
from common.claims import NotYetRun, Outcome, Results, claim, cmp, every
from common.data import load_pairs
from common.evaluate import evaluate_run
from common.model import SPECS
from common.worlds import ensure_worlds

T = "post02/table-5.1b"
RECOVERY = "recovery_frozen_te_boost"
RECIPES = ("frozen_te", "lvis_replay", "lvis_replay_n100", "lvis_replay_neg")
#: The post's recovery steps in Table 5.1b (of its 2,000), and the row labels it prints them under.
RECOVERY_ROWS = {50: "recovery @ step 50", 400: "recovery @ step 400", 800: "recovery @ step 800",
                 1200: "recovery @ step 1200 (cgF1 peak)", 2000: "recovery @ step 2000"}
POST_RECOVERY_STEPS = 2000
GROUPS = {"watch": "watch_train", "lvis": "lvis_val", "saco": "saco_gold"}
N_IMAGES, N_PER_GROUP = 20, 30
LAYERS = {"f4": "f[4]", "q0": "d[5].q0", "d5": "d[5] mean"}
GROUP_LABEL = {"watch": "watch", "lvis": "LVIS", "saco": "SA-Co"}
KEYS = [f"{layer}_{g}" for layer in LAYERS for g in GROUPS]
PUB = report.columns("post02", "5.1b", {f"{layer}_{g}": f"{LAYERS[layer]} {GROUP_LABEL[g]}" for layer in LAYERS for g in GROUPS})


def prompts(scale: str, seed: int) -> dict[str, list[str]]:
    """The phrase groups: every watch concept, up to 30 LVIS-like names and 30 SA-Co-like positive phrases."""
    worlds, rng = ensure_worlds(scale=scale), np.random.default_rng(seed)
    out = {}
    for g, split in GROUPS.items():
        ph = sorted({p.phrase for p in load_pairs(worlds[split]) if p.is_positive})
        out[g] = ph if g == "watch" else sorted(rng.choice(ph, min(N_PER_GROUP, len(ph)), replace=False).tolist())
    return out


def probe_images(scale: str, seed: int) -> list[np.ndarray]:
    """``N_IMAGES`` fixed watch_test images (the visual substrate every checkpoint sees)."""
    ds = load_pairs(ensure_worlds(scale=scale)["watch_test"])
    first = {}
    for p in ds:
        first.setdefault(str(p.path), p)
    keys = sorted(first)
    pick = np.random.default_rng(seed).choice(len(keys), min(N_IMAGES, len(keys)), replace=False)
    return [ds.image(first[keys[i]]) for i in sorted(pick)]


def slots(scale: str) -> dict[str, str]:
    """Our three slots at this scale: fusion[4] (or the last fusion layer of a smaller model) and the last decoder layer."""
    return {"fusion": f"fusion[{min(4, SPECS[scale].fusion_layers - 1)}]", "decoder": "decoder[-1]"}


def read(model, images, phrases: dict[str, list[str]], scale: str) -> dict[str, torch.Tensor]:
    """The three compared activations per (image, phrase), every group's phrases in order: fusion tokens, q0, and the
    mean of the object queries."""
    where = slots(scale)
    acts = activations.capture_grid(model, images, [p for g in GROUPS for p in phrases[g]], runs.tokenizer_for(scale),
                                    SPECS[scale].image_size, list(where.values()), progress=False)
    dec = acts[where["decoder"]]
    return {"f4": acts[where["fusion"]], "q0": dec[:, :, 0], "d5": dec[:, :, 1:].mean(dim=2)}


def drift_row(model, base_read: dict, images, phrases: dict[str, list[str]], scale: str) -> dict[str, float]:
    """rel_Δ vs base per slot × prompt group (mean over images, then over the group's phrases)."""
    ours = read(model, images, phrases, scale)
    out, start = {}, 0
    for g in GROUPS:
        sl = slice(start, start + len(phrases[g]))
        start += len(phrases[g])
        for layer, dims in (("f4", 2), ("q0", 1), ("d5", 1)):
            per = activations.relative_drift(ours[layer][:, sl], base_read[layer][:, sl], dims)  # [images, phrases]
            out[f"{layer}_{g}"] = float(per.mean(dim=0).mean())
    return out


def checkpoints(scale: str) -> list[dict]:
    """(row label, recipe, saved step or None) for every row: the recipes, recovery at the post's steps, presence_only."""
    total = runs.run_steps(RECOVERY, scale)
    saved = set(runs.saved_steps(RECOVERY, scale))
    rows = [{"row": n, "recipe": n, "step": None, "post_step": None} for n in RECIPES]
    for post_step, label in RECOVERY_ROWS.items():
        ours = round(post_step * total / POST_RECOVERY_STEPS)
        if ours >= total:
            rows.append({"row": label, "recipe": "recovery", "step": None, "our_step": total, "post_step": post_step})
        elif ours in saved:
            rows.append({"row": label, "recipe": "recovery", "step": ours, "our_step": ours, "post_step": post_step})
    extra = sorted(s for s in saved if s not in {r.get("our_step") for r in rows})  # Fig 6.1's other saved steps
    rows += [{"row": f"recovery @ our step {s}", "recipe": "recovery", "step": s, "our_step": s,
              "post_step": s * POST_RECOVERY_STEPS / total} for s in extra]
    rows.append({"row": "presence_only", "recipe": "presence_only", "step": None, "post_step": None})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    scale = args.scale
    phrases, images = prompts(scale, args.seed), probe_images(scale, args.seed)
    where = slots(scale)
    flat = [p for g in GROUPS for p in phrases[g]]
    base_read = read(runs.load_model("base", scale), images, phrases, scale)
    rows = []
    for spec in checkpoints(scale):
        name = RECOVERY if spec["recipe"] == "recovery" else spec["recipe"]
        model = runs.load_model(name, scale, step=spec["step"])
        row = {**spec, **drift_row(model, base_read, images, phrases, scale)}
        if spec["step"] is None:  # Fig 6.2's y: the endpoint's SA-Co-like refusal
            row["neg_correct"] = evaluate_run(name, scale)["saco"]["neg_correct"]
        rows.append(row)
        print(f"  {row['row']:34s} " + "  ".join(f"{k} {row[k]:.3f}" for k in KEYS[:3] + KEYS[3:6:2]), flush=True)
    section.emit(args, "5.1b", rows, t0=t0, section="post02", figure=figure, published=PUB,
                 md_keys=["row", *KEYS, "neg_correct"],
                 config={"slots": where, "n_images": len(images), "prompts": phrases, "scale": scale, "seed": args.seed},
                 title="Table 5.1 (§06, id 5.1b) — activation drift rel_Δ vs base per recipe, slot and prompt group "
                       "(+ Figs 6.1, 6.2)",
                 notes=f"{len(images)} watch_test images × {len(flat)} phrases ({', '.join(f'{len(v)} {g}' for g, v in phrases.items())}). "
                       f"Slots: f4 = `{where['fusion']}` output (image tokens), q0 = `{where['decoder']}` presence slot, "
                       f"d5 = mean of `{where['decoder']}`'s object queries. Recovery rows at the post's steps scaled to "
                       f"our {runs.run_steps(RECOVERY, scale)}-step run; `neg_correct` for endpoints only.")
    print(f"table 5.1b [{scale}] {time.time() - t0:.0f} s")
    return rows


# ----------------------------------------------------------------------------- claims
def _final(r: Results, recipe: str) -> dict:
    rows = [x for x in r.rows(T) if x.get("recipe") == recipe]
    if not rows:
        raise NotYetRun(f"{T}.json has no {recipe} rows")
    return max(rows, key=lambda x: x.get("post_step") or 0)


@claim("p02-5.1b-replay-neg-cleanest", "post02", "Table 5.1 (§6, id 5.1b)", table="5.1b", reads=(T,),
       quote="lvis_replay_neg is the only recipe that cleans every layer × source.",
       statement="rel_Δ of lvis_replay_neg < frozen_te in every one of the 9 slot × prompt-group cells")
def replay_neg_cleanest(r: Results) -> Outcome:
    rn, ft = r.row(T, recipe="lvis_replay_neg"), r.row(T, recipe="frozen_te")
    worse = [k for k in KEYS if not rn[k] < ft[k]]
    return not worse, f"{len(KEYS) - len(worse)}/{len(KEYS)} cells cleaner" + (f"; not cleaner: {worse}" if worse else "")


@claim("p02-5.1b-recovery-walks-away", "post02", "Table 5.1 (§6, id 5.1b)", table="5.1b", reads=(T,),
       quote="Recovery training isn’t walking the model back toward base.",
       statement="fusion[4] rel_Δ on LVIS prompts: recovery at its last step > lvis_replay")
def recovery_walks_away(r: Results) -> Outcome:
    last = _final(r, "recovery")
    return cmp(last["f4_lvis"], ">", r.cell(T, "f4_lvis", recipe="lvis_replay"), f"recovery@{last.get('our_step')} vs lvis_replay")


@claim("p02-5.1b-recovery-q0-cleans", "post02", "Table 5.1 (§6, id 5.1b)", table="5.1b", reads=(T,),
       quote="At decoder[5].q0 the recovery actually cleans up.",
       statement="decoder[5].q0 rel_Δ on LVIS prompts: recovery at its last step < frozen_te (its start)")
def recovery_q0_cleans(r: Results) -> Outcome:
    return cmp(_final(r, "recovery")["q0_lvis"], "<", r.cell(T, "q0_lvis", recipe="frozen_te"), "recovery vs frozen_te")


@claim("p02-6.2-gate-vs-input", "post02", "Fig. 6.2", table="5.1b", reads=(T,),
       quote="presence_only breaks the trend entirely — its upstream is byte-identical to lvis_replay",
       statement="presence_only's decoder[5].q0 drift equals lvis_replay's (upstream unchanged) while its SA-Co-like "
                 "neg_correct exceeds every data-side recipe's")
def gate_vs_input(r: Results) -> Outcome:
    po, lr = r.row(T, recipe="presence_only"), r.row(T, recipe="lvis_replay")
    data_side = {x["recipe"]: x["neg_correct"] for x in r.rows(T) if x.get("neg_correct") is not None
                 and x["recipe"] not in ("presence_only",)}
    top = max(data_side, key=data_side.get)
    return every(cmp(abs(po["q0_lvis"] - lr["q0_lvis"]), "<", 1e-6, "|q0 drift presence_only − lvis_replay|"),
                 cmp(po["neg_correct"], ">", data_side[top], f"neg_correct presence_only vs best data-side ({top})"))


# ----------------------------------------------------------------------------- figure
def figure(result: dict):
    """Fig 6.1 (recovery's fusion[4] drift over its steps, per prompt group, with the during-FT recipes as reference
    lines) and Fig 6.2 (decoder[5].q0 drift on LVIS prompts vs SA-Co-like neg_correct)."""
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.6))
    rec = sorted([r for r in rows if r["recipe"] == "recovery"], key=lambda r: r["our_step"])
    colours = {"watch": "#1b6ca8", "lvis": "#c0392b", "saco": "#2e8b57"}
    styles = {"frozen_te": ":", "lvis_replay": "--", "lvis_replay_neg": "-."}
    for g, c in colours.items():
        ax.plot([r["post_step"] for r in rec], [r[f"f4_{g}"] for r in rec], "o-", color=c, label=f"recovery, {GROUP_LABEL[g]} prompts")
        for name, ls in styles.items():
            ref = next((r for r in rows if r["recipe"] == name), None)
            if ref is not None:
                ax.axhline(ref[f"f4_{g}"], color=c, ls=ls, lw=0.9, alpha=0.7)
    for name, ls in styles.items():
        ax.plot([], [], color="grey", ls=ls, label=f"{name} (endpoint)")
    for g, c in colours.items():  # the post's recovery points (SAM3), same colour, hollow
        col = f"f[4] {GROUP_LABEL[g]}"
        report.mark_published(ax, list(RECOVERY_ROWS), [published.get("post02", "5.1b", lab, col) for lab in RECOVERY_ROWS.values()],
                              label="published (SAM3), hollow" if g == "watch" else None, color=c)
    ax.set(xlabel="recovery step (the post's scale, of 2000)", ylabel="fusion[4] rel_Δ vs base",
           title=f"Fig 6.1 — recovery's fusion[4] drift ({result['scale']})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.16), ncol=2)
    pts = [r for r in rows if r.get("neg_correct") is not None]
    for r in pts:
        special = r["recipe"] == "presence_only"
        bx.scatter(r["q0_lvis"], r["neg_correct"] * 100, s=60, marker="*" if special else "o",
                   color=report.PALETTE["published"] if special else report.PALETTE["ours"])
        bx.annotate(r["recipe"].replace("_frozen_te_boost", ""), (r["q0_lvis"], r["neg_correct"] * 100), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    for r in pts:  # the post's point: q0 drift (Table 5.1b) vs neg_correct (Table 3.1 / 5.2), where it printed both
        label = {"frozen_te": "frozen-TE FT (no replay)", "lvis_replay": "lvis_replay (N=10, positive-only)",
                 "lvis_replay_n100": "lvis_replay_n100 (N=100, sparsity ablation)",
                 "lvis_replay_neg": "lvis_replay_neg (adds negatives stream)",
                 "recovery": "recovery@2000 (post-hoc, no negatives)"}.get(r["recipe"])
        x = published.get("post02", "5.1b", r["row"], "d[5].q0 LVIS")
        y = published.get("post02", "3.1", label, "SA-Co neg_correct") if label else \
            published.get("post02", "5.2", "presence_only (162 s on top of lvis_replay)", "SA-Co neg_correct")
        if x is not None and y is not None:
            bx.plot(x, y, "o", mfc="none", mec=report.PALETTE["published"], ms=8)
    bx.plot([], [], "o", mfc="none", mec=report.PALETTE["published"], label="published (SAM3)")
    data = [r for r in pts if r["recipe"] != "presence_only"]
    if len(data) >= 2:
        k, b = np.polyfit([r["q0_lvis"] for r in data], [r["neg_correct"] * 100 for r in data], 1)
        xs = np.linspace(min(r["q0_lvis"] for r in pts), max(r["q0_lvis"] for r in pts), 10)
        bx.plot(xs, k * xs + b, color="grey", ls="--", lw=0.8, label="data-side trend")
        bx.legend(fontsize=7)
    bx.set(xlabel="decoder[5].q0 rel_Δ vs base (LVIS prompts)", ylabel="SA-Co-like neg_correct (%)",
           title="Fig 6.2 — the gate's input vs the gate")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
