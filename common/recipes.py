"""The posts' training recipes as named, declarative configs — the one place that lists them all.

Each :class:`Recipe` says: start checkpoint (``init``), trainable modules, data streams and their
cadences, steps or epochs, LR and schedule, batch, seed. Step counts are scaled to the tiny model
while keeping the ratios the posts give (Post 02: replay 1 per 10 / 1 per 100 batches; recovery's
2000-step match-then-boost schedule and its checkpoints at 50 … 2000).

``train(name, scale)`` runs a recipe (or reuses a finished run with the same config hash) and
``load_model(name, scale)`` returns the trained model (init chain + trained tensors).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from common.io import DATA, atomic_write_json, read_json
from common.losses import LossWeights
from common.model import (MODULES, SPECS, WordTokenizer, build_model, config_hash,
                          fusion_layer_prefixes, load_into, load_state)
from common.presence import HEAD_PREFIXES
from common.schedules import Schedule, match_then_boost

#: The environment variable naming the runs cache (default ``data/runs``); tests point it at a temporary directory and
#: spawned worker processes inherit it (no module state to overwrite).
RUNS_ENV = "SAM3_REPRO_RUNS"
BASE_CHECKPOINT = DATA / "checkpoints" / "tiny_base.safetensors"
BASE_MANIFEST = DATA / "checkpoints" / "tiny_base.json"


@dataclass(frozen=True)
class StreamSpec:
    """A data stream: a worlds split, its cadence (stream j ≥ 1 supplies every ``every``-th batch), per-image pairs."""

    split: str
    every: int = 1
    images: int = 4
    pos: int = 4
    neg: int = 0
    hard_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdapterSpec:
    """A LoRA / AdaLoRA adapter on the Linear layers under ``targets`` (Post 01 §9–§12).

    ``rank``/``alpha`` are uniform; ``ranks`` (name → r pairs) overrides them per tensor (the §12
    MP-rank prescription; α then follows ``alpha_rule(r, boost)``). ``scaling``: "standard" α/r or "rslora" α/√r.
    AdaLoRA: ``init`` "paper" (P, Q orthogonal, λ = 0) or "lora" (the posts' fix: P = 0, λ Kaiming,
    Q orthogonal), with ``l1`` and ``orth`` penalty weights.
    """

    kind: str = "lora"
    targets: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    rank: int = 8
    alpha: float | None = None
    scaling: str = "standard"
    ranks: tuple[tuple[str, int], ...] = ()
    boost: float = 4.0
    init: str = "lora"
    l1: float = 0.0
    orth: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """A complete, hashable description of one training run."""

    name: str
    init: str  # "scratch", "base", or another recipe's name
    streams: tuple[StreamSpec, ...]
    trainable: tuple[str, ...] | None = None  # parameter-name prefixes; None = every parameter
    adapter: AdapterSpec | None = None  # LoRA/AdaLoRA: only adapter tensors train
    frozen: tuple[str, ...] = ()  # prefixes removed from ``trainable``
    epochs: float | None = None  # passes over the primary stream's visits (sets ``steps`` if given)
    steps: int | None = None
    lr: float = 1e-4
    vision_lr_scale: float | None = None  # SAM3's per-group LRs (common.train.lr_scale_of); None = 1
    vision_lr_decay: float | None = None
    text_lr_scale: float | None = None
    schedule: Schedule = Schedule("warmup_cosine", warmup=20)
    weight_decay: float = 0.01
    grad_accum: int = 1
    clip: float = 1.0
    seed: int = 0
    checkpoints: tuple[int, ...] = ()
    checkpoint_fractions: tuple[float, ...] | None = None  # extra checkpoints as fractions of the run
    loss: LossWeights = LossWeights()
    sqrt_bs_scaling: bool = True
    p_hard_start: float = 0.0  # curriculum: probability a negative is hard, linear from start to end
    p_hard_end: float = 0.0
    resume_every: int = 100
    negative_masks: bool | None = None  # also run the mask decoder on negative pairs (semantic map trained to be empty)
    objective: str | None = None  # None: the set loss (common.train); "presence_gate": Post 02 §5 (common.presence)
    scale_steps: dict = field(default_factory=dict, hash=False, compare=False)  # per-scale step override

    @property
    def total_steps(self) -> int:
        if self.steps is None:
            raise ValueError(f"recipe {self.name}: steps unresolved (epochs need the data; use resolve_steps)")
        return self.steps

    def p_hard(self, step: int, total: int) -> float:
        """Curriculum: probability that a negative is hard, linear over the schedule's horizon (or the run)."""
        total = self.schedule.horizon or total
        return self.p_hard_start + (self.p_hard_end - self.p_hard_start) * min(step / max(total, 1), 1.0)

    def to_dict(self) -> dict:
        """The hashed description: every field but ``scale_steps``; ``None``-valued optional fields are
        dropped so that adding a new optional field does not invalidate finished runs."""
        d = dataclasses.asdict(self)
        d.pop("scale_steps")
        keep = ("trainable", "epochs", "steps")
        d = {k: v for k, v in d.items() if v is not None or k in keep}
        d["loss"] = {k: v for k, v in d["loss"].items() if v is not None}
        d["schedule"] = {k: v for k, v in d["schedule"].items() if v is not None}
        return d


