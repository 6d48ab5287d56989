"""Activation patching between two checkpoints on the watch test set (Post 01 §3 Fig 3.2 / Table 3.3, §5 Table 5.1,
§6 Fig 6.1 / Table 6.2).

A *patch* runs the receiver model on a pair but overwrites one layer's output with the donor model's output of the same
layer on the same pair (captured in a separate forward through the donor's own full pipeline); the receiver's later
layers then run on the patched tensor. Patch points are the slots of :mod:`common.activations`:

- ``fusion[i]`` (F[i]): fusion-encoder layer i's output, the **image tokens** conditioned on the prompt, [tokens, d]. In
  the HF ``Sam3Model`` this is the fusion stack's residual stream (the text features are its memory); Post 01 names the
  text side instead (ARCHITECTURE.md), so every table states which tensor it patched.
- ``decoder[i]`` (D[i]): decoder layer i's output, [1 + queries, d], the presence slot q0 first.

Forward patching (Fig 3.2) is ``receiver = base, donor = FT``; reverse patching (Table 5.1) the other way round.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from common import activations, hooks, runs
from common.data import Pair, PairDataset
from common.evaluate import Edit, predict, score_watch
from common.model import SPECS
from common.similarity import linear_cka

#: What a patch overwrites, as every patching table states it.
PATCHED_TENSOR = {"fusion": "fusion-encoder layer output = the prompt-conditioned image tokens [tokens, d] "
                            "(the fusion stack's residual stream in HF Sam3Model)",
                  "decoder": "decoder layer output = [presence slot q0 + object queries, d]"}


def slots(model: torch.nn.Module, kind: str) -> list[str]:
    """``fusion[0..]`` or ``decoder[0..]``: every layer of that stack, as slot names."""
    stack = {"fusion": model.detr_encoder, "decoder": model.detr_decoder}[kind]
    return [f"{kind}[{i}]" for i in range(len(stack.layers))]


def label(slot: str) -> str:
    """The post's short name of a slot: ``fusion[4]`` → ``F[4]``, ``decoder[0]`` → ``D[0]``."""
    kind, i = slot.rstrip("]").split("[")
    return f"{'F' if kind == 'fusion' else 'D'}[{i}]"


def donor_activations(model: torch.nn.Module, ds: PairDataset, pairs: Sequence[Pair], slots_: Sequence[str],
                      scale: str) -> dict[str, torch.Tensor]:
    """``{slot: [n_pairs, ...]}``: what each slot outputs on each pair of ``pairs``, in that order (one forward)."""
    mods = {s: (activations.slot_module(model, s), "output") for s in slots_}
    acts, _ = activations.capture_pairs(model, [(ds, p) for p in pairs], runs.tokenizer_for(scale),
                                        SPECS[scale].image_size, mods)
    return acts


def replace_output(module: torch.nn.Module, donor: torch.Tensor, slot: str = "?") -> Edit:
    """An :func:`common.evaluate.predict` edit: the pairs ``idx`` get ``donor[idx]`` as ``module``'s output."""
    def edit(idx: list[int]):
        def fn(out: torch.Tensor) -> torch.Tensor:
            new = donor[idx]
            if new.shape != out.shape:
                raise ValueError(f"patch at {slot}: donor activation {tuple(new.shape)} does not fit the receiver's "
                                 f"{tuple(out.shape)} (do the two checkpoints share one architecture?)")
            return new.to(device=out.device, dtype=out.dtype)
        return hooks.overwrite(module, fn)
    return edit


def patched_watch(model: torch.nn.Module, ds: PairDataset, pairs: Sequence[Pair], scale: str,
                  slot: str | None = None, donor: torch.Tensor | None = None) -> dict:
    """Watch scores (:func:`common.evaluate.score_watch`) of ``model`` on ``pairs``, with ``slot``'s output replaced by
    ``donor`` (rows in ``pairs`` order); ``slot=None``: unpatched."""
    edit = None if slot is None else replace_output(activations.slot_module(model, slot), donor, slot)
    return score_watch(ds, predict(model, ds, runs.tokenizer_for(scale), SPECS[scale].image_size, list(pairs), edit=edit))


#: Probe-set rules in order of preference: the post's (base fails outright, the fine-tune does something), then
#: fallbacks for checkpoints where no task meets it (micro scale), each recorded in the result.
PROBE_RULES = {"base_zero_ft_positive": lambda b, f: b == 0.0 and f > 0.0,
               "ft_above_base": lambda b, f: f > b,
               "all_positive_tasks": lambda b, f: True}


