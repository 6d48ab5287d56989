"""The rank series' K-basis adapter and its training loop (papers 81, 82, 83, 84, 85, 88).

ΔW = U_K diag(α) V_Kᵀ on the top-K singular vectors of each frozen block weight W (like SVFit /
LoRA-XS with a diagonal core), α starting at 0.  Since ∂L/∂α_i = u_iᵀ (∂L/∂W) v_i, the adapter's
gradient is the diagonal of the K-projected full gradient.

K schedules change the active K during training:
* ``reset`` (Paper 81's tested schedules, which "destroyed accumulated alpha information"): at every
  change of K the adapter is discarded — α ← 0, optimiser state cleared;
* ``smooth`` (Paper 88's proposal): K grows or shrinks one interpolated step at a time; α of kept
  directions and their optimiser state are kept, new directions start at α=0, and directions that
  are dropped are merged into the frozen weight (W ← W + Σ_dropped α_i u_i v_iᵀ) so nothing learned
  is lost.
"""
from __future__ import annotations

import json
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from common import spectral as sp
from common.io import atomic_write_json
from rank_series import lm
from rank_series.gradients import random_orthonormal


class KBasisLinear(nn.Module):
    """A frozen bias-free linear layer plus ΔW = U_K diag(α·mask) V_Kᵀ; basis "svd" (top singular
    vectors of W) or "random" (random orthonormal columns, the null).  Holds ``kmax`` basis vectors;
    ``mask`` selects the active K (or any subset, e.g. per-layer K or ablations)."""

    def __init__(self, linear: nn.Linear, kmax: int, basis: str = "svd", gen: torch.Generator | None = None):
        super().__init__()
        w = linear.weight.detach().clone()
        m, n = w.shape
        kmax = min(kmax, m, n)
        self.register_buffer("weight", w)
        if basis == "svd":
            u, _, vh = torch.linalg.svd(w.double(), full_matrices=False)
            u, v = u[:, :kmax], vh[:kmax].T
        elif basis == "random":
            gen = gen or torch.Generator().manual_seed(0)
            u, v = random_orthonormal(m, kmax, gen), random_orthonormal(n, kmax, gen)
        else:
            raise ValueError(f"unknown basis {basis!r}")
        self.register_buffer("U", u.float().contiguous())
        self.register_buffer("V", v.float().contiguous())
        self.register_buffer("mask", torch.ones(kmax))
        self.alpha = nn.Parameter(torch.zeros(kmax))

    @property
    def kmax(self) -> int:
        return self.alpha.numel()

    def delta(self) -> torch.Tensor:
        """The current ΔW = U diag(α·mask) Vᵀ."""
        return (self.U * (self.alpha * self.mask)) @ self.V.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight + self.delta())


def attach_adapters(model: nn.Module, kmax: int | dict[str, int], basis: str = "svd", seed: int = 0) -> dict[str, KBasisLinear]:
    """Freeze ``model`` and replace every block linear by a :class:`KBasisLinear` (in place).

    ``kmax`` is one K for all, or ``{weight name: K}``.  Returns ``{weight name: adapter}``.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(31_000 + seed)
    out = {}
    for name in list(lm.block_weights(model)):
        parent_name, attr = name[: -len(".weight")].rsplit(".", 1)
        parent = model.get_submodule(parent_name)
        k = kmax[name] if isinstance(kmax, dict) else kmax
        ad = KBasisLinear(getattr(parent, attr), k, basis, gen)
        setattr(parent, attr, ad)
        out[name] = ad
    return out


def set_active(adapters: dict[str, KBasisLinear], k: int | dict[str, int]) -> None:
    """Activate the first K basis directions of each adapter (others masked to 0)."""
    for n, ad in adapters.items():
        kk = min(k[n] if isinstance(k, dict) else k, ad.kmax)
        ad.mask.zero_()
        ad.mask[:kk] = 1.0


def alpha_grads(adapters: dict[str, KBasisLinear]) -> dict[str, torch.Tensor]:
    """∂L/∂α of the active directions of each adapter (after a backward pass)."""
    return {n: ad.alpha.grad[ad.mask > 0].detach().double().clone() for n, ad in adapters.items()}


def mean_alpha_grad_er(adapters: dict[str, KBasisLinear]) -> float:
    """Mean over adapters of ER(|∂L/∂α|) — Paper 83's "ER of the K-projected gradient"."""
    ers = [float(sp.entropy_effective_rank(g.abs())) for g in alpha_grads(adapters).values()]
    return sum(ers) / len(ers)


def _reset(adapters: dict[str, KBasisLinear], opt: torch.optim.Optimizer) -> None:
    for ad in adapters.values():
        ad.alpha.data.zero_()
        opt.state.pop(ad.alpha, None)


def _change_k_smooth(adapters: dict[str, KBasisLinear], opt: torch.optim.Optimizer, new_k: int) -> None:
    """Paper 88 transition: keep α of kept directions, merge dropped ones into W, new ones start at 0."""
    for ad in adapters.values():
        kk = min(new_k, ad.kmax)
        drop = ad.mask.clone()
        drop[:kk] = 0.0
        if drop.any():
            ad.weight += (ad.U * (ad.alpha.data * drop)) @ ad.V.T
        ad.alpha.data[kk:] = 0.0
        st = opt.state.get(ad.alpha)
        if st:
            for key in ("exp_avg", "exp_avg_sq"):
                st[key][kk:] = 0.0
        ad.mask.zero_()
        ad.mask[:kk] = 1.0


