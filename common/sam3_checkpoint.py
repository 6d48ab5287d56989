"""Meta's original SAM3 checkpoint layout (``sam3.pt``) <-> transformers' ``Sam3Model`` names.

Meta's training code (facebookresearch/sam3) saves the image model under its own module names
(``backbone.vision_backbone.trunk.blocks.N.attn.qkv``, ``transformer.decoder.layers.N.ca_text``, ...) and
fuses attention projections: the ViT's ``attn.qkv`` is one ``[3d, d]`` linear, and every
``nn.MultiheadAttention`` (CLIP text encoder, geometry encoder, fusion encoder, decoder, mask decoder) keeps
``in_proj_weight [3d, d]`` / ``in_proj_bias [3d]`` beside ``out_proj``. transformers' ``Sam3Model`` has
separate ``q_proj`` / ``k_proj`` / ``v_proj`` and ``o_proj`` (``out_proj`` in the CLIP text encoder).

This module maps one onto the other, tensor by tensor, through :data:`RULES` (a table written for this
project, checked against the module names of both codebases):

- :func:`meta_to_hf` renames and splits; a key that no rule maps raises ``KeyError`` (no weight is dropped
  silently) unless it is on the explicit :data:`DROPPED` list (tensors ``Sam3Model`` has no slot for);
- :func:`hf_to_meta` is its inverse (fuses q/k/v back), e.g. to write a fine-tune in Meta's layout;
- :func:`load_meta_checkpoint` reads a ``.pt`` / ``.pth`` / ``.safetensors`` file in Meta's layout into a
  ``Sam3Model`` strictly (missing, unexpected or mis-shaped tensors name the file and the tensors).

Two tensors change shape besides the fused projections: the ViT's ``pos_embed`` carries a cls-token slot in
front (``[1, 1 + N, d]``, e.g. 577 = 1 + 24² in SAM3) that Meta's ViT discards (``retain_cls_token=False``) and
HF does not store (``[1, N, d]``); and the CLIP ``text_projection`` is a raw ``[width, proj]`` matrix in Meta's
code but a ``Linear`` weight ``[proj, width]`` in HF (transposed).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from transformers import Sam3Config, Sam3Model

from common.model import UNCLAMPED

#: Leading prefixes that wrap the image model in Meta's checkpoints: ``detector.`` in the released ``sam3.pt``
#: (image detector + video tracker in one file), ``sam3_model.`` in some training-code checkpoints.
STRIP_PREFIXES = ("sam3_model.", "detector.")

#: Meta tensors that ``Sam3Model`` has no slot for, as (regex on the prefix-stripped key, why). Only these are
#: dropped by :func:`meta_to_hf`; every other key must map or it raises.
DROPPED: tuple[tuple[str, str], ...] = (
    (r"^backbone\.vision_backbone\.trunk\.blocks\.\d+\.attn\.freqs_cis$",
     "precomputed ViT RoPE table; HF recomputes it (a non-persistent buffer)"),
    (r"^geometry_encoder\.points_(direct|pool|pos_enc)_project\.(weight|bias)$",
     "point-prompt projections; HF's Sam3 geometry encoder encodes boxes only (points go through Sam3Tracker)"),
    (r"^tracker\.",
     "SAM3's video tracker stored beside the detector in sam3.pt (HF: Sam3TrackerModel / Sam3VideoModel)"),
    (r"^inst_interactive_predictor\.",
     "the same tracker when saved inside Meta's image model (enable_inst_interactivity=True)"),
    (r"^backbone\.vision_backbone\.sam2_convs\.",
     "the tracker's own FPN neck (HF: tracker_neck), built when Meta enables instance interactivity"),
)
_DROPPED_RE = [re.compile(p) for p, _ in DROPPED]


# --------------------------------------------------------------------------- the name table
@dataclass(frozen=True)
class Rule:
    """One Meta <-> HF name pattern.

    Placeholders: ``{n}`` a layer index (same on both sides); ``{k}`` (Meta, 0-based) <-> ``{k1}`` (HF, k + 1);
    ``{p}`` the parameter leaf (``weight`` / ``bias``). A ``fused`` rule's HF side holds ``{qkv}``: one Meta
    tensor ``[3d, ...]`` <-> three HF tensors ``q``, ``k``, ``v`` stacked in that order along dim 0.
    ``transform`` names a shape change (``"cls_pos"``, ``"transpose"``); ``inverse=False`` marks a Meta alias
    that :func:`hf_to_meta` never writes.
    """

    meta: str
    hf: str
    fused: bool = False
    transform: str | None = None
    inverse: bool = True


def _mha(meta: str, hf: str, out: str = "o_proj") -> list[Rule]:
    """An ``nn.MultiheadAttention`` in Meta's code <-> HF's separate q/k/v/o projections."""
    return [Rule(f"{meta}.in_proj_{{p}}", f"{hf}.{{qkv}}_proj.{{p}}", fused=True),
            Rule(f"{meta}.out_proj.{{p}}", f"{hf}.{out}.{{p}}")]


def _mlp(meta: str, hf: str) -> list[Rule]:
    """Meta's ``MLP.layers.{0,1,..}`` <-> HF's ``Sam3DecoderMLP.layer{1,2,..}`` (any depth)."""
    return [Rule(f"{meta}.layers.{{k}}.{{p}}", f"{hf}.layer{{k1}}.{{p}}")]


def _encoder_layer(meta: str, hf: str) -> list[Rule]:
    """Meta's ``TransformerEncoderLayer`` (self_attn, cross_attn_image, linear1/2, norm1/2/3) <-> HF's
    geometry / fusion encoder layer."""
    return [*_mha(f"{meta}.self_attn", f"{hf}.self_attn"),
            *_mha(f"{meta}.cross_attn_image", f"{hf}.cross_attn"),
            Rule(f"{meta}.linear1.{{p}}", f"{hf}.mlp.fc1.{{p}}"),
            Rule(f"{meta}.linear2.{{p}}", f"{hf}.mlp.fc2.{{p}}"),
            *(Rule(f"{meta}.norm{i}.{{p}}", f"{hf}.layer_norm{i}.{{p}}") for i in (1, 2, 3))]


_VIT, _HVIT = "backbone.vision_backbone.trunk", "vision_encoder.backbone"
_NECK, _HNECK = "backbone.vision_backbone.convs.{n}", "vision_encoder.neck.fpn_layers.{n}"
_TXT, _HTXT = "backbone.language_backbone.encoder", "text_encoder"
_GEO, _DEC, _SEG = "geometry_encoder", "transformer.decoder", "segmentation_head"

#: The full table, Meta -> HF. Every HF ``Sam3Model`` state-dict key is the image of exactly one rule.
RULES: tuple[Rule, ...] = (
    # --- vision trunk (ViT-L, RoPE, windowed + 4 global blocks)
    Rule(f"{_VIT}.patch_embed.proj.weight", f"{_HVIT}.embeddings.patch_embeddings.projection.weight"),
    Rule(f"{_VIT}.pos_embed", f"{_HVIT}.embeddings.position_embeddings", transform="cls_pos"),
    Rule(f"{_VIT}.ln_pre.{{p}}", f"{_HVIT}.layer_norm.{{p}}"),
    Rule(f"{_VIT}.blocks.{{n}}.norm1.{{p}}", f"{_HVIT}.layers.{{n}}.layer_norm1.{{p}}"),
    Rule(f"{_VIT}.blocks.{{n}}.norm2.{{p}}", f"{_HVIT}.layers.{{n}}.layer_norm2.{{p}}"),
    Rule(f"{_VIT}.blocks.{{n}}.attn.qkv.{{p}}", f"{_HVIT}.layers.{{n}}.attention.{{qkv}}_proj.{{p}}", fused=True),
    Rule(f"{_VIT}.blocks.{{n}}.attn.proj.{{p}}", f"{_HVIT}.layers.{{n}}.attention.o_proj.{{p}}"),
    Rule(f"{_VIT}.blocks.{{n}}.mlp.fc1.{{p}}", f"{_HVIT}.layers.{{n}}.mlp.fc1.{{p}}"),
    Rule(f"{_VIT}.blocks.{{n}}.mlp.fc2.{{p}}", f"{_HVIT}.layers.{{n}}.mlp.fc2.{{p}}"),
    # --- vision neck (FPN levels): a 4x level has two transposed convs (HF scale_layers.0 / .2, a GELU
    # between), a 2x level one, a 0.5x level a max-pool (no tensors). hf_to_meta writes dconv_2x2 and renames
    # it dconv_2x2_0 on levels that also have dconv_2x2_1 (see _name_fpn_4x).
    Rule(f"{_NECK}.dconv_2x2.{{p}}", f"{_HNECK}.scale_layers.0.{{p}}"),
    Rule(f"{_NECK}.dconv_2x2_0.{{p}}", f"{_HNECK}.scale_layers.0.{{p}}", inverse=False),
    Rule(f"{_NECK}.dconv_2x2_1.{{p}}", f"{_HNECK}.scale_layers.2.{{p}}"),
    Rule(f"{_NECK}.conv_1x1.{{p}}", f"{_HNECK}.proj1.{{p}}"),
    Rule(f"{_NECK}.conv_3x3.{{p}}", f"{_HNECK}.proj2.{{p}}"),
    # --- text encoder (CLIP-style, 24 resblocks in SAM3) and its resizer to the DETR width
    Rule(f"{_TXT}.token_embedding.weight", f"{_HTXT}.text_model.embeddings.token_embedding.weight"),
    Rule(f"{_TXT}.positional_embedding", f"{_HTXT}.text_model.embeddings.position_embedding.weight"),
    Rule(f"{_TXT}.ln_final.{{p}}", f"{_HTXT}.text_model.final_layer_norm.{{p}}"),
    Rule(f"{_TXT}.text_projection", f"{_HTXT}.text_projection.weight", transform="transpose"),
    *_mha(f"{_TXT}.transformer.resblocks.{{n}}.attn", f"{_HTXT}.text_model.encoder.layers.{{n}}.self_attn",
          out="out_proj"),
    Rule(f"{_TXT}.transformer.resblocks.{{n}}.ln_1.{{p}}", f"{_HTXT}.text_model.encoder.layers.{{n}}.layer_norm1.{{p}}"),
    Rule(f"{_TXT}.transformer.resblocks.{{n}}.ln_2.{{p}}", f"{_HTXT}.text_model.encoder.layers.{{n}}.layer_norm2.{{p}}"),
    Rule(f"{_TXT}.transformer.resblocks.{{n}}.mlp.c_fc.{{p}}", f"{_HTXT}.text_model.encoder.layers.{{n}}.mlp.fc1.{{p}}"),
    Rule(f"{_TXT}.transformer.resblocks.{{n}}.mlp.c_proj.{{p}}", f"{_HTXT}.text_model.encoder.layers.{{n}}.mlp.fc2.{{p}}"),
    Rule("backbone.language_backbone.resizer.{p}", "text_projection.{p}"),
    # --- geometry (box-prompt) encoder
    *(Rule(f"{_GEO}.{m}.{{p}}", f"{_GEO}.{m}.{{p}}") for m in (
        "label_embed", "cls_embed", "boxes_direct_project", "boxes_pool_project", "boxes_pos_enc_project",
        "final_proj")),
    Rule(f"{_GEO}.img_pre_norm.{{p}}", f"{_GEO}.vision_layer_norm.{{p}}"),
    Rule(f"{_GEO}.norm.{{p}}", f"{_GEO}.prompt_layer_norm.{{p}}"),
    Rule(f"{_GEO}.encode_norm.{{p}}", f"{_GEO}.output_layer_norm.{{p}}"),
    *_encoder_layer(f"{_GEO}.encode.{{n}}", f"{_GEO}.layers.{{n}}"),
    # --- fusion encoder F[N] (image tokens cross-attend to the prompt)
    *_encoder_layer("transformer.encoder.layers.{n}", "detr_encoder.layers.{n}"),
    # --- DETR decoder D[N], box head, presence gate
    *(Rule(f"{_DEC}.{m}.weight", f"detr_decoder.{m}.weight") for m in (
        "query_embed", "reference_points", "presence_token")),
    Rule(f"{_DEC}.norm.{{p}}", "detr_decoder.output_layer_norm.{p}"),
    Rule(f"{_DEC}.presence_token_out_norm.{{p}}", "detr_decoder.presence_layer_norm.{p}"),
    *_mlp(f"{_DEC}.presence_token_head", "detr_decoder.presence_head"),
    *_mlp(f"{_DEC}.bbox_embed", "detr_decoder.box_head"),
    *_mlp(f"{_DEC}.ref_point_head", "detr_decoder.ref_point_head"),
    *_mlp(f"{_DEC}.boxRPB_embed_x", "detr_decoder.box_rpb_embed_x"),
    *_mlp(f"{_DEC}.boxRPB_embed_y", "detr_decoder.box_rpb_embed_y"),
    *_mha(f"{_DEC}.layers.{{n}}.self_attn", "detr_decoder.layers.{n}.self_attn"),
    *_mha(f"{_DEC}.layers.{{n}}.ca_text", "detr_decoder.layers.{n}.text_cross_attn"),
    *_mha(f"{_DEC}.layers.{{n}}.cross_attn", "detr_decoder.layers.{n}.vision_cross_attn"),
    Rule(f"{_DEC}.layers.{{n}}.norm1.{{p}}", "detr_decoder.layers.{n}.vision_cross_attn_layer_norm.{p}"),
    Rule(f"{_DEC}.layers.{{n}}.catext_norm.{{p}}", "detr_decoder.layers.{n}.text_cross_attn_layer_norm.{p}"),
    Rule(f"{_DEC}.layers.{{n}}.norm2.{{p}}", "detr_decoder.layers.{n}.self_attn_layer_norm.{p}"),
    Rule(f"{_DEC}.layers.{{n}}.norm3.{{p}}", "detr_decoder.layers.{n}.mlp_layer_norm.{p}"),
    Rule(f"{_DEC}.layers.{{n}}.linear1.{{p}}", "detr_decoder.layers.{n}.mlp.fc1.{p}"),
    Rule(f"{_DEC}.layers.{{n}}.linear2.{{p}}", "detr_decoder.layers.{n}.mlp.fc2.{p}"),
    # --- query-text scoring
    *_mlp("dot_prod_scoring.prompt_mlp", "dot_product_scoring.text_mlp"),
    Rule("dot_prod_scoring.prompt_mlp.out_norm.{p}", "dot_product_scoring.text_mlp_out_norm.{p}"),
    Rule("dot_prod_scoring.prompt_proj.{p}", "dot_product_scoring.text_proj.{p}"),
    Rule("dot_prod_scoring.hs_proj.{p}", "dot_product_scoring.query_proj.{p}"),
    # --- mask decoder (Meta: segmentation_head)
    Rule(f"{_SEG}.pixel_decoder.conv_layers.{{n}}.{{p}}", "mask_decoder.pixel_decoder.conv_layers.{n}.{p}"),
    Rule(f"{_SEG}.pixel_decoder.norms.{{n}}.{{p}}", "mask_decoder.pixel_decoder.norms.{n}.{p}"),
    Rule(f"{_SEG}.mask_predictor.mask_embed.layers.{{n}}.{{p}}", "mask_decoder.mask_embedder.layers.{n}.{p}"),
    Rule(f"{_SEG}.mask_embed.layers.{{n}}.{{p}}", "mask_decoder.mask_embedder.layers.{n}.{p}", inverse=False),
    Rule(f"{_SEG}.instance_seg_head.{{p}}", "mask_decoder.instance_projection.{p}"),
    Rule(f"{_SEG}.semantic_seg_head.{{p}}", "mask_decoder.semantic_projection.{p}"),
    *_mha(f"{_SEG}.cross_attend_prompt", "mask_decoder.prompt_cross_attn"),
    Rule(f"{_SEG}.cross_attn_norm.{{p}}", "mask_decoder.prompt_cross_attn_norm.{p}"),
)

_GROUPS = {"n": r"(?P<n>\d+)", "k": r"(?P<k>\d+)", "k1": r"(?P<k1>\d+)", "p": r"(?P<p>weight|bias)",
           "qkv": r"(?P<qkv>[qkv])"}


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ...
    return re.compile("^" + "".join(re.escape(s) if i % 2 == 0 else _GROUPS[s] for i, s in enumerate(parts)) + "$")


def _fill(template: str, fields: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: fields[m.group(1)], template)


_COMPILED = [(r, _compile(r.meta), _compile(r.hf)) for r in RULES]


def _strip_prefix(key: str) -> str:
    for prefix in STRIP_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _is_dropped(key: str) -> bool:
    return any(p.search(key) for p in _DROPPED_RE)


def _listed(keys: Iterable[str], n: int = 5) -> str:
    keys = list(keys)
    return f"{keys[:n]}{f' ... ({len(keys)} in all)' if len(keys) > n else ''}"


def _match_meta(key: str) -> tuple[Rule, dict[str, str]] | None:
    for rule, meta_re, _ in _COMPILED:
        m = meta_re.match(key)
        if m:
            fields = m.groupdict()
            if "k" in fields:
                fields["k1"] = str(int(fields["k"]) + 1)
            return rule, fields
    return None


def _match_hf(key: str) -> tuple[Rule, dict[str, str]] | None:
    for rule, _, hf_re in _COMPILED:
        if not rule.inverse:
            continue
        m = hf_re.match(key)
        if m:
            fields = m.groupdict()
            if "k1" in fields:
                if int(fields["k1"]) < 1:
                    continue
                fields["k"] = str(int(fields["k1"]) - 1)
            return rule, fields
    return None


def meta_name(hf_key: str) -> str:
    """Meta's name of an HF ``Sam3Model`` tensor (q/k/v all give the fused ``qkv`` / ``in_proj_*`` name).

    FPN 4x levels are named ``dconv_2x2`` here; the state-dict converter :func:`hf_to_meta` writes
    ``dconv_2x2_0`` for them (it sees the level's second transposed conv)."""
    hit = _match_hf(hf_key)
    if hit is None:
        raise KeyError(f"no Meta name for HF tensor {hf_key!r}")
    rule, fields = hit
    return _fill(rule.meta, fields)


# --------------------------------------------------------------------------- shape changes
def _is_square(n: int) -> bool:
    return n >= 1 and math.isqrt(n) ** 2 == n


def _pos_to_hf(t: torch.Tensor) -> torch.Tensor:
    """Drop the leading cls-token slot of Meta's ``pos_embed`` ([1, 1 + N, d] -> [1, N, d], N a square)."""
    if t.dim() == 3 and _is_square(t.shape[1] - 1) and not _is_square(t.shape[1]):
        return t[:, 1:]
    return t  # already without a cls slot (Meta's ViT built with pretrain_use_cls_token=False)


def _pos_to_meta(t: torch.Tensor) -> torch.Tensor:
    """Put back Meta's cls-token slot (zeros: Meta's ViT discards it, so its value is never read)."""
    return torch.cat([torch.zeros_like(t[:, :1]), t], dim=1)


_TO_HF: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "cls_pos": _pos_to_hf, "transpose": lambda t: t.t().contiguous()}
_TO_META: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "cls_pos": _pos_to_meta, "transpose": lambda t: t.t().contiguous()}


