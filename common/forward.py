"""One forward pass for many (image, phrase) pairs, sharing each image's vision forward.

``Sam3Model.forward`` runs the ViT once per batch row and keeps only the last decoder layer. Training
and evaluation here need (a) several phrases per image at the cost of one ViT pass, and (b) every
decoder layer's query logits, boxes and presence logit (auxiliary losses, Post 02's per-layer
presence readout). This module composes the model's own sub-modules in the same order as
``Sam3Model.forward`` (text-only prompts), so the numbers are the model's, not a re-implementation.

Note (ARCHITECTURE.md): the fusion encoder's residual stream is the *image* tokens conditioned on the
prompt by cross-attention; ``encoder_hidden`` below is that stream's output, and the decoder's
presence slot is position 0 of each decoder layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from transformers.models.sam3.modeling_sam3 import box_cxcywh_to_xyxy, inverse_sigmoid

from common.model import device_of


@dataclass
class PairOutputs:
    """Per-pair predictions; L = decoder layers, N = pairs, Q = queries."""

    logits: torch.Tensor  # [L, N, Q] query classification logits (dot-product scoring)
    boxes: torch.Tensor  # [L, N, Q, 4] xyxy in [0, 1]
    presence: torch.Tensor  # [L, N] unclamped presence logits
    masks: torch.Tensor | None  # [M, Q, h, w] mask logits (last layer) for the pairs in ``mask_rows``
    semantic: torch.Tensor | None  # [M, 1, h, w] semantic-seg logits for ``mask_rows``
    mask_rows: torch.Tensor  # [M] indices into the N pairs

    def cpu(self) -> "PairOutputs":
        """The same outputs, detached, on the CPU (for post-processing in numpy)."""
        move = lambda t: None if t is None else t.detach().cpu()  # noqa: E731
        return PairOutputs(*(move(getattr(self, f)) for f in ("logits", "boxes", "presence", "masks", "semantic",
                                                               "mask_rows")))


def encode_vision(model: torch.nn.Module, pixel_values: torch.Tensor):
    """The ViT + neck forward (``Sam3Model.get_vision_features``); returns its output object."""
    return model.get_vision_features(pixel_values=pixel_values)


def forward_pairs(
    model: torch.nn.Module,
    pixel_values: torch.Tensor | None,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    image_index: torch.Tensor,
    mask_rows: torch.Tensor | None = None,
    vision=None,
) -> PairOutputs:
    """Run N (image, phrase) pairs; pair i uses image ``image_index[i]`` of ``pixel_values``.

    ``vision`` may carry a precomputed :func:`encode_vision` output (a frozen-vision cache);
    ``mask_rows`` selects the pairs that need masks (None = all; an empty tensor = none). Inputs are moved to the
    model's device; the outputs stay there.
    """
    dev = device_of(model)
    input_ids, attention_mask, image_index = input_ids.to(dev), attention_mask.to(dev), image_index.to(dev)
    if vision is None:
        if pixel_values is None:
            raise ValueError("forward_pairs needs pixel_values or a precomputed vision output")
        vision = encode_vision(model, pixel_values.to(dev))
    fpn = [f[image_index] for f in vision.fpn_hidden_states[:-1]]
    pos = [p[image_index] for p in vision.fpn_position_encoding[:-1]]

    text = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    text_mask = attention_mask.bool()
    enc = model.detr_encoder(vision_features=[fpn[-1]], text_features=text, vision_pos_embeds=[pos[-1]],
                             text_mask=text_mask)
    dec = model.detr_decoder(vision_features=enc.last_hidden_state, text_features=enc.text_features,
                             vision_pos_encoding=enc.pos_embeds_flattened, text_mask=text_mask,
                             spatial_shapes=enc.spatial_shapes)
    hs = dec.intermediate_hidden_states  # [L, N, Q, C]
    offsets = model.detr_decoder.box_head(hs)
    boxes = box_cxcywh_to_xyxy((inverse_sigmoid(dec.reference_boxes) + offsets).sigmoid())
    logits = model.dot_product_scoring(decoder_hidden_states=hs, text_features=enc.text_features,
                                       text_mask=text_mask).squeeze(-1)
    presence = dec.presence_logits.squeeze(-1)  # [L, N]

    n = input_ids.shape[0]
    rows = torch.arange(n, device=dev) if mask_rows is None else torch.as_tensor(mask_rows, dtype=torch.long, device=dev)
    masks = semantic = None
    if len(rows):
        md = model.mask_decoder(decoder_queries=hs[-1][rows], backbone_features=[f[rows] for f in fpn],
                                encoder_hidden_states=enc.last_hidden_state[rows], prompt_features=text[rows],
                                prompt_mask=text_mask[rows])
        masks, semantic = md.pred_masks, md.semantic_seg
    return PairOutputs(logits=logits, boxes=boxes, presence=presence, masks=masks, semantic=semantic,
                       mask_rows=rows)


def image_batches(items: Sequence[tuple], images_per_batch: int
                  ) -> Iterator[tuple[list[int], list[np.ndarray], list[str], torch.Tensor]]:
    """(dataset, pair) items grouped by image for :func:`forward_pairs`, ``images_per_batch`` images at a time (images
    in path order, each image's pairs in item order): (item indices, images, phrases, each item's image index)."""
    groups: dict[str, list[int]] = {}
    for i, (_, p) in enumerate(items):
        groups.setdefault(str(p.path), []).append(i)
    keys = sorted(groups)
    for b in range(0, len(keys), images_per_batch):
        chunk = keys[b:b + images_per_batch]
        idx = [i for k in chunk for i in groups[k]]
        images = [items[groups[k][0]][0].image(items[groups[k][0]][1]) for k in chunk]
        index = torch.tensor([j for j, k in enumerate(chunk) for _ in groups[k]], dtype=torch.long)
        yield idx, images, [items[i][1].phrase for i in idx], index


#: The memory one forward's pairs may take (bytes, estimated by :func:`pairs_per_forward`).
PAIR_BYTES_PER_FORWARD = 2 ** 31


def pairs_per_forward(model: torch.nn.Module, masks: bool) -> int:
    """How many pairs one no-grad forward after the vision pass takes so that their activations fit
    :data:`PAIR_BYTES_PER_FORWARD`: per pair, the fusion encoder's image tokens (×64 for its intermediates) and, with
    ``masks``, the mask logits. The real SAM3 (5,184 tokens of width 256; 200 queries × 288² masks) takes 5 pairs with
    masks, 6 without; micro/tiny batches are never split."""
    c = model.config
    h, w = c.vision_config.backbone_feature_sizes[0]
    per_pair = c.detr_encoder_config.hidden_size * (h // 4) * (w // 4) * 4 * 64
    if masks:
        per_pair += c.detr_decoder_config.num_queries * h * w * 4
    return max(1, PAIR_BYTES_PER_FORWARD // per_pair)
