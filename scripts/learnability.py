"""Issue #15: which change makes the tiny stand-in learn the watch task? Candidates under one fixed compute budget.

Each candidate is a watch fine-tune (the ``frozen_te`` trainable set: everything but the text encoder, SAM3's
per-group LRs) that differs from the control in one or two knobs:

- the **representation**: base v3 (ViT 96-d at patch 14: an 8² token grid, ~6 patch values per token dim) vs
  base v4 (ViT 128-d at patch 7: a 16² grid, ~1.15 values per dim; fusion and decoder keep an 8² stream);
- the **batch composition**: 1 image × 4 accumulation steps (the posts' full recipes) vs 4 images per step;
- the **objective**: the default weights vs a mask-weighted one (cls 0.5, mask BCE 20, mask Dice 20);
- **replay**: Post 02's 1-in-10 LVIS batches;
- **LoRA** r=8 α=64 on F[0..4] (Table 9.15's adapter), which must learn the task for the α ladder to rank anything.

Every candidate trains for the same wall-clock budget (``--budget-s``, constant LR after a 20-step warmup, so
no schedule depends on where the budget ends) on its own ``--threads`` cores, all candidates at once; then it is
scored on watch_test (IoU overall / everyday words / jargon / per concept), the LVIS-like val set (mIoU) and the
SA-Co-like set (neg_correct). The per-term loss means of the first and last 30 steps show whether mask Dice
falls where the total falls. Writes results/diagnostics/learnability.{json,md}.

Usage: python scripts/learnability.py [--scale tiny] [--budget-s 480] [--jobs 8] [--threads 2]
       [--candidates A,B,...] [--v3-checkpoint data/checkpoints/tiny_base_v3.safetensors]
"""
from __future__ import annotations

import dataclasses
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from common import claims, cli, recipes, runs, section
from common.io import DATA, atomic_write_bytes, cached_json
from common.losses import LossWeights
from common.model import SPECS, TINY_V3, TinySpec, build_model, config_hash, load_into, load_state
from common.recipes import MASK_WEIGHTED, SAM3_LRS, AdapterSpec, Recipe, StreamSpec, T
from common.schedules import Schedule

V3_COMMIT = "e74fe23"  # the commit that made base v3 (tiny_base.safetensors at the 8² grid)
V3_CHECKPOINT = DATA / "checkpoints" / "tiny_base_v3.safetensors"
# The candidates' knobs are spelled out here (not read from common.recipes) so that the sweep stays what it measured
# when the registry adopts its outcome: the v3-era frozen_te (1 image × 4 accumulation, default loss, LR 3e-4 with
# SAM3's group ratios) and LoRA (4 images, LR 1e-4), each on a constant LR after a 20-step warmup.
CONSTANT = Schedule("constant", warmup=20)
WATCH = StreamSpec("watch_train", images=1, pos=4)
WATCH_LORA = StreamSpec("watch_train", images=4, pos=4)
FT = dict(init="base", lr=3e-4, grad_accum=4, loss=LossWeights(), **SAM3_LRS)
LORA_FT = dict(init="base", lr=1e-4, loss=LossWeights())
WATCH_4X4 = StreamSpec("watch_train", images=4, pos=4)
REPLAY = StreamSpec("lvis_train", every=10, images=1, pos=2)
#: A nominal horizon: every candidate stops at the wall-clock budget long before it.
HORIZON = 100_000
FROZEN_TE = Recipe(name="lc_frozen_te", streams=(WATCH,), frozen=T, steps=HORIZON, schedule=CONSTANT, **FT)
FOURX4 = dict(streams=(WATCH_4X4,), grad_accum=1)
LORA_CANDIDATE = Recipe(name="lc_lora_r8_a64", streams=(WATCH_LORA,), steps=HORIZON,
                        adapter=AdapterSpec(targets=recipes.FUSION04, rank=8, alpha=64),
                        schedule=CONSTANT, **LORA_FT)


