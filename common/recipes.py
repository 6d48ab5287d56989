"""The posts' training recipes as named, declarative configs — the one place that lists them all.

Each :class:`Recipe` says: start checkpoint (``init``), trainable modules, data streams and their
cadences, steps or epochs, LR and schedule, batch, seed. Step counts are scaled to the tiny model
while keeping the ratios the posts give (Post 02: replay 1 per 10 / 1 per 100 batches; recovery's
2000-step match-then-boost schedule and its checkpoints at 50 … 2000).

Running them (training, the run cache, loading a trained model) is :mod:`common.runs`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace

from common.losses import LossWeights
from common.model import MODULES, fusion_layer_prefixes
from common.presence import HEAD_PREFIXES
from common.schedules import Schedule, match_then_boost



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

def with_ranks(name: str, ranks: dict[str, int]) -> Recipe:
    """A registered adapter recipe with a per-tensor rank prescription filled in (hash includes it)."""
    r = RECIPES[name]
    return replace(r, adapter=replace(r.adapter, ranks=tuple(sorted((k, int(v)) for k, v in ranks.items()))))


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
