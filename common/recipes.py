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
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from common.io import DATA, atomic_write_json, read_json
from common.losses import LossWeights
from common.model import (MODULES, PRESENCE_PREFIXES, SPECS, WordTokenizer, build_model, config_hash,
                          fusion_layer_prefixes, load_into, load_state)
from common.schedules import Schedule, match_then_boost

RUNS = DATA / "runs"
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
class Recipe:
    """A complete, hashable description of one training run."""

    name: str
    init: str  # "scratch", "base", or another recipe's name
    streams: tuple[StreamSpec, ...]
    trainable: tuple[str, ...] | None = None  # parameter-name prefixes; None = every parameter
    frozen: tuple[str, ...] = ()  # prefixes removed from ``trainable``
    epochs: float | None = None  # passes over the primary stream's visits (sets ``steps`` if given)
    steps: int | None = None
    lr: float = 1e-4
    schedule: Schedule = Schedule("warmup_cosine", warmup=20)
    weight_decay: float = 0.01
    grad_accum: int = 1
    clip: float = 1.0
    seed: int = 0
    checkpoints: tuple[int, ...] = ()
    loss: LossWeights = LossWeights()
    sqrt_bs_scaling: bool = True
    p_hard_start: float = 0.0  # curriculum: probability a negative is hard, linear from start to end
    p_hard_end: float = 0.0
    resume_every: int = 100
    scale_steps: dict = field(default_factory=dict, hash=False, compare=False)  # per-scale step override

    @property
    def total_steps(self) -> int:
        if self.steps is None:
            raise ValueError(f"recipe {self.name}: steps unresolved (epochs need the data; use resolve_steps)")
        return self.steps

    def p_hard(self, step: int, total: int) -> float:
        return self.p_hard_start + (self.p_hard_end - self.p_hard_start) * min(step / max(total, 1), 1.0)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("scale_steps")
        return d


# --------------------------------------------------------------------------- the registry
T, V, F, D = MODULES["T"], MODULES["V"], MODULES["F"], MODULES["D"]
WATCH = StreamSpec("watch_train", images=4, pos=4)
FT = dict(init="base", epochs=3.0, lr=1e-4, schedule=Schedule("warmup_cosine", warmup=20))

RECIPES: dict[str, Recipe] = {}


def register(r: Recipe) -> Recipe:
    if r.name in RECIPES:
        raise ValueError(f"recipe {r.name!r} registered twice")
    RECIPES[r.name] = r
    return r


# The tiny base model (plays base SAM3): open-vocab pre-training with negatives (easy→hard curriculum),
# plus a small share of watch pairs (some concepts, with negatives) as real SAM3 met watches on the web.
# The text encoder stays at its random init: a random TE is a fixed injective phrase lookup, and the
# pilot saw a from-scratch TE collapse all phrases to one.
register(Recipe(
    name="base_pretrain", init="scratch", frozen=T[:1],
    streams=(StreamSpec("ov_pretrain", images=4, pos=1, neg=3, hard_types=("attribute_shared", "binding")),
             StreamSpec("watch_pretrain", every=20, images=4, pos=2, neg=2)),
    steps=6000, lr=5e-4, schedule=Schedule("warmup_cosine", warmup=200, final=0.05), p_hard_start=0.1,
    p_hard_end=0.6, checkpoints=(1000, 2000, 3000, 4000, 5000), resume_every=250,
    scale_steps={"micro": 6},
))

# Post 01 §1–§8: the three full recipes.
register(Recipe(name="all_trainable", streams=(WATCH,), **FT))
register(Recipe(name="frozen_te", streams=(WATCH,), frozen=T, **FT))
register(Recipe(name="fusion_only", streams=(WATCH,), trainable=fusion_layer_prefixes(range(5)), **FT))

# Post 02 §2–§3: replay during the fine-tune, and post-hoc recovery.
register(Recipe(name="lvis_replay", streams=(WATCH, StreamSpec("lvis_train", every=10, pos=2)), frozen=T, **FT))
register(Recipe(name="lvis_replay_n100", streams=(WATCH, StreamSpec("lvis_train", every=100, pos=2)), frozen=T, **FT))
register(Recipe(name="lvis_replay_neg", frozen=T, streams=(
    WATCH, StreamSpec("lvis_train", every=10, pos=2), StreamSpec("watch_negatives", every=10, pos=0, neg=4)), **FT))
RECOVERY_STEPS = 400  # the post's 2000 steps, scaled to tiny; checkpoints keep the post's fractions
register(Recipe(
    name="recovery_frozen_te_boost", init="frozen_te", frozen=T,
    streams=(StreamSpec("lvis_train", pos=2), StreamSpec("watch_train", every=10, pos=4)),
    steps=RECOVERY_STEPS, lr=2e-5, schedule=match_then_boost(RECOVERY_STEPS),
    checkpoints=tuple(round(s * RECOVERY_STEPS / 2000) for s in (50, 100, 200, 400, 800, 1200, 1600, 2000)),
    scale_steps={"micro": 4},
))

POST01 = ("all_trainable", "frozen_te", "fusion_only")
POST02 = ("lvis_replay", "lvis_replay_n100", "lvis_replay_neg", "recovery_frozen_te_boost")


# --------------------------------------------------------------------------- running
def tokenizer_for(scale: str) -> WordTokenizer:
    """The word-level tokenizer of the micro/tiny model (vocabulary fixed by the worlds' code)."""
    from common.worlds import vocabulary

    return WordTokenizer(vocabulary(), SPECS[scale].max_text_len)