@dataclass(frozen=True)
class Candidate:
    """One learnability candidate: a base (architecture + its pre-trained weights) and a fine-tune recipe."""

    name: str
    base: str  # "v3" (the 8²-grid base) or "v4" (the committed base of SPECS[scale])
    recipe: Recipe
    change: str


CANDIDATES = {c.name: c for c in (
    Candidate("A_v3_control", "v3", FROZEN_TE, "base v3, frozen_te's knobs (1 image × 4 accumulation, LR 3e-4)"),
    Candidate("B_v4_control", "v4", FROZEN_TE, "base v4 (16² ViT grid), frozen_te's knobs"),
    Candidate("C_v4_4x4", "v4", replace(FROZEN_TE, **FOURX4), "base v4, 4 images per step, no accumulation"),
    Candidate("D_v4_4x4_maskw", "v4", replace(FROZEN_TE, **FOURX4, loss=MASK_WEIGHTED),
              "base v4, 4 images per step, mask-weighted objective"),
    Candidate("E_v4_4x4_replay", "v4", replace(FROZEN_TE, streams=(WATCH_4X4, REPLAY), grad_accum=1),
              "base v4, 4 images per step, LVIS replay 1 in 10"),
    Candidate("F_v4_4x4_maskw_replay", "v4", replace(FROZEN_TE, streams=(WATCH_4X4, REPLAY), grad_accum=1,
                                                     loss=MASK_WEIGHTED),
              "base v4, 4 images per step, mask-weighted objective, LVIS replay 1 in 10"),
    Candidate("G_v3_4x4_maskw_replay", "v3", replace(FROZEN_TE, streams=(WATCH_4X4, REPLAY), grad_accum=1,
                                                     loss=MASK_WEIGHTED),
              "base v3, 4 images per step, mask-weighted objective, LVIS replay 1 in 10"),
    Candidate("I_v4_4x4_replay_lr1e-3", "v4", replace(FROZEN_TE, streams=(WATCH_4X4, REPLAY), grad_accum=1, lr=1e-3),
              "base v4, 4 images per step, LVIS replay 1 in 10, LR 1e-3 (3.3×)"),
    Candidate("J_v4_4x4_maskw_replay_lr1e-3", "v4", replace(FROZEN_TE, streams=(WATCH_4X4, REPLAY), grad_accum=1,
                                                            loss=MASK_WEIGHTED, lr=1e-3),
              "base v4, 4 images per step, mask-weighted objective, LVIS replay 1 in 10, LR 1e-3"),
    Candidate("H_v3_4x4", "v3", replace(FROZEN_TE, **FOURX4), "base v3, 4 images per step, no accumulation"),
    Candidate("K_v4_4x8_replay", "v4", replace(FROZEN_TE, streams=(replace(WATCH_4X4, pos=8), REPLAY), grad_accum=1),
              "base v4, 4 images × 8 phrases per step (more pairs per ViT pass), LVIS replay 1 in 10"),
    Candidate("L_v4_lora_r8_a64", "v4", LORA_CANDIDATE,
              "base v4, LoRA r=8 α=64 on F[0..4] (Table 9.15), 4 images per step"),
    Candidate("M_v4_lora_r8_a64_maskw", "v4", replace(LORA_CANDIDATE, loss=MASK_WEIGHTED),
              "base v4, LoRA r=8 α=64 on F[0..4], mask-weighted objective"),
    Candidate("N_v4_lora_r8_a160", "v4", replace(LORA_CANDIDATE, adapter=replace(LORA_CANDIDATE.adapter, alpha=160)),
              "base v4, LoRA r=8 α=160 on F[0..4] (the ladder's top)"),
)}
TERMS = ("total", "cls", "presence", "mask_bce", "mask_dice", "box_l1", "box_giou")