# --------------------------------------------------------------------------- the registry
T, V, F, D = MODULES["T"], MODULES["V"], MODULES["F"], MODULES["D"]
# Post 01 §9: full recipes ran at per-GPU batch 1 with gradient accumulation, LoRA at per-GPU batch 16; the trainer's
# loss is ×√(per-device batch). Base v4 drops that contrast at tiny scale: 4 images × 4 phrases per step learned more
# watch IoU per CPU second than 1 image × 4 accumulation steps (results/diagnostics/learnability.md, C vs B).
WATCH = StreamSpec("watch_train", images=4, pos=4)
WATCH_LORA = WATCH
# The fine-tunes' objective (issue #15): classification down, mask BCE and Dice up. With the default weights the
# classification BCE was ~60 % of the total and mask Dice rose while the total fell; mask-weighted, Dice falls with
# the total and every measured fine-tune learned more watch IoU (learnability.md: D vs C, F vs E, M vs L). The base
# itself is pre-trained with the default weights.
MASK_WEIGHTED = replace(LossWeights(), cls=0.5, mask_bce=20.0, mask_dice=20.0)
FT_SCHEDULE = Schedule("constant", warmup=20)  # the learnability sweep's schedule (fits faster than warmup-cosine)
# SAM3's trainer gives the vision and language backbones their own, lower LRs: transformer 8e-4, vision 2.5e-4
# with layer-wise decay 0.9 over its 32 ViT blocks, language 5e-5 (all × lr_scale; Post 01 §10 quotes the
# transformer's). The fine-tunes keep those ratios; the tiny ViT's 4 blocks each stand for 8 of SAM3's, so the
# per-block decay is 0.9^8. The tiny ViT is where a full-LR watch fine-tune forgets most (a V-only fine-tune
# cost LVIS-like mIoU 0.18 in 150 steps in the issue #3 pilots).
SAM3_LRS = dict(vision_lr_scale=2.5e-4 / 8e-4, vision_lr_decay=0.9 ** (32 / 4), text_lr_scale=5e-5 / 8e-4)
# LR 3e-4 on the fusion/decoder groups (vision and text scaled down as above), sized on the outcome (issue #3 pilots,
# frozen_te, 3 epochs from this base): at 1e-4 SA-Co neg_correct only fell 0.933 → 0.916; at 3e-4 it falls to 0.68
# with LVIS-like mIoU 0.675 → 0.615; at 1e-3 LVIS is wiped out (0.118). Watch IoU moved ≤ 0.02 at every LR.
FT = dict(init="base", epochs=3.0, lr=3e-4, schedule=FT_SCHEDULE, loss=MASK_WEIGHTED, **SAM3_LRS)
LORA_FT = dict(init="base", epochs=3.0, lr=1e-4, schedule=FT_SCHEDULE, loss=MASK_WEIGHTED)
FUSION04 = fusion_layer_prefixes(range(5))

RECIPES: dict[str, Recipe] = {}


def register(r: Recipe) -> Recipe:
    if r.name in RECIPES:
        raise ValueError(f"recipe {r.name!r} registered twice")
    RECIPES[r.name] = r
    return r


