"""``python -m common finetune --config cfg.yaml``: fine-tune a model on your own COCO data (issue #19).

The YAML config is validated by a pydantic schema (:class:`FinetuneConfig`): an unknown key, a wrong type or a bad
value stops with the file and the field named. It becomes a :class:`common.recipes.Recipe` (the same declarative
description the posts' recipes use) and trains through :func:`common.train.train_loop` — the same engine, resumable,
one process or several under ``torchrun`` (each process loads its shard of every batch; rank 0 writes).

Modes (Post 01's recipes): ``full``; ``frozen_te`` (text encoder frozen); ``fusion_only`` (only the fusion encoder
trains); ``lora`` (uniform rank, rsLoRA, the §12 boosted α rule, or per-tensor ranks from ``python -m common
prescribe``). Optional Post 02 streams: ``replay`` (another COCO split, 1 batch in ``every``) and ``negatives`` (a
COCO split whose absent categories are the negative phrases).

Data: ``data`` is a dataset directory in SAM3-LoRA's layout (``train/_annotations.coco.json`` + images, and
``valid/`` for checkpoint selection). Relative paths in the config are read relative to the config file.

Output (``out``): ``run/`` (the engine's log.jsonl with every loss term per step, step checkpoints, resume state),
``last.safetensors`` and ``best.safetensors`` (full models, adapters merged; best by ``select_by`` on ``valid/``),
``last_adapter/`` (a peft adapter directory, LoRA mode), ``finetune.json`` + ``finetune.md``.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator,
                      model_validator)

from common import runs
from common.commands import ANNOTATIONS, score_model, split_json
from common.io import atomic_write_json, atomic_write_text, read_json, run_meta
from common.losses import LossWeights
from common.model import DEVICE_ENV, MODULES, load_into, load_state, pick_device, save_model
from common.recipes import FT, MASK_WEIGHTED, SAM3_LRS, AdapterSpec, Recipe, StreamSpec
from common.schedules import Schedule


class ConfigError(ValueError):
    """A fine-tune config that cannot run: the message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSection(_Section):
    """LoRA on the Linear layers under ``targets`` (Post 01 §9–§12)."""

    rank: PositiveInt = 8
    alpha: PositiveFloat | None = Field(None, description="α; default α = r (scaling 1)")
    scaling: Literal["standard", "rslora", "boosted"] = Field(
        "standard", description="α/r, α/√r (rsLoRA), or α = boost·max(4r, ⌈22√r⌉) per tensor (Post 01 §12)")
    boost: PositiveFloat = 4.0
    targets: list[str] = Field(["detr_encoder."], description="parameter-name prefixes of the adapted Linear layers")
    exclude: list[str] = []
    prescription: Path | None = Field(None, description="a `prescribe` output directory: per-tensor ranks")


class StreamSection(_Section):
    """A second data stream: 1 batch in ``every`` comes from ``data`` (Post 02's replay / negatives)."""

    data: Path
    every: int = Field(10, ge=2)
    images: PositiveInt = 1
    phrases: PositiveInt = 2


