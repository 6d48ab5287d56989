"""The rank series' shared language model: corpus, word vocabulary, an 8-layer tied-head GPT,
batching, training and cached short pre-training.

Stand-in for the series' unpublished "PhotonicGPT" (10.2 M params, 8 layers, d=256, vocab 15,007):
an 8-layer GPT with d=128 and a word-level vocabulary of 2,560 (ln 2560 = 7.85 ≈ the series'
step-1 loss 7.84) built from ``pydoc_data.topics`` (ships with Python, ~465 k characters), or from any
text file via ``--corpus``.  Used by every ``rank_series/paper*.py`` script.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from common.io import DATA, atomic_write_bytes

CACHE = Path(os.environ.get("RANK_SERIES_CACHE", DATA / "cache" / "rank_series"))  # git-ignored

# One intra-op thread by default: on the shared 2-core machine two threads measured 0.97 s/step vs
# 0.073 s/step with one (oversubscription under load).  Override with RANK_SERIES_THREADS.
torch.set_num_threads(int(os.environ.get("RANK_SERIES_THREADS", "1")))
_TOKEN = re.compile(r"[a-z_]+|\d+|[^\sa-z_\d]")


@dataclass(frozen=True)
class Scale:
    """Model size and step budgets of one scale (``micro`` for tests, ``tiny`` for the results)."""

    vocab: int
    d: int
    n_layer: int
    n_head: int
    ctx: int
    batch: int
    n_eval: int          # fixed held-out batches the gradient is averaged over
    pretrain_steps: int  # short cached pre-training (the "pretrained" start)
    pretrain_lr: float
    adapter_steps: int   # α-training budget for papers 81, 82, 84, 85, 88
    adapter_lr: float
    full_lr: float       # lr of the full-weight training whose gradients paper 86 captures


SCALES = {
    "micro": Scale(vocab=384, d=32, n_layer=2, n_head=2, ctx=16, batch=8, n_eval=2, pretrain_steps=10,
                   pretrain_lr=3e-3, adapter_steps=6, adapter_lr=1e-2, full_lr=3e-3),
    # batch 8 × ctx 32: measured 0.07 s per full fwd+bwd+AdamW step (1 thread) on the shared 2-core machine
    "tiny": Scale(vocab=2560, d=128, n_layer=8, n_head=4, ctx=32, batch=8, n_eval=4, pretrain_steps=120,
                  pretrain_lr=3e-3, adapter_steps=40, adapter_lr=1e-2, full_lr=3e-3),
}


# ------------------------------------------------------------------------------------------ corpus


def load_text(corpus: str | Path | None = None) -> str:
    """The corpus text: ``pydoc_data.topics`` (topics in sorted-key order) or the file ``corpus``."""
    if corpus is None:
        from pydoc_data.topics import topics

        return "\n".join(topics[k] for k in sorted(topics))
    path = Path(corpus)
    if not path.is_file():
        raise FileNotFoundError(f"--corpus: no such file: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if len(text.split()) < 1000:
        raise ValueError(f"--corpus {path}: only {len(text.split())} words; need at least 1000")
    return text


def tokenize(text: str) -> list[str]:
    """Lower-cased word-level tokens: words, digit runs and single punctuation characters."""
    return _TOKEN.findall(text.lower())


@dataclass
class Corpus:
    """Token ids split into train (first 90 %) and held-out (last 10 %) streams, plus the vocabulary."""

    train: torch.Tensor
    heldout: torch.Tensor
    itos: list[str]

    @property
    def vocab(self) -> int:
        return len(self.itos)


def build_corpus(vocab: int, corpus: str | Path | None = None) -> Corpus:
    """Word vocabulary of the ``vocab − 1`` most frequent tokens plus ``<unk>``; encodes and splits."""
    toks = tokenize(load_text(corpus))
    itos = ["<unk>"] + [w for w, _ in Counter(toks).most_common(vocab - 1)]
    stoi = {w: i for i, w in enumerate(itos)}
    ids = torch.tensor([stoi.get(t, 0) for t in toks], dtype=torch.long)
    cut = int(0.9 * len(ids))
    return Corpus(ids[:cut], ids[cut:], itos)


def sample_batch(stream: torch.Tensor, batch: int, ctx: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (input, target) windows of length ``ctx`` from a token stream."""
    ix = torch.randint(0, len(stream) - ctx - 1, (batch,), generator=gen)
    x = torch.stack([stream[i:i + ctx] for i in ix])
    y = torch.stack([stream[i + 1:i + ctx + 1] for i in ix])
    return x, y


