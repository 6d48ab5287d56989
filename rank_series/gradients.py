"""Full-gradient capture and the rank series' gradient statistics (papers 83, 85, 86, 87).

Definitions (one m×n block weight W with gradient G = ∂L/∂W, averaged over fixed held-out batches):
* true ER — Roy–Vetterli ``exp(H(σ/‖σ‖₁))`` of the singular values of G (Paper 86's formula);
* K-basis gradient — the adapter ΔW = U_K diag(α) V_Kᵀ sees ``g_i = ∂L/∂α_i = u_iᵀ G v_i``; the
  "K-constrained ER" (papers 83/86) is the ER of ``U_K diag(g) V_Kᵀ``, whose singular values are |g_i|,
  so it is ``exp(H(|g|/‖g‖₁)) ≤ K``;
* coverage (Paper 87) — ``cos(G, U_K U_Kᵀ G V_K V_Kᵀ) = ‖U_Kᵀ G V_K‖_F / ‖G‖_F`` (the two-sided
  subspace projection); "diagonal coverage" ``‖g‖₂/‖G‖_F`` is the part a diagonal-core adapter's
  gradient step can move;
* nulls — the same numbers with a random orthonormal basis (QR of a Gaussian) instead of W's top-K
  singular vectors, and the "random diagonal": ER of K i.i.d. |N(0,1)| values.
"""
from __future__ import annotations

import json
from collections import defaultdict

import torch

from common import spectral as sp
from common.io import atomic_write_json
from rank_series import lm


def capture_gradients(model: torch.nn.Module, batches: list) -> tuple[dict[str, torch.Tensor], float]:
    """∂L/∂W (float64) of every block 2-D weight, averaged over ``batches``; also the mean loss.

    The model's parameters are left unchanged and its .grad fields cleared.
    """
    weights = lm.block_weights(model)
    acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in weights.items()}
    total = 0.0
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        loss = model(x, y)
        lm.check_finite(loss, "gradient capture")
        loss.backward()
        total += float(loss.detach())
        for n, p in weights.items():
            acc[n] += p.grad.double()
    model.zero_grad(set_to_none=True)
    return {n: g / len(batches) for n, g in acc.items()}, total / len(batches)


def random_orthonormal(m: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """An m×k matrix with random orthonormal columns (QR of a Gaussian)."""
    q, _ = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64))
    return q


def svd_bases(weights: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(U, V) singular vectors (descending σ) of each weight, float64, SVD batched by shape."""
    groups = defaultdict(list)
    for n, w in weights.items():
        groups[tuple(w.shape)].append(n)
    out = {}
    for names in groups.values():
        u, _, vh = torch.linalg.svd(torch.stack([weights[n].detach().double() for n in names]), full_matrices=False)
        for i, n in enumerate(names):
            out[n] = (u[i], vh[i].T)
    return out


def k_stats(g: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> dict[str, float]:
    """K-constrained ER, subspace coverage and diagonal coverage of G in the basis (U_K, V_K)."""
    core = u.T @ g @ v
    diag = torch.diagonal(core)
    gn = float(g.norm())
    return {"ker": float(sp.entropy_effective_rank(diag.abs())),
            "cov": float(core.norm()) / gn if gn > 0 else 0.0,
            "dcov": float(diag.norm()) / gn if gn > 0 else 0.0}


def random_diagonal_er(k: int, kind: str = "halfnormal", draws: int = 4000, seed: int = 0) -> float:
    """The random-diagonal null: mean ER of K i.i.d. random magnitudes, no gradient involved.

    ``halfnormal``: |z|, z ~ N(0,1) — the diagonal of a full-rank Gaussian gradient in any basis
    (ER ≈ 0.78·K at K=8, → 0.75·K); ``product``: |z₁z₂| — the diagonal u_iᵀ(abᵀ)v_i of a rank-1
    gradient in a random basis (ER ≈ 0.63·K at K=8, → 0.58·K).  Real gradients sit between the two.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(draws, k, generator=g, dtype=torch.float64).abs()
    if kind == "product":
        x = x * torch.randn(draws, k, generator=g, dtype=torch.float64).abs()
    elif kind != "halfnormal":
        raise ValueError(f"unknown random-diagonal kind {kind!r}")
    return float(sp.entropy_effective_rank(x).mean())


def analyse(grads: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], ks: tuple[int, ...],
            seed: int) -> dict:
    """All gradient statistics of one capture: per-matrix true ER, and for each K the K-constrained
    ER / coverage in the SVD basis of the current weights and in a random orthonormal basis."""
    s = sp.singular_values(grads)
    er = {n: float(sp.entropy_effective_rank(s[n])) for n in grads}
    bases = svd_bases(weights)
    gen = torch.Generator().manual_seed(777 + seed)
    per = {n: {"true_er": er[n], "layer": lm.layer_of(n), "shape": list(grads[n].shape)} for n in grads}
    for n, g in grads.items():
        m, nn_ = g.shape
        ur_full, vr_full = random_orthonormal(m, min(m, nn_), gen), random_orthonormal(nn_, min(m, nn_), gen)
        for k in ks:
            kk = min(k, m, nn_)
            u, v = bases[n]
            a = k_stats(g, u[:, :kk], v[:, :kk])
            b = k_stats(g, ur_full[:, :kk], vr_full[:, :kk])
            per[n][f"K{k}"] = {"k_used": kk, **{f"{key}_svd": val for key, val in a.items()},
                               **{f"{key}_rand": val for key, val in b.items()}}
    return per


