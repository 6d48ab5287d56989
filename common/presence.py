"""Post 02 §5: SAM3's presence gate — its tensors, a cache of the input that feeds it, its retraining
(the ``presence_only`` recipe) and a linear probe of that input.

The gate (HF ``Sam3DetrDecoder``; the post's ``presence_token`` / ``presence_token_out_norm`` /
``presence_token_head``) is a learnable token (the q0 slot's initial state), a LayerNorm and a 3-linear MLP
(d→d→d→1): 9 tensors, ``d + 2d + 2(d²+d) + d+1`` parameters (132,609 at SAM3's d = 256). Its logit is
``head(norm(q0))`` where q0 is the presence slot of the last decoder layer's output.

**The cache.** With everything upstream frozen, q0 is a fixed function of the (image, phrase) pair, so the
repair computes it once (:func:`cache_gate_inputs`) and trains the head on the cache: a step is one
LayerNorm + MLP on a batch instead of a full model forward. The token feeds decoder layer 0, upstream of q0,
so it cannot train on a cache: the cached repair trains the other 8 tensors (:data:`HEAD_PREFIXES`) and keeps
the token at the fine-tune's value. ``train_gate(..., full_forward=True)`` trains the same tensors through the
full forward; both give the same loss trajectory (``tests/test_presence.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import jsonlines
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.activations import capture_pairs
from common.data import Pair, PairDataset

#: The gate's 9 tensors (HF names), and the 8 a cached repair trains.
GATE_PREFIXES = ("detr_decoder.presence_token.", "detr_decoder.presence_layer_norm.", "detr_decoder.presence_head.")
HEAD_PREFIXES = GATE_PREFIXES[1:]
#: Balanced training pairs per class (the post: 2,500 positives + 2,500 negatives at SAM3 scale).
PAIRS_PER_CLASS = {"micro": 16, "tiny": 1024, "sam3": 2500}
#: Table 5.1's steps, as fractions of the post's 1,000-step run.
TABLE_STEPS = (0, 75, 150, 250, 750, 999)
FULL_TIMING_STEPS = 3  # full-forward steps timed in the same run, for the cached-vs-full speed ratio


def gate_tensors(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the presence gate's tensors (the post's "9 tensors")."""
    return {n: tuple(p.shape) for n, p in model.named_parameters() if n.startswith(GATE_PREFIXES)}


def gate_logit(model: torch.nn.Module, q0: torch.Tensor) -> torch.Tensor:
    """The unclamped presence logit ``head(norm(q0))`` for q0 of shape [N, d] → [N]."""
    dec = model.detr_decoder
    return dec.presence_head(dec.presence_layer_norm(q0)).squeeze(-1)


@dataclass
class GateCache:
    """q0 (the last decoder layer's presence slot) for N pairs, with labels (1 = the phrase is present)."""

    q0: torch.Tensor  # [N, d]
    label: torch.Tensor  # [N] float
    pair_ids: list[str]
    wall_s: float


