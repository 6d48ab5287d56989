"""Weight movement between two checkpoints, per tensor and per module group (Post 02 §07 Table 6.1 and §08 Table 7.1;
Post 01 Fig 1.1's weighted relative change).

``rel_change`` of a tensor is ‖W_end − W_start‖_F / ‖W_start‖_F (the "rel_change" column of a weight-diff report); a
group's value is the mean over its tensors weighted by parameter count. Tensors whose start norm is 0 have no
relative change and are counted apart.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from common.model import fine_group_of

State = Mapping[str, torch.Tensor]


def _check(start: State, end: State, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if name not in end:
        raise KeyError(f"tensor {name!r} is in the start state but not in the end state")
    a, b = start[name].detach().double(), end[name].detach().double()
    if a.shape != b.shape:
        raise ValueError(f"tensor {name!r}: start shape {tuple(a.shape)} != end shape {tuple(b.shape)}")
    return a, b


def rel_changes(start: State, end: State) -> dict[str, dict[str, float]]:
    """Per tensor of ``start``: ``rel_change`` (None where ‖start‖ = 0), ``delta_norm``, ``start_norm`` and ``numel``."""
    out = {}
    for name in start:
        a, b = _check(start, end, name)
        dn, sn = float((b - a).norm()), float(a.norm())
        out[name] = {"rel_change": dn / sn if sn > 0 else None, "delta_norm": dn, "start_norm": sn, "numel": a.numel()}
    return out


def group_rel_change(start: State, end: State, group_of: Callable[[str], str] = fine_group_of) -> dict[str, dict]:
    """Per group: the parameter-weighted mean ``rel_change`` of its tensors, the group's ‖Δ‖ / ‖start‖ over all its
    tensors together, its tensor and parameter counts, and how many tensors had a zero start norm."""
    acc: dict[str, dict] = {}
    for name, s in rel_changes(start, end).items():
        g = acc.setdefault(group_of(name), {"w": 0.0, "n": 0, "d2": 0.0, "s2": 0.0, "tensors": 0, "zero_start": 0})
        g["tensors"] += 1
        g["d2"] += s["delta_norm"] ** 2
        g["s2"] += s["start_norm"] ** 2
        if s["rel_change"] is None:
            g["zero_start"] += 1
            continue
        g["w"] += s["rel_change"] * s["numel"]
        g["n"] += s["numel"]
    return {k: {"rel_change": g["w"] / g["n"] if g["n"] else None,
                "group_rel_l2": (g["d2"] / g["s2"]) ** 0.5 if g["s2"] > 0 else None,
                "tensors": g["tensors"], "params": g["n"], "zero_start": g["zero_start"]} for k, g in acc.items()}


def delta(start: State, end: State, name: str) -> torch.Tensor:
    """``end[name] − start[name]`` as a flat float64 vector."""
    a, b = _check(start, end, name)
    return (b - a).flatten()


def cosine(u: torch.Tensor, v: torch.Tensor) -> float | None:
    """Cosine of two vectors (None if either is zero)."""
    nu, nv = float(u.norm()), float(v.norm())
    return None if nu == 0 or nv == 0 else float(u.double() @ v.double()) / (nu * nv)


def effective_rank_fraction(start: State, end: State, name: str, frac: float = 0.9) -> float | None:
    """Post 01 §01's effective rank of one matrix's update: the number of singular directions holding ``frac`` of
    ‖ΔW‖²_F (:func:`common.spectral.e90`) over the full rank min(m, n). None for a non-matrix tensor or ΔW = 0."""
    from common.spectral import e90

    a, b = _check(start, end, name)
    if a.ndim != 2 or not bool((b - a).any()):
        return None
    return int(e90(torch.linalg.svdvals(b - a), frac)) / min(a.shape)