def k_at(schedule: list[tuple[int, int]], step: int) -> int:
    """K of a piecewise-constant schedule [(first_step, K), …] at 0-based ``step``."""
    k = schedule[0][1]
    for s0, kk in schedule:
        if step >= s0:
            k = kk
    return k


def smooth_schedule(points: list[tuple[int, int]], steps: int) -> list[tuple[int, int]]:
    """Piecewise-linear K(t) through ``points`` [(step, K), …], rounded to integers, as a step schedule."""
    out, last = [], None
    for t in range(steps):
        for (t0, k0), (t1, k1) in zip(points, points[1:]):
            if t0 <= t <= t1:
                k = round(k0 + (k1 - k0) * (t - t0) / max(t1 - t0, 1))
                break
        else:
            k = points[-1][1] if t > points[-1][0] else points[0][1]
        if k != last:
            out.append((t, int(k)))
            last = k
    return out


def train_adapter(scale: str, seed: int, schedule: list[tuple[int, int]] | int | dict[str, int],
                  mode: str = "reset", start: str = "pretrained", basis: str = "svd",
                  corpus: str | None = None, log_steps: tuple[int, ...] = (1, 5, 10, 20, 40),
                  recompute: bool = False, label: str = "") -> dict:
    """Train only the adapter α's (Adam) for ``scale.adapter_steps`` steps and return the held-out
    loss curve, final loss, ER(∂L/∂α) at ``log_steps`` (train batch) and the final α's.

    ``schedule`` is a fixed K, a per-weight ``{name: K}`` dict (Paper 84), or [(first_step, K), …]
    with ``mode`` "reset" or "smooth" transitions.  Cached as JSON by config hash.
    """
    s = lm.SCALES[scale]
    sched = schedule if isinstance(schedule, list) else [(0, schedule)]
    cfg = {"what": "adapter", "scale": scale, "seed": seed, "schedule": sched, "mode": mode, "start": start,
           "basis": basis, "corpus": str(corpus), "log_steps": list(log_steps), "v": 3}
    path = lm.CACHE / f"adapter-{lm.config_hash(cfg)}.json"
    if path.exists() and not recompute:
        return json.loads(path.read_text())
    c = lm.build_corpus(s.vocab, corpus)
    model = lm.start_model(start, s, c, seed, corpus)
    hb = lm.heldout_batches(c, s)
    first = sched[0][1]
    kmax = max(k for _, k in sched) if not isinstance(first, dict) else first
    adapters = attach_adapters(model, kmax if not isinstance(first, dict) else first, basis, seed)
    set_active(adapters, first)
    opt = torch.optim.Adam([ad.alpha for ad in adapters.values()], lr=s.adapter_lr)
    gen = torch.Generator().manual_seed(40_000 + seed)
    out = {"config": cfg, "label": label, "loss0": lm.heldout_loss(model, hb), "curve": {}, "alpha_grad_er": {},
           "k_trace": []}
    cur = first
    eval_every = max(1, s.adapter_steps // 8)
    for step in tqdm(range(s.adapter_steps), desc=f"adapter {label or cfg['schedule']} s{seed}", leave=False):
        k = k_at(sched, step)
        if k != cur:
            (_reset(adapters, opt), set_active(adapters, k)) if mode == "reset" else _change_k_smooth(adapters, opt, k)
            cur = k
        out["k_trace"].append(k if not isinstance(k, dict) else "per-layer")
        x, y = lm.sample_batch(c.train, s.batch, s.ctx, gen)
        loss = model(x, y)
        lm.check_finite(loss, f"adapter step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for ad in adapters.values():
            ad.alpha.grad *= ad.mask
        if step + 1 in log_steps:
            out["alpha_grad_er"][str(step + 1)] = mean_alpha_grad_er(adapters)
        opt.step()
        if (step + 1) % eval_every == 0 or step + 1 == s.adapter_steps:
            out["curve"][str(step + 1)] = lm.heldout_loss(model, hb)
    out["final_loss"] = lm.heldout_loss(model, hb)
    out["trainable"] = int(sum(int(ad.mask.sum()) for ad in adapters.values()))
    out["alpha"] = {n: (ad.alpha.data * ad.mask).tolist() for n, ad in adapters.items()}
    atomic_write_json(path, out)
    return out


def ablated_loss(scale: str, seed: int, run: dict, keep: Callable[[int], bool], corpus: str | None = None) -> float:
    """Held-out loss of a trained fixed-K run (``run`` from :func:`train_adapter`) with only the α_i
    for which ``keep(i)`` is true (Paper 85's ablation of the bottom directions of K=64)."""
    s = lm.SCALES[scale]
    cfg = run["config"]
    c = lm.build_corpus(s.vocab, corpus)
    model = lm.start_model(cfg["start"], s, c, seed, corpus)
    k = cfg["schedule"][0][1]
    adapters = attach_adapters(model, k, cfg["basis"], seed)
    with torch.no_grad():
        for n, ad in adapters.items():
            a = torch.tensor(run["alpha"][n])
            ad.alpha.copy_(a * torch.tensor([1.0 if keep(i) else 0.0 for i in range(len(a))]))
    return lm.heldout_loss(model, lm.heldout_batches(c, s))