def spec_and_state(base: str, scale: str, v3_checkpoint: Path) -> tuple[TinySpec, dict[str, torch.Tensor], str]:
    """The architecture and weights of a candidate's base ("v3" is the tiny 8²-grid base; micro uses its own base)."""
    if base == "v3" and scale == "tiny":
        if not v3_checkpoint.exists():  # base v3 lives in the git history (commit V3_COMMIT)
            blob = subprocess.run(["git", "show", f"{V3_COMMIT}:data/checkpoints/tiny_base.safetensors"],
                                  capture_output=True, cwd=DATA.parent)
            if blob.returncode:
                raise FileNotFoundError(f"{v3_checkpoint}: base v3 checkpoint missing and not in this clone's git "
                                        f"history (commit {V3_COMMIT}): {blob.stderr.decode().strip()}")
            atomic_write_bytes(v3_checkpoint, blob.stdout)
        return TINY_V3, load_state(v3_checkpoint), str(v3_checkpoint)
    state, source = runs.base_state(scale)
    return SPECS[scale], state, source


def per_concept(watch: dict, paths: dict) -> dict[str, float]:
    """Mean watch IoU per concept from a watch score's per-task values."""
    from common.data import load_pairs

    phrase = {p.pair_id: p.phrase for p in load_pairs(paths["watch_test"])}
    by: dict[str, list[float]] = {}
    for tid, v in zip(watch["task_ids"], watch["per_task_iou"]):
        by.setdefault(phrase[tid], []).append(v)
    return {c: float(np.mean(v)) for c, v in sorted(by.items())}


def term_trend(log: list[dict], n: int = 30) -> dict[str, list[float]]:
    """Each loss term's mean over the first and the last ``n`` logged steps of the primary (watch) stream."""
    rows = [r for r in log if r.get("stream_watch_train")]
    out = {}
    for k in TERMS:
        v = [r[k] for r in rows if k in r]
        if v:
            out[k] = [float(np.mean(v[:n])), float(np.mean(v[-n:]))]
    return out


def run_candidate(name: str, scale: str, budget_s: float, threads: int, v3_checkpoint: str) -> dict:
    """Train candidate ``name`` for ``budget_s`` seconds (resumable, cached) and score it; returns its row."""
    from common.evaluate import evaluate_model
    from common.lora import merge_lora
    from common.train import train_loop
    from common.worlds import ensure_worlds, worlds_hash

    torch.set_num_threads(threads)
    c = CANDIDATES[name]
    spec, state, source = spec_and_state(c.base, scale, Path(v3_checkpoint))
    h = config_hash({"recipe": c.recipe.to_dict(), "spec": dataclasses.asdict(spec), "base": Path(source).name,
                     "worlds": worlds_hash(scale), "budget_s": budget_s})
    d = runs.runs_root() / scale / "learnability" / f"{name}-{h}"

    def compute() -> dict:
        paths = ensure_worlds(scale=scale)
        tok = runs.tokenizer_for(scale)
        model = build_model(scale, len(tok), seed=c.recipe.seed, spec=spec)
        load_into(model, {k: v.float() for k, v in state.items()}, source=source)
        extra = None
        if c.recipe.adapter is not None:
            torch.manual_seed(c.recipe.seed)
            model = runs.apply_adapter(model, c.recipe.adapter)
            extra = runs.adapter_loss(c.recipe.adapter)
        streams, recipe = runs.make_streams(c.recipe, paths)
        trainable = runs.trainable_params(model, recipe)
        res = train_loop(model, trainable, streams, tok, recipe, d, spec.mask_grid, spec.image_size, progress=False,
                         extra_loss=extra, budget_s=budget_s)
        if c.recipe.adapter is not None:
            model = merge_lora(model)
        t0 = time.time()
        scores = evaluate_model(model.eval(), scale)
        steps = res.summary["steps"]
        return {"candidate": name, "base": c.base, "change": c.change, "patch": spec.patch_size,
                "vit_width": spec.vit_width, "token_grid": spec.grid, "steps": steps,
                "s_per_step": res.summary["train_wall_s"] / max(steps, 1),
                "pairs_seen": sum(r.get("stream_watch_train", 0) for r in res.log),
                "watch_iou": scores["watch"]["iou"], "watch_iou_everyday": scores["watch"]["iou_seen_concepts"],
                "watch_iou_jargon": scores["watch"]["iou_unseen_concepts"],
                "lvis_miou": scores["lvis"]["mIoU"], "neg_correct": scores["saco"]["neg_correct"],
                "per_concept": per_concept(scores["watch"], paths), "terms": term_trend(res.log),
                "eval_wall_s": round(time.time() - t0, 1), "train_wall_s": res.summary["train_wall_s"]}

    return cached_json(d / "result.json", compute)


