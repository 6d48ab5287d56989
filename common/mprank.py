"""MP-rank diagnostics of fine-tune weight deltas (Post 01 §9 Table 9.1, §11 Table 9.17, §12 Tables 9.12/9.13).

The plumbing the four rank scripts share, so they read like the post:

* :func:`train` — ``runs.train`` that first waits while another process is training the same
  (shared, hash-cached) run directory.
* :func:`run_deltas` — ``ΔW = W_FT − W_ref`` of the LoRA-able ``nn.Linear`` weights of a trained recipe
  (optionally at a saved step), as float64 matrices keyed by module name (HF names; the posts' names
  via :func:`common.model.original_name`).
* :func:`fuse_qkv` — HF splits Meta's fused attention ``in_proj`` into ``q_proj/k_proj/v_proj``; for
  comparability with the post's tensor counts, concatenate them row-wise into one ``[q; k; v]`` matrix
  named ``<attn>.in_proj``.
* :func:`rank_stats` — per-tensor MP-rank (variant ``fro`` = Table 9.1's σ̂ = ‖ΔW‖_F/√(mn),
  σ₊ = σ̂(√m+√n); variant ``rms`` = Table 9.17's σ₊ = σ_rms(√m+√n)/√min(m,n), see
  :mod:`common.spectral`) and e90, with one batched SVD per shape.
* :func:`table91_group`, :func:`module_pattern` — the posts' tensor groups (Table 9.1) and module
  patterns (Table 9.12) of an HF tensor name; :func:`summarise` — n / median / min / max per group.
* :func:`trajectory`, :func:`settle_step` — the per-step trajectory of a run that
  saved intermediate checkpoints (``frozen_te`` saves Table 9.17's fractions), and the first step from
  which the median MP-rank stays within ±1 of its end value ("MP-rank has settled").
"""
from __future__ import annotations

import re
import statistics
from collections import defaultdict
from typing import Callable, Iterable, Mapping, Sequence

import torch

from common import lora, recipes, runs, spectral

#: The LoRA-able Linear weights of the full-model recipes: every Linear outside the text encoder
#: (vision trunk, fusion, decoder, geometry encoder, mask decoder, scoring) — the §11/§12 tensor set.
LORA_ABLE = recipes.ALL_LINEAR_BUT_TE
#: Post 01 §9: "LoRA-able tensors in fusion04_only" — the Linear weights of F[0..4].
FUSION04 = recipes.FUSION04


# --------------------------------------------------------------------------- deltas
def _state(model_or_state) -> Mapping[str, torch.Tensor]:
    return model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state


def linear_deltas(ref, tuned, modules: Iterable[str]) -> dict[str, torch.Tensor]:
    """``tuned − ref`` of ``<module>.weight`` for each Linear module name, float64 (out × in).

    ``ref``/``tuned`` are models or state dicts; a missing tensor or a shape mismatch raises naming it.
    """
    a, b = _state(ref), _state(tuned)
    out = {}
    for m in modules:
        k = f"{m}.weight"
        if k not in a or k not in b:
            raise KeyError(f"weight {k!r} missing from the {'reference' if k not in a else 'tuned'} state")
        if a[k].shape != b[k].shape:
            raise ValueError(f"{k}: reference shape {tuple(a[k].shape)} != tuned shape {tuple(b[k].shape)}")
        out[m] = b[k].detach().to(torch.float64) - a[k].detach().to(torch.float64)
    return out


def run_deltas(name: str, scale: str, include: Sequence[str] = LORA_ABLE, step: int | None = None,
               ref: str | int = "base") -> dict[str, torch.Tensor]:
    """ΔW of recipe ``name`` (merged adapters; at saved ``step`` or final) against ``ref`` ("base", or a
    saved step of the same run) over the Linear modules under ``include``; trains the recipe if needed."""
    runs.train(name, scale)
    tuned = runs.load_model(name, scale, step=step)
    base = runs.load_model("base", scale) if ref == "base" else runs.load_model(name, scale, step=int(ref))
    return linear_deltas(base, tuned, lora.linear_names(tuned, include=list(include)))


_QKV = re.compile(r"^(?P<attn>.+)\.(?P<p>[qkv])_proj$")