# The tiny base model (plays base SAM3), pre-trained in three stages on the open-vocab world with negatives
# (easy → hard curriculum) plus watch pairs from a disjoint pool (``watch_pretrain``: the everyday watch concepts
# ``WATCH_PRETRAIN_CONCEPTS``, with negatives), as real SAM3 met watches on the web.
# Stage 1: the first 2000 steps of a 6000-step plan (LR and curriculum laid over 6000 steps), text encoder frozen at
#   its random init (the pilot saw a from-scratch text encoder collapse all phrases to one). Masks and boxes learn;
#   the presence gate stays at its constant answer (σ ≈ 0.25 for 1 positive : 3 negatives).
# Stage 2: presence BCE class-balanced (pos_weight = negatives per positive, as the pilot found necessary),
#   presence weighted up, and the semantic-seg head also trained on negative pairs (target: empty), so the
#   fusion encoder is told that an absent phrase lights nothing up — the signal the presence token reads.
# Stage 3 (issue #3): watch exposure. With watch pairs in 1 of 20 batches the two-stage base could not localise a
#   single watch phrase (watch IoU 0.006), so every fine-tune acted on words that meant nothing to it and only
#   forgot. Stage 3 takes every 2nd batch from the watch pool (everyday concepts only), text encoder still frozen:
#   the everyday watch words get grounded, the jargon (rehaut, lunette, lugs, …) stays unseen.
register(Recipe(
    name="base_pretrain_stage1", init="scratch", frozen=T[:1],
    streams=(StreamSpec("ov_pretrain", images=4, pos=1, neg=3, hard_types=("attribute_shared", "binding")),
             StreamSpec("watch_pretrain", every=20, images=4, pos=2, neg=2)),
    steps=2000, lr=5e-4, schedule=Schedule("warmup_cosine", warmup=200, final=0.05, horizon=6000), p_hard_start=0.1,
    p_hard_end=0.6, checkpoints=(1000,), resume_every=250, scale_steps={"micro": 4},
))
register(replace(
    RECIPES["base_pretrain_stage1"], name="base_pretrain_stage2", init="base_pretrain_stage1", steps=2000, lr=3e-4,
    schedule=Schedule("warmup_cosine", warmup=50, final=0.05), p_hard_start=0.3, p_hard_end=0.6,
    checkpoints=(500, 1000, 1500), negative_masks=True,
    loss=replace(LossWeights(), presence=5.0, presence_pos_weight=3.0), scale_steps={"micro": 4},
))
STAGE2 = RECIPES["base_pretrain_stage2"]
register(replace(
    STAGE2, name="base_pretrain", init="base_pretrain_stage2",
    streams=(STAGE2.streams[0], StreamSpec("watch_pretrain", every=2, images=4, pos=4, neg=2)), steps=1500,
    p_hard_start=0.6, checkpoints=(500, 1000),  # LR, schedule and loss as stage 2
))
BASE_STAGES = ("base_pretrain_stage1", "base_pretrain_stage2", "base_pretrain")


# Post 01 §1–§8: the three full recipes.
register(Recipe(name="all_trainable", streams=(WATCH,), **FT))
# Table 9.17 reads W(t) − W(0) of frozen_te at the post's grad-steps 50 … 2000 and the ends of epochs 1–3,
# out of 15,939 steps: kept here as fractions of the run.
POST01_TRAJECTORY_STEPS = (50, 100, 200, 400, 800, 1200, 2000, 5313, 10626, 15939)
register(Recipe(name="frozen_te", streams=(WATCH,), frozen=T, **FT,
                checkpoint_fractions=tuple(s / 15939 for s in POST01_TRAJECTORY_STEPS)))
# Issue #3 diagnosis (scripts/diagnose_watch.py): frozen_te at 1/15 of the LR for twice the epochs: does a gentler
# fine-tune learn the watch masks before it forgets LVIS?
register(Recipe(name="frozen_te_slow", streams=(WATCH,), frozen=T, **{**FT, "lr": 2e-5, "epochs": 6.0},
                checkpoint_fractions=(1 / 12, 1 / 6, 1 / 3, 1 / 2, 2 / 3)))
# ... and frozen_te at its LR for 4× the epochs (948 steps; the post's fine-tune ran 15,939): is the tiny fine-tune
# merely too short to learn the watch task?
LONG = dict(frozen=T, epochs=12.0, checkpoint_fractions=(1 / 8, 1 / 4, 1 / 2, 3 / 4))
register(Recipe(name="frozen_te_long", streams=(WATCH,), **{**FT, **LONG}))
# ... the same at a third of the LR (is there an LR at which the watch gain comes before the LVIS loss?), and with
# Post 02's LVIS replay (1 LVIS batch per 10): does replay hold LVIS while the long fine-tune learns the watch?
register(Recipe(name="frozen_te_long_lr1e4", streams=(WATCH,), **{**FT, **LONG, "lr": 1e-4}))
register(Recipe(name="lvis_replay_long", streams=(WATCH, StreamSpec("lvis_train", every=10, images=1, pos=2)),
                **{**FT, **LONG}))