def base_row(base: str, scale: str, v3_checkpoint: Path) -> dict:
    """The untrained base's scores (the reference every candidate's gain is read against)."""
    from common.evaluate import evaluate_model
    from common.worlds import ensure_worlds

    spec, state, source = spec_and_state(base, scale, v3_checkpoint)
    tok = runs.tokenizer_for(scale)
    model = build_model(scale, len(tok), spec=spec)
    load_into(model, {k: v.float() for k, v in state.items()}, source=source)
    s = evaluate_model(model.eval(), scale)
    return {"candidate": f"base_{base}", "base": base, "change": "no fine-tune", "patch": spec.patch_size,
            "vit_width": spec.vit_width, "token_grid": spec.grid, "steps": 0, "watch_iou": s["watch"]["iou"],
            "watch_iou_everyday": s["watch"]["iou_seen_concepts"], "watch_iou_jargon": s["watch"]["iou_unseen_concepts"],
            "lvis_miou": s["lvis"]["mIoU"], "neg_correct": s["saco"]["neg_correct"],
            "per_concept": per_concept(s["watch"], ensure_worlds(scale=scale))}


def verdicts(rows: dict[str, dict]) -> list[dict]:
    """The issue's questions, answered on the rows (None where a candidate did not run)."""
    def get(n, k):
        return rows[n][k] if n in rows else None

    out = []
    for cand, base in ((n, f"base_{r['base']}") for n, r in rows.items() if not n.startswith("base_")):
        r, b = rows[cand], rows.get(base)
        if b is None:
            continue
        gained = sum(1 for k, v in r["per_concept"].items() if v - b["per_concept"].get(k, 0.0) >= 0.15)
        t = r["terms"]
        dice_falls = t["mask_dice"][1] < t["mask_dice"][0] if "mask_dice" in t else None
        out.append(claims.check(
            f"{cand}: learns the watch task (IoU ≥ base + 0.35, ≥ 27 concepts gain ≥ 0.15)",
            r["watch_iou"] >= b["watch_iou"] + 0.35 and gained >= 27,
            f"watch IoU {b['watch_iou']:.3f} → {r['watch_iou']:.3f} in {r['steps']} steps; {gained} concepts gain ≥ 0.15;"
            f" LVIS {b['lvis_miou']:.3f} → {r['lvis_miou']:.3f}; neg_correct {b['neg_correct']:.3f} → "
            f"{r['neg_correct']:.3f}; mask Dice {'falls' if dice_falls else 'does not fall'} "
            f"({' → '.join(f'{x:.3f}' for x in t.get('mask_dice', []))})"))
    a, bb = get("A_v3_control", "watch_iou"), get("B_v4_control", "watch_iou")
    if a is not None and bb is not None:
        out.append(claims.check("the 16² ViT grid (v4) learns more watch IoU than the 8² grid (v3) in the same budget",
                                   bb - rows["base_v4"]["watch_iou"] > a - rows["base_v3"]["watch_iou"],
                                   f"gain v4 {bb - rows['base_v4']['watch_iou']:+.3f} vs v3 "
                                   f"{a - rows['base_v3']['watch_iou']:+.3f}"))
    return out