def summarise(per: dict, ks: tuple[int, ...]) -> dict:
    """Means over matrices (and max true ER), plus per-layer means, of an :func:`analyse` result."""
    names = list(per)
    ers = [per[n]["true_er"] for n in names]
    out = {"true_er_mean": sum(ers) / len(ers), "true_er_max": max(ers), "n_matrices": len(ers), "K": {}}
    for k in ks:
        keys = per[names[0]][f"K{k}"].keys()
        out["K"][str(k)] = {key: sum(per[n][f"K{k}"][key] for n in names) / len(names) for key in keys}
        ku = int(per[names[0]][f"K{k}"]["k_used"])
        out["K"][str(k)]["random_diagonal_er"] = random_diagonal_er(ku, "halfnormal")
        out["K"][str(k)]["random_diagonal_er_product"] = random_diagonal_er(ku, "product")
    layers = sorted({per[n]["layer"] for n in names})
    out["per_layer"] = {}
    for l in layers:
        ln = [n for n in names if per[n]["layer"] == l]
        row = {"true_er": sum(per[n]["true_er"] for n in ln) / len(ln)}
        for k in ks:
            row[f"ker{k}_svd"] = sum(per[n][f"K{k}"]["ker_svd"] for n in ln) / len(ln)
            row[f"ker{k}_rand"] = sum(per[n][f"K{k}"]["ker_rand"] for n in ln) / len(ln)
        out["per_layer"][str(l)] = row
    return out


TRAJ_STEPS = (1, 5, 10, 20, 40)
MICRO_STEPS = (1, 2, 3)


def traj_steps(scale: str) -> tuple[int, ...]:
    """Capture steps: the page's 1, 5, 10, 20, 40 (``micro``: 1, 2, 3 for speed)."""
    return MICRO_STEPS if scale == "micro" else TRAJ_STEPS
TRAJ_KS = (2, 4, 8, 16, 32, 64)


def gradient_trajectory(scale: str, start: str, seed: int, corpus: str | None = None,
                        steps: tuple[int, ...] | None = None, ks: tuple[int, ...] = TRAJ_KS,
                        recompute: bool = False) -> dict:
    """Paper 86's measurement: full-weight AdamW training of all parameters from ``start``; at each
    step in ``steps`` (step t = after t−1 updates) capture ∂L/∂W averaged over the fixed held-out
    batches and :func:`analyse` it.  Cached as JSON under the rank-series cache (config hash)."""
    s = lm.SCALES[scale]
    steps = steps or traj_steps(scale)
    cfg = {"what": "gradient_trajectory", "scale": scale, "start": start, "seed": seed, "corpus": str(corpus),
           "steps": list(steps), "ks": list(ks), "v": 2}
    path = lm.CACHE / f"traj-{lm.config_hash(cfg)}.json"
    if path.exists() and not recompute:
        return json.loads(path.read_text())
    c = lm.build_corpus(s.vocab, corpus)
    model = lm.start_model(start, s, c, seed, corpus)
    hb = lm.heldout_batches(c, s)
    opt = torch.optim.AdamW(model.parameters(), lr=s.full_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(20_000 + seed)
    out = {"config": cfg, "steps": {}}
    from tqdm import tqdm

    for t in tqdm(range(1, max(steps) + 1), desc=f"86 traj {start} seed {seed}", leave=False):
        if t in steps:
            grads, loss = capture_gradients(model, hb)
            w = {n: p.detach() for n, p in lm.block_weights(model).items()}
            per = analyse(grads, w, ks, seed)
            out["steps"][str(t)] = {"heldout_loss": loss, **summarise(per, ks)}
        x, y = lm.sample_batch(c.train, s.batch, s.ctx, gen)
        loss = model(x, y)
        lm.check_finite(loss, f"trajectory step {t}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    atomic_write_json(path, out)
    return out


def ratio_k_for_er(er: float, ker32: float) -> int:
    """Paper 86's "optimal K" as we infer it from its table: the K whose K-constrained ER would equal
    ``er`` if K-constrained ER scales linearly (ER_K ≈ K·ER_32/32), i.e. round(32·er/ER_32)."""
    return int(round(32 * er / ker32)) if ker32 > 0 else 0
