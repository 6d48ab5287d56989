"""Activation probes on a model's internal streams (Post 01 §9 Table 9.4: fusion[5] norm inflation; Post 01 §4 Fig 4.3:
the mask-lens probe, :func:`mask_lens_iou`).

:func:`fusion_output_norm` hooks ``model.detr_encoder.layers[layer]`` (the post's
``transformer.encoder.layers.N``, F[N]) and averages the L2 norm of its output tokens over the watch
test (image, concept) pairs. In the HF code the fusion encoder's residual stream is the **image
tokens** (conditioned on the prompt by text cross-attention), so the norm is taken over image
tokens, one vector of width ``hidden`` per image patch; Post 01 describes the stream the other way
round. The Table 9.4 ratio is ``mean‖F[5] output‖(fine-tune) / mean‖F[5] output‖(base)``.

``layer`` is clipped to the model's last fusion layer (the micro model has two); the layer actually
hooked is returned. :func:`fusion_norm_run` caches the result beside a run, like
``common.evaluate.evaluate_run``.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from common.forward import encode_vision
from common.model import to_pixels


def _fusion_layers(model: torch.nn.Module):
    return model.detr_encoder.layers


@torch.no_grad()
def fusion_output_norm(model: torch.nn.Module, scale: str, layer: int = 5, split: str = "watch_test",
                       positives_only: bool = True, images_per_batch: int = 8) -> dict:
    """Mean L2 norm of F[``layer``]'s output image tokens over ``split``'s (image, phrase) pairs.

    Returns ``{"mean_norm", "n_pairs", "n_tokens", "layer", "module"}``.
    """
    from common.data import load_pairs
    from common import runs
    from common.worlds import ensure_worlds

    layers = _fusion_layers(model)
    li = min(layer, len(layers) - 1)
    ds = load_pairs(ensure_worlds(scale=scale)[split])
    tok = runs.tokenizer_for(scale)
    groups: dict[str, list] = defaultdict(list)
    for p in ds:
        if p.masks or not positives_only:
            groups[str(p.path)].append(p)
    keys = sorted(groups)
    captured: list[torch.Tensor] = []

    def hook(_m, _inp, out):
        captured.append((out[0] if isinstance(out, tuple) else out).detach())

    total, count, n_pairs = 0.0, 0, 0
    model.eval()
    handle = layers[li].register_forward_hook(hook)
    try:
        for b in range(0, len(keys), images_per_batch):
            chunk = keys[b:b + images_per_batch]
            images, phrases, idx = [], [], []
            for i, k in enumerate(chunk):
                images.append(ds.image(groups[k][0]))
                for p in groups[k]:
                    phrases.append(p.phrase)
                    idx.append(i)
            vision = encode_vision(model, to_pixels(images, runs.image_size(scale)))
            ii = torch.tensor(idx)
            ids, am = tok(phrases)
            text = model.get_text_features(input_ids=ids, attention_mask=am).pooler_output
            captured.clear()
            model.detr_encoder(vision_features=[vision.fpn_hidden_states[-2][ii]], text_features=text,
                               vision_pos_embeds=[vision.fpn_position_encoding[-2][ii]], text_mask=am.bool())
            if len(captured) != 1:
                raise RuntimeError(f"fusion layer {li} hook fired {len(captured)} times for one encoder forward")
            norms = captured[0].float().norm(dim=-1)  # [pairs, tokens]
            total += float(norms.sum())
            count += norms.numel()
            n_pairs += norms.shape[0]
    finally:
        handle.remove()
    if not count:
        raise ValueError(f"split {split!r} has no pairs to probe")
    return {"mean_norm": total / count, "n_pairs": n_pairs, "n_tokens": count, "layer": li,
            "module": f"detr_encoder.layers.{li}"}


def fusion_norm_run(name, scale: str, layer: int = 5, force: bool = False) -> dict:
    """:func:`fusion_output_norm` of recipe ``name`` (or "base"), cached as ``probe-fusion<L>-norm.json`` in its run dir."""
    from common import runs
    from common.io import atomic_write_json, read_json

    path = runs.artifact_dir(name, scale) / f"probe-fusion{layer}-norm.json"
    if path.exists() and not force:
        return read_json(path)
    out = fusion_output_norm(runs.load_model(name, scale), scale, layer)
    atomic_write_json(path, out)
    return out


def logistic_probe_auc(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                       l2: float = 1e-2) -> float:
    """Held-out ROC AUC of an L2-regularised logistic regression (features standardised on the train split,
    fitted by L-BFGS): how linearly readable a binary label is from an activation (Post 02 §5's question
    whether the presence gate's input still carries "present vs absent")."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    from common.metrics import presence_auc

    mu, sd = x_train.mean(0), x_train.std(0) + 1e-8
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    a1 = np.hstack([a, np.ones((len(a), 1))])
    y = np.asarray(y_train, dtype=np.float64)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = a1 @ w
        nll = -np.mean(y * log_expit(z) + (1 - y) * log_expit(-z)) + 0.5 * l2 * np.sum(w[:-1] ** 2)
        grad = a1.T @ (expit(z) - y) / len(y) + l2 * np.append(w[:-1], 0.0)
        return float(nll), grad

    w = minimize(loss, np.zeros(a1.shape[1]), jac=True, method="L-BFGS-B").x
    z = np.hstack([b, np.ones((len(b), 1))]) @ w
    yt = np.asarray(y_test) > 0.5
    return presence_auc(z[yt], z[~yt])


@dataclass
class LensSet:
    """One split's inputs to the mask-lens probe at one vision block (Post 01 Fig 4.3)."""

    tokens: torch.Tensor  # [n_images, T, d] the block's output tokens (T = the token grid, row-major)
    text: torch.Tensor  # [n_pairs, d_t] each pair's prompt embedding (the frozen base text features)
    image: torch.Tensor  # [n_pairs] long: which image a pair is on
    target: torch.Tensor  # [n_pairs, T] the GT union mask's area fraction in each token, in [0, 1]


def mask_lens_iou(train: LensSet, test: LensSet, rank: int = 32, steps: int = 400, lr: float = 1e-2,
                  batch: int = 256, seed: int = 0) -> dict:
    """Fit the mask-lens probe on ``train`` and score it on ``test`` (Post 01 §4, Fig 4.3: where the vision encoder
    first commits to the answer mask).

    The probe is a tiny prompt-conditioned bilinear head on one block's tokens h (standardised on the train tokens):
    ``logit(token) = (U h)·(V t) + w·h + c`` with U [rank, d], V [rank, d_t], trained by Adam on the per-token BCE
    against the area-fraction target. Its IoU is that of the thresholded prediction (σ > ½) with the target
    (> ½) on the token grid, averaged over the test pairs whose target covers at least one token. Returns
    ``{"iou", "n_pairs", "train_iou", "final_loss"}``.
    """
    for name, s in (("train", train), ("test", test)):
        if s.target.shape[0] != s.text.shape[0] or s.image.shape[0] != s.text.shape[0]:
            raise ValueError(f"mask lens {name}: {s.text.shape[0]} texts, {s.image.shape[0]} image indices and "
                             f"{s.target.shape[0]} targets")
        if s.target.shape[1] != s.tokens.shape[1]:
            raise ValueError(f"mask lens {name}: targets cover {s.target.shape[1]} tokens, the block has "
                             f"{s.tokens.shape[1]}")
    g = torch.Generator().manual_seed(seed)
    mu = train.tokens.reshape(-1, train.tokens.shape[-1]).mean(0)
    sd = train.tokens.reshape(-1, train.tokens.shape[-1]).std(0) + 1e-6
    d, dt = train.tokens.shape[-1], train.text.shape[-1]
    u = torch.nn.Parameter(torch.randn(rank, d, generator=g) / d ** 0.5)
    v = torch.nn.Parameter(torch.randn(rank, dt, generator=g) / dt ** 0.5)
    w = torch.nn.Parameter(torch.zeros(d))
    c = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([u, v, w, c], lr=lr)

    def logits(s: LensSet, idx: torch.Tensor) -> torch.Tensor:
        h = (s.tokens[s.image[idx]].float() - mu) / sd  # [b, T, d]
        q = s.text[idx].float() @ v.T  # [b, rank]
        return torch.einsum("btd,rd,br->bt", h, u, q) + h @ w + c

    n = train.text.shape[0]
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = torch.randint(n, (min(batch, n),), generator=g)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(train, idx), train.target[idx].float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    if not torch.isfinite(loss):
        raise FloatingPointError("mask lens: the probe's loss is not finite; lower the LR")

    @torch.no_grad()
    def iou(s: LensSet) -> tuple[float, int]:
        pred = torch.cat([logits(s, torch.arange(i, min(i + batch, len(s.text)))) for i in range(0, len(s.text), batch)]) > 0
        gt = s.target > 0.5
        keep = gt.any(1)
        if not keep.any():
            raise ValueError("mask lens: no pair's target covers a token; the token grid is too coarse for these masks")
        inter, union = (pred & gt)[keep].sum(1), (pred | gt)[keep].sum(1)
        return float((inter / union).mean()), int(keep.sum())

    test_iou, n_test = iou(test)
    return {"iou": test_iou, "n_pairs": n_test, "train_iou": iou(train)[0], "final_loss": float(loss.detach())}