register(Recipe(name="fusion_only", streams=(WATCH,), trainable=fusion_layer_prefixes(range(5)), **FT))

# Post 02 §2–§3: replay during the fine-tune, and post-hoc recovery.
register(Recipe(name="lvis_replay", streams=(WATCH, StreamSpec("lvis_train", every=10, images=1, pos=2)), frozen=T, **FT))
register(Recipe(name="lvis_replay_n100", streams=(WATCH, StreamSpec("lvis_train", every=100, images=1, pos=2)), frozen=T,
                **FT))
register(Recipe(name="lvis_replay_neg", frozen=T, streams=(
    WATCH, StreamSpec("lvis_train", every=10, images=1, pos=2),
    StreamSpec("watch_negatives", every=10, images=1, pos=0, neg=4)), **FT))
# Post 02 §5: presence_only — only the presence gate's head retrains (BCE on the presence logit, balanced watch
# positives / watch-negatives-corpus negatives, Adam lr 1e-4, 1,000 steps) on lvis_replay's cached decoder[5].q0.
PRESENCE_ONLY = Recipe(
    name="presence_only", init="lvis_replay", objective="presence_gate", trainable=HEAD_PREFIXES,
    streams=(StreamSpec("watch_train", images=0, pos=8), StreamSpec("watch_negatives", images=0, pos=0, neg=8)),
    steps=1000, lr=1e-4, schedule=Schedule("constant"), weight_decay=0.0, clip=0.0, scale_steps={"micro": 20})
register(PRESENCE_ONLY)
RECOVERY_STEPS = 400  # the post's 2000 steps, scaled to tiny; checkpoints keep the post's fractions
register(Recipe(
    name="recovery_frozen_te_boost", init="frozen_te", frozen=T,
    streams=(StreamSpec("lvis_train", images=1, pos=2), StreamSpec("watch_train", every=10, images=1, pos=4)),
    steps=RECOVERY_STEPS, lr=2e-5, grad_accum=4, **SAM3_LRS, schedule=match_then_boost(RECOVERY_STEPS),
    checkpoints=tuple(round(s * RECOVERY_STEPS / 2000) for s in (50, 100, 200, 400, 800, 1200, 1600, 2000)),
    scale_steps={"micro": 4},
))


def lora_recipe(name: str, rank: int, alpha: float, lr_mult: float = 1.0, **adapter) -> Recipe:
    """LoRA on F[0..4] (attention + FFN Linear layers), vision/text/F[5]/decoder/heads frozen (Post 01 §9–§10)."""
    return Recipe(name=name, streams=(WATCH_LORA,), adapter=AdapterSpec(targets=FUSION04, rank=rank, alpha=alpha, **adapter),
                  **{**LORA_FT, "lr": LORA_FT["lr"] * lr_mult})


# Table 9.2 / 9.4 / 9.6: standard α = r at four ranks; Table 9.9–9.11: rsLoRA-boosted α = c·√r (c ≈ 7.95, Table 9.7);
# Table 9.15: the r = 8 α ladder; Table 9.21: LR-boost (α = 8, LR × k) against α-boost (α = 8k).
LORA_RANKS = (8, 16, 32, 48)
RSLORA_ALPHA = {8: 22, 16: 32, 32: 45, 48: 55}
ALPHA_LADDER = (16, 22, 40, 64, 96, 128, 160)
LR_BOOSTS = (8, 12, 16)


def lora_name(rank: int, alpha: float, lr_mult: float = 1.0) -> str:
    return f"lora_r{rank}_a{alpha:g}" + (f"_lr{lr_mult:g}x" if lr_mult != 1 else "")


for _r in LORA_RANKS:
    register(lora_recipe(lora_name(_r, _r), _r, _r))
    if _r != 8:
        register(lora_recipe(lora_name(_r, RSLORA_ALPHA[_r]), _r, RSLORA_ALPHA[_r]))
for _a in ALPHA_LADDER:
    register(lora_recipe(lora_name(8, _a), 8, _a))
for _k in LR_BOOSTS:
    register(lora_recipe(lora_name(8, 8, _k), 8, 8, lr_mult=_k))
