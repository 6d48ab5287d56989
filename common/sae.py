"""A small sparse autoencoder on cached activations (Post 02 §09: an SAE on decoder[5].q0; Post 01 §4: the vision SAE
check, the share of a fine-tune's features that match a base feature).

ReLU encoder, linear decoder with unit-norm columns (renormalised after every step), loss = MSE + ``l1`` · mean |f|,
Adam, full-batch or minibatch over a fixed activation matrix. Inputs are centred by their training mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


class SparseAutoencoder(torch.nn.Module):
    """x ↦ f = ReLU(W_e (x − b_d) + b_e) ↦ x̂ = W_d f + b_d, W_d's columns of unit norm."""

    def __init__(self, d: int, n_features: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(d, n_features, generator=g)
        self.W_d = torch.nn.Parameter(w / w.norm(dim=0, keepdim=True))
        self.W_e = torch.nn.Parameter(self.W_d.detach().T.clone())
        self.b_e = torch.nn.Parameter(torch.zeros(n_features))
        self.b_d = torch.nn.Parameter(torch.zeros(d))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu((x - self.b_d) @ self.W_e.T + self.b_e)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.encode(x)
        return f @ self.W_d.T + self.b_d, f

    @torch.no_grad()
    def normalise(self) -> None:
        self.W_d /= self.W_d.norm(dim=0, keepdim=True).clamp_min(1e-12)


@dataclass
class SAEFit:
    sae: SparseAutoencoder
    mse: float  # final reconstruction MSE / input variance (fraction of variance unexplained)
    l0: float  # mean active features per input


def train_sae(x: torch.Tensor, n_features: int, l1: float = 1e-3, steps: int = 2000, lr: float = 1e-3,
              batch: int = 256, seed: int = 0) -> SAEFit:
    """Fit an SAE with ``n_features`` on the rows of ``x`` [N, d]; returns it with its unexplained variance and L0."""
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"train_sae needs a non-empty [N, d] matrix, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("train_sae: the activations contain NaN or inf")
    x = x.float()
    sae = SparseAutoencoder(x.shape[1], n_features, seed)
    with torch.no_grad():
        sae.b_d.copy_(x.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        xb = x[torch.randint(len(x), (min(batch, len(x)),), generator=g)]
        rec, f = sae(xb)
        loss = F.mse_loss(rec, xb) + l1 * f.abs().sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sae.normalise()
    with torch.no_grad():
        rec, f = sae(x)
        fvu = float(((rec - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum().clamp_min(1e-12))
        l0 = float((f > 0).float().sum(1).mean())
    return SAEFit(sae, fvu, l0)


def fire_rate(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """Per feature: the fraction of rows of ``x`` on which it is active (f > 0)."""
    with torch.no_grad():
        return (sae.encode(x.float()) > 0).float().mean(0)


def matched_fraction(dec_a: torch.Tensor, dec_b: torch.Tensor, threshold: float = 0.94) -> float:
    """Share of ``dec_a``'s feature directions (columns) whose best cosine to a column of ``dec_b`` is ≥ ``threshold``
    (Post 01 §4: FT features that match a base feature)."""
    a = dec_a / dec_a.norm(dim=0, keepdim=True).clamp_min(1e-12)
    b = dec_b / dec_b.norm(dim=0, keepdim=True).clamp_min(1e-12)
    return float(((a.T @ b).max(dim=1).values >= threshold).float().mean())
