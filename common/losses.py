"""SAM3-style set loss (transformers ships none): Hungarian matching + classification, box, mask, presence.

Per (image, phrase) pair:
- **presence**: BCE on the *unclamped* presence logit of every decoder layer (target 1 if the phrase
  has any GT instance); a phrase absent from the image trains only this term (no query targets),
  as in SAM3's training.
- **classification**: BCE with ``pos_weight`` on query logits of positive pairs (matched queries = 1).
  Calibration (pilot, ARCHITECTURE.md): focal α = 0.25 left the best query at ≈ 0.26 so nothing
  passed sigmoid(q)·sigmoid(p) > 0.3; a positive weight (Meta uses 10; the pilot measured 5) fixes it.
- **box**: L1 + GIoU on matched queries (xyxy in [0,1]).
- **mask**: BCE + Dice on matched queries (last decoder layer; GT area-downsampled to mask size),
  plus a semantic-seg BCE on the union mask.
- auxiliary losses: classification, box and presence on every intermediate decoder layer
  (matching done per layer), weighted by ``aux_weight``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from common.forward import PairOutputs


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms; ``total = Σ weight·term``."""

    presence: float = 2.0
    cls: float = 2.0
    box_l1: float = 5.0
    box_giou: float = 2.0
    mask_bce: float = 5.0
    mask_dice: float = 5.0
    semantic: float = 1.0
    cls_pos_weight: float = 5.0
    aux_weight: float = 0.5  # weight of each intermediate layer relative to the last
    presence_pos_weight: float | None = None  # class balance of the presence BCE (pilot: #negatives per positive)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Target:
    """GT of one pair at mask resolution: ``masks`` float [n, h, w] in [0,1], ``boxes`` xyxy [n, 4]."""

    masks: torch.Tensor
    boxes: torch.Tensor

    @property
    def present(self) -> bool:
        return self.masks.shape[0] > 0

    def to(self, device: torch.device) -> "Target":
        return Target(self.masks.to(device), self.boxes.to(device))


def make_target(masks: np.ndarray, size: int) -> Target:
    """Target from bool GT masks ``[n, H, W]`` (any H, W): area-downsampled masks and normalised boxes."""
    if masks.shape[0] == 0:
        return Target(torch.zeros(0, size, size), torch.zeros(0, 4))
    m = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None]
    small = F.interpolate(m, size=(size, size), mode="area")[:, 0] if m.shape[-1] != size else m[:, 0]
    h, w = masks.shape[1:]
    boxes = []
    for mk in masks:
        ys, xs = np.nonzero(mk)
        if len(xs) == 0:
            raise ValueError("a GT instance has an empty mask")
        boxes.append([xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h])
    return Target(small, torch.tensor(boxes, dtype=torch.float32))


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise GIoU between xyxy boxes ``a`` [n,4] and ``b`` [m,4] -> [n, m]."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    iou = inter / union.clamp(min=1e-7)
    lt_c = torch.min(a[:, None, :2], b[None, :, :2])
    rb_c = torch.max(a[:, None, 2:], b[None, :, 2:])
    area_c = (rb_c - lt_c).clamp(min=0).prod(-1)
    return iou - (area_c - union) / area_c.clamp(min=1e-7)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row soft Dice loss of flattened mask logits vs targets -> [n]."""
    p = logits.sigmoid()
    return 1 - (2 * (p * target).sum(-1) + 1) / (p.sum(-1) + target.sum(-1) + 1)


def hungarian_match(logits: torch.Tensor, boxes: torch.Tensor, target: Target,
                    mask_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal query↔GT assignment for one pair (scipy ``linear_sum_assignment``).

    Cost = −2·p(query) + 5·L1(box) − 2·GIoU (+ 2·Dice cost when mask logits are given).
    Returns (query indices, GT indices).
    """
    with torch.no_grad():
        cost = -2 * logits.sigmoid()[:, None] + 5 * torch.cdist(boxes, target.boxes, p=1)
        cost = cost - 2 * generalized_box_iou(boxes, target.boxes)
        if mask_logits is not None:
            p = mask_logits.flatten(1).sigmoid()
            g = target.masks.flatten(1)
            cost = cost + 2 * (1 - (2 * p @ g.T + 1) / (p.sum(-1)[:, None] + g.sum(-1)[None] + 1))
    qi, gi = linear_sum_assignment(cost.cpu().numpy())
    dev = logits.device
    return torch.as_tensor(qi, dtype=torch.long, device=dev), torch.as_tensor(gi, dtype=torch.long, device=dev)


