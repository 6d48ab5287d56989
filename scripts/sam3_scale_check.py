"""Systems check of the own-fine-tune CLI at scale ``sam3`` (issue #19): s/step and peak memory of the real architecture.

A randomly initialised SAM3 at full size (``Sam3Config()``: 840 M parameters, 1008² images; Meta's weights are not
needed to time it) is saved as a local model directory, then ``python -m common`` runs on it through the ``sam3`` code
path: ``finetune`` (LoRA on the fusion encoder and decoder, and frozen-TE, which trains the 32-block ViT too),
``validate`` of the fine-tune, and ``repair-presence`` with before/after scores. Each command is timed, with its
optimiser s/step, this process's peak GPU memory (reset per command) and peak RSS.

The weights are random, so the metrics in the JSON only show that each command ran; the timings and memory are the
result. ``--size micro`` runs the same sequence on the micro config in seconds (the smoke test).

Usage: python scripts/sam3_scale_check.py [--size full|micro] [--steps 8] [--device auto] [--modes lora,frozen_te]
Writes results/bench/sam3-scale.{json,md} (``--out`` to change).
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
import yaml

from common import commands, runs
from common.io import RESULTS, atomic_write_json, atomic_write_text, run_meta
from common.model import SPECS, build_config, pick_device, save_random_sam3
from common.report import markdown_table


def config_for(size: str):
    """The SAM3 config to build: the real model's (``Sam3Config()``) or the micro one (smoke test)."""
    if size == "full":
        from transformers import Sam3Config

        return Sam3Config()
    return build_config(SPECS["micro"], len(runs.tokenizer_for("micro")))


def measured(fn, device: torch.device) -> tuple[object, dict]:
    """Run ``fn()``; its result and wall time, peak GPU memory (this call) and the process's peak RSS so far, in GiB."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t = time.time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    m = {"wall_s": round(time.time() - t, 2),
         "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)}
    if device.type == "cuda":
        m["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3)
    return out, m


def check(size: str, work: Path, steps: int, modes: list[str], device: str, repair_steps: int,
          images_per_step: int = 2, phrases: int = 4) -> list[dict]:
    """The timed command sequence on a random ``size`` SAM3 under ``work``; one row per command."""
    dev = pick_device(device)
    os.environ[runs.RUNS_ENV] = str(work / "runs")  # the repair's run cache stays with the check
    cfg = config_for(size)
    model_dir, t = work / "sam3-random", time.time()
    if not (model_dir / "config.json").is_file():
        save_random_sam3(model_dir, cfg)
    rows: list[dict] = [{"command": "save_random_sam3", "mode": size, "wall_s": round(time.time() - t, 2)}]
    data = work / "coco"
    if not (data / "valid").is_dir():
        commands.main(["make-example-data", str(data), "--scale", "tiny", "--n-train", "8", "--n-valid", "4"])
    sam3 = ["--scale", "sam3", "--checkpoint", str(model_dir)]
    for mode in modes:
        conf = {"data": str(data), "out": str(work / f"ft-{mode}"), "scale": "sam3", "checkpoint": str(model_dir),
                "mode": mode, "steps": steps, "eval_every": steps, "images_per_step": images_per_step,
                "phrases_per_image": phrases, "device": device}
        if mode == "lora":
            conf["lora"] = {"rank": 16, "targets": ["detr_encoder.", "detr_decoder."]}
        path = work / f"ft-{mode}.yaml"
        path.write_text(yaml.safe_dump(conf))
        doc, m = measured(lambda: commands.main(["finetune", "--config", str(path), "--no-progress"]), dev)
        rows.append({"command": "finetune", "mode": mode, **m, "steps": doc["steps"], "s_per_step": doc["s_per_step"],
                     "trainable_params": doc["trainable_params"], "final_loss": doc["final_loss"]})
    best = str(work / f"ft-{modes[0]}" / "best.safetensors")
    doc, m = measured(lambda: commands.main(["validate", "--model", best, "--data", str(data / "valid"),
                                             "--out", str(work / "validate"), "--device", device, *sam3]), dev)
    rows.append({"command": "validate", "mode": modes[0], **m, "n_pairs": doc["n_pairs"], "iou": doc["iou"],
                 "mAP": doc["coco"]["mAP"]})
    doc, m = measured(lambda: commands.main(["repair-presence", "--model", best, "--data", str(data / "train"),
                                             "--eval-data", str(data / "valid"), "--steps", str(repair_steps),
                                             "--out", str(work / "repair"), "--device", device, *sam3]), dev)
    rows.append({"command": "repair-presence", "mode": modes[0], **m, "steps": doc["steps"],
                 "trainable_params": doc["trainable_params"], "cache_wall_s": doc["cache_wall_s"],
                 "train_wall_s": doc["train_wall_s"]})
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("full", "micro"), default="full")
    ap.add_argument("--steps", type=int, default=8, help="optimiser steps per fine-tune")
    ap.add_argument("--repair-steps", type=int, default=50)
    ap.add_argument("--modes", default="lora,frozen_te", help="comma-separated finetune modes (the first is validated "
                                                                  "and repaired)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images-per-step", type=int, default=2)
    ap.add_argument("--phrases", type=int, default=4, help="phrases per image in each fine-tune step")
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench" / "sam3-scale")
    args = ap.parse_args(argv)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        rows = check(args.size, work, args.steps, args.modes.split(","), args.device, args.repair_steps,
                     args.images_per_step, args.phrases)
    dev = pick_device(args.device)
    cfg = config_for(args.size)
    with torch.device("meta"):
        from transformers import Sam3Model

        params = sum(p.numel() for p in Sam3Model(cfg).parameters())
    doc = {"size": args.size, "params": params, "image_size": cfg.vision_config.backbone_config.image_size,
           "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "threads": torch.get_num_threads(), "rows": rows, "meta": run_meta(vars(args), 0, t0)}
    atomic_write_json(args.out.with_suffix(".json"), doc)
    atomic_write_text(args.out.with_suffix(".md"), f"# sam3-scale check ({args.size}: {params / 1e6:.0f} M parameters, "
                      f"{doc['device_name']})\n\nRandom weights: the timings and memory are the result; the metrics only "
                      "show that each command ran.\n\n" + markdown_table(rows))
    for r in rows:
        print({k: v for k, v in r.items()})
    return doc


if __name__ == "__main__":
    main()