def forward_q0(model: torch.nn.Module, items: Sequence[tuple[PairDataset, Pair]], idx: Sequence[int], tokenizer,
               image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(q0 [n, d], presence logit of the last layer [n]) for ``items[idx]``, one forward of the whole batch (one vision
    pass per image); gradients flow into the gate when the caller enables them (the full-forward path)."""
    acts, logit = capture_pairs(model, [items[i] for i in idx], tokenizer, image_size,
                                {"q0": (model.detr_decoder.presence_layer_norm, "input")}, images_per_batch=len(idx),
                                grad=torch.is_grad_enabled())
    return acts["q0"][:, 0], logit


@torch.no_grad()
def cache_gate_inputs(model: torch.nn.Module, items: Sequence[tuple[PairDataset, Pair]], tokenizer, image_size: int,
                      images_per_batch: int = 16, progress: bool = True, desc: str = "caching gate input") -> GateCache:
    """Run the frozen model once over ``items`` ((dataset, pair)) and keep each pair's q0 (Post 02 §5's cache)."""
    t0 = time.time()
    acts, _ = capture_pairs(model, items, tokenizer, image_size, {"q0": (model.detr_decoder.presence_layer_norm, "input")},
                            images_per_batch, progress=progress, desc=desc)
    label = torch.tensor([1.0 if p.masks else 0.0 for _, p in items], device=acts["q0"].device)
    return GateCache(acts["q0"][:, 0], label, [p.pair_id for _, p in items], round(time.time() - t0, 2))


def balanced_pairs(pos: Sequence[tuple[PairDataset, Pair]], neg: Sequence[tuple[PairDataset, Pair]], per_class: int,
                   seed: int) -> list[tuple[PairDataset, Pair]]:
    """``per_class`` positives and as many negatives (or all of the smaller class), drawn without replacement."""
    n = min(per_class, len(pos), len(neg))
    if n == 0:
        raise ValueError(f"presence repair needs positive and negative pairs; got {len(pos)} and {len(neg)}")
    rng = np.random.default_rng(seed)
    return [pos[i] for i in sorted(rng.choice(len(pos), n, replace=False))] + \
           [neg[i] for i in sorted(rng.choice(len(neg), n, replace=False))]


def _stats(logit: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
    """Mean presence σ and BCE over the positive and the negative pairs."""
    s, bce = torch.sigmoid(logit), F.binary_cross_entropy_with_logits(logit, label, reduction="none")
    pos, neg = label > 0.5, label < 0.5
    return {"pos_sigma": float(s[pos].mean()), "neg_sigma": float(s[neg].mean()),
            "pos_bce": float(bce[pos].mean()), "neg_bce": float(bce[neg].mean())}


def repair_recipe(source: str, scale: str, steps: int | None = None, lr: float | None = None, seed: int = 0,
                  pos_weight: float | None = None, data: str | None = None):
    """The presence_only recipe forked from ``source`` (a recipe name or a full-model ``.safetensors``); the registered
    one when every option is the default. ``data``: a COCO JSON whose annotated categories are the positives and whose
    absent categories are the negatives (a user's own data, ``python -m common repair-presence``) instead of the watch
    world's two splits; its content hash is part of the recipe name, so new data is a new run."""
    from dataclasses import replace

    from common.recipes import PRESENCE_ONLY

    r = PRESENCE_ONLY
    tag = "" if source == r.init else "_from_" + Path(source).stem
    changes = {"init": source, "seed": seed, **({"lr": lr} if lr is not None else {})}
    if steps is not None:
        changes.update(steps=steps, scale_steps={})
    if pos_weight is not None and pos_weight != 1:
        changes["loss"] = replace(r.loss, presence_pos_weight=pos_weight)
        tag += f"_pw{pos_weight:g}"
    if data is not None:
        import hashlib

        path = Path(data).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"repair data {path} does not exist")
        changes["streams"] = (replace(r.streams[0], split=str(path)), replace(r.streams[1], split=str(path)))
        tag += f"_data{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
    tag += "" if seed == r.seed else f"_seed{seed}"
    return replace(r, name=r.name + tag, **changes)


def table_steps(total: int) -> list[int]:
    """Table 5.1's steps (0, 75, 150, 250, 750, 999 of 1,000) scaled to a ``total``-step run."""
    return sorted({min(total - 1, round(s * total / 1000)) for s in TABLE_STEPS})