# --------------------------------------------------------------------------- converters
def _convert_to_hf(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """HF state dict and, per HF key, the Meta key it came from."""
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unmapped: list[str] = []
    for raw_key, tensor in state.items():
        key = _strip_prefix(raw_key)
        if _is_dropped(key):
            continue
        hit = _match_meta(key)
        if hit is None:
            unmapped.append(raw_key)
            continue
        rule, fields = hit
        if rule.fused:
            if tensor.shape[0] % 3:
                raise ValueError(f"fused projection {raw_key!r} has shape {tuple(tensor.shape)}; dim 0 must be 3*d")
            pieces = dict(zip("qkv", torch.chunk(tensor, 3, dim=0)))
            targets = {_fill(rule.hf, {**fields, "qkv": c}): pieces[c] for c in "qkv"}
        else:
            targets = {_fill(rule.hf, fields): _TO_HF[rule.transform](tensor) if rule.transform else tensor}
        for hf_key, value in targets.items():
            if hf_key in out:
                raise KeyError(f"Meta tensors {origin[hf_key]!r} and {raw_key!r} both map to {hf_key!r}")
            out[hf_key] = value
            origin[hf_key] = raw_key
    if unmapped:
        raise KeyError(f"{len(unmapped)} Meta tensor(s) have no HF Sam3Model name: {_listed(unmapped)}")
    return out, origin


def meta_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict in Meta's layout to ``Sam3Model`` names, splitting fused ``qkv`` / ``in_proj_*``
    into ``q/k/v_proj``, dropping the cls slot of ``pos_embed`` and transposing the CLIP ``text_projection``.

    A leading ``sam3_model.`` / ``detector.`` is stripped; keys on :data:`DROPPED` are skipped; any other key
    without a rule raises ``KeyError`` naming the first few such keys."""
    return _convert_to_hf(state)[0]


def _name_fpn_4x(meta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta names a 4x FPN level's first transposed conv ``dconv_2x2_0`` (its second is ``dconv_2x2_1``)."""
    four_x = {m.group(1) for k in meta if (m := re.match(r"^backbone\.vision_backbone\.convs\.(\d+)\.dconv_2x2_1\.", k))}
    fpn = re.compile(r"^(backbone\.vision_backbone\.convs\.(\d+))\.dconv_2x2\.")
    return {fpn.sub(r"\1.dconv_2x2_0.", k) if (m := fpn.match(k)) and m.group(2) in four_x else k: v
            for k, v in meta.items()}


def hf_to_meta(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`meta_to_hf`: ``Sam3Model`` names -> Meta's names and shapes (q/k/v fused back into one
    ``[3d, ...]`` tensor, a zero cls slot put in front of ``pos_embed``, ``text_projection`` transposed).

    Tensors on :data:`DROPPED` (RoPE tables, point projections, tracker) are not produced. An HF key without a
    rule, or a q/k/v triple with a member missing, raises ``KeyError``."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    unmapped: list[str] = []
    for key, tensor in state.items():
        hit = _match_hf(key)
        if hit is None:
            unmapped.append(key)
            continue
        rule, fields = hit
        meta_key = _fill(rule.meta, fields)
        if rule.fused:
            fused.setdefault(meta_key, {})[fields["qkv"]] = tensor
        else:
            if meta_key in out:
                raise KeyError(f"two HF tensors map to Meta {meta_key!r}")
            out[meta_key] = _TO_META[rule.transform](tensor) if rule.transform else tensor
    if unmapped:
        raise KeyError(f"{len(unmapped)} HF tensor(s) have no Meta name: {_listed(unmapped)}")
    for meta_key, parts in fused.items():
        if set(parts) != set("qkv"):
            raise KeyError(f"Meta {meta_key!r} fuses q/k/v but the HF state has only {sorted(parts)} of them")
        out[meta_key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return _name_fpn_4x(out)


def dropped_keys(state: Iterable[str]) -> list[str]:
    """The keys of a Meta state dict that :func:`meta_to_hf` skips (on :data:`DROPPED`), for a report."""
    return [k for k in state if _is_dropped(_strip_prefix(k))]


# --------------------------------------------------------------------------- loading
def read_meta_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A Meta-layout checkpoint file as an HF-named state dict (:func:`meta_to_hf`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM3 checkpoint not found: {path}")
    return meta_to_hf(_read_state(path))


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch / safetensors raise their own types
        raise ValueError(f"unreadable SAM3 checkpoint {path}: {e}") from e
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (or a dict with 'model' / 'state_dict'), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: non-tensor entries in the state dict {_listed(bad)}")
    return obj


def load_meta_checkpoint(path: str | Path, config: Sam3Config | None = None) -> Sam3Model:
    """A ``Sam3Model`` (eval mode) holding the weights of a checkpoint in Meta's original layout.

    ``path`` is a ``.pt`` / ``.pth`` (``torch.load(weights_only=True)``; a top-level ``"model"`` or
    ``"state_dict"`` entry is unwrapped) or a ``.safetensors`` file. ``config`` defaults to ``Sam3Config()``,
    the real 840 M SAM3. Loading is strict: an unmapped, unexpected, missing or mis-shaped tensor, or a
    non-finite value, raises an error naming the file and the tensor(s). As every model this project builds,
    the presence logit is left unclamped (Meta's original behaviour; see ``common.model``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM3 checkpoint not found: {path}")
    raw = _read_state(path)
    try:
        state, origin = _convert_to_hf(raw)
    except KeyError as e:
        raise KeyError(f"{path}: {e.args[0]}") from e
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e

    model = Sam3Model(config if config is not None else Sam3Config())
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if unexpected:
        raise KeyError(f"{path}: tensor(s) the model does not have (Meta name -> HF name) "
                       f"{_listed(f'{origin[k]} -> {k}' for k in unexpected)}")
    if missing:
        raise KeyError(f"{path}: missing tensor(s) (HF name / Meta name) "
                       f"{_listed(f'{k} / {_safe_meta_name(k)}' for k in missing)}")
    wrong = [f"{origin[k]} (HF {k}): {tuple(v.shape)} in the file, model expects {tuple(own[k].shape)}"
             for k, v in state.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"{path}: mis-shaped tensor(s) {_listed(wrong, 3)}")
    bad = sorted({origin[k] for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()})
    if bad:
        raise ValueError(f"{path}: tensor(s) with NaN/inf values {_listed(bad)}")
    model.load_state_dict(state, strict=True)
    model.detr_decoder.clamp_presence_logit_max_val = UNCLAMPED
    return model.eval()


def _safe_meta_name(hf_key: str) -> str:
    try:
        return meta_name(hf_key)
    except KeyError:
        return "?"