def heldout_batches(c: Corpus, s: Scale, seed: int = 12345) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed held-out batches (same for every run) used for loss and gradient capture."""
    g = torch.Generator().manual_seed(seed)
    return [sample_batch(c.heldout, s.batch, s.ctx, g) for _ in range(s.n_eval)]


# ------------------------------------------------------------------------------------------- model


class Block(nn.Module):
    """Pre-LN transformer block with separate q/k/v/o projections and a 4× GELU MLP (no biases)."""

    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (m(h).view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for m in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.o(a)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    """Tied-head GPT: token + learned position embeddings, ``n_layer`` blocks, final LN, logits = h·Eᵀ."""

    def __init__(self, vocab: int, d: int, n_layer: int, n_head: int, ctx: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        for p in self.parameters():
            if p.ndim == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits, or the mean next-token cross-entropy if targets ``y`` are given."""
        h = self.wte(x) + self.wpe(torch.arange(x.shape[1]))
        for blk in self.blocks:
            h = blk(h)
        logits = self.ln_f(h) @ self.wte.weight.T
        if y is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def build_model(s: Scale, vocab: int, seed: int) -> GPT:
    """A freshly initialised GPT for scale ``s`` (seeded)."""
    torch.manual_seed(seed)
    return GPT(vocab, s.d, s.n_layer, s.n_head, s.ctx)


def block_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The 2-D weights of the transformer blocks (q, k, v, o, fc1, fc2 per layer): the adapter targets
    and the matrices whose gradient ER the series reports.  The tied embedding and position table are
    excluded (the series adapts block weights; embeddings have no layer)."""
    return {n: p for n, p in model.named_parameters() if n.startswith("blocks.") and p.ndim == 2}


def layer_of(name: str) -> int:
    """Layer index of a block-weight name ``blocks.<i>.…`` (after adapter wrapping too)."""
    return int(name.split(".")[1])


@torch.no_grad()
def heldout_loss(model: nn.Module, batches: list) -> float:
    """Mean loss over the fixed held-out batches."""
    return float(sum(float(model(x, y)) for x, y in batches) / len(batches))


def check_finite(loss: torch.Tensor, where: str) -> None:
    """Stop with a clear message on a NaN/inf loss."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss ({float(loss)}) at {where}")


# ------------------------------------------------------------------------------ short pre-training


def config_hash(d: dict) -> str:
    """Short stable hash of a JSON-able config (cache key)."""
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pretrained_model(s: Scale, c: Corpus, seed: int, corpus: str | None = None, progress: bool = True) -> GPT:
    """The "pretrained" start: ``s.pretrain_steps`` AdamW steps of full training from the seeded
    fresh init, cached in ``data/cache/rank_series/<config-hash>.safetensors`` (never recomputed)."""
    from safetensors.torch import load_file, save

    arch = {k: v for k, v in asdict(s).items() if k in ("vocab", "d", "n_layer", "n_head", "ctx", "batch",
                                                         "pretrain_steps", "pretrain_lr")}
    key = config_hash({"scale": arch, "vocab": c.vocab, "seed": seed, "corpus": str(corpus),
                       "n_train": len(c.train), "v": 1})
    path = CACHE / f"pretrain-{key}.safetensors"
    model = build_model(s, c.vocab, seed)
    if path.exists():
        state = load_file(str(path))
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise RuntimeError(f"cached checkpoint {path} does not fit the model (delete it): {e}") from e
        return model
    opt = torch.optim.AdamW(model.parameters(), lr=s.pretrain_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(10_000 + seed)
    for step in tqdm(range(s.pretrain_steps), desc=f"pretrain seed {seed}", disable=not progress, leave=False):
        x, y = sample_batch(c.train, s.batch, s.ctx, g)
        loss = model(x, y)
        check_finite(loss, f"pre-training step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in model.state_dict().items()}))
    return model


def start_model(start: str, s: Scale, c: Corpus, seed: int, corpus: str | None = None) -> GPT:
    """The starting point: ``fresh`` (seeded init, loss ≈ ln V) or ``pretrained`` (cached short pre-training)."""
    if start == "fresh":
        return build_model(s, c.vocab, seed)
    if start == "pretrained":
        return pretrained_model(s, c, seed, corpus)
    raise ValueError(f"unknown start {start!r}; expected 'fresh' or 'pretrained'")


def lnv(c: Corpus) -> float:
    """ln V, the uniform-prediction loss."""
    return math.log(c.vocab)
