"""LoRA and AdaLoRA adapters on any model's ``nn.Linear`` layers (Post 01 §9–§12).

What the posts need, and where it lives here:

- **LoRA** (Post 01 §9 primer, eq. 3): ``W_eff = W + s·B·A`` with ``B = 0`` and ``A`` Kaiming-uniform at
  init, ``s = α/r`` (standard) or ``s = α/√r`` (rsLoRA, §10 Table 9.7). Built on ``peft``: a
  :class:`LoraSpec` (per-tensor ranks and alphas, scaling mode) becomes a ``peft.LoraConfig`` with
  ``rank_pattern`` / ``alpha_pattern`` / ``use_rslora`` and is injected in place with
  ``peft.inject_adapter_in_model`` (the model keeps its class, e.g. ``Sam3Model``, and its forward).
- **Targets** by name: prefixes (``fusion_layer_prefixes(range(5))`` = the posts' "LoRA F[0..4]") or
  compiled regexes, resolved to ``nn.Linear`` names *before* peft sees them. (peft on Sam3Model works,
  both ``get_peft_model`` and ``inject_adapter_in_model``; but a regex ``target_modules`` also catches
  the LayerNorms under a layer prefix and peft then refuses the whole model; explicit names avoid that.)
- **Merge** into a plain model, **effective updates** ``Δ = s·B·A`` per tensor (input to the spectral
  diagnostics of §10 / §11), **save/load** as safetensors with the spec in metadata, and a
  **peft export** (``adapter_config.json`` + ``adapter_model.safetensors``) that
  ``peft.PeftModel.from_pretrained`` loads.
- **α rule** of §12 (Table 9.12/9.13): ``α = k·max(4r, ⌈22√r⌉)``, k = 4 (or 2), from a per-tensor
  MP-rank prescription, rank-0 tensors skipped.
- **AdaLoRA** (§11, Table 9.19): ``ΔW = s·P·diag(λ)·Q`` with L1 on λ and ``‖PᵀP−I‖²_F + ‖QQᵀ−I‖²_F``.
  peft's AdaLoRA cannot use the posts' fix (P = 0, λ Kaiming-uniform, Q orthogonal), so
  :class:`AdaLoRALinear` is hand-rolled; it reads out each tensor's effective rank.
- **Parameter counts** ``r·(m+n)`` per tensor for "trainable, % of base" columns (Tables 9.2, 9.13).
"""
from __future__ import annotations

import json
import math
import numbers
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Pattern, Sequence, Union

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from common.model import load_state, save_checkpoint

Scaling = Literal["standard", "rslora"]
NamePattern = Union[str, Pattern[str]]
FORMAT = "common.lora/1"
SCALINGS = ("standard", "rslora")


# --------------------------------------------------------------------------- target selection
def _matches(name: str, patterns: Sequence[NamePattern]) -> bool:
    for p in patterns:
        if isinstance(p, re.Pattern):
            if p.search(name):
                return True
        elif name == p or name.startswith(p if p.endswith(".") else p + "."):
            return True
    return False


def linear_names(model: nn.Module, include: NamePattern | Sequence[NamePattern] | None = None,
                 exclude: Sequence[NamePattern] = ()) -> list[str]:
    """Names of the model's ``nn.Linear`` modules selected by ``include`` minus ``exclude`` (model order).

    A pattern is a module-name prefix (``"detr_encoder.layers.0."``; ``"a.b"`` means the module ``a.b``
    or anything under it, so ``layers.1`` never catches ``layers.10``) or a compiled regex
    (``re.compile(r"\\.mlp\\.fc\\d$")``, matched with ``search``). ``include=None`` selects every Linear.
    Layers already wrapped by an adapter are returned under their original name.
    """
    if isinstance(include, (str, re.Pattern)):
        include = [include]
    out = []
    for name, mod in model.named_modules():
        is_linear = isinstance(mod, (LoraLayer, AdaLoRALinear)) or (
            isinstance(mod, nn.Linear) and not _inside_adapter(name))
        if is_linear:
            if (include is None or _matches(name, include)) and not _matches(name, exclude):
                out.append(name)
    return out


