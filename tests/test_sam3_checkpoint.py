"""Meta's original SAM3 checkpoint layout <-> HF Sam3Model (common.sam3_checkpoint), on a micro model."""
from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file
from transformers import Sam3Config, Sam3Model

from common.model import build_model, original_name
from common.sam3_checkpoint import dropped_keys, hf_to_meta, load_meta_checkpoint, meta_name, meta_to_hf

QKV = "backbone.vision_backbone.trunk.blocks.{}.attn.qkv.{}"
TEXT_IN_PROJ = "backbone.language_backbone.encoder.transformer.resblocks.0.attn.in_proj_weight"
POS = "backbone.vision_backbone.trunk.pos_embed"


@pytest.fixture(scope="module")
def model():
    return build_model("micro", vocab_size=50)


@pytest.fixture(scope="module")
def sd(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def meta(sd):
    return hf_to_meta(sd)


def test_hf_to_meta_writes_meta_names_and_shapes(model, sd, meta):
    d = model.config.vision_config.backbone_config.hidden_size
    w = model.config.text_config.hidden_size
    assert meta[QKV.format(0, "weight")].shape == (3 * d, d)
    assert meta[QKV.format(1, "bias")].shape == (3 * d,)
    assert meta[TEXT_IN_PROJ].shape == (3 * w, w)
    for name in ("transformer.decoder.presence_token_head.layers.0.weight",
                 "transformer.decoder.presence_token_out_norm.weight", "transformer.decoder.presence_token.weight",
                 "transformer.encoder.layers.1.cross_attn_image.in_proj_weight",
                 "transformer.decoder.layers.0.ca_text.out_proj.bias", "transformer.decoder.layers.1.catext_norm.weight",
                 "geometry_encoder.encode.0.self_attn.in_proj_bias", "segmentation_head.cross_attend_prompt.in_proj_weight",
                 "dot_prod_scoring.hs_proj.weight", "backbone.language_backbone.resizer.weight",
                 "backbone.vision_backbone.convs.0.dconv_2x2_0.weight", "backbone.vision_backbone.convs.0.dconv_2x2_1.weight",
                 "backbone.vision_backbone.convs.1.dconv_2x2.weight"):
        assert name in meta, name
    assert "backbone.vision_backbone.convs.0.dconv_2x2.weight" not in meta  # a 4x level names its first conv _0
    assert not [k for k in meta if re.search(r"[qkv]_proj|^(vision_encoder|detr_|text_encoder|mask_decoder)\.", k)]
    # pos_embed gains Meta's (unused, zero) cls slot; the CLIP projection is Meta's raw [width, proj] matrix
    hf_pos = sd["vision_encoder.backbone.embeddings.position_embeddings"]
    assert meta[POS].shape == (1, hf_pos.shape[1] + 1, d)
    assert torch.equal(meta[POS][:, 0], torch.zeros_like(hf_pos[:, 0])) and torch.equal(meta[POS][:, 1:], hf_pos)
    assert torch.equal(meta["backbone.language_backbone.encoder.text_projection"], sd["text_encoder.text_projection.weight"].t())
    # parameter count is unchanged except the cls slot
    assert sum(v.numel() for v in meta.values()) == sum(v.numel() for v in sd.values()) + d


def test_fused_projections_stack_q_k_v_in_order(model, sd, meta):
    d = model.config.vision_config.backbone_config.hidden_size
    qkv = meta[QKV.format(0, "weight")]
    for i, c in enumerate("qkv"):
        assert torch.equal(qkv[i * d:(i + 1) * d], sd[f"vision_encoder.backbone.layers.0.attention.{c}_proj.weight"])
    hf = meta_to_hf(meta)
    h = model.config.detr_decoder_config.hidden_size
    in_proj = meta["transformer.decoder.layers.1.ca_text.in_proj_bias"]
    for i, c in enumerate("qkv"):
        assert torch.equal(hf[f"detr_decoder.layers.1.text_cross_attn.{c}_proj.bias"], in_proj[i * h:(i + 1) * h])


def test_round_trip_is_exact(sd, meta):
    back = meta_to_hf(meta)
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    again = hf_to_meta(back)  # and the other way round (the cls slot is zero both times)
    assert set(again) == set(meta) and all(torch.equal(again[k], v) for k, v in meta.items())


def _assert_same_state(loaded: Sam3Model, sd: dict[str, torch.Tensor]) -> None:
    got = loaded.state_dict()
    assert set(got) == set(sd)
    for k, v in sd.items():
        assert torch.equal(got[k], v), k


def test_load_meta_checkpoint_pt(tmp_path, model, sd, meta):
    path = tmp_path / "sam3.pt"
    torch.save(meta, path)
    loaded = load_meta_checkpoint(path, config=model.config)
    _assert_same_state(loaded, sd)
    assert not loaded.training
    assert loaded.detr_decoder.clamp_presence_logit_max_val == float("inf")  # Meta's unclamped presence logit


@pytest.mark.parametrize("wrapper", ["model", "state_dict"])
def test_load_wrapped_prefixed_checkpoint_with_dropped_tensors(tmp_path, model, sd, meta, wrapper):
    """sam3.pt wraps the detector as ``detector.*`` beside the tracker; RoPE tables and point projections go."""
    d = model.config.detr_decoder_config.hidden_size
    extra = {"backbone.vision_backbone.trunk.blocks.0.attn.freqs_cis": torch.zeros(16, 8, dtype=torch.complex64),
             "geometry_encoder.points_direct_project.weight": torch.zeros(d, 2),
             "geometry_encoder.points_pool_project.bias": torch.zeros(d)}
    state = {f"detector.{k}": v for k, v in {**meta, **extra}.items()}
    state["tracker.sam_mask_decoder.iou_token.weight"] = torch.zeros(1, d)
    assert sorted(dropped_keys(state)) == sorted([f"detector.{k}" for k in extra] + ["tracker.sam_mask_decoder.iou_token.weight"])
    path = tmp_path / "ckpt.pth"
    torch.save({wrapper: state, "epoch": 3}, path)
    _assert_same_state(load_meta_checkpoint(path, config=model.config), sd)


def test_load_safetensors(tmp_path, model, sd, meta):
    path = tmp_path / "sam3.safetensors"
    save_file({k: v.contiguous() for k, v in meta.items()}, str(path))
    _assert_same_state(load_meta_checkpoint(path, config=model.config), sd)


def test_unknown_key_raises_naming_it(tmp_path, model, meta):
    bad = {**meta, "transformer.decoder.mystery_head.weight": torch.zeros(2)}
    with pytest.raises(KeyError, match="mystery_head"):
        meta_to_hf(bad)
    path = tmp_path / "extra.pt"
    torch.save(bad, path)
    with pytest.raises(KeyError, match=r"extra\.pt.*mystery_head"):
        load_meta_checkpoint(path, config=model.config)


def test_mis_shaped_tensor_raises_naming_tensor_and_file(tmp_path, model, meta):
    name = "transformer.decoder.presence_token_head.layers.2.weight"
    path = tmp_path / "shapes.pt"
    torch.save({**meta, name: torch.zeros(2, 7)}, path)
    with pytest.raises(ValueError, match=r"shapes\.pt.*presence_token_head\.layers\.2\.weight.*presence_head\.layer3"):
        load_meta_checkpoint(path, config=model.config)
    path = tmp_path / "qkv.pt"
    torch.save({**meta, QKV.format(0, "weight"): torch.zeros(7, 4)}, path)
    with pytest.raises(ValueError, match=r"qkv\.pt.*attn\.qkv\.weight"):
        load_meta_checkpoint(path, config=model.config)


def test_missing_tensor_raises_naming_it(tmp_path, model, meta):
    path = tmp_path / "partial.pt"
    torch.save({k: v for k, v in meta.items() if k != "dot_prod_scoring.hs_proj.bias"}, path)
    with pytest.raises(KeyError, match=r"partial\.pt.*dot_product_scoring\.query_proj\.bias.*dot_prod_scoring\.hs_proj\.bias"):
        load_meta_checkpoint(path, config=model.config)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_meta_checkpoint(tmp_path / "nowhere.pt")


def test_hf_to_meta_refuses_incomplete_or_unknown(sd):
    partial = {k: v for k, v in sd.items() if k != "detr_encoder.layers.0.self_attn.k_proj.weight"}
    with pytest.raises(KeyError, match=r"transformer\.encoder\.layers\.0\.self_attn\.in_proj_weight"):
        hf_to_meta(partial)
    with pytest.raises(KeyError, match="lora_A"):
        hf_to_meta({**sd, "detr_encoder.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(1)})


def test_full_sam3_layout_shapes():
    """The default Sam3Config (the real 840 M SAM3), shapes only (meta device): Meta's names and shapes as in
    sam3.pt, 1,096 tensors once the 32 RoPE tables and 6 point projections are left out."""
    with torch.device("meta"):
        hf = Sam3Model(Sam3Config()).state_dict()
    meta = hf_to_meta(hf)
    assert len(meta) == 1096
    assert meta[POS].shape == (1, 577, 1024)
    assert meta[QKV.format(31, "weight")].shape == (3072, 1024)
    assert meta[TEXT_IN_PROJ].shape == (3072, 1024)
    assert meta["backbone.language_backbone.encoder.text_projection"].shape == (1024, 512)
    assert meta["transformer.decoder.layers.5.cross_attn.in_proj_weight"].shape == (768, 256)
    assert meta["geometry_encoder.encode.2.cross_attn_image.in_proj_bias"].shape == (768,)
    assert meta["backbone.vision_backbone.convs.0.dconv_2x2_1.weight"].shape == (512, 256, 2, 2)
    assert sum(k.startswith("backbone.vision_backbone.trunk.blocks.") for k in meta) == 32 * 12  # norm1, qkv, proj, norm2, fc1, fc2
    back = meta_to_hf(meta)
    assert set(back) == set(hf) and all(back[k].shape == v.shape for k, v in hf.items())


# --------------------------------------------------------------------------- agreement with common.model.original_name
def _translated_part(hf: str, orig: str) -> list[str]:
    """The leading components original_name rewrote: ``orig`` less its longest common component-suffix with ``hf``."""
    h, o = hf.split("."), orig.split(".")
    while h and o and h[-1] == o[-1]:
        h.pop()
        o.pop()
    return o


def test_original_name_agrees_with_meta_names(model, meta):
    # names the ARCHITECTURE.md name map covers in full translate to exactly our Meta key (q/k/v -> fused qkv)
    full = [hf for hf, _ in model.named_parameters()
            if re.match(r"^(detr_decoder\.presence_|dot_product_scoring\.(query|text)_proj\.|vision_encoder\.backbone\.layers\.\d+\.attention\.[qkv]_proj\.)", hf)]
    assert len(full) == 9 + 4 + 2 * 6
    for hf in full:
        assert original_name(hf) == meta_name(hf) and meta_name(hf) in meta, hf
    # elsewhere original_name (the posts' names in reports) may rewrite only a prefix, keeping HF's ending (e.g.
    # detr_encoder.layers.N.mlp.fc1 -> transformer.encoder.layers.N.mlp.fc1); that prefix must be Meta's
    wrong = {}
    for hf, _ in model.named_parameters():
        orig = original_name(hf)
        part = _translated_part(hf, orig)
        if orig != hf and orig != meta_name(hf) and meta_name(hf).split(".")[:len(part)] != part:
            wrong[hf] = (orig, meta_name(hf))
    assert not wrong, f"original_name disagrees with Meta's layout: {wrong}"