def set_loss(out: PairOutputs, targets: list[Target], w: LossWeights) -> dict[str, torch.Tensor]:
    """All loss terms (each a scalar, mean per pair / per GT instance) and their weighted ``total``, on the outputs'
    device (the targets are moved there)."""
    L, N, Q = out.logits.shape
    if len(targets) != N:
        raise ValueError(f"{len(targets)} targets for {N} pairs")
    dev = out.logits.device
    targets = [t.to(dev) for t in targets]
    layer_w = torch.tensor([w.aux_weight] * (L - 1) + [1.0], device=dev)
    layer_w = layer_w / layer_w.sum()

    present = torch.tensor([float(t.present) for t in targets], device=dev)
    ppw = None if w.presence_pos_weight is None else torch.tensor(w.presence_pos_weight, device=dev)
    pres = sum(layer_w[l] * F.binary_cross_entropy_with_logits(out.presence[l], present, pos_weight=ppw) for l in range(L))
    terms: dict[str, torch.Tensor] = {"presence": pres}

    pos = [i for i, t in enumerate(targets) if t.present]
    zero = out.logits.sum() * 0.0
    cls = box_l1 = box_giou = zero
    mask_bce = mask_dice = semantic = zero
    if pos:
        n_gt = sum(targets[i].boxes.shape[0] for i in pos)
        row_of = {int(r): k for k, r in enumerate(out.mask_rows)}
        pw = torch.tensor(w.cls_pos_weight, device=dev)
        for l in range(L):
            cls_l = box_l1_l = giou_l = zero
            for i in pos:
                t = targets[i]
                last = l == L - 1
                mlog = out.masks[row_of[i]] if (last and out.masks is not None and i in row_of) else None
                qi, gi = hungarian_match(out.logits[l, i], out.boxes[l, i], t, mlog)
                tgt = torch.zeros(Q, device=dev)
                tgt[qi] = 1.0
                cls_l = cls_l + F.binary_cross_entropy_with_logits(out.logits[l, i], tgt, pos_weight=pw, reduction="sum")
                box_l1_l = box_l1_l + F.l1_loss(out.boxes[l, i, qi], t.boxes[gi], reduction="sum")
                giou_l = giou_l + (1 - torch.diag(generalized_box_iou(out.boxes[l, i, qi], t.boxes[gi]))).sum()
                if mlog is not None:
                    pm = mlog[qi].flatten(1)
                    gm = t.masks[gi].flatten(1)
                    mask_bce = mask_bce + F.binary_cross_entropy_with_logits(pm, gm, reduction="none").mean(-1).sum()
                    mask_dice = mask_dice + dice_loss(pm, gm).sum()
            cls = cls + layer_w[l] * cls_l / n_gt
            box_l1 = box_l1 + layer_w[l] * box_l1_l / n_gt
            box_giou = box_giou + layer_w[l] * giou_l / n_gt
        mask_bce = mask_bce / n_gt
        mask_dice = mask_dice / n_gt
    if out.semantic is not None and len(out.mask_rows):
        sem_t = torch.stack([targets[int(r)].masks.amax(0) if targets[int(r)].present
                             else torch.zeros(out.semantic.shape[-2:], device=dev) for r in out.mask_rows])
        semantic = F.binary_cross_entropy_with_logits(out.semantic[:, 0], sem_t)
    terms.update(cls=cls, box_l1=box_l1, box_giou=box_giou, mask_bce=mask_bce, mask_dice=mask_dice, semantic=semantic)
    weights = w.to_dict()
    terms["total"] = sum(weights[k] * v for k, v in terms.items() if k in weights)
    return terms