# Table 9.19: AdaLoRA at the full-model spec with both inits (r = 8 uniform here; L1 on λ + orthogonality).
ALL_LINEAR_BUT_TE = ("vision_encoder.", "detr_encoder.", "detr_decoder.", "geometry_encoder.", "mask_decoder.",
                     "dot_product_scoring.", "text_projection.")
for _init in ("paper", "lora"):
    register(Recipe(name=f"adalora_{_init}_init", streams=(WATCH_LORA,), checkpoints=(), **LORA_FT,
                    checkpoint_fractions=(1 / 3,),  # Table 9.19's "1-ep IoU" = 1/3 of the 3-epoch run
                    adapter=AdapterSpec(kind="adalora", targets=ALL_LINEAR_BUT_TE, rank=8, alpha=8, init=_init,
                                        l1=1e-4, orth=1e-3)))
# Tables 9.12 / 9.13: full-model LoRA from the per-tensor MP-rank prescription (ranks filled in by the
# script that reads the frozen-TE trajectory: ``with_ranks``), α = boost·max(4r, ⌈22√r⌉), boost 4 and 2.
for _b in (4, 2):
    register(Recipe(name=f"lora_mp_{_b}x", streams=(WATCH_LORA,), **LORA_FT,
                    adapter=AdapterSpec(targets=ALL_LINEAR_BUT_TE, boost=float(_b))))

# Issue #15: run-to-run spread. These recipes are retrained with seed 1 (the seed sets the sampling order, the
# negatives drawn and any adapter init); the claims that compare recipes read their differences against the spread
# (``common.claims.vs``).
SEED_REPEATS = {"frozen_te": "frozen_te_seed1", lora_name(8, 64): lora_name(8, 64) + "_seed1"}
for _n, _m in SEED_REPEATS.items():
    register(replace(RECIPES[_n], name=_m, seed=1))

POST01 = ("all_trainable", "frozen_te", "fusion_only")
POST01_LORA = tuple(lora_name(r, r) for r in LORA_RANKS)
POST02 = ("lvis_replay", "lvis_replay_n100", "lvis_replay_neg", "recovery_frozen_te_boost")


# --------------------------------------------------------------------------- running
def tokenizer_for(scale: str) -> WordTokenizer:
    """The word-level tokenizer of the micro/tiny model (vocabulary fixed by the worlds' code)."""
    from common.worlds import vocabulary

    return WordTokenizer(vocabulary(), SPECS[scale].max_text_len)


def mask_size(scale: str) -> int:
    """Side of the predicted mask grid (the vision neck's finest level; 4× the ViT token grid at SAM3's scales)."""
    return SPECS[scale].mask_grid


def trained_names(model: torch.nn.Module, recipe: Recipe) -> set[str]:
    """Names of the tensors ``recipe`` trains on ``model`` (an adapter recipe: the adapter tensors, which
    ``apply_adapter`` left trainable); its checkpoints hold exactly these."""
    if recipe.adapter is not None:
        return {n for n, p in model.named_parameters() if p.requires_grad}
    return {n for n, _ in model.named_parameters()
            if (recipe.trainable is None or n.startswith(recipe.trainable)) and not (recipe.frozen and n.startswith(recipe.frozen))}


def trainable_params(model: torch.nn.Module, recipe: Recipe) -> dict[str, torch.nn.Parameter]:
    """The recipe's trainable parameters (requires_grad set accordingly on every parameter)."""
    if recipe.adapter is not None:  # adapters were applied: exactly their tensors train
        out = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not out:
            raise ValueError(f"recipe {recipe.name}: adapter has no trainable tensors")
        return out
    names = trained_names(model, recipe)
    out = {}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
        if n in names:
            out[n] = p
    if not out:
        raise ValueError(f"recipe {recipe.name}: no trainable parameters")
    return out


def with_ranks(name: str, ranks: dict[str, int]) -> Recipe:
    """A registered adapter recipe with a per-tensor rank prescription filled in (hash includes it)."""
    r = RECIPES[name]
    return replace(r, adapter=replace(r.adapter, ranks=tuple(sorted((k, int(v)) for k, v in ranks.items()))))