def figure(result: dict):
    """Watch-IoU gain over the candidate's base vs LVIS-like mIoU kept (left) and vs SA-Co-like neg_correct (right),
    one point per candidate: up and right is learning without forgetting; the posts' frozen-TE sits at +0.69 / −0.025
    LVIS with refusal collapsed."""
    import matplotlib.pyplot as plt

    rows = {r["candidate"]: r for r in result["rows"]}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, key, label in ((axes[0], "lvis_miou", "LVIS-like mIoU"), (axes[1], "neg_correct", "SA-Co-like neg_correct")):
        for name, r in rows.items():
            if name.startswith("base_"):
                continue
            b = rows[f"base_{r['base']}"]
            colour = "#1b6ca8" if r["base"] == "v4" else "#999999"
            ax.scatter(r[key], r["watch_iou"] - b["watch_iou"], color=colour, marker="s" if "lora" in name else "o")
            ax.annotate(name.split("_", 1)[0], (r[key], r["watch_iou"] - b["watch_iou"]), fontsize=8,
                        xytext=(3, 3), textcoords="offset points")
        for b in ("v3", "v4"):
            if f"base_{b}" in rows:
                ax.axvline(rows[f"base_{b}"][key], color="#1b6ca8" if b == "v4" else "#999999", ls=":", lw=1)
        ax.set_xlabel(f"{label} after the fine-tune (dotted: base)")
    axes[0].set_ylabel("watch IoU gain over its base")
    axes[0].set_title("learning vs forgetting (blue: base v4, grey: v3; squares: LoRA)", fontsize=9)
    axes[1].set_title("learning vs refusal", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> dict:
    """Run the candidates (cached), write the result; returns ``{row name: row}``."""
    def extra(ap):
        ap.add_argument("--budget-s", type=float, default=480.0, help="training wall-clock seconds per candidate")
        ap.add_argument("--jobs", type=int, default=1, help="candidates trained at once (worker processes)")
        ap.add_argument("--candidates", default=",".join(sorted(CANDIDATES)), help="comma-separated candidate names")
        ap.add_argument("--v3-checkpoint", type=Path, default=V3_CHECKPOINT)

    args = cli.parse(__doc__, argv, extra=extra)
    t0 = time.time()
    threads = args.threads or 1
    names = [n for n in args.candidates.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidate(s) {unknown}; known: {sorted(CANDIDATES)}")
    from common.worlds import ensure_worlds

    ensure_worlds(scale=args.scale)
    runs.base_state(args.scale)  # the v4 base once, here, not in every worker
    rows: dict[str, dict] = {}
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futs = {n: pool.submit(run_candidate, n, args.scale, args.budget_s, threads, str(args.v3_checkpoint))
                    for n in names}
            for b in sorted({CANDIDATES[n].base for n in names}):
                rows[f"base_{b}"] = base_row(b, args.scale, args.v3_checkpoint)
            rows.update({n: f.result() for n, f in futs.items()})
    else:
        for b in sorted({CANDIDATES[n].base for n in names}):
            rows[f"base_{b}"] = base_row(b, args.scale, args.v3_checkpoint)
        rows.update({n: run_candidate(n, args.scale, args.budget_s, threads, str(args.v3_checkpoint)) for n in names})
    table = [{k: v for k, v in r.items() if k not in ("per_concept", "terms")}
             | {f"{k}_first_last": f"{v[0]:.3g} → {v[1]:.3g}" for k, v in r.get("terms", {}).items()
                if k in ("total", "cls", "mask_dice")}
             for r in rows.values()]
    section.emit(args, "learnability", table, t0=t0, section="diagnostics",
                 title="Issue #15 — learnability candidates under one fixed compute budget",
                 config={"candidates": names, "budget_s": args.budget_s, "threads_per_job": threads, "jobs": args.jobs},
                 checks=verdicts(rows), extra={"per_concept": {n: r["per_concept"] for n, r in rows.items()},
                                                 "terms": {n: r.get("terms") for n, r in rows.items()}},
                 figure=figure, md_keys=("candidate", "change", "token_grid", "steps", "s_per_step", "watch_iou", "watch_iou_everyday",
                          "watch_iou_jargon", "lvis_miou", "neg_correct", "total_first_last", "cls_first_last",
                          "mask_dice_first_last"))
    return rows


if __name__ == "__main__":
    main()
