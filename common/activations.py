"""Activations at named slots of the model, over an image × phrase grid (Post 02 §06 drift; Post 01 §3–§6 patching
and CKA read the same slots).

Slots: ``fusion[i]`` is fusion-encoder layer i's output (the image tokens conditioned on the prompt, [tokens, d]; see
ARCHITECTURE.md), ``decoder[i]`` decoder layer i's output ([1 + queries, d], the presence slot q0 first). Negative
indices count from the end. :func:`capture_grid` runs every phrase on each image in one pass and keeps the slots.
"""
from __future__ import annotations

import re
from contextlib import ExitStack
from typing import Callable, ContextManager, Sequence

import numpy as np
import torch
from tqdm import tqdm

from common.forward import encode_vision, forward_pairs, image_batches, pairs_per_forward
from common.hooks import capture
from common.model import device_of, to_pixels

_SLOT = re.compile(r"^(fusion|decoder)\[(-?\d+)\]$")


def slot_module(model: torch.nn.Module, slot: str) -> torch.nn.Module:
    """The layer behind ``fusion[i]`` / ``decoder[i]``; a clear error for a malformed slot or a missing layer."""
    m = _SLOT.match(slot)
    if not m:
        raise ValueError(f"slot {slot!r}: expected 'fusion[i]' or 'decoder[i]'")
    layers = (model.detr_encoder if m.group(1) == "fusion" else model.detr_decoder).layers
    i = int(m.group(2))
    if not -len(layers) <= i < len(layers):
        raise IndexError(f"slot {slot!r}: the model has {len(layers)} {m.group(1)} layers")
    return layers[i]


@torch.no_grad()
def capture_grid(model: torch.nn.Module, images: Sequence[np.ndarray], phrases: Sequence[str], tokenizer,
                 image_size: int, slots: Sequence[str], progress: bool = True) -> dict[str, torch.Tensor]:
    """``{slot: [n_images, n_phrases, *activation shape]}``: every phrase on every image, the slots' outputs."""
    model.eval()
    ids, am = tokenizer(list(phrases))
    index = torch.zeros(len(phrases), dtype=torch.long)
    no_masks = torch.zeros(0, dtype=torch.long)
    per_image: dict[str, list[torch.Tensor]] = {s: [] for s in slots}
    for im in tqdm(images, desc="activations", disable=not progress, mininterval=5):
        with ExitStack() as stack:
            seen = {s: stack.enter_context(capture(slot_module(model, s))) for s in slots}
            forward_pairs(model, to_pixels([im], image_size), ids, am, index, mask_rows=no_masks)
        for s in slots:
            per_image[s].append(seen[s][-1])
    return {s: torch.stack(v) for s, v in per_image.items()}


@torch.no_grad()
def text_embeddings(model: torch.nn.Module, phrases: Sequence[str], tokenizer) -> torch.Tensor:
    """[n_phrases, d] one text vector per phrase (Post 01 §4 Fig 4.1, §7 text cosines): the text features the fusion
    encoder cross-attends to (``get_text_features(...).pooler_output``, after the text resizer), averaged over the
    phrase's tokens (BOS and EOS included, padding excluded)."""
    model.eval()
    ids, am = tokenizer(list(phrases))
    dev = device_of(model)
    feats = model.get_text_features(input_ids=ids.to(dev), attention_mask=am.to(dev)).pooler_output.double().cpu()
    w = am.double().unsqueeze(-1)
    return (feats * w).sum(1) / w.sum(1)


def capture_pairs(model: torch.nn.Module, items: Sequence[tuple], tokenizer, image_size: int,
                  modules: dict[str, tuple[torch.nn.Module, str]], images_per_batch: int = 16,
                  edit: Callable[[list[int]], ContextManager] | None = None, grad: bool = False, progress: bool = False,
                  desc: str = "activations") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per (dataset, pair) item, in order: ``{key: tensor [n, ...]}`` of what each ``modules[key] = (module, "input" |
    "output")`` sees (detached), and the last layer's unclamped presence logit [n]. One vision pass per image,
    ``images_per_batch`` images per vision pass, their pairs :func:`common.forward.pairs_per_forward` at a time through
    the rest. ``edit(idx)``: a context (an :func:`common.hooks.overwrite` of a fusion or decoder module) held around
    the forward of the items ``idx``, in that order (activation patching, steering). ``grad``: the logits keep their
    graph (a training path); otherwise the forwards run without one."""
    model.eval()
    chunk = pairs_per_forward(model, masks=False)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in modules}
    logits, order = [], []
    for idx, images, phrases, index in tqdm(image_batches(items, images_per_batch), desc=desc, disable=not progress,
                                            mininterval=5):
        ids, am = tokenizer(phrases)
        with torch.enable_grad() if grad else torch.no_grad():
            vision = encode_vision(model, to_pixels(images, image_size).to(device_of(model)))
        for c in range(0, len(idx), chunk):  # the pairs :func:`pairs_per_forward` at a time, on the shared vision pass
            part = slice(c, c + chunk)
            with ExitStack() as stack:
                stack.enter_context(torch.enable_grad() if grad else torch.no_grad())
                if edit is not None:
                    stack.enter_context(edit(idx[part]))
                seen = {k: stack.enter_context(capture(m, what)) for k, (m, what) in modules.items()}
                out = forward_pairs(model, None, ids[part], am[part], index[part],
                                    mask_rows=torch.zeros(0, dtype=torch.long), vision=vision)
            for k in modules:
                parts[k].append(seen[k][-1])
            logits.append(out.presence[-1])
        order += idx
    inv = torch.argsort(torch.tensor(order))
    return {k: torch.cat(v)[inv] for k, v in parts.items()}, torch.cat(logits)[inv]


def relative_drift(x: torch.Tensor, ref: torch.Tensor, dims: int) -> torch.Tensor:
    """‖x − ref‖ / ‖ref‖ over the last ``dims`` dimensions (the per-activation relative change of Post 02 §06)."""
    if x.shape != ref.shape:
        raise ValueError(f"activation shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}")
    flat = lambda t: t.reshape(*t.shape[: t.ndim - dims], -1).double()  # noqa: E731
    return (flat(x) - flat(ref)).norm(dim=-1) / flat(ref).norm(dim=-1).clamp_min(1e-12)
