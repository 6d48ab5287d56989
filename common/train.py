"""The training engine: recipes' data streams, the optimisation loop, logs, checkpoints, resume.

A run is fully described by a :class:`common.recipes.Recipe`; its directory
``data/runs/<recipe>-<config hash>/`` holds ``config.json``, ``log.jsonl`` (one line per step: step, lr,
every loss term, the √bs-scaled and the per-sample loss), ``step-<k>.safetensors`` at the requested
steps (trainable tensors only), ``resume.safetensors`` (trainable tensors + AdamW state) and
``final.safetensors`` + ``done.json`` when finished. A finished run with the same hash is reused.

Sampling is a pure function of (seed, stream, step), so a resumed run sees exactly the batches an
uninterrupted one would have seen.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import jsonlines
import numpy as np
import torch
from tqdm import tqdm

from common.forward import encode_vision, forward_pairs
from common.io import atomic_write_json, read_json
from common.losses import Target, make_target, set_loss
from common.model import device_of, load_state, save_checkpoint, to_pixels

if TYPE_CHECKING:
    from common.data import PairDataset


# --------------------------------------------------------------------------- sampling
@dataclass
class Batch:
    """One optimiser batch: images, the pairs on them, and their targets."""

    images: list[np.ndarray]
    phrases: list[str]
    image_index: torch.Tensor
    targets: list[Target]
    image_keys: list[str]
    stream: str


class StreamSampler:
    """Deterministic visits over one dataset: a visit = one image with ≤ ``pos`` positives and ≤ ``neg`` negatives.

    An epoch shuffles all visits (positives of an image are chunked into groups of ``pos``;
    negative-only images give one visit each, and with ``pos`` = 0 every image does). Negatives are drawn per visit from the image's own
    negative pairs, hard ones (``neg_type`` in ``hard_types``) with probability ``p_hard`` (curriculum).
    """

    def __init__(self, ds: PairDataset, pos: int, neg: int, seed: int, hard_types: Sequence[str] = ()):
        self.ds, self.pos, self.neg, self.seed = ds, pos, neg, seed
        self.hard_types = set(hard_types)
        self.groups = ds.by_image()
        self.keys = sorted(self.groups)

    def _epoch_visits(self, epoch: int) -> list[tuple[str, list]]:
        rng = np.random.default_rng([self.seed, epoch])
        visits = []
        for key in self.keys:
            pos = [p for p in self.groups[key] if p.masks]
            if self.pos and pos:
                order = rng.permutation(len(pos))
                for i in range(0, len(pos), self.pos):
                    visits.append((key, [pos[j] for j in order[i:i + self.pos]]))
            elif self.neg and (not pos or not self.pos):  # a negatives-only stream visits every image once
                visits.append((key, []))
        if not visits:
            raise ValueError(f"dataset {self.ds.name} yields no training visits (pos={self.pos}, neg={self.neg})")
        return [visits[i] for i in rng.permutation(len(visits))]

    def _epoch(self, epoch: int) -> list[tuple[str, list]]:
        """The visit order of one epoch (the last one is cached)."""
        if getattr(self, "_cached_epoch", None) != epoch:
            self._cached, self._cached_epoch = self._epoch_visits(epoch), epoch
        return self._cached

    def visits_per_epoch(self) -> int:
        return len(self._epoch(0))

    def visit(self, k: int, rng: np.random.Generator, p_hard: float) -> tuple[str, list]:
        """The k-th visit of the stream (0-based, across epochs), with negatives drawn by ``rng``."""
        n = self.visits_per_epoch()
        key, pos = self._epoch(k // n)[k % n]
        negs = [p for p in self.groups[key] if not p.masks]
        chosen = []
        if self.neg and negs:
            hard = [p for p in negs if p.neg_type in self.hard_types]
            easy = [p for p in negs if p.neg_type not in self.hard_types]
            for _ in range(min(self.neg, len(negs))):
                pool = hard if (hard and (not easy or rng.random() < p_hard)) else easy
                chosen.append(pool[int(rng.integers(len(pool)))])
        return key, list(pos) + chosen


def stream_for_step(step: int, everys: Sequence[int]) -> tuple[int, int]:
    """Which stream supplies (1-based) ``step`` and how many batches it supplied before.

    Stream 0 is primary; stream j ≥ 1 with cadence N_j supplies step s when (s + j − 1) mod N_j == 0,
    i.e. the last step of each window of N_j (stream 1 at 10, 20, …; stream 2 at 9, 19, …), so two
    secondary streams at the same cadence never collide and every run starts on the primary stream; where two
    cadences share a step, the earlier stream takes it.
    """
    for j in range(1, len(everys)):
        if (step + j - 1) % everys[j] == 0:
            return j, stream_counts(step - 1, everys)[j]
    return 0, stream_counts(step - 1, everys)[0]


def stream_counts(steps: int, everys: Sequence[int]) -> list[int]:
    """How many of steps 1..``steps`` each stream supplies (the cadence rule of :func:`stream_for_step`); × the
    recipe's ``grad_accum`` and images per batch, a run's exposure to each stream (Post 02 Table 4.1)."""
    s = np.arange(1, steps + 1)
    taken = np.zeros(steps, dtype=bool)
    counts = []
    for j in range(1, len(everys)):  # an earlier secondary stream wins a step two cadences share
        mine = ((s + j - 1) % everys[j] == 0) & ~taken
        counts.append(int(mine.sum()))
        taken |= mine
    return [steps - sum(counts), *counts]


def make_batch(sampler: StreamSampler, first_visit: int, n_images: int, rng: np.random.Generator,
               p_hard: float, mask_size: int, name: str, keep: Sequence[int] | None = None) -> Batch:
    """Assemble ``n_images`` consecutive visits of a stream into a :class:`Batch`.

    ``keep``: the visits (0 … n_images−1) this process loads (its shard under multi-process training); every visit is
    still drawn in order, so each shard holds exactly the pairs a single process would have drawn for it.
    """
    images, phrases, idx, targets, keys = [], [], [], [], []
    keep = set(range(n_images) if keep is None else keep)
    for i in range(n_images):
        key, pairs = sampler.visit(first_visit + i, rng, p_hard)
        if not pairs or i not in keep:
            continue
        img = sampler.ds.image(pairs[0])
        images.append(img)
        keys.append(key)
        for p in pairs:
            phrases.append(p.phrase)
            idx.append(len(images) - 1)
            targets.append(make_target(sampler.ds.gt_masks(p), mask_size))
    return Batch(images, phrases, torch.tensor(idx, dtype=torch.long), targets, keys, name)


# --------------------------------------------------------------------------- learning rates per parameter group
_VIT_BLOCK = re.compile(r"^vision_encoder\.backbone\.layers\.(\d+)\.")


def lr_scale_of(name: str, recipe, vit_layers: int) -> float:
    """LR multiplier of one parameter under SAM3's trainer recipe (Post 01 §10 quotes its transformer LR).

    Meta's SAM3 training configs give three LRs — transformer 8e-4, vision backbone 2.5e-4, language backbone
    5e-5 (all × ``lr_scale``) — and decay the vision trunk's LR layer-wise: block i of L gets
    ``decay ** (L - i)``, the patch/position embeddings ``decay ** (L + 1)``, the neck 1. ``recipe.vision_lr_scale``,
    ``recipe.vision_lr_decay`` and ``recipe.text_lr_scale`` hold the ratios; ``None`` means 1 (one LR for all).
    """
    if name.startswith("vision_encoder."):
        scale = recipe.vision_lr_scale or 1.0
        decay = recipe.vision_lr_decay or 1.0
        m = _VIT_BLOCK.match(name)
        if m:
            return scale * decay ** (vit_layers - int(m.group(1)))
        if name.startswith("vision_encoder.backbone.embeddings."):
            return scale * decay ** (vit_layers + 1)
        return scale
    if name.startswith("text_encoder."):
        return recipe.text_lr_scale or 1.0
    return 1.0


def param_groups(model: torch.nn.Module, trainable: dict[str, torch.nn.Parameter], recipe) -> list[dict]:
    """AdamW parameter groups, one per distinct LR multiplier (``lr_scale``; see :func:`lr_scale_of`)."""
    vit_layers = 1 + max((int(m.group(1)) for n, _ in model.named_parameters() if (m := _VIT_BLOCK.match(n))),
                         default=-1)
    groups: dict[float, list] = {}
    for n, p in trainable.items():
        groups.setdefault(round(lr_scale_of(n, recipe, vit_layers), 12), []).append(p)
    return [{"params": ps, "lr_scale": k, "lr": recipe.lr * k} for k, ps in sorted(groups.items())]


# --------------------------------------------------------------------------- optimiser state I/O
def _opt_state_tensors(opt: torch.optim.AdamW, names: dict[int, str]) -> dict[str, torch.Tensor]:
    out = {}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            n = names[id(p)]
            out[f"__adam__.{n}.exp_avg"] = st["exp_avg"]
            out[f"__adam__.{n}.exp_avg_sq"] = st["exp_avg_sq"]
            out[f"__adam__.{n}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
    return out


def _load_opt_state(opt: torch.optim.AdamW, params: dict[str, torch.nn.Parameter], state: dict[str, torch.Tensor]):
    for n, p in params.items():
        key = f"__adam__.{n}"
        if f"{key}.exp_avg" in state:
            opt.state[p] = {"exp_avg": state[f"{key}.exp_avg"].to(p.device, copy=True),
                            "exp_avg_sq": state[f"{key}.exp_avg_sq"].to(p.device, copy=True),
                            "step": torch.tensor(float(state[f"{key}.step"][0]))}


# --------------------------------------------------------------------------- the loop
#: A run whose step loss exceeds DIVERGE_FACTOR × the largest of its first DIVERGE_WINDOW step losses has diverged: it
#: stops with a message and is never cached as done (a healthy run's loss falls; batches differ by far less than 100×).
DIVERGE_FACTOR, DIVERGE_WINDOW = 100.0, 10


@dataclass
class RunResult:
    """What a finished run leaves: its directory, final trainable tensors, log and summary."""

    run_dir: Path
    final: Path
    log: list[dict]
    summary: dict

    @property
    def final_loss_per_sample(self) -> float:
        return self.summary["final_loss_per_sample"]


def read_log(path: Path) -> list[dict]:
    """The per-step jsonlines log of a run. A torn last line (a run killed mid-write) is dropped with a note; a
    malformed line elsewhere stops with the file and line named."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(jsonlines.Reader([line]).read())
        except (jsonlines.InvalidLineError, EOFError) as e:
            if i == len(lines) - 1:
                print(f"note: {path}: dropped a torn last line ({i + 1}): {line[:60]!r}")
                break
            raise ValueError(f"{path}: line {i + 1} is not valid JSON: {line[:80]!r}") from e
    return rows