def apply_adapter(model: torch.nn.Module, spec: AdapterSpec) -> torch.nn.Module:
    """Put the recipe's LoRA/AdaLoRA adapters on ``model`` (fresh init; every other tensor frozen)."""
    from common import lora

    if spec.ranks:
        ranks = dict(spec.ranks)
        if spec.kind != "lora":
            raise ValueError("per-tensor rank prescriptions are for LoRA")
        return lora.add_lora(model, lora.prescription_spec(ranks, boost=spec.boost, scaling=spec.scaling))
    targets = lora.linear_names(model, include=list(spec.targets), exclude=list(spec.exclude))
    if spec.kind == "lora":
        return lora.add_lora(model, lora.make_spec(targets, spec.rank, spec.alpha, scaling=spec.scaling))
    if spec.kind == "adalora":
        return lora.add_adalora(model, targets, spec.rank, spec.alpha, init=spec.init)
    raise ValueError(f"unknown adapter kind {spec.kind!r}")


def adapter_loss(spec: AdapterSpec):
    """AdaLoRA's regulariser (L1 on λ + orthogonality) as an ``extra_loss`` callable, or None."""
    if spec is None or spec.kind != "adalora" or not (spec.l1 or spec.orth):
        return None
    from common.lora import adalora_penalties

    def loss(model):
        l1, orth = adalora_penalties(model)
        return spec.l1 * l1 + spec.orth * orth
    return loss


def resolve(name: str | Recipe, scale: str) -> Recipe:
    """The registered recipe (or a given Recipe) with scale-specific step counts."""
    if isinstance(name, Recipe):
        r = name
    elif name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    else:
        r = RECIPES[name]
    if scale in r.scale_steps:
        r = replace(r, steps=r.scale_steps[scale], epochs=None,
                    checkpoints=tuple(c for c in r.checkpoints if c <= r.scale_steps[scale]))
    elif scale == "micro":
        r = replace(r, steps=3, epochs=None, checkpoints=(), resume_every=2)
    return r


def runs_root() -> Path:
    """Where training runs are cached: ``$SAM3_REPRO_RUNS`` if set, else ``data/runs``."""
    return Path(os.environ.get(RUNS_ENV) or DATA / "runs")


def run_hash(recipe: Recipe, scale: str, worlds_hash: str) -> str:
    """Config hash of a run: recipe, scale, worlds, and (recursively) its init run."""
    parent = init_hash(recipe.init, scale, worlds_hash)
    d = {"recipe": recipe.to_dict(), "scale": scale, "worlds": worlds_hash, "init": parent}
    if scale in SPECS:  # the model's widths (base v4 changed them at the same scale name)
        d["spec"] = dataclasses.asdict(SPECS[scale])
    return config_hash(d)


def is_checkpoint_path(init: str) -> bool:
    """An ``init`` that names a full-model safetensors file (a user's own fine-tune) rather than a recipe."""
    return str(init).endswith(".safetensors")


def init_hash(init: str, scale: str, worlds_hash: str) -> str:
    if init == "scratch":
        return "scratch"
    if is_checkpoint_path(init):
        import hashlib

        if not Path(init).is_file():
            raise FileNotFoundError(f"init checkpoint {init} does not exist")
        return "file-" + hashlib.sha256(Path(init).read_bytes()).hexdigest()[:12]
    if init == "base":
        return base_hash(scale, worlds_hash)
    return run_hash(resolve(init, scale), scale, worlds_hash)


def base_hash(scale: str, worlds_hash: str) -> str:
    """Hash identifying the base model of a scale (the tiny one is the committed checkpoint's)."""
    return run_hash(resolve("base_pretrain", scale), scale, worlds_hash)


def run_dir(name: str | Recipe, scale: str) -> Path:
    from common.worlds import worlds_hash

    r = resolve(name, scale)
    return runs_root() / scale / f"{r.name}-{run_hash(r, scale, worlds_hash(scale))}"


def trained(name: str | Recipe, scale: str) -> bool:
    """Whether recipe ``name`` has a finished run at ``scale`` with its current config hash."""
    return (run_dir(name, scale) / "done.json").exists()


def run_steps(name: str | Recipe, scale: str) -> int:
    """Total optimiser steps of a finished run (its done.json), training it first if needed."""
    train(name, scale)
    return int(read_json(run_dir(name, scale) / "done.json")["steps"])


def saved_steps(name: str | Recipe, scale: str) -> list[int]:
    """The intermediate checkpoints a run saved (``step-<k>.safetensors``), ascending."""
    return sorted(int(p.stem.split("-", 1)[1]) for p in run_dir(name, scale).glob("step-*.safetensors"))


