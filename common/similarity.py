"""Representation similarity: linear CKA between two activation sets on the same inputs (Post 01 §5–§6: base↔FT CKA per
decoder and fusion layer, the F[0] gauge-drift evidence).

Linear CKA (Kornblith et al. 2019) compares X [n, p] and Y [n, q], rows the same n inputs:
``CKA = HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L))`` with Gram matrices K = XXᵀ, L = YYᵀ. It is invariant to orthogonal
transforms and isotropic scaling of either side, and equals 1 for identical representations. The plain (biased)
estimator is inflated when n is small against the width (two independent random sets score well above 0); the
debiased one (the unbiased HSIC of Song et al. 2012, as used by Nguyen et al. 2021) removes that bias, so use it where
the posts compare few probe inputs.
"""
from __future__ import annotations

import numpy as np
import torch


def _as_matrix(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().double().cpu()
    if t.ndim != 2:
        t = t.reshape(t.shape[0], -1)  # [n, ...] → one row per input
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: activations contain NaN or inf")
    return t


def _unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Song et al.'s unbiased HSIC estimator of two Gram matrices (their diagonals are ignored); needs n ≥ 4."""
    n = k.shape[0]
    k = k - torch.diag(torch.diag(k))
    l = l - torch.diag(torch.diag(l))
    kl = k @ l
    return (torch.trace(kl) + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 * kl.sum() / (n - 2)) / (n * (n - 3))


def linear_cka(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, debiased: bool = False) -> float:
    """Linear CKA of activations ``x`` [n, …] and ``y`` [n, …] (one row per input; trailing dims are flattened).

    ``debiased``: the unbiased-HSIC estimator (may be slightly negative for unrelated sets; needs n ≥ 4)."""
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same inputs on both sides: {x.shape[0]} vs {y.shape[0]} rows")
    n = x.shape[0]
    if debiased and n < 4:
        raise ValueError(f"debiased CKA needs at least 4 inputs, got {n}")
    if n < 2:
        raise ValueError(f"CKA needs at least 2 inputs, got {n}")
    x, y = x - x.mean(0), y - y.mean(0)
    if debiased:
        k, l = x @ x.T, y @ y.T
        kk, ll = _unbiased_hsic(k, k), _unbiased_hsic(l, l)
        denom = torch.sqrt(kk * ll)
        return float(_unbiased_hsic(k, l) / denom) if denom > 0 else float("nan")
    # feature-space form of the biased estimator: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), cheap when n ≫ width
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(torch.linalg.matrix_norm(y.T @ x) ** 2 / denom) if denom > 0 else float("nan")