def train_loop(model: torch.nn.Module, trainable: dict[str, torch.nn.Parameter], streams: list[tuple[StreamSampler, int, int, str]],
               tokenizer, recipe, run_dir: Path, mask_size: int, image_size: int, progress: bool = True,
               extra_loss=None, budget_s: float | None = None) -> RunResult:
    """Optimise ``trainable`` on the recipe's streams; resumable from ``run_dir/resume.safetensors``.

    ``streams``: (sampler, every, images_per_batch, name) with stream 0 primary. ``extra_loss(model)``
    may add regularisers (e.g. AdaLoRA's L1 + orthogonality); its value is logged as ``extra``.
    ``budget_s``: stop after this many seconds of training (a fixed-compute comparison, issue #15); the
    summary's ``steps`` is then the step reached.

    Under ``torchrun`` (an initialised process group) each process loads its shard of every batch (:func:`shard`),
    ``DistributedDataParallel`` (around :class:`PairLoss`) all-reduces the gradients, each shard's loss weighted by its
    share of the step's pairs, and only rank 0 writes the log and checkpoints.
    """
    world, rank = dist_info()
    if world > 1 and budget_s is not None:
        raise ValueError("a time budget would stop the processes at different steps; use it in one process")
    lead = rank == 0  # the process that writes
    run_dir.mkdir(parents=True, exist_ok=True)
    total = recipe.total_steps
    everys = [s[1] for s in streams]
    names = {id(p): n for n, p in trainable.items()}
    opt = torch.optim.AdamW(param_groups(model, trainable, recipe), lr=recipe.lr, weight_decay=recipe.weight_decay,
                            betas=(0.9, 0.999))
    start = 0
    log_path = run_dir / "log.jsonl"
    resume = run_dir / "resume.safetensors"
    if resume.exists():
        state = load_state(resume)
        start = int(state.pop("__step__")[0])
        with torch.no_grad():
            for n, p in trainable.items():
                if n not in state:
                    raise KeyError(f"{resume}: resume state lacks trainable tensor {n!r}")
                p.copy_(state[n])
        _load_opt_state(opt, trainable, state)
        kept = [r for r in read_log(log_path) if r["step"] <= start]
        if lead:
            with jsonlines.open(log_path, "w") as w:
                w.write_all(kept)
    elif log_path.exists() and lead:
        log_path.unlink()
    _barrier(world)

    vision_frozen = not any(n.startswith("vision_encoder.") for n in trainable)
    step_loss = PairLoss(model, recipe, image_size, vision_frozen, extra_loss)
    dev = next(iter(trainable.values())).device
    if world > 1:  # DDP all-reduces the gradients of every backward (it averages: the loss below is scaled by world)
        from torch.nn.parallel import DistributedDataParallel

        step_loss = DistributedDataParallel(step_loss, device_ids=[dev.index] if dev.type == "cuda" else None,
                                            broadcast_buffers=False, find_unused_parameters=True)
    sqrt_bs = math.sqrt(max(s[2] for s in streams)) if recipe.sqrt_bs_scaling else 1.0
    prior = read_log(log_path) if start else []  # a resumed run's log (read once)
    prior_s = prior[-1]["elapsed_s"] if prior else 0.0
    start_loss: list[float] = [r["total"] for r in prior[:DIVERGE_WINDOW] if "total" in r]
    model.train()
    bar = tqdm(range(start + 1, total + 1), desc=recipe.name, disable=not (progress and lead), mininterval=5)
    t0 = time.time() - prior_s
    for step in bar:
        if budget_s is not None and time.time() - t0 > budget_s:
            bar.close()
            break
        lr_mult = recipe.schedule(step, total)
        for g in opt.param_groups:
            g["lr"] = recipe.lr * g["lr_scale"] * lr_mult
        p_hard = recipe.p_hard(step, total)
        opt.zero_grad(set_to_none=True)
        agg: dict[str, float] = {}
        for micro in range(recipe.grad_accum):
            j, served = stream_for_step(step, everys)
            sampler, _, n_img, name = streams[j]
            rng = np.random.default_rng([recipe.seed, j, step, micro])
            batch = make_batch(sampler, (served * recipe.grad_accum + micro) * n_img, n_img, rng, p_hard,
                               mask_size, name, keep=shard(n_img, world, rank))
            n_pairs = _all_sum(float(len(batch.phrases)), world, dev)
            if not n_pairs:
                continue
            share = len(batch.phrases) / n_pairs  # this process's share of the step's pairs (1 in one process)
            loss, terms = step_loss(batch, tokenizer, j, step)  # an empty shard still joins DDP's all-reduce
            if not torch.isfinite(loss):
                bad = {k: float(v.detach()) for k, v in terms.items()}
                raise FloatingPointError(f"{recipe.name}: non-finite loss at step {step} (stream {name}): {bad}")
            (loss * share * world / recipe.grad_accum).backward()
            for k, v in terms.items():
                agg[k] = agg.get(k, 0.0) + float(v.detach()) * share / recipe.grad_accum
            agg["stream_" + name] = agg.get("stream_" + name, 0.0) + 1
        if world > 1:
            agg = _all_reduce_terms(agg)
        gnorm = torch.nn.utils.clip_grad_norm_(list(trainable.values()), recipe.clip or float("inf"))
        if not torch.isfinite(gnorm):
            raise FloatingPointError(f"{recipe.name}: non-finite gradient norm at step {step}: the run diverged")
        if start_loss and agg.get("total", 0.0) > DIVERGE_FACTOR * max(start_loss):
            raise FloatingPointError(f"{recipe.name}: loss {agg['total']:.4g} at step {step} is over {DIVERGE_FACTOR:g}× "
                                     f"its start ({max(start_loss):.4g}): the run diverged and is not kept; lower the LR")
        start_loss.extend([agg["total"]] if len(start_loss) < DIVERGE_WINDOW and "total" in agg else [])
        opt.step()
        row = {"step": step, "lr": recipe.lr * lr_mult, "p_hard": p_hard, **agg,
               "loss_per_sample": agg.get("total", float("nan")), "loss_scaled": agg.get("total", float("nan")) * sqrt_bs,
               "elapsed_s": round(time.time() - t0, 2)}
        if not lead:
            continue
        with jsonlines.open(log_path, "a") as w:
            w.write(row)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{agg.get('total', 0):.3f}", pres=f"{agg.get('presence', 0):.3f}")
        if step in recipe.checkpoints:
            save_checkpoint({n: p for n, p in trainable.items()}, run_dir / f"step-{step}.safetensors")
        if step % recipe.resume_every == 0 and step < total:
            state = {**{n: p for n, p in trainable.items()}, **_opt_state_tensors(opt, names),
                     "__step__": torch.tensor([float(step)])}
            save_checkpoint(state, resume)
    model.eval()
    final = run_dir / "final.safetensors"
    _barrier(world)
    if not lead:  # rank 0 writes the final checkpoint and summary; the others return what it logged
        _barrier(world)
        return RunResult(run_dir, final, read_log(log_path), read_json(run_dir / "done.json"))
    save_checkpoint({n: p for n, p in trainable.items()}, final)
    log = read_log(log_path)
    tail = [r["loss_per_sample"] for r in log[-max(1, len(log) // 20):]]
    summary = {"recipe": recipe.name, "steps": log[-1]["step"] if log else 0, "final_loss_per_sample": float(np.mean(tail)),
               "train_wall_s": log[-1]["elapsed_s"] if log else 0.0,
               "trainable_params": int(sum(p.numel() for p in trainable.values()))}
    atomic_write_json(run_dir / "done.json", summary)
    if resume.exists():
        resume.unlink()
    _barrier(world)
    return RunResult(run_dir, final, log, summary)


# --------------------------------------------------------------------------- multi-process (torchrun)
def dist_info() -> tuple[int, int]:
    """(world size, rank) of an initialised ``torch.distributed`` process group, else (1, 0)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def shard(n_images: int, world: int, rank: int) -> list[int]:
    """The visits of an ``n_images`` batch that process ``rank`` of ``world`` loads (``DistributedSampler``'s
    strided split, unshuffled: the step's global batch is the single-process one)."""
    if world == 1:
        return list(range(n_images))
    if n_images % world:
        raise ValueError(f"{n_images} images per step do not split evenly over {world} processes; make images per step "
                         "a multiple of the process count")
    from torch.utils.data import DistributedSampler

    return list(DistributedSampler(range(n_images), num_replicas=world, rank=rank, shuffle=False))


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _all_sum(x: float, world: int, device: torch.device) -> float:
    """``x`` summed over the processes (on ``device``: NCCL reduces GPU tensors only)."""
    if world == 1:
        return x
    import torch.distributed as dist

    t = torch.tensor([x], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0])


def _all_reduce_terms(agg: dict[str, float]) -> dict[str, float]:
    """The step's logged loss terms summed over the processes (each is already weighted by its share of the pairs)."""
    import torch.distributed as dist

    parts: list[dict] = [None] * dist.get_world_size()  # type: ignore[list-item]
    dist.all_gather_object(parts, agg)
    out: dict[str, float] = {}
    for part in parts:
        for k, v in part.items():
            if k.startswith("stream_"):
                out[k] = v  # every process counts the same batch
            else:
                out[k] = out.get(k, 0.0) + v
    return out


class PairLoss(torch.nn.Module):
    """One batch's training loss as a single module call — the frozen-ViT cache, :func:`forward_pairs`, the set loss and
    an adapter regulariser — so that ``DistributedDataParallel`` can wrap it (its hooks follow this forward).

    ``forward(batch, tokenizer, stream, step)`` returns (loss to minimise, logged terms). An empty batch (a process
    whose shard of the step holds no pairs) gives a zero loss that still reaches every trainable tensor, so the
    process takes part in the gradient all-reduce.
    """

    def __init__(self, model: torch.nn.Module, recipe, image_size: int, vision_frozen: bool, extra_loss=None):
        super().__init__()
        self.model, self.recipe, self.image_size = model, recipe, image_size
        self.vision_frozen, self.extra_loss = vision_frozen, extra_loss
        self.vision_cache = VisionCache()

    def forward(self, batch: Batch, tokenizer, stream: int, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not batch.phrases:
            zero = sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)
            return zero, {}
        ids, am = tokenizer(batch.phrases)
        terms = _batch_loss(self.model, batch, ids, am, self.recipe, self.vision_frozen, self.vision_cache,
                            self.image_size, stream, step)
        loss = terms["total"]
        if self.extra_loss is not None:
            terms["extra"] = self.extra_loss(self.model)
            loss = loss + terms["extra"]
        return loss, terms


def _batch_loss(model, batch: Batch, ids, am, recipe, vision_frozen: bool, vision_cache: VisionCache, image_size: int,
                stream: int, step: int) -> dict[str, torch.Tensor]:
    """Forward one batch (a frozen ViT read from the cache) and its set-loss terms; non-finite predictions stop the run."""
    pos_rows = torch.tensor([i for i, t in enumerate(batch.targets) if t.present or recipe.negative_masks],
                            dtype=torch.long, device=device_of(model))
    if vision_frozen:
        vision = _cached_vision(model, batch, vision_cache, image_size, stream)
        out = forward_pairs(model, None, ids, am, batch.image_index, mask_rows=pos_rows, vision=vision)
    else:
        out = forward_pairs(model, to_pixels(batch.images, image_size), ids, am, batch.image_index, mask_rows=pos_rows)
    bad = [k for k in ("logits", "boxes", "presence") if not torch.isfinite(getattr(out, k)).all()]
    if out.masks is not None and not torch.isfinite(out.masks).all():
        bad.append("masks")
    if bad:
        raise FloatingPointError(f"{recipe.name}: non-finite predictions ({', '.join(bad)}) at step {step} "
                                 f"(stream {batch.stream}): the run diverged; lower the LR")
    return set_loss(out, batch.targets, recipe.loss)


#: The most bytes the frozen-vision cache of one run holds; beyond it the oldest images are dropped (and recomputed when
#: seen again). Every micro/tiny dataset fits; the real SAM3's features are ~113 MB an image, so ~75 images fit.
VISION_CACHE_BYTES = 8 * 2 ** 30


class VisionCache:
    """Frozen-ViT features per (stream, image key), at most ``limit`` bytes (the oldest entries dropped first)."""

    def __init__(self, limit: int | None = None):
        self.limit = VISION_CACHE_BYTES if limit is None else limit
        self.entries: dict = {}  # insertion order = age
        self.bytes = 0

    @staticmethod
    def _size(entry) -> int:
        return sum(t.numel() * t.element_size() for t in (*entry[0], *entry[1]))

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, entry) -> None:
        self.entries[key] = entry
        self.bytes += self._size(entry)
        while self.bytes > self.limit and len(self.entries) > 1:
            self.bytes -= self._size(self.entries.pop(next(iter(self.entries))))


def _cached_vision(model, batch: Batch, cache: VisionCache, image_size: int, stream: int):
    """Vision features of a batch's images under a frozen ViT, computed once per image and reused (while the
    :class:`VisionCache` holds them)."""
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    here = {k: e for k in batch.image_keys if (e := cache.get((stream, k))) is not None}
    missing = [i for i, k in enumerate(batch.image_keys) if k not in here]
    if missing:
        with torch.no_grad():
            was = model.training
            model.eval()
            v = encode_vision(model, to_pixels([batch.images[i] for i in missing], image_size))
            model.train(was)
        for r, i in enumerate(missing):
            here[batch.image_keys[i]] = ([f[r] for f in v.fpn_hidden_states], [p[r] for p in v.fpn_position_encoding])
            cache.put((stream, batch.image_keys[i]), here[batch.image_keys[i]])
    feats = [here[k] for k in batch.image_keys]
    return Sam3VisionEncoderOutput(
        fpn_hidden_states=tuple(torch.stack([f[0][l] for f in feats]) for l in range(len(feats[0][0]))),
        fpn_position_encoding=tuple(torch.stack([f[1][l] for f in feats]) for l in range(len(feats[0][1]))),
    )
