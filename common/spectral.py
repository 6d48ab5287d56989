"""Spectral toolkit for weight deltas and gradients (Post 01 §9–§11; rank series papers 81–88).

Everything here works on a single 2-D matrix, a batch ``(B, m, n)`` or a ``{name: tensor}`` dict.
Singular values are computed in float64 with ``torch.linalg.svdvals``, **batched by shape**: a dict
is grouped into same-shape stacks and each stack is decomposed by one ``svdvals`` call
(:func:`singular_values`).

Which threshold serves which table
----------------------------------
* :func:`mp_edge_fro` — Post 01 §9, **Table 9.1** ("signal rank per tensor group") and the σ₊ of the
  saturation diagnostic (Tables 9.5/9.6, "σ₊ computed the same way as in the initial rank-choice
  analysis"): noise scale from the Frobenius norm, ``σ̂ = ‖ΔW‖_F / √(mn)``, bulk edge
  ``σ₊ = σ̂ (√m + √n)``.  This is the Marchenko–Pastur edge of an i.i.d. N(0, σ̂²) m×n matrix.
* :func:`mp_edge_rms` — Post 01 §11, **Table 9.17** (per-step MP-rank trajectory):
  ``σ₊ = σ_rms (√m + √n) / √min(m, n)``.  The post does not define σ_rms; we read it as the RMS of
  the singular values, ``σ_rms = ‖ΔW‖_F / √min(m, n)`` (the entry-RMS reading would put σ₊ below the
  noise bulk by a factor √min(m,n), making every direction "signal", inconsistent with the table's
  median MP-rank 16 ≪ e90 ≈ 100).  With that reading the two variants **coincide for square
  matrices**; for an m×n matrix the Table 9.17 edge is larger than the Table 9.1 edge by
  √(max(m,n)/min(m,n)), i.e. stricter on rectangular (e.g. FFN) tensors.
Both estimate the noise scale from the *whole* delta, signal included, so strong signal inflates
σ₊ (conservative); :func:`mp_edge_known` takes a known noise σ instead.

* :func:`gd_threshold_unknown` / :func:`gd_threshold_known` — Gavish & Donoho (2014) optimal hard
  threshold (Post 01 §9 cites it as the sharper alternative).
* :func:`e90` — Post 01 Table 9.17 "e90": singular values needed for 90 % of the Frobenius energy.
* :func:`entropy_effective_rank` — Roy & Vetterli (2007) ``exp(H(p))``.  **Two definitions are in
  use**: the rank series (Paper 86: "ER = exp(H(σ/||σ||₁))") uses ``p_i = σ_i / Σσ`` (``power=1``,
  the original Roy–Vetterli definition, our default); Post 01 Table 9.5 writes ``p_i = σ_i² / Σσ²``
  (``power=2``, an energy-based variant; always ≤ the power-1 value).
* :func:`saturation_diagnostics` — Post 01 Tables 9.5/9.6.
* :func:`intruder_dimensions` — Shuttleworth et al., "LoRA vs Full Fine-tuning: An Illusion of
  Equivalence" (seed 003).
* :func:`spectral_report` — one row per 2-D tensor of a base/tuned state-dict pair.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping

import numpy as np
import pandas as pd
import torch

Tensorish = torch.Tensor | np.ndarray

# --------------------------------------------------------------------------------------------
# matrices and singular values
# --------------------------------------------------------------------------------------------


def as_matrix(w: Tensorish) -> torch.Tensor:
    """A weight as a 2-D float64 tensor.

    2-D tensors are returned as is; tensors with ndim > 2 (conv kernels ``(out, in, kh, kw)``,
    fused projections) are reshaped to ``(shape[0], prod(shape[1:]))`` — output channels × fan-in,
    the matrix the layer applies to an unfolded input patch.  0-D/1-D tensors raise ValueError.
    """
    t = torch.as_tensor(w).detach()
    if t.ndim < 2:
        raise ValueError(f"rank is undefined for a {t.ndim}-D tensor of shape {tuple(t.shape)}")
    if t.ndim > 2:
        t = t.reshape(t.shape[0], -1)
    return t.to(torch.float64)


def state_diff(base: Mapping[str, Tensorish], tuned: Mapping[str, Tensorish]) -> dict[str, torch.Tensor]:
    """The weight deltas ``tuned − base`` of every tensor with ndim ≥ 2, as float64 2-D matrices.

    Conv weights are flattened by :func:`as_matrix`.  1-D tensors (biases, norms) are skipped.
    Raises KeyError / ValueError naming the tensor if a name is missing or shapes differ.
    """
    out: dict[str, torch.Tensor] = {}
    for name, b in base.items():
        b = torch.as_tensor(b)
        if b.ndim < 2:
            continue
        if name not in tuned:
            raise KeyError(f"tensor {name!r} is in the base state but not in the tuned state")
        t = torch.as_tensor(tuned[name])
        if t.shape != b.shape:
            raise ValueError(f"tensor {name!r}: base shape {tuple(b.shape)} != tuned shape {tuple(t.shape)}")
        out[name] = as_matrix(t) - as_matrix(b)
    return out


def singular_values(mats: Mapping[str, Tensorish] | Tensorish) -> dict[str, torch.Tensor] | torch.Tensor:
    """Singular values (descending, float64) of a matrix, a batch ``(..., m, n)``, or a dict of matrices.

    For a dict, matrices are grouped by shape and each group is stacked and decomposed by a single
    batched ``torch.linalg.svdvals`` call.  Returns a tensor (or a dict of 1-D tensors).
    """
    if not isinstance(mats, Mapping):
        t = torch.as_tensor(mats).detach().to(torch.float64)
        if t.ndim < 2:
            raise ValueError(f"need a matrix or a batch of matrices, got shape {tuple(t.shape)}")
        return torch.linalg.svdvals(t)
    groups: dict[tuple[int, int], list[str]] = defaultdict(list)
    mats2 = {k: as_matrix(v) for k, v in mats.items()}
    for k, v in mats2.items():
        groups[tuple(v.shape)].append(k)
    out: dict[str, torch.Tensor] = {}
    for names in groups.values():
        s = torch.linalg.svdvals(torch.stack([mats2[k] for k in names]))
        for k, row in zip(names, s):
            out[k] = row
    return {k: out[k] for k in mats}  # keep the caller's order


# --------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------


def mp_edge_fro(fro: float | torch.Tensor, m: int, n: int) -> float | torch.Tensor:
    """Post 01 §9 / Table 9.1 MP bulk edge: σ̂ = ‖ΔW‖_F/√(mn), σ₊ = σ̂(√m + √n)."""
    return fro / math.sqrt(m * n) * (math.sqrt(m) + math.sqrt(n))


def mp_edge_rms(fro: float | torch.Tensor, m: int, n: int) -> float | torch.Tensor:
    """Post 01 §11 / Table 9.17 MP edge: σ₊ = σ_rms(√m + √n)/√min(m,n), σ_rms = ‖ΔW‖_F/√min(m,n).

    σ_rms is the RMS singular value (see the module docstring for why); equals :func:`mp_edge_fro`
    when m == n and exceeds it by √(max/min) otherwise.
    """
    k = min(m, n)
    return fro / math.sqrt(k) * (math.sqrt(m) + math.sqrt(n)) / math.sqrt(k)


def mp_edge_known(sigma: float, m: int, n: int) -> float:
    """MP bulk edge σ(√m + √n) of an m×n matrix of i.i.d. N(0, σ²) noise (noise level known)."""
    return sigma * (math.sqrt(m) + math.sqrt(n))


def gd_omega(beta: float) -> float:
    """Gavish–Donoho ω(β) ≈ 0.56β³ − 0.95β² + 1.82β + 1.43 (β = min/max aspect ratio, 0 < β ≤ 1)."""
    return 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43


def gd_lambda(beta: float) -> float:
    """Gavish–Donoho λ*(β) = √(2(β+1) + 8β/((β+1) + √(β²+14β+1))); λ*(1) = 4/√3."""
    return math.sqrt(2 * (beta + 1) + 8 * beta / ((beta + 1) + math.sqrt(beta * beta + 14 * beta + 1)))


def gd_threshold_unknown(s: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """Gavish–Donoho optimal hard threshold with unknown noise: τ = ω(β)·median(σ) (per row of ``s``).

    ``torch.median`` returns the lower median for even counts; we use the true (mean-of-two) median.
    """
    beta = min(m, n) / max(m, n)
    med = torch.quantile(s, 0.5, dim=-1)
    return gd_omega(beta) * med


def gd_threshold_known(sigma: float, m: int, n: int) -> float:
    """Gavish–Donoho optimal hard threshold with known noise σ (entries N(0, σ²)): τ = λ*(β)·√max(m,n)·σ."""
    beta = min(m, n) / max(m, n)
    return gd_lambda(beta) * math.sqrt(max(m, n)) * sigma


def count_above(s: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    """Number of singular values strictly above τ (per row of ``s``; τ broadcast over the last dim)."""
    tau = torch.as_tensor(tau, dtype=s.dtype)
    if tau.ndim > 0:
        tau = tau.unsqueeze(-1)
    return (s > tau).sum(-1)


def mp_rank(s: torch.Tensor, m: int, n: int, variant: str = "fro") -> torch.Tensor:
    """MP-rank: count of σ_i > σ₊, with σ₊ from ``variant`` "fro" (Table 9.1) or "rms" (Table 9.17).

    The Frobenius norm is recovered from the singular values themselves (‖ΔW‖_F² = Σσ²).
    """
    fro = torch.sqrt((s * s).sum(-1))
    edge = {"fro": mp_edge_fro, "rms": mp_edge_rms}[variant](fro, m, n)
    return count_above(s, edge)


def gd_rank(s: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """Count of σ_i above the unknown-noise Gavish–Donoho threshold ω(β)·median(σ)."""
    return count_above(s, gd_threshold_unknown(s, m, n))


# --------------------------------------------------------------------------------------------
# rank summaries
# --------------------------------------------------------------------------------------------


def e90(s: torch.Tensor, frac: float = 0.9) -> torch.Tensor:
    """Smallest k with Σ_{i≤k} σ_i² ≥ frac·Σσ² (Post 01 Table 9.17 "e90"); 0 for an all-zero spectrum."""
    s = torch.as_tensor(s, dtype=torch.float64)
    e = s * s
    tot = e.sum(-1, keepdim=True)
    cum = torch.cumsum(e, -1)
    # tiny relative slack so an exact 90 % boundary counts as reached despite rounding
    k = (cum < frac * tot * (1 - 1e-12)).sum(-1) + 1
    return torch.where(tot.squeeze(-1) > 0, k, torch.zeros_like(k))


def entropy_effective_rank(s: torch.Tensor, power: int = 1) -> torch.Tensor:
    """Roy–Vetterli effective rank exp(H(p)), p_i = σ_i^power / Σσ^power (0·log 0 = 0).

    ``power=1`` is the rank series' "ER" (Paper 86: exp(H(σ/||σ||₁))) and Roy & Vetterli's own
    definition; ``power=2`` is Post 01 Table 9.5's r_eff.  Returns 0 for an all-zero spectrum.
    """
    s = torch.as_tensor(s, dtype=torch.float64).clamp_min(0)
    w = s**power
    tot = w.sum(-1, keepdim=True)
    p = w / torch.where(tot > 0, tot, torch.ones_like(tot))
    h = -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(-1)
    return torch.where(tot.squeeze(-1) > 0, torch.exp(h), torch.zeros_like(h))


# --------------------------------------------------------------------------------------------
# Post 01 Tables 9.5 / 9.6 — rank saturation
# --------------------------------------------------------------------------------------------

SATURATION_THRESHOLDS = {"tail_ratio": 0.1, "share_above_mp": 0.70, "reff_over_r": 0.70}


def saturation_diagnostics(delta: Tensorish, r: int) -> dict[str, float | str]:
    """Post 01 Table 9.5's three rank-saturation diagnostics of a LoRA update Δ = (α/r)·B·A of budget r.

    * ``tail_ratio`` = σ_r/σ_1 (rank-limited if > 0.1);
    * ``share_above_mp`` = |{σ_i > σ₊}|/r with σ₊ the Table 9.1 edge (:func:`mp_edge_fro`) (> 70 %);
    * ``reff_over_r`` = r_eff/r, r_eff = exp(H(p)), p = σ²/Σσ² (the post's power-2 form) (> 70 %).

    Verdict, as the post states the rule: all three above threshold → "rank-limited"; all three
    below → "not rank-limited" (data, optimiser or scope); otherwise "borderline".  Note the post's
    own Table 9.6 does not follow this rule literally: its r=8 row (0.065, 51 %, 30 %) is below on
    all three yet is labelled "borderline rank-limited".
    """
    m = as_matrix(delta)
    s = torch.linalg.svdvals(m)
    rows, cols = m.shape
    if r < 1 or r > len(s):
        raise ValueError(f"rank budget r={r} outside 1..{len(s)}")
    sr = s[:r]
    fro = float(torch.sqrt((s * s).sum()))
    edge = mp_edge_fro(fro, rows, cols)
    tail = float(sr[-1] / sr[0]) if sr[0] > 0 else 0.0
    share = float((sr > edge).sum()) / r
    reff = float(entropy_effective_rank(sr, power=2)) / r
    vals = {"tail_ratio": tail, "share_above_mp": share, "reff_over_r": reff}
    above = [vals[k] > SATURATION_THRESHOLDS[k] for k in vals]
    verdict = "rank-limited" if all(above) else ("not rank-limited" if not any(above) else "borderline")
    return {**vals, "mp_edge": float(edge), "verdict": verdict}


# --------------------------------------------------------------------------------------------
# intruder dimensions (Shuttleworth et al., seed 003)
# --------------------------------------------------------------------------------------------


def intruder_dimensions(
    base: Tensorish, tuned: Tensorish, k: int = 10, eps: float = 0.5, side: str = "left"
) -> dict[str, list]:
    """Intruder dimensions: among the top-k singular vectors of the tuned weight, those whose
    max |cos| with *all* singular vectors of the base weight is below ``eps``.

    ``side`` picks left (U, output space; the paper's choice) or right (V) singular vectors.
    Returns ``{"index": [...], "max_cos": [top-k max |cos|], "n_intruders": int}``.
    """
    b, t = as_matrix(base), as_matrix(tuned)
    if b.shape != t.shape:
        raise ValueError(f"base shape {tuple(b.shape)} != tuned shape {tuple(t.shape)}")
    ub, _, vbh = torch.linalg.svd(b, full_matrices=False)
    ut, _, vth = torch.linalg.svd(t, full_matrices=False)
    if side == "left":
        bb, tt = ub, ut[:, :k]
    elif side == "right":
        bb, tt = vbh.T, vth[:k].T
    else:
        raise ValueError("side must be 'left' or 'right'")
    maxcos = (tt.T @ bb).abs().max(dim=1).values
    idx = [int(i) for i in torch.nonzero(maxcos < eps).flatten()]
    return {"index": idx, "max_cos": [float(x) for x in maxcos], "n_intruders": len(idx)}


# --------------------------------------------------------------------------------------------
# the per-tensor report
# --------------------------------------------------------------------------------------------

REPORT_COLUMNS = ["name", "shape", "fro_delta", "rel_change", "mp_rank_fro", "mp_rank_rms", "gd_rank", "e90",
                  "entropy_er", "entropy_er_energy"]


def spectral_summary(s: torch.Tensor, m: int, n: int) -> dict[str, torch.Tensor]:
    """All rank summaries of a batch of spectra ``s`` ``(B, min(m,n))`` of m×n matrices, vectorised."""
    return {
        "fro_delta": torch.sqrt((s * s).sum(-1)),
        "mp_rank_fro": mp_rank(s, m, n, "fro"),
        "mp_rank_rms": mp_rank(s, m, n, "rms"),
        "gd_rank": gd_rank(s, m, n),
        "e90": e90(s),
        "entropy_er": entropy_effective_rank(s, 1),
        "entropy_er_energy": entropy_effective_rank(s, 2),
    }


def spectral_report(base_state: Mapping[str, Tensorish], tuned_state: Mapping[str, Tensorish]) -> pd.DataFrame:
    """One row per ≥2-D tensor of ``tuned − base``: name, shape, ‖ΔW‖_F, relative change ‖ΔW‖_F/‖W_base‖_F,
    MP-rank (Table 9.1 "fro" and Table 9.17 "rms" edges), Gavish–Donoho rank (unknown noise), e90,
    entropy ER (power 1, rank-series ER) and energy ER (power 2, Table 9.5 r_eff).

    SVDs are batched by shape (one ``svdvals`` call per distinct shape).
    """
    deltas = state_diff(base_state, tuned_state)
    groups: dict[tuple[int, int], list[str]] = defaultdict(list)
    for k, v in deltas.items():
        groups[tuple(v.shape)].append(k)
    rows: dict[str, dict] = {}
    for (m, n), names in groups.items():
        stack = torch.stack([deltas[k] for k in names])
        s = torch.linalg.svdvals(stack)
        base_fro = torch.stack([as_matrix(base_state[k]).norm() for k in names])
        summ = spectral_summary(s, m, n)
        rel = summ["fro_delta"] / torch.where(base_fro > 0, base_fro, torch.full_like(base_fro, float("nan")))
        for i, k in enumerate(names):
            rows[k] = {"name": k, "shape": (m, n), "rel_change": float(rel[i]),
                       **{c: (float(v[i]) if v.is_floating_point() else int(v[i])) for c, v in summ.items()}}
    return pd.DataFrame([rows[k] for k in deltas], columns=REPORT_COLUMNS)
