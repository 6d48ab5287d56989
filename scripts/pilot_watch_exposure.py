"""Issue #3 pilot: does a base that has *learned to read* watch words show the posts' refusal collapse?

`scripts/diagnose_watch.py` finds that fine-tunes of the committed tiny base cannot localise watch phrases (its text
encoder is a frozen random lookup and the base saw watch pairs in only 1 of 20 batches), hedge their masks below 0.5
and forget LVIS. This pilot continues the committed base for a third, watch-exposure stage (``trial_stage3_C``):
600 steps, every 2nd batch from ``watch_pretrain`` (16 everyday watch concepts with negatives), the rest the
open-vocab stream with hard negatives, **text encoder trainable**, lr 1e-4 cosine. Then it runs the posts'
``frozen_te`` fine-tune from that base at lr 1e-4 and 3e-5 and scores every model on the three suites.

It is a pilot, not the project's base: the recipes live here, not in the registry, and nothing downstream uses
them. Writes results/diagnostics/watch-exposure-pilot.{json,md}.
Usage: python scripts/pilot_watch_exposure.py [--scale tiny]
"""
from __future__ import annotations

import time
from dataclasses import replace

from common import cli, recipes, section
from common.evaluate import evaluate_run
from common.recipes import RECIPES, Recipe
from common.schedules import Schedule

FT_LRS = (1e-4, 3e-5)


def stage3() -> Recipe:
    """The watch-exposure stage on top of the base (see the module docstring)."""
    s2 = RECIPES["base_pretrain"]
    return replace(s2, name="trial_stage3_C", init="base_pretrain", frozen=(),
                   streams=(s2.streams[0], replace(s2.streams[1], every=2)), steps=600, lr=1e-4,
                   schedule=Schedule("warmup_cosine", warmup=50, final=0.05), p_hard_start=0.6, p_hard_end=0.6,
                   checkpoints=(200, 400))


def fine_tune(lr: float) -> Recipe:
    """Post 01's frozen_te from the pilot base at learning rate ``lr``, checkpoints at 1/3 and 2/3."""
    return replace(RECIPES["frozen_te"], name=f"trial_frozen_te_C_lr{lr:g}", init="trial_stage3_C", lr=lr,
                   checkpoint_fractions=(1 / 3, 2 / 3))


def row(model: str, name, scale: str, step: int | None, label_step: int) -> dict:
    s = evaluate_run(name, scale, step=step)
    w, sa, lv = s["watch"], s["saco"], s["lvis"]
    return {"model": model, "step": label_step, "watch_iou": w["iou"], "saco_neg_correct": sa["neg_correct"],
            **{f"neg_correct_{k}": v for k, v in sa["neg_correct_by_type"].items()},
            "saco_cgF1": sa["cgF1"], "saco_pos_mean_IoU": sa["pos_mean_IoU"], "lvis_mIoU": lv["mIoU"]}


def main(argv=None) -> dict:
    args = cli.parse(__doc__, argv)
    t0 = time.time()
    if "trial_stage3_C" not in RECIPES:
        recipes.register(stage3())
    s3 = recipes.train("trial_stage3_C", args.scale, progress=False)
    rows = [row("base (committed)", "base", args.scale, None, 0),
            row("pilot base (stage 3)", "trial_stage3_C", args.scale, None, s3.summary["steps"])]
    finals = {}
    for lr in FT_LRS:
        ft = fine_tune(lr)
        run = recipes.train(ft, args.scale, progress=False)
        for s in (s for s in recipes.saved_steps(ft, args.scale) if s < run.summary["steps"]):
            rows.append(row(f"frozen_te lr {lr:g}", ft, args.scale, s, s))
        rows.append(row(f"frozen_te lr {lr:g}", ft, args.scale, None, run.summary["steps"]))
        finals[lr] = rows[-1]
    base, pilot = rows[0], rows[1]
    verdicts = [section.verdict(
        "the pilot base still plays base SAM3 (neg_correct ≥ 0.90, positive kept IoU ≥ 0.5) and knows more watch",
        pilot["saco_neg_correct"] >= 0.90 and pilot["saco_pos_mean_IoU"] >= 0.5 and pilot["watch_iou"] > base["watch_iou"],
        f"neg_correct {pilot['saco_neg_correct']:.3f}, pos IoU {pilot['saco_pos_mean_IoU']:.3f}, watch IoU "
        f"{pilot['watch_iou']:.3f} (committed base {base['watch_iou']:.3f}), LVIS {pilot['lvis_mIoU']:.3f} "
        f"(committed {base['lvis_mIoU']:.3f})", "base SAM3: neg_correct 95.8 %, watch IoU 0.23")]
    for lr, f in finals.items():
        verdicts += [
            section.verdict(f"lr {lr:g}: refusal collapses (neg_correct falls ≥ 0.5 from the pilot base)",
                            pilot["saco_neg_correct"] - f["saco_neg_correct"] >= 0.5,
                            f"{pilot['saco_neg_correct']:.3f} → {f['saco_neg_correct']:.3f}", "95.8 % → 3.2 % (frozen-TE)"),
            section.verdict(f"lr {lr:g}: watch IoU rises ≥ 0.05", f["watch_iou"] - pilot["watch_iou"] >= 0.05,
                            f"{pilot['watch_iou']:.3f} → {f['watch_iou']:.3f}", "0.23 → 0.92"),
            section.verdict(f"lr {lr:g}: LVIS mIoU stays within 0.05", pilot["lvis_mIoU"] - f["lvis_mIoU"] <= 0.05,
                            f"{pilot['lvis_mIoU']:.3f} → {f['lvis_mIoU']:.3f}", "56.4 → 53.9")]
    notes = ("Pilot for the next base (issue #3). Rows are models; `step` is the model's training step (0 = committed "
             "base). neg_correct by negative type is on the SA-Co/Gold-like negatives.")
    section.emit(args, "watch-exposure-pilot", rows, t0=t0, config={"stage3": stage3().to_dict(),
                                                                    "fine_tune_lrs": list(FT_LRS)},
                 script="scripts/pilot_watch_exposure.py", title="Issue #3 pilot — a watch-exposure stage, then frozen_te",
                 verdicts=verdicts, notes=notes, section="diagnostics")
    for v in verdicts:
        print(f"[{v['verdict']}] {v['check']}: {v['detail']}")
    return {"rows": rows, "verdicts": verdicts}


if __name__ == "__main__":
    main()