def artifact_dir(name: str | Recipe, scale: str, train_if_missing: bool = True) -> Path:
    """Where per-model caches (evaluations, probes) live: the run directory (trained if needed and allowed),
    or ``data/runs/<scale>/base-<hash>/`` for ``"base"``."""
    from common.worlds import worlds_hash

    if name == "base":
        return runs_root() / scale / f"base-{base_hash(scale, worlds_hash(scale))}"
    if train_if_missing:
        train(name, scale)
    return run_dir(name, scale)


def load_model(name: str | Recipe, scale: str, train_if_missing: bool = True, merge: bool = True,
               step: int | None = None) -> torch.nn.Module:
    """A model in the state recipe ``name`` leaves it (``base`` = the base model), in eval mode.

    Adapter recipes come back merged into plain weights (``merge=False`` keeps the adapter modules,
    e.g. to read ``common.lora.lora_deltas``). ``step`` loads a saved intermediate checkpoint instead.
    """
    tok = tokenizer_for(scale)
    model = build_model(scale, len(tok), seed=0)
    model = _apply_init(model, name, scale, train_if_missing, step=step)
    if merge and isinstance(name, (str, Recipe)) and name not in ("base", "scratch") and not is_checkpoint_path(str(name)) \
            and resolve(name, scale).adapter:
        from common.lora import adalora_layers, merge_lora

        if adalora_layers(model) or any("lora_" in n for n, _ in model.named_parameters()):
            model = merge_lora(model)
    return model.eval()