def train_gate(model: torch.nn.Module, recipe, run_dir: Path, items: Sequence[tuple[PairDataset, Pair]], tokenizer,
               image_size: int, progress: bool = True, full_forward: bool = False):
    """Train the gate head with BCE on the unclamped presence logit (Adam, ``recipe.lr``, ``recipe.steps``) on
    balanced ``items``; each step draws ``recipe.streams[0].pos`` positives and ``recipe.streams[1].neg``
    negatives. Logs per step (batch σ and BCE; Table 5.1's steps also over all pairs) to ``log.jsonl``, saves the
    head to ``final.safetensors``, and records the cache time and the cached-vs-full-forward step time in
    ``done.json``. ``full_forward``: run the whole model every step instead of the cache (the reference path)."""
    from common.io import atomic_write_json
    from common.model import save_checkpoint
    from common.runs import trainable_params
    from common.train import RunResult, read_log

    run_dir.mkdir(parents=True, exist_ok=True)
    model.eval()  # no dropout: the cached q0 must be the q0 of the full forward
    cache = cache_gate_inputs(model, items, tokenizer, image_size, progress=progress)
    trainable = trainable_params(model, recipe)
    opt = torch.optim.Adam(list(trainable.values()), lr=recipe.lr)
    pw = recipe.loss.presence_pos_weight
    pos_weight = None if pw is None else torch.tensor(float(pw), device=cache.label.device)
    pos_idx = torch.nonzero(cache.label > 0.5).squeeze(1).cpu().numpy()
    neg_idx = torch.nonzero(cache.label < 0.5).squeeze(1).cpu().numpy()
    n_pos, n_neg = recipe.streams[0].pos, recipe.streams[1].neg
    rng = np.random.default_rng(recipe.seed)
    batches = [np.concatenate([rng.choice(pos_idx, n_pos), rng.choice(neg_idx, n_neg)]) for _ in range(recipe.total_steps)]
    probe_at = set(table_steps(recipe.total_steps))

    def logits_of(idx: np.ndarray) -> torch.Tensor:
        if full_forward:
            return forward_q0(model, items, idx.tolist(), tokenizer, image_size)[1]
        return gate_logit(model, cache.q0[idx])

    def step_loss(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        logit = logits_of(idx)
        return F.binary_cross_entropy_with_logits(logit, cache.label[idx], pos_weight=pos_weight), logit

    log_path = run_dir / "log.jsonl"
    log_path.unlink(missing_ok=True)
    t0 = time.time()
    with jsonlines.open(log_path, "w") as w:
        for step in tqdm(range(recipe.total_steps), desc=recipe.name, disable=not progress, mininterval=5):
            loss, logit = step_loss(batches[step])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{recipe.name}: non-finite presence BCE at step {step}: lower the LR")
            row = {"step": step, "loss": float(loss.detach()), **_stats(logit.detach(), cache.label[batches[step]])}
            if step in probe_at:
                with torch.no_grad():
                    row["all"] = _stats(gate_logit(model, cache.q0), cache.label)
            opt.zero_grad()
            loss.backward()
            opt.step()
            row["elapsed_s"] = round(time.time() - t0, 4)
            w.write(row)
    train_s = time.time() - t0
    full_s = None
    if not full_forward:  # the reference cost: forward + backward through the whole model on the same batches
        t1 = time.time()
        for idx in batches[:FULL_TIMING_STEPS]:
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(forward_q0(model, items, idx.tolist(), tokenizer, image_size)[1],
                                               cache.label[idx]).backward()
        opt.zero_grad()
        full_s = (time.time() - t1) / min(FULL_TIMING_STEPS, len(batches))
    step_s = train_s / max(1, recipe.total_steps)
    final = save_checkpoint(dict(trainable), run_dir / "final.safetensors")
    log = read_log(log_path)
    summary = {"recipe": recipe.name, "steps": recipe.total_steps, "final_loss_per_sample": float(np.mean(
        [r["loss"] for r in log[-max(1, len(log) // 20):]])), "trainable_params": int(sum(p.numel() for p in trainable.values())),
        "gate_tensors": {n: list(s) for n, s in gate_tensors(model).items()},
        "gate_params": int(sum(int(np.prod(s)) for s in gate_tensors(model).values())),
        "n_pairs": {"pos": len(pos_idx), "neg": len(neg_idx)}, "cache_wall_s": cache.wall_s,
        "train_wall_s": round(train_s, 3), "step_s": step_s, "full_forward_step_s": full_s,
        "speedup_per_step": None if full_s is None else full_s / step_s, "path": "full" if full_forward else "cached",
        "repair_wall_s": round(cache.wall_s + train_s, 2)}
    atomic_write_json(run_dir / "done.json", summary)
    return RunResult(run_dir, final, log, summary)