def mask_size(scale: str) -> int:
    """Side of the predicted mask grid (4× the ViT token grid)."""
    return SPECS[scale].grid * 4


def trainable_params(model: torch.nn.Module, recipe: Recipe) -> dict[str, torch.nn.Parameter]:
    """The recipe's trainable parameters (requires_grad set accordingly on every parameter)."""
    out = {}
    for n, p in model.named_parameters():
        on = (recipe.trainable is None or n.startswith(recipe.trainable)) and not (recipe.frozen and n.startswith(recipe.frozen))
        p.requires_grad_(on)
        if on:
            out[n] = p
    if not out:
        raise ValueError(f"recipe {recipe.name}: no trainable parameters")
    return out


def resolve(name: str, scale: str) -> Recipe:
    """The registered recipe with scale-specific step counts."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    r = RECIPES[name]
    if scale in r.scale_steps:
        r = replace(r, steps=r.scale_steps[scale], epochs=None,
                    checkpoints=tuple(c for c in r.checkpoints if c <= r.scale_steps[scale]))
    elif scale == "micro":
        r = replace(r, steps=3, epochs=None, checkpoints=(), resume_every=2)
    return r


def run_hash(recipe: Recipe, scale: str, worlds_hash: str) -> str:
    """Config hash of a run: recipe, scale, worlds, and (recursively) its init run."""
    parent = init_hash(recipe.init, scale, worlds_hash)
    return config_hash({"recipe": recipe.to_dict(), "scale": scale, "worlds": worlds_hash, "init": parent})


def init_hash(init: str, scale: str, worlds_hash: str) -> str:
    if init == "scratch":
        return "scratch"
    if init == "base":
        return base_hash(scale, worlds_hash)
    return run_hash(resolve(init, scale), scale, worlds_hash)


def base_hash(scale: str, worlds_hash: str) -> str:
    """Hash identifying the base model of a scale (the tiny one is the committed checkpoint's)."""
    return run_hash(resolve("base_pretrain", scale), scale, worlds_hash)


def run_dir(name: str, scale: str) -> Path:
    from common.worlds import worlds_hash

    r = resolve(name, scale)
    return RUNS / scale / f"{name}-{run_hash(r, scale, worlds_hash(scale))}"


def load_model(name: str, scale: str, train_if_missing: bool = True) -> torch.nn.Module:
    """A model in the state recipe ``name`` leaves it (``base`` = the base model), in eval mode."""
    tok = tokenizer_for(scale)
    model = build_model(scale, len(tok), seed=0)
    _apply_init(model, name, scale, train_if_missing)
    return model.eval()


def _apply_init(model: torch.nn.Module, name: str, scale: str, train_if_missing: bool) -> None:
    if name == "scratch":
        return
    if name == "base":
        state, source = base_state(scale, train_if_missing)
        load_into(model, {k: v.float() for k, v in state.items()}, source=source)
        return
    _apply_init(model, resolve(name, scale).init, scale, train_if_missing)
    d = run_dir(name, scale)
    final = d / "final.safetensors"
    if not final.exists():
        if not train_if_missing:
            raise FileNotFoundError(f"recipe {name} has no finished run at {d} (run `make recipes`)")
        train(name, scale)
    load_into(model, load_state(final), source=str(final), strict=False)


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


def train(name: str, scale: str, progress: bool = True, force: bool = False, extra_loss=None):
    """Train recipe ``name`` at ``scale`` (or reuse its finished run); returns the RunResult.

    ``extra_loss(model)`` adds a regulariser to every step (see ``common.train.train_loop``).
    """
    from common.data import load_pairs
    from common.train import RunResult, StreamSampler, read_log, train_loop
    from common.worlds import ensure_worlds, worlds_hash

    recipe = resolve(name, scale)
    d = run_dir(name, scale)
    done = d / "done.json"
    if done.exists() and not force:
        return RunResult(d, d / "final.safetensors", read_log(d / "log.jsonl"), read_json(done))
    paths = ensure_worlds(scale=scale)
    tok = tokenizer_for(scale)
    model = build_model(scale, len(tok), seed=recipe.seed)
    _apply_init(model, recipe.init, scale, train_if_missing=True)
    streams = []
    for j, s in enumerate(recipe.streams):
        if s.split not in paths:
            raise KeyError(f"recipe {name}: stream split {s.split!r} not among the worlds' splits {sorted(paths)}")
        sampler = StreamSampler(load_pairs(paths[s.split]), s.pos, s.neg, seed=recipe.seed * 1000 + j,
                                hard_types=s.hard_types)
        streams.append((sampler, s.every, s.images, s.split))
    if recipe.steps is None:
        per_epoch = streams[0][0].visits_per_epoch() / recipe.streams[0].images
        recipe = replace(recipe, steps=max(1, math.ceil(recipe.epochs * per_epoch)))
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(d / "config.json", {"recipe": recipe.to_dict(), "scale": scale,
                                          "worlds_hash": worlds_hash(scale), "run_dir": str(d)})
    trainable = trainable_params(model, recipe)
    result = train_loop(model, trainable, streams, tok, recipe, d, mask_size(scale), SPECS[scale].image_size,
                        progress=progress, extra_loss=extra_loss)
    if name == "base_pretrain":
        from common.model import save_model

        save_model(model, d / "full.safetensors")
    return result
