"""Model builder, groups, name map, tokenizer, pixels, checkpoints, and the shared-vision forward."""
import numpy as np
import pytest
import torch

from common.forward import forward_pairs
from common.model import (FINE_GROUPS, MODULES, PRESENCE_PREFIXES, SPECS, WordTokenizer, build_model, build_config,
                          count_params, fine_group_of, load_into, load_sam3, load_state, module_of, original_name,
                          save_model, to_pixels)

TOK = WordTokenizer(["red", "kite", "dial", "bezel", "metal"], max_len=6)


@pytest.fixture(scope="module")
def micro():
    return build_model("micro", len(TOK), seed=0)


def test_micro_forward_matches_hf_forward(micro):
    """forward_pairs (one ViT pass per image) equals Sam3Model.forward run per pair."""
    s = SPECS["micro"].image_size
    px = torch.randn(2, 3, s, s)
    ids, am = TOK(["red kite", "dial", "metal dial"])
    idx = torch.tensor([0, 1, 1])
    with torch.no_grad():
        ours = forward_pairs(micro, px, ids, am, idx)
        ref = micro(pixel_values=px[idx], input_ids=ids, attention_mask=am)
    assert ours.logits.shape[0] == SPECS["micro"].decoder_layers
    torch.testing.assert_close(ours.logits[-1], ref.pred_logits)
    torch.testing.assert_close(ours.masks, ref.pred_masks)
    torch.testing.assert_close(ours.boxes[-1], ref.pred_boxes)
    torch.testing.assert_close(ours.presence[-1], ref.presence_logits.squeeze(-1))


def test_presence_logit_unclamped(micro):
    assert micro.detr_decoder.clamp_presence_logit_max_val == float("inf")


def test_tiny_keeps_six_fusion_six_decoder_layers_and_presence_gate():
    cfg = build_config(SPECS["tiny"], 100)
    assert cfg.detr_encoder_config.num_layers == 6 and cfg.detr_decoder_config.num_layers == 6
    model = build_model("tiny", 100)
    gate = [n for n, _ in model.named_parameters() if n.startswith(PRESENCE_PREFIXES)]
    assert len(gate) == 9  # token + LayerNorm (2) + 3 linears (6)
    d = SPECS["tiny"].hidden
    # token d + LN 2d + (d·d + d)·2 + d + 1
    assert count_params(model, gate) == d + 2 * d + 2 * (d * d + d) + d + 1


def test_every_parameter_has_one_module_and_one_fine_group(micro):
    for n, _ in micro.named_parameters():
        assert module_of(n) in MODULES
        assert fine_group_of(n) in dict(FINE_GROUPS)
    assert module_of("detr_encoder.layers.4.cross_attn.q_proj.weight") == "F"
    assert fine_group_of("detr_decoder.layers.2.text_cross_attn.k_proj.weight") == "decoder_ca_text"
    assert fine_group_of("detr_decoder.presence_layer_norm.bias") == "presence_head"


def test_original_names():
    assert original_name("detr_encoder.layers.4.mlp.fc1.weight") == "transformer.encoder.layers.4.mlp.fc1.weight"
    assert original_name("detr_decoder.presence_layer_norm.bias") == "transformer.decoder.presence_token_out_norm.bias"
    assert original_name("detr_decoder.presence_head.layer1.weight") == "transformer.decoder.presence_token_head.layers.0.weight"
    assert original_name("detr_decoder.layers.3.text_cross_attn.q_proj.weight") == "transformer.decoder.layers.3.ca_text.q_proj.weight"
    assert original_name("detr_decoder.layers.3.vision_cross_attn.q_proj.weight") == "transformer.decoder.layers.3.cross_attn.q_proj.weight"
    assert original_name("dot_product_scoring.query_proj.weight") == "dot_prod_scoring.hs_proj.weight"
    assert original_name("vision_encoder.backbone.layers.7.attention.k_proj.weight") == "backbone.vision_backbone.trunk.blocks.7.attn.qkv.weight"


def test_tokenizer_pads_and_rejects_long_phrases():
    ids, am = TOK(["red kite", "unknownword"])
    assert ids[0, :4].tolist() == [TOK.BOS, TOK.index["red"], TOK.index["kite"], TOK.EOS]
    assert am[0].tolist() == [1, 1, 1, 1, 0, 0]
    assert ids[1, 1].item() == TOK.UNK
    with pytest.raises(ValueError, match="holds 4"):
        TOK(["red kite dial bezel metal"])


def test_to_pixels_normalises_and_resizes():
    im = np.full((20, 30, 3), 255, np.uint8)
    px = to_pixels([im], 16)
    assert px.shape == (1, 3, 16, 16)
    torch.testing.assert_close(px, torch.ones_like(px))
    with pytest.raises(ValueError, match="uint8"):
        to_pixels([im.astype(np.float32)], 16)


def test_checkpoint_roundtrip_and_named_errors(tmp_path, micro):
    path = save_model(micro, tmp_path / "m.safetensors")
    other = build_model("micro", len(TOK), seed=1)
    load_into(other, load_state(path))
    for (n, a), (_, b) in zip(micro.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), n
    state = load_state(path)
    state["detr_decoder.presence_head.layer3.bias"] = torch.zeros(7)
    with pytest.raises(ValueError, match="presence_head.layer3.bias"):
        load_into(other, state)
    with pytest.raises(FileNotFoundError, match="missing checkpoint"):
        load_state(tmp_path / "nope.safetensors")


def test_sam3_scale_needs_a_local_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="SAM3 checkpoint not found"):
        load_sam3(tmp_path / "sam3")


def test_pick_device_names_what_it_cannot_use(monkeypatch):
    from common.model import DEVICE_ENV, pick_device, run_device

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    with pytest.raises(ValueError, match="expected auto, cpu, cuda"):
        pick_device("tpu")
    with pytest.raises(ValueError, match="cuda:99"):
        pick_device("cuda:99")  # no machine here has 100 GPUs; without CUDA the message says so
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert run_device() == torch.device("cpu")  # the research scripts' default: where every published number was made


def test_image_batches_group_pairs_by_image_in_path_order():
    from types import SimpleNamespace

    from common.forward import image_batches

    class DS:
        def image(self, p):
            return np.full((2, 2, 3), ord(p.path[-1]), dtype=np.uint8)

    ds = DS()
    items = [(ds, SimpleNamespace(path=f"img{c}", phrase=ph)) for c, ph in
             [("b", "x"), ("a", "y"), ("b", "z"), ("c", "w")]]
    got = list(image_batches(items, 2))
    assert [g[0] for g in got] == [[1, 0, 2], [3]]  # a's pair, then b's two in item order; c in the next batch
    assert [g[2] for g in got] == [["y", "x", "z"], ["w"]]
    assert got[0][3].tolist() == [0, 1, 1] and got[1][3].tolist() == [0]
    assert [int(im[0, 0, 0]) for im in got[0][1]] == [ord("a"), ord("b")]