def _inside_adapter(name: str) -> bool:
    """True for Linear modules that belong to an adapter wrapper (base_layer, lora_A/B) rather than the model."""
    parts = name.split(".")
    return any(p in ("base_layer", "lora_A", "lora_B") for p in parts)



# --------------------------------------------------------------------------- the spec
@dataclass
class LoraSpec:
    """Per-tensor LoRA ranks and alphas plus the scaling mode; the JSON-able source of truth of an adapter.

    ``scale(name)`` is ``α/r`` (standard, Hu et al.) or ``α/√r`` (rsLoRA, Post 01 §10). Rank-0 entries
    are kept in ``skipped`` (the MP-rank prescription of §12 skips them) and get no adapter.
    """

    ranks: dict[str, int]
    alphas: dict[str, float]
    scaling: str = "standard"
    dropout: float = 0.0
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"LoraSpec.scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if set(self.ranks) != set(self.alphas):
            diff = sorted(set(self.ranks) ^ set(self.alphas))
            raise ValueError(f"LoraSpec: ranks and alphas name different tensors, e.g. {diff[:3]}")
        for name, r in self.ranks.items():
            if not isinstance(r, int) or r < 1:
                raise ValueError(f"LoraSpec: tensor {name!r} has rank {r!r}; ranks must be integers ≥ 1 "
                                 "(put rank-0 tensors in `skipped`)")

    @property
    def targets(self) -> list[str]:
        """The adapted tensors (module names)."""
        return list(self.ranks)

    def scale(self, name: str) -> float:
        """The multiplier s of ``s·B·A`` for tensor ``name``."""
        r, a = self.ranks[name], self.alphas[name]
        return a / math.sqrt(r) if self.scaling == "rslora" else a / r

    def to_json(self) -> dict:
        """A JSON-serialisable dict (results files, safetensors metadata)."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "LoraSpec":
        """Inverse of :meth:`to_json`."""
        return cls(ranks={k: int(v) for k, v in d["ranks"].items()},
                   alphas={k: float(v) for k, v in d["alphas"].items()},
                   scaling=d.get("scaling", "standard"), dropout=float(d.get("dropout", 0.0)),
                   skipped=list(d.get("skipped", [])))

    def to_peft_config(self) -> LoraConfig:
        """The equivalent ``peft.LoraConfig``: explicit Linear names as ``target_modules``, the commonest
        rank/alpha as defaults, the others in ``rank_pattern`` / ``alpha_pattern`` (regex-escaped full names),
        ``use_rslora`` for α/√r, ``init_lora_weights=True`` (B = 0, A Kaiming-uniform a=√5)."""
        if not self.ranks:
            raise ValueError("LoraSpec has no tensors with rank ≥ 1; nothing to adapt")
        r0 = Counter(self.ranks.values()).most_common(1)[0][0]
        a0 = Counter(self.alphas.values()).most_common(1)[0][0]
        return LoraConfig(
            r=r0, lora_alpha=a0, target_modules=list(self.ranks), lora_dropout=self.dropout, bias="none",
            rank_pattern={re.escape(n): r for n, r in self.ranks.items() if r != r0},
            alpha_pattern={re.escape(n): a for n, a in self.alphas.items() if a != a0},
            use_rslora=self.scaling == "rslora", init_lora_weights=True,
        )


def make_spec(targets: Sequence[str], r: int | Mapping[str, int], alpha: float | Mapping[str, float] | None = None,
              scaling: Scaling = "standard", dropout: float = 0.0) -> LoraSpec:
    """A :class:`LoraSpec` for ``targets`` with a uniform rank ``r`` or a per-tensor dict name→r, and alpha
    uniform, per-tensor (dict name→α) or ``None`` (α = r, the original paper's convention, scaling 1).

    Tensors with rank 0 are recorded in ``skipped``. A dict naming a tensor not in ``targets`` raises.
    """
    targets = list(targets)
    ranks = _per_tensor(targets, r, "rank")
    alphas = {n: float(ranks[n]) for n in targets} if alpha is None else _per_tensor(targets, alpha, "alpha")
    keep = [n for n in targets if ranks[n] > 0]
    return LoraSpec(ranks={n: int(ranks[n]) for n in keep}, alphas={n: float(alphas[n]) for n in keep},
                    scaling=scaling, dropout=dropout, skipped=[n for n in targets if ranks[n] == 0])


def _per_tensor(targets: list[str], value, what: str) -> dict:
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(targets))
        if unknown:
            raise KeyError(f"{what} given for tensor(s) not among the targets: {unknown[:5]}")
        missing = [n for n in targets if n not in value]
        if missing:
            raise KeyError(f"no {what} given for target tensor(s) {missing[:5]}")
        return dict(value)
    return {n: value for n in targets}


# --------------------------------------------------------------------------- injecting, reading back
def add_lora(model: nn.Module, spec: LoraSpec, adapter_name: str = "default") -> nn.Module:
    """Inject LoRA adapters in place (``peft.inject_adapter_in_model``) and return the same model.

    Every non-adapter parameter is frozen (peft's behaviour; unfreeze others yourself if a recipe needs
    them). At init the output equals the base model's exactly (B = 0). Checks that every target got an
    adapter with the spec's rank and scaling.
    """
    missing = [n for n in spec.targets if not isinstance(_get(model, n), (nn.Linear, LoraLayer))]
    if missing:
        raise KeyError(f"LoRA target(s) are not Linear layers of this model: {missing[:5]}")
    inject_adapter_in_model(spec.to_peft_config(), model, adapter_name=adapter_name)
    layers = lora_layers(model)
    for name in spec.targets:
        layer = layers.get(name)
        if layer is None or adapter_name not in layer.r:
            raise RuntimeError(f"peft did not put an adapter on {name!r}")
        if layer.r[adapter_name] != spec.ranks[name] or not math.isclose(layer.scaling[adapter_name],
                                                                         spec.scale(name), rel_tol=1e-9):
            raise RuntimeError(f"peft adapter on {name!r} has r={layer.r[adapter_name]}, "
                               f"scaling={layer.scaling[adapter_name]}; spec says r={spec.ranks[name]}, "
                               f"scaling={spec.scale(name)}")
    return model


def _get(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def lora_layers(model: nn.Module) -> dict[str, LoraLayer]:
    """The model's peft LoRA layers by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def spec_of(model: nn.Module, adapter_name: str = "default") -> LoraSpec:
    """Read the :class:`LoraSpec` back from a model carrying peft LoRA layers."""
    config = getattr(model, "peft_config", {}).get(adapter_name)
    if config is None:
        raise ValueError(f"model has no LoRA adapter named {adapter_name!r}")
    layers = {n: m for n, m in lora_layers(model).items() if adapter_name in m.r}
    return LoraSpec(ranks={n: int(m.r[adapter_name]) for n, m in layers.items()},
                    alphas={n: float(m.lora_alpha[adapter_name]) for n, m in layers.items()},
                    scaling="rslora" if config.use_rslora else "standard", dropout=float(config.lora_dropout))


def lora_deltas(model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """Effective update per adapted tensor, name → ``Δ = s·B·A`` (LoRA) or ``s·P·diag(λ)·Q`` (AdaLoRA),
    shaped like the base weight (out×in). The input to the spectral diagnostics (Post 01 §10, §11)."""
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, LoraLayer) and adapter_name in m.r:
                out[name] = m.get_delta_weight(adapter_name).detach().clone()
            elif isinstance(m, AdaLoRALinear):
                out[name] = m.delta_weight().detach().clone()
    return out


def deltas_from_state(tensors: Mapping[str, torch.Tensor], spec: LoraSpec) -> dict[str, torch.Tensor]:
    """``Δ = s·B·A`` per tensor from a saved adapter (see :func:`read_adapter`), without a model."""
    out = {}
    for name in spec.targets:
        a, b = tensors.get(f"{name}.lora_A.weight"), tensors.get(f"{name}.lora_B.weight")
        if a is None or b is None:
            raise KeyError(f"adapter has no lora_A/lora_B for tensor {name!r}")
        out[name] = spec.scale(name) * (b.float() @ a.float())
    return out


def merge_lora(model: nn.Module, adapter_name: str = "default") -> nn.Module:
    """Fold every adapter into its base weight (``W ← W + Δ``) and unwrap it, leaving a plain model (same
    object, original module names and state-dict keys). Handles peft LoRA layers and :class:`AdaLoRALinear`."""
    for name, m in list(model.named_modules()):
        if isinstance(m, LoraLayer):
            m.merge(adapter_names=[adapter_name])
            _replace(model, name, m.get_base_layer())
        elif isinstance(m, AdaLoRALinear):
            _replace(model, name, m.merged())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


# --------------------------------------------------------------------------- save / load / export
def save_adapter(model: nn.Module, path: str | Path, adapter_name: str = "default",
                 extra: Mapping[str, str] | None = None) -> Path:
    """Save the adapter tensors (``<module>.lora_A.weight`` / ``.lora_B.weight``, peft's key layout) as
    safetensors; the spec (ranks, alphas, scaling) goes into the metadata under ``"lora_spec"``."""
    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    meta = {"format": FORMAT, "lora_spec": json.dumps(spec_of(model, adapter_name).to_json(), sort_keys=True)}
    meta.update(extra or {})
    return save_checkpoint(state, path, metadata=meta)


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], LoraSpec]:
    """The tensors and :class:`LoraSpec` of a file written by :func:`save_adapter`."""
    from safetensors import safe_open

    tensors = load_state(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT or "lora_spec" not in meta:
        raise ValueError(f"{path} is not a LoRA adapter written by common.lora.save_adapter (no lora_spec metadata)")
    return tensors, LoraSpec.from_json(json.loads(meta["lora_spec"]))


def load_adapter(model: nn.Module, path: str | Path, adapter_name: str = "default") -> LoraSpec:
    """Load an adapter saved by :func:`save_adapter` into ``model`` (injecting it first if absent).

    Raises naming the tensor if a key is missing/unexpected or a shape differs from the model's.
    """
    tensors, spec = read_adapter(path)
    if adapter_name not in getattr(model, "peft_config", {}):
        add_lora(model, spec, adapter_name)
    own = get_peft_model_state_dict(model, adapter_name=adapter_name)
    unexpected, missing = sorted(set(tensors) - set(own)), sorted(set(own) - set(tensors))
    if unexpected or missing:
        raise KeyError(f"{path}: unexpected tensor(s) {unexpected[:5]}, missing tensor(s) {missing[:5]}")
    for k, v in tensors.items():
        if own[k].shape != v.shape:
            raise ValueError(f"{path}: tensor {k!r} has shape {tuple(v.shape)}, the model's adapter expects "
                             f"{tuple(own[k].shape)}")
    set_peft_model_state_dict(model, tensors, adapter_name=adapter_name)
    return spec


def export_peft(model: nn.Module, directory: str | Path, adapter_name: str = "default") -> Path:
    """Write a peft-loadable adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``);
    load it with ``peft.PeftModel.from_pretrained(base_model, directory)``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = spec_of(model, adapter_name)
    spec.to_peft_config().save_pretrained(str(directory))
    state = {f"base_model.model.{k}": v for k, v in get_peft_model_state_dict(model, adapter_name=adapter_name).items()}
    save_checkpoint(state, directory / "adapter_model.safetensors", metadata={"format": "pt"})
    return directory


# --------------------------------------------------------------------------- the §12 α rule
def alpha_rule(r: int, boost: float = 4) -> float:
    """Post 01 §12 (Table 9.12/9.13): ``α = boost·max(4r, ⌈22√r⌉)`` — rsLoRA c = 22·boost with a floor of
    α/r ≥ 4·boost. boost = 4 gave 0.9232 watch IoU, boost = 2 gave 0.9115. Rank 0 → 0."""
    if r < 0:
        raise ValueError(f"rank must be ≥ 0, got {r}")
    if r == 0:
        return 0.0
    return float(boost * max(4 * r, math.ceil(round(22 * math.sqrt(r), 9))))


def prescription_spec(ranks: Mapping[str, int], boost: float = 4, scaling: Scaling = "standard") -> LoraSpec:
    """A per-tensor rank prescription (e.g. MP-rank at step 1200, Post 01 §11) → :class:`LoraSpec` with the
    §12 α rule per tensor; rank-0 tensors go to ``skipped``. ``spec.to_json()`` is the results-file form."""
    bad = {n: r for n, r in ranks.items() if not isinstance(r, numbers.Integral) or r < 0}
    if bad:
        raise ValueError(f"ranks must be integers ≥ 0; got {dict(list(bad.items())[:3])}")
    return make_spec(list(ranks), r={n: int(r) for n, r in ranks.items()},
                     alpha={n: alpha_rule(int(r), boost) for n, r in ranks.items()}, scaling=scaling)


def prescription_config(ranks: Mapping[str, int], boost: float = 4) -> LoraConfig:
    """The same prescription as a ``peft.LoraConfig`` (rank_pattern / alpha_pattern, rank-0 skipped)."""
    return prescription_spec(ranks, boost).to_peft_config()


# --------------------------------------------------------------------------- parameter counts
def spec_param_counts(model: nn.Module, spec: LoraSpec) -> dict[str, int]:
    """LoRA parameters per tensor, ``r·(m+n)`` for an m×n weight, computed from shapes (no injection)."""
    out = {}
    for name in spec.targets:
        w = _base_weight(model, name)
        out[name] = spec.ranks[name] * (w.shape[0] + w.shape[1])
    return out


def _base_weight(model: nn.Module, name: str) -> torch.Tensor:
    m = _get(model, name)
    if isinstance(m, LoraLayer):
        m = m.get_base_layer()
    elif isinstance(m, AdaLoRALinear):
        m = m.base_layer
    if not isinstance(m, nn.Linear):
        raise KeyError(f"{name!r} is not a Linear layer of this model")
    return m.weight


def _is_adapter_param(name: str) -> bool:
    return any(t in name.split(".") for t in ("lora_A", "lora_B", "lora_P", "lora_E", "lora_Q"))


def param_summary(model: nn.Module) -> dict[str, float | int]:
    """Counts for "trainable, % of base" columns (Tables 9.2, 9.13): adapter params, base (non-adapter)
    params, currently trainable params, and adapter params as a percentage of base."""
    adapter = base = trainable = 0
    for name, p in model.named_parameters():
        if _is_adapter_param(name):
            adapter += p.numel()
        else:
            base += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {"adapter": adapter, "base": base, "trainable": trainable, "pct_of_base": 100.0 * adapter / max(base, 1)}


def adapter_param_counts(model: nn.Module) -> dict[str, int]:
    """Adapter parameters per adapted tensor of an injected model (LoRA: r·(m+n); AdaLoRA: r·(m+n+1))."""
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        for i, part in enumerate(parts):
            if part in ("lora_A", "lora_B", "lora_P", "lora_E", "lora_Q"):
                key = ".".join(parts[:i])
                out[key] = out.get(key, 0) + p.numel()
                break
    return out


# --------------------------------------------------------------------------- AdaLoRA (hand-rolled)
AdaInit = Literal["paper", "lora"]


class AdaLoRALinear(nn.Module):
    """``y = base(x) + s·P·diag(λ)·Q·x`` with P (out×r), λ (r), Q (r×in), ``s = α/r`` (Post 01 §11).

    ``init="paper"`` (AdaLoRA paper default): P, Q orthogonal, λ = 0 — at step 0 only λ has a gradient.
    ``init="lora"`` (the posts' fix, Table 9.19): P = 0, λ Kaiming-uniform (a=√5 on λ as an r×1 matrix,
    i.e. U(−1, 1): the row norm of standard LoRA's A), Q orthogonal — ΔW = 0 at init and P has a gradient
    from step 1, like LoRA's B = 0 / A Kaiming.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float | None = None, init: AdaInit = "lora",
                 dropout: float = 0.0):
        super().__init__()
        if r < 1:
            raise ValueError(f"AdaLoRA rank must be ≥ 1, got {r}")
        if init not in ("paper", "lora"):
            raise ValueError(f"AdaLoRA init must be 'paper' or 'lora', got {init!r}")
        self.base_layer = base
        self.r, self.alpha, self.init = r, float(r if alpha is None else alpha), init
        self.scaling = self.alpha / r
        out_f, in_f = base.weight.shape
        kw = dict(dtype=base.weight.dtype, device=base.weight.device)
        self.lora_P = nn.Parameter(torch.empty(out_f, r, **kw))
        self.lora_E = nn.Parameter(torch.empty(r, **kw))
        self.lora_Q = nn.Parameter(torch.empty(r, in_f, **kw))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Apply the chosen init (see class docstring)."""
        with torch.no_grad():
            nn.init.orthogonal_(self.lora_Q)
            if self.init == "paper":
                nn.init.orthogonal_(self.lora_P)
                self.lora_E.zero_()
            else:
                self.lora_P.zero_()
                nn.init.kaiming_uniform_(self.lora_E.view(-1, 1), a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the low-rank branch."""
        z = (self.dropout(x) @ self.lora_Q.T) * self.lora_E
        return self.base_layer(x) + self.scaling * (z @ self.lora_P.T)

    def delta_weight(self) -> torch.Tensor:
        """``ΔW = s·P·diag(λ)·Q`` (out×in)."""
        return self.scaling * (self.lora_P * self.lora_E) @ self.lora_Q

    def l1_penalty(self) -> torch.Tensor:
        """``Σ|λ_i|`` — pushes unused singular values to zero."""
        return self.lora_E.abs().sum()

    def orthogonality_penalty(self) -> torch.Tensor:
        """``‖PᵀP − I‖²_F + ‖QQᵀ − I‖²_F``."""
        eye = torch.eye(self.r, dtype=self.lora_P.dtype, device=self.lora_P.device)
        return ((self.lora_P.T @ self.lora_P - eye) ** 2).sum() + ((self.lora_Q @ self.lora_Q.T - eye) ** 2).sum()

    def effective_rank(self, tol: float = 1e-6) -> int:
        """Number of ``|λ_i| > tol``; 0 means AdaLoRA dropped the tensor (Post 01 §11 cross-check)."""
        return int((self.lora_E.detach().abs() > tol).sum())

    def merged(self) -> nn.Linear:
        """The base Linear with ΔW folded in (modifies and returns the base layer)."""
        with torch.no_grad():
            self.base_layer.weight += self.delta_weight().to(self.base_layer.weight.dtype)
        return self.base_layer

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:.4g}, init={self.init!r}"