class FinetuneConfig(_Section):
    """Everything a fine-tune needs; see the module docstring for each mode and stream."""

    data: Path
    out: Path
    model: str = Field("base", description="recipe name (base, frozen_te, …) or a full-model .safetensors")
    scale: Literal["micro", "tiny", "sam3"] = "tiny"
    checkpoint: Path | None = Field(None, description="scale sam3: the real model's local directory (model: base = it)")
    mode: Literal["full", "frozen_te", "fusion_only", "lora"] = "frozen_te"
    lora: LoraSection | None = None
    replay: StreamSection | None = None
    negatives: StreamSection | None = None
    epochs: PositiveFloat = 3.0
    steps: PositiveInt | None = Field(None, description="optimiser steps; overrides epochs")
    lr: PositiveFloat = FT["lr"]
    schedule: Literal["constant", "warmup_cosine"] = "constant"
    warmup: int = Field(20, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    clip: float = Field(1.0, ge=0)
    images_per_step: PositiveInt = 4
    phrases_per_image: PositiveInt = 4
    grad_accum: PositiveInt = 1
    loss: Literal["mask_weighted", "default"] = Field(
        "mask_weighted", description="mask_weighted: the project's fine-tune objective (issue #15); default: LossWeights()")
    sam3_lr_ratios: bool = Field(True, description="SAM3's lower LRs for the vision and text backbones")
    eval_every: PositiveInt | None = Field(None, description="steps between checkpoints scored on valid/ (default: 4 per run)")
    select_by: Literal["iou", "mAP", "cgF1"] = "iou"
    seed: int = 0
    device: str = Field("auto", description="auto (this process's GPU when CUDA is available, else the CPU), cpu, "
                                            "cuda or cuda:N")

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        pick_device(v)  # a clear error for a malformed name or a GPU this machine lacks
        return v

    @model_validator(mode="after")
    def _lora_matches_mode(self) -> "FinetuneConfig":
        if self.scale == "sam3" and self.checkpoint is None and not os.environ.get(runs.SAM3_ENV):
            raise ValueError("scale 'sam3' needs 'checkpoint:' (the real model's local directory)")
        if self.mode == "lora" and self.lora is None:
            raise ValueError("mode 'lora' needs a 'lora:' section (rank, alpha, …)")
        if self.mode != "lora" and self.lora is not None:
            raise ValueError(f"a 'lora:' section is given but mode is {self.mode!r}")
        return self


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> FinetuneConfig:
    """Read and validate a YAML fine-tune config; relative paths resolve against the config's directory."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values, got {type(raw).__name__}")
    raw = {**raw, **(overrides or {})}
    try:
        cfg = FinetuneConfig.model_validate(raw)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}"
                 + (f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else "")
                 for err in e.errors()]
        raise ConfigError(f"{path}: invalid fine-tune config:\n" + "\n".join(lines)) from None
    return _resolve_paths(cfg, path.parent)


def _resolve_paths(cfg: FinetuneConfig, root: Path) -> FinetuneConfig:
    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (root / p).resolve())

    upd: dict[str, Any] = {"data": fix(cfg.data), "out": fix(cfg.out), "checkpoint": fix(cfg.checkpoint)}
    if runs.is_checkpoint_path(cfg.model) and not Path(cfg.model).is_absolute():
        upd["model"] = str(fix(Path(cfg.model)))
    for key in ("replay", "negatives"):
        s = getattr(cfg, key)
        if s is not None:
            upd[key] = s.model_copy(update={"data": fix(s.data)})
    if cfg.lora is not None and cfg.lora.prescription is not None:
        upd["lora"] = cfg.lora.model_copy(update={"prescription": fix(cfg.lora.prescription)})
    return cfg.model_copy(update=upd)


def stream_file(data: Path) -> Path:
    """The COCO file of a stream: a dataset directory's ``train/`` split, a split directory, or a JSON
    (:func:`common.commands.split_json`)."""
    return split_json(data / "train" if (data / "train").is_dir() else data)


def prescription_ranks(directory: Path) -> dict[str, int]:
    """Per-tensor ranks of a ``prescribe`` output (a peft ``LoraConfig`` directory)."""
    from peft import LoraConfig

    if not (Path(directory) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"lora.prescription: no adapter_config.json in {directory} (run `python -m common prescribe`)")
    c = LoraConfig.from_pretrained(str(directory))
    pattern = c.rank_pattern or {}
    return {n: int(pattern.get(re.escape(n), c.r)) for n in sorted(c.target_modules)}


def to_recipe(cfg: FinetuneConfig, name: str = "finetune") -> Recipe:
    """The config as a :class:`Recipe` (its streams name COCO files, its init the starting model)."""
    streams = [StreamSpec(str(split_json(cfg.data / "train")), images=cfg.images_per_step, pos=cfg.phrases_per_image)]
    if cfg.replay is not None:
        s = cfg.replay
        streams.append(StreamSpec(str(stream_file(s.data)), every=s.every, images=s.images, pos=s.phrases))
    if cfg.negatives is not None:
        s = cfg.negatives
        streams.append(StreamSpec(str(stream_file(s.data)), every=s.every, images=s.images, pos=0, neg=s.phrases))
    mode: dict[str, Any] = {"full": {}, "frozen_te": {"frozen": MODULES["T"]},
                            "fusion_only": {"trainable": ("detr_encoder.",)}, "lora": {}}[cfg.mode]
    if cfg.mode == "lora":
        lo = cfg.lora
        assert lo is not None
        ranks = tuple(sorted(prescription_ranks(lo.prescription).items())) if lo.prescription else ()
        alpha = lo.alpha
        if lo.scaling == "boosted" and not ranks:
            from common.lora import alpha_rule

            alpha = alpha_rule(lo.rank, lo.boost)
        mode["adapter"] = AdapterSpec(targets=tuple(lo.targets), exclude=tuple(lo.exclude), rank=lo.rank, alpha=alpha,
                                      scaling="rslora" if lo.scaling == "rslora" else "standard", ranks=ranks,
                                      boost=lo.boost)
    lrs = SAM3_LRS if cfg.sam3_lr_ratios and cfg.mode in ("full", "frozen_te") else {}
    return Recipe(name=name, init=cfg.model, streams=tuple(streams), epochs=None if cfg.steps else cfg.epochs,
                  steps=cfg.steps, lr=cfg.lr, schedule=Schedule(cfg.schedule, warmup=cfg.warmup),
                  weight_decay=cfg.weight_decay, grad_accum=cfg.grad_accum, clip=cfg.clip, seed=cfg.seed,
                  loss=MASK_WEIGHTED if cfg.loss == "mask_weighted" else LossWeights(), **lrs, **mode)


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (NCCL when this process trains on its GPU, else gloo);
    (world size, rank)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's collectives (and all_gather_object) use the current device
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)


def finetune(cfg: FinetuneConfig, progress: bool = True, command: dict | None = None) -> dict:
    """Train ``cfg`` (resumable from ``out/run``), then score each saved checkpoint on ``valid/`` and write the last and
    the best full models. Returns the summary written to ``out/finetune.json`` (rank 0; other ranks get ``{}``)."""
    from common.train import train_loop

    t0 = time.time()
    if cfg.checkpoint is not None:
        os.environ[runs.SAM3_ENV] = str(cfg.checkpoint)
    device = pick_device(cfg.device)
    os.environ[DEVICE_ENV] = str(device)  # every model built below (training, scoring) is placed there
    world, rank = init_distributed(device)
    recipe = to_recipe(cfg)
    streams, recipe = runs.make_streams(recipe, {})
    every = cfg.eval_every or max(1, math.ceil(recipe.steps / 4))
    recipe = replace(recipe, checkpoints=tuple(range(every, recipe.steps, every)))
    run = cfg.out / "run"
    identity = run_identity(cfg, recipe)
    reuse = check_run_dir(run, identity)
    if rank == 0 and not reuse:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run / "config.json", {"config": cfg.model_dump(mode="json"), "recipe": recipe.to_dict(),
                                                "world_size": world, "identity": identity})
    model, tok, extra = runs.prepare(recipe, cfg.scale)
    trainable = runs.trainable_params(model, recipe)
    if reuse:  # the same run finished before: its final tensors, log and summary
        from common.train import RunResult, read_log

        load_into(model, load_state(run / "final.safetensors"), source=str(run / "final.safetensors"), strict=False)
        result = RunResult(run, run / "final.safetensors", read_log(run / "log.jsonl"), read_json(run / "done.json"))
    else:
        result = train_loop(model, trainable, streams, tok, recipe, run, runs.mask_size(cfg.scale),
                            runs.image_size(cfg.scale), progress=progress, extra_loss=extra)
    if rank != 0:
        return {}
    if recipe.adapter is not None:  # the trained model in memory is the last state, its adapters unmerged
        from common.lora import export_peft

        adapter = str(export_peft(model, cfg.out / "last_adapter"))
    valid = cfg.data / "valid" / ANNOTATIONS
    rows, best_row, last = [], None, cfg.out / "last.safetensors"
    for step in [*sorted(recipe.checkpoints), result.summary["steps"]]:  # each checkpoint's model is built once
        final = step == result.summary["steps"]
        ckpt = run / ("final.safetensors" if final else f"step-{step}.safetensors")
        m = model_at(recipe, cfg.scale, ckpt)
        row: dict[str, Any] = {"step": step, "checkpoint": ckpt.name}
        if valid.is_file():
            v, _ = score_model(m, valid, cfg.scale)
            row.update(iou=v["iou"], mAP=v["coco"]["mAP"], cgF1=v["saco"]["cgF1"], neg_correct=v["saco"]["neg_correct"])
        rows.append(row)
        if best_row is None or (row.get(cfg.select_by) or 0.0) >= (best_row.get(cfg.select_by) or 0.0):
            best_row, best_model = row, m  # the latest of equal scores (with no valid/, the last checkpoint)
        if final:
            save_model(m, last)
    best = save_model(best_model, cfg.out / "best.safetensors")
    doc = {"config": cfg.model_dump(mode="json"), "recipe": recipe.to_dict(), "world_size": world, "device": str(device),
           "steps": result.summary["steps"], "trainable_params": result.summary["trainable_params"],
           "train_wall_s": result.summary["train_wall_s"], "s_per_step": result.summary["train_wall_s"] / max(1, result.summary["steps"]),
           "final_loss": result.summary["final_loss_per_sample"], "peak_memory_gib": peak_memory_gib(device),
           "checkpoints": rows,
           "selected": {"by": cfg.select_by, "step": best_row["step"], "valid": str(valid) if valid.is_file() else None},
           "last": str(last), "best": str(best)}
    if recipe.adapter is not None:
        doc["last_adapter"] = adapter
    doc["meta"] = run_meta(command or {"config": doc["config"]}, cfg.seed, t0)
    from common.report import markdown_table

    atomic_write_text(cfg.out / "finetune.md", f"# finetune ({cfg.mode}, {doc['steps']} steps, {world} process(es))\n\n"
                      + markdown_table(rows) + f"\nbest by {cfg.select_by}: step {best_row['step']} → `{best}`\n")
    atomic_write_json(cfg.out / "finetune.json", doc)
    return doc


def run_identity(cfg: FinetuneConfig, recipe: Recipe) -> dict[str, Any]:
    """What determines a fine-tune's training: the recipe, the scale and model directory, and the content of every
    stream's COCO file (not the device, the process count or the output paths)."""
    import hashlib

    files = sorted({s.split for s in recipe.streams})
    doc = {"recipe": recipe.to_dict(), "scale": cfg.scale, "checkpoint": str(cfg.checkpoint or ""),
           "data_sha256": {f: hashlib.sha256(Path(f).read_bytes()).hexdigest()[:16] for f in files}}
    return json.loads(json.dumps(doc, default=str))  # as config.json will hold it (tuples as lists)


def check_run_dir(run: Path, identity: dict[str, Any]) -> bool:
    """Whether ``run`` holds a finished run of this identity (reuse it). An unfinished one of the same identity resumes;
    a run of another config stops with the differing fields named (a changed config never resumes or overwrites it)."""
    cfg_file = run / "config.json"
    if not cfg_file.is_file():
        return False
    old = read_json(cfg_file).get("identity")
    if old != identity:
        import pandas as pd

        before, now = (pd.json_normalize(d).iloc[0].to_dict() if d else {} for d in (old, identity))
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise ConfigError(f"{run} holds a fine-tune of another config (differs in: {', '.join(diff[:8]) or 'its format'}); "
                          "set another 'out:' or delete that directory to start over")
    return (run / "done.json").is_file() and (run / "final.safetensors").is_file()


def peak_memory_gib(device: torch.device) -> dict[str, float]:
    """This process's peak resident memory and, on a GPU, the peak memory PyTorch allocated there (GiB)."""
    import resource

    out = {"rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)}  # Linux: KiB
    if device.type == "cuda":
        out["gpu"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3)
    return out


def model_at(recipe: Recipe, scale: str, ckpt: Path) -> torch.nn.Module:
    """The fine-tuned model a checkpoint of ``recipe`` describes: init + the trained tensors (LoRA merged)."""
    model, _, _ = runs.prepare(recipe, scale)
    state = load_state(ckpt)
    missing = sorted(runs.trained_names(model, recipe) - set(state))
    if missing:
        raise KeyError(f"{ckpt}: lacks {len(missing)} trained tensor(s): {missing[:5]}")
    load_into(model, state, source=str(ckpt), strict=False)
    if recipe.adapter is not None:
        from common.lora import merge_lora

        model = merge_lora(model)
    return model.eval()