def probe_set(ds: PairDataset, base: dict, ft: dict, n: int = 40) -> tuple[list[Pair], str]:
    """Post 01 Fig 3.2's probe set and the rule that chose it: up to ``n`` watch test tasks where base's IoU is exactly
    0 and the fine-tune's above 0 (the first of :data:`PROBE_RULES` that any task meets), stratified over concepts
    (round-robin, each concept's tasks by FT − base IoU, best first). ``base`` / ``ft``: their :func:`score_watch`
    dicts on the whole test set (``task_ids``, ``per_task_iou``)."""
    b = dict(zip(base["task_ids"], base["per_task_iou"]))
    f = dict(zip(ft["task_ids"], ft["per_task_iou"]))
    if set(b) != set(f):
        raise ValueError("probe_set: base and FT were scored on different watch tasks")
    tasks = [p for p in ds if p.pair_id in b]
    for rule, keep in PROBE_RULES.items():
        chosen = [p for p in tasks if keep(b[p.pair_id], f[p.pair_id])]
        if chosen:
            break
    by_concept: dict[str, list[Pair]] = defaultdict(list)
    for p in sorted(chosen, key=lambda p: (b[p.pair_id] - f[p.pair_id], p.pair_id)):
        by_concept[p.phrase].append(p)
    out: list[Pair] = []
    queues = [by_concept[c] for c in sorted(by_concept)]
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out, rule


def cka_by_slot(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Linear CKA of two models' activations per slot, one row per token (fusion image token or decoder query) of
    every pair: the two models see the same pairs and token positions, so rows correspond (Post 01 §5 / §6)."""
    return {s: linear_cka(a[s].reshape(-1, a[s].shape[-1]), b[s].reshape(-1, b[s].shape[-1])) for s in a}


#: Probe-set size of Post 01 Fig 3.2 ("a stratified probe set of 40 tasks where base scores exactly 0.0").
N_PROBE = 40


def sweep(recipe: str, scale: str, direction: str, n_probe: int = N_PROBE, force: bool = False) -> dict:
    """Patch every fusion and decoder layer in turn on ``recipe``'s probe set (:func:`probe_set`), cached beside the
    run. ``direction="forward"``: base receives the fine-tune's activation (Fig 3.2 / 6.1); ``"reverse"``: the
    fine-tune receives base's (Tables 5.1 / 6.2). Returns ``{"probe": pair ids, "base_iou", "ft_iou" (unpatched, on
    the probe), "probe_rule", "patched": {slot: IoU}, "cka": {slot: base↔FT linear CKA on the probe}, "tensor": PATCHED_TENSOR}``."""
    from common.evaluate import evaluate_run
    from common.io import cached_json
    from common.worlds import ensure_worlds
    from common.data import load_pairs

    if direction not in ("forward", "reverse"):
        raise ValueError(f"sweep direction {direction!r}: expected 'forward' or 'reverse'")

    def compute() -> dict:
        ds = load_pairs(ensure_worlds(scale=scale)["watch_test"])
        probe, rule = probe_set(ds, evaluate_run("base", scale)["watch"], evaluate_run(recipe, scale)["watch"], n_probe)
        if not probe:
            raise ValueError(f"{recipe} ({scale}): the watch test set has no positive task; no probe set")
        base, ft = runs.load_model("base", scale), runs.load_model(recipe, scale)
        every = slots(base, "fusion") + slots(base, "decoder")
        acts = {"base": donor_activations(base, ds, probe, every, scale),
                "ft": donor_activations(ft, ds, probe, every, scale)}
        receiver, donor = (base, "ft") if direction == "forward" else (ft, "base")
        return {"recipe": recipe, "direction": direction, "probe": [p.pair_id for p in probe], "probe_rule": rule,
                "base_iou": patched_watch(base, ds, probe, scale)["iou"],
                "ft_iou": patched_watch(ft, ds, probe, scale)["iou"],
                "patched": {s: patched_watch(receiver, ds, probe, scale, s, acts[donor][s])["iou"] for s in every},
                "cka": cka_by_slot(acts["base"], acts["ft"]), "tensor": PATCHED_TENSOR}

    path = runs.artifact_dir(recipe, scale) / f"patch-{direction}-n{n_probe}.json"
    return cached_json(path, compute, force=force)