def add_adalora(model: nn.Module, targets: Sequence[str], r: int | Mapping[str, int],
                alpha: float | Mapping[str, float] | None = None, init: AdaInit = "lora",
                dropout: float = 0.0) -> nn.Module:
    """Wrap each target Linear in an :class:`AdaLoRALinear` in place; freeze every non-adapter parameter.
    ``r``/``alpha`` uniform or per-tensor dicts (α default = r); rank-0 targets are left alone."""
    targets = list(targets)
    ranks = _per_tensor(targets, r, "rank")
    alphas = _per_tensor(targets, alpha, "alpha") if alpha is not None else {n: None for n in targets}
    for p in model.parameters():
        p.requires_grad_(False)
    for name in targets:
        if ranks[name] == 0:
            continue
        base = _get(model, name)
        if not isinstance(base, nn.Linear):
            raise KeyError(f"AdaLoRA target {name!r} is not a Linear layer of this model")
        _replace(model, name, AdaLoRALinear(base, int(ranks[name]), alphas[name], init=init, dropout=dropout))
    return model


def adalora_layers(model: nn.Module) -> dict[str, AdaLoRALinear]:
    """The model's AdaLoRA layers by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, AdaLoRALinear)}


def adalora_penalties(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ|λ|, Σ orthogonality)`` over all AdaLoRA layers; callers add ``c_l1·l1 + c_orth·orth`` to the loss."""
    layers = list(adalora_layers(model).values())
    if not layers:
        raise ValueError("model has no AdaLoRA layers")
    return sum(m.l1_penalty() for m in layers), sum(m.orthogonality_penalty() for m in layers)


def adalora_effective_ranks(model: nn.Module, tol: float = 1e-6) -> dict[str, int]:
    """Effective rank (count of |λ_i| > tol) per AdaLoRA tensor."""
    return {n: m.effective_rank(tol) for n, m in adalora_layers(model).items()}


def zero_rank_tensors(model: nn.Module, tol: float = 1e-6) -> list[str]:
    """Tensors AdaLoRA drove to effective rank 0 (Post 01 §11: compare with the MP-rank-0 list)."""
    return [n for n, k in adalora_effective_ranks(model, tol).items() if k == 0]