def _apply_init(model: torch.nn.Module, name: str | Recipe, scale: str, train_if_missing: bool,
                step: int | None = None) -> torch.nn.Module:
    if name == "scratch":
        return model
    if name == "base":
        state, source = base_state(scale, train_if_missing)
        load_into(model, {k: v.float() for k, v in state.items()}, source=source)
        return model
    if isinstance(name, (str, Path)) and is_checkpoint_path(str(name)):  # a full model state (save_model)
        load_into(model, {k: v.float() for k, v in load_state(name).items()}, source=str(name))
        return model
    recipe = resolve(name, scale)
    model = _apply_init(model, recipe.init, scale, train_if_missing)
    d = run_dir(recipe, scale)
    ckpt = d / ("final.safetensors" if step is None else f"step-{step}.safetensors")
    if not ckpt.exists():
        if step is not None or not train_if_missing:
            raise FileNotFoundError(f"recipe {recipe.name} has no checkpoint {ckpt.name} at {d} (run `make recipes`)")
        train(recipe, scale)
    if recipe.adapter is not None:
        from common.lora import merge_lora

        if any("lora_" in n for n, _ in model.named_parameters()):  # an adapter init chain: fold it in first
            model = merge_lora(model)
        model = apply_adapter(model, recipe.adapter)
    state = load_state(ckpt)
    missing = sorted(trained_names(model, recipe) - set(state))
    if missing:  # a partial checkpoint would silently keep the init's value for these
        raise KeyError(f"{ckpt}: checkpoint of recipe {recipe.name} lacks {len(missing)} tensor(s) it trains: "
                       f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")
    load_into(model, state, source=str(ckpt), strict=False)
    return model


def base_state(scale: str, train_if_missing: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The base model's full state: the committed tiny checkpoint (if its hash matches the code) or a run."""
    from common.worlds import worlds_hash

    want = base_hash(scale, worlds_hash(scale))
    if scale == "tiny" and BASE_CHECKPOINT.exists():
        manifest = read_json(BASE_MANIFEST)
        if manifest.get("config_hash") == want:
            return load_state(BASE_CHECKPOINT), str(BASE_CHECKPOINT)
        print(f"note: {BASE_CHECKPOINT} was made by config {manifest.get('config_hash')}, the code now gives {want}; "
              "using/training a fresh base run instead (make base refreshes the committed one)")
    d = run_dir("base_pretrain", scale)
    full = d / "full.safetensors"
    if not full.exists():
        if not train_if_missing:
            raise FileNotFoundError(f"no base model for scale {scale} (run `make base`)")
        train("base_pretrain", scale)
    return load_state(full), str(full)


def train(name: str | Recipe, scale: str, progress: bool = True, force: bool = False, extra_loss=None):
    """Train recipe ``name`` at ``scale`` (or reuse its finished run); returns the RunResult.

    ``extra_loss(model)`` adds a regulariser to every step (see ``common.train.train_loop``). A lock file
    in the run directory makes a second process wait for a run in progress and then reuse it.
    """
    from common.io import exclusive

    d = run_dir(resolve(name, scale), scale)
    with exclusive(d.parent / f".{d.name}.lock"):
        return _train(name, scale, progress, force, extra_loss)


def make_streams(recipe: Recipe, paths: dict[str, Path]) -> tuple[list, Recipe]:
    """The recipe's data streams as ``(sampler, every, images, split)`` and the recipe with its step count and
    checkpoints resolved (``epochs`` → steps: one step consumes images × grad_accum visits of the primary stream)."""
    from common.data import load_pairs
    from common.train import StreamSampler

    streams = []
    for j, s in enumerate(recipe.streams):
        if s.split not in paths:
            raise KeyError(f"recipe {recipe.name}: stream split {s.split!r} not among the worlds' splits {sorted(paths)}")
        sampler = StreamSampler(load_pairs(paths[s.split]), s.pos, s.neg, seed=recipe.seed * 1000 + j,
                                hard_types=s.hard_types)
        streams.append((sampler, s.every, s.images, s.split))
    if recipe.steps is None:
        per_epoch = streams[0][0].visits_per_epoch() / (recipe.streams[0].images * recipe.grad_accum)
        recipe = replace(recipe, steps=max(1, math.ceil(recipe.epochs * per_epoch)))
    if recipe.checkpoint_fractions:
        extra = {max(1, round(f * recipe.steps)) for f in recipe.checkpoint_fractions}
        recipe = replace(recipe, checkpoints=tuple(sorted(set(recipe.checkpoints) | extra)))
    return streams, recipe


def _train(name: str | Recipe, scale: str, progress: bool, force: bool, extra_loss):
    from common.train import RunResult, read_log, train_loop
    from common.worlds import ensure_worlds, worlds_hash

    recipe = resolve(name, scale)
    d = run_dir(recipe, scale)
    done = d / "done.json"
    if done.exists() and not force:
        return RunResult(d, d / "final.safetensors", read_log(d / "log.jsonl"), read_json(done))
    paths = ensure_worlds(scale=scale)
    tok = tokenizer_for(scale)
    model = build_model(scale, len(tok), seed=recipe.seed)
    model = _apply_init(model, recipe.init, scale, train_if_missing=True)
    if recipe.adapter is not None:
        torch.manual_seed(recipe.seed)
        model = apply_adapter(model, recipe.adapter)
        extra_loss = extra_loss or adapter_loss(recipe.adapter)
    d.mkdir(parents=True, exist_ok=True)
    if recipe.objective == "presence_gate":
        atomic_write_json(d / "config.json", {"recipe": recipe.to_dict(), "scale": scale,
                                              "worlds_hash": worlds_hash(scale), "run_dir": str(d)})
        return _train_presence_gate(model, recipe, d, scale, paths, tok, progress)
    streams, recipe = make_streams(recipe, paths)
    atomic_write_json(d / "config.json", {"recipe": recipe.to_dict(), "scale": scale,
                                          "worlds_hash": worlds_hash(scale), "run_dir": str(d)})
    trainable = trainable_params(model, recipe)
    result = train_loop(model, trainable, streams, tok, recipe, d, mask_size(scale), SPECS[scale].image_size,
                        progress=progress, extra_loss=extra_loss)
    if recipe.name == "base_pretrain":
        from common.model import save_model

        save_model(model, d / "full.safetensors")
    return result


def _train_presence_gate(model: torch.nn.Module, recipe: Recipe, d: Path, scale: str, paths: dict[str, Path], tok,
                         progress: bool):
    """Post 02 §5's repair (:func:`common.presence.train_gate`): positives of the first stream's split, negatives of
    the second's, balanced to :data:`common.presence.PAIRS_PER_CLASS`."""
    from common.data import load_pairs
    from common.presence import PAIRS_PER_CLASS, balanced_pairs, train_gate

    pos_ds, neg_ds = (load_pairs(paths[s.split]) for s in recipe.streams[:2])
    items = balanced_pairs([(pos_ds, p) for p in pos_ds if p.masks], [(neg_ds, p) for p in neg_ds if not p.masks],
                           PAIRS_PER_CLASS[scale], recipe.seed)
    return train_gate(model, recipe, d, items, tok, SPECS[scale].image_size, progress=progress)