def fuse_qkv(deltas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each complete ``<attn>.{q,k,v}_proj`` triple by one ``<attn>.in_proj`` = cat([q; k; v], 0)
    (Meta's fused layout); every other tensor is kept, in order."""
    triples: dict[str, dict[str, str]] = defaultdict(dict)
    for n in deltas:
        m = _QKV.match(n)
        if m:
            triples[m["attn"]][m["p"]] = n
    out: dict[str, torch.Tensor] = {}
    for n, d in deltas.items():
        m = _QKV.match(n)
        if m and len(triples[m["attn"]]) == 3:
            if m["p"] == "q":
                t = triples[m["attn"]]
                out[f"{m['attn']}.in_proj"] = torch.cat([deltas[t["q"]], deltas[t["k"]], deltas[t["v"]]], 0)
            continue
        out[n] = d
    return out


# --------------------------------------------------------------------------- ranks
def rank_stats(deltas: Mapping[str, torch.Tensor], variant: str = "fro") -> dict[str, dict]:
    """Per tensor: shape, ‖ΔW‖_F, MP-rank (``variant`` "fro" Table 9.1 / "rms" Table 9.17) and e90.
    One batched ``svdvals`` per distinct shape."""
    svals = spectral.singular_values(dict(deltas))
    out = {}
    for n, s in svals.items():
        m, k = deltas[n].shape
        out[n] = {"shape": [int(m), int(k)], "fro": float(torch.sqrt((s * s).sum())),
                  "mp_rank": int(spectral.mp_rank(s, m, k, variant)), "e90": int(spectral.e90(s))}
    return out


def mp_ranks(deltas: Mapping[str, torch.Tensor], variant: str = "rms") -> dict[str, int]:
    """MP-rank per tensor (the §12 prescription uses the Table 9.17 ``rms`` edge)."""
    return {n: r["mp_rank"] for n, r in rank_stats(deltas, variant).items()}


# --------------------------------------------------------------------------- groups
_ENC = r"^detr_encoder\.layers\.\d+\."


def table91_group(name: str) -> str | None:
    """Table 9.1 group of a fusion-layer tensor: ``self_attn_out_proj``, ``self_attn_in_proj``,
    ``cross_attn_in_proj``, ``cross_attn_out_proj`` (q/k/v or fused ``in_proj``), ``ffn`` (Meta's
    linear1/linear2 = HF mlp.fc1/fc2); None outside the fusion layers."""
    m = re.match(_ENC + r"(?:(?P<attn>self_attn|cross_attn)\.(?P<proj>[qkvo]_proj|in_proj)|mlp\.fc[12])$", name)
    if not m:
        return None
    if not m["attn"]:
        return "ffn"
    return f"{m['attn']}_{'out' if m['proj'] == 'o_proj' else 'in'}_proj"


#: Table 9.12 module patterns (HF name regex), first match wins; anything else is "other".
PATTERNS: tuple[tuple[str, str], ...] = (
    ("vision_proj", r"^vision_encoder\.backbone\.layers\.\d+\.attention\.o_proj$"),
    ("vision_qkv", r"^vision_encoder\.backbone\.layers\.\d+\.attention\.([qkv]_proj|in_proj)$"),
    ("vision_ffn", r"^vision_encoder\.backbone\.layers\.\d+\.mlp\.fc[12]$"),
    ("attn_in_proj", r"^detr_(encoder|decoder)\.layers\.\d+\.\w+\.([qkv]_proj|in_proj)$"),
    ("attn_out_proj", r"^detr_(encoder|decoder)\.layers\.\d+\.\w+\.o_proj$"),
    ("ffn", r"^detr_(encoder|decoder)\.layers\.\d+\.mlp\.fc[12]$"),
)


def module_pattern(name: str) -> str:
    """Table 9.12 module pattern of an HF Linear name (``vision_proj``, ``vision_qkv``, ``vision_ffn``,
    ``attn_in_proj``, ``attn_out_proj``, ``ffn`` for fusion/decoder layers, else ``other``)."""
    for pat, rx in PATTERNS:
        if re.match(rx, name):
            return pat
    return "other"


def summarise(values: Mapping[str, float], group_of: Callable[[str], str | None]) -> dict[str, dict]:
    """``{group: {"n", "median", "min", "max"}}`` of ``values`` by ``group_of(name)`` (None = left out),
    in first-seen group order."""
    groups: dict[str, list[float]] = {}
    for n, v in values.items():
        g = group_of(n)
        if g is not None:
            groups.setdefault(g, []).append(v)
    return {g: {"n": len(v), "median": float(statistics.median(v)), "min": min(v), "max": max(v)}
            for g, v in groups.items()}


# --------------------------------------------------------------------------- trajectory
def trajectory(name: str, scale: str, steps: Sequence[int], include: Sequence[str] = LORA_ABLE,
               variant: str = "rms") -> dict[int, dict[str, dict]]:
    """``{step: rank_stats(W(step) − W(0))}`` for the saved ``steps`` of run ``name`` (W(0) = its init,
    here the base model)."""
    runs.train(name, scale)
    base = runs.load_model("base", scale)
    out = {}
    for s in steps:
        tuned = runs.load_model(name, scale, step=s)
        out[s] = rank_stats(linear_deltas(base, tuned, lora.linear_names(tuned, include=list(include))), variant)
    return out


def settle_step(medians: Mapping[int, float], tol: float = 1) -> int | None:
    """First step from which the median MP-rank stays within ±``tol`` of its value at the last step."""
    steps = sorted(medians)
    if not steps:
        return None
    end = medians[steps[-1]]
    settled = None
    for s in reversed(steps):
        if abs(medians[s] - end) <= tol:
            settled = s
        else:
            break
    return settled


def step_for_fraction(total: int, fraction: float) -> int:
    """The step ``runs.train`` saves for a checkpoint fraction (``max(1, round(f·total))``)."""
    return max(1, round(fraction * total))


def settled_prescription(scale: str, recipe: str = "frozen_te", include: Sequence[str] = LORA_ABLE) -> dict:
    """Post 01 §11 method (1): the per-tensor MP-rank (Table 9.17 edge) of ``recipe``'s W(t) − W(0) at the
    saved trajectory step where the median MP-rank has settled (:func:`settle_step`).

    Returns ``{"step", "total_steps", "medians": {step: median}, "ranks": {name: r}, "shapes": {name: [m, n]},
    "step_1200": our step for the post's 1200/15939}``.
    """
    total = runs.run_steps(recipe, scale)
    post = recipes.POST01_TRAJECTORY_STEPS
    steps = sorted({step_for_fraction(total, s / post[-1]) for s in post})
    traj = trajectory(recipe, scale, steps, include, "rms")
    med = {s: float(statistics.median(r["mp_rank"] for r in traj[s].values())) for s in steps}
    settle = settle_step(med)
    return {"step": settle, "total_steps": total, "medians": med,
            "ranks": {n: r["mp_rank"] for n, r in traj[settle].items()},
            "shapes": {n: r["shape"] for n, r in traj[settle].items()},
            "step_1200": step_for_fraction(total, 1200 / post[-1])}
