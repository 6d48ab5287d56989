"""Training engine at micro scale: two recipes train and evaluate; resume equals an uninterrupted run;
frozen tensors stay byte-identical; NaN losses stop the run; the committed base matches the code."""
import hashlib

import pytest
import torch

from common import recipes, runs
from common.evaluate import evaluate_model
from common.io import read_json
from common.model import load_state


@pytest.fixture(autouse=True)
def runs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "runs"))


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()


def test_two_recipes_train_and_evaluate():
    for name in ("frozen_te", "lvis_replay_neg", "lora_r8_a8"):
        run = runs.train(name, "micro", progress=False)
        assert run.summary["steps"] == 3 and len(run.log) == 3
        assert all(r["loss_per_sample"] > 0 for r in run.log)
        per_device = max(s.images for s in recipes.RECIPES[name].streams)  # full recipes 1 image, LoRA 4
        assert all(r["loss_scaled"] == pytest.approx(r["loss_per_sample"] * per_device ** 0.5) for r in run.log)
    scores = evaluate_model(runs.load_model("frozen_te", "micro"), "micro")
    assert set(scores) == {"watch", "saco", "lvis"}
    assert 0.0 <= scores["watch"]["iou"] <= 1.0 and len(scores["watch"]["per_task_iou"]) == scores["watch"]["n_tasks"]
    assert 0.0 <= scores["saco"]["neg_correct"] <= 1.0


def test_frozen_tensors_are_byte_identical_to_base():
    base = runs.load_model("base", "micro")
    before = {n: _digest(p) for n, p in base.named_parameters()}
    runs.train("fusion_only", "micro", progress=False)
    tuned = runs.load_model("fusion_only", "micro")
    changed = {n for n, p in tuned.named_parameters() if _digest(p) != before[n]}
    assert changed, "fusion_only trained nothing"
    assert all(n.startswith(tuple(f"detr_encoder.layers.{i}." for i in range(5))) for n in changed)


def test_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    ref = runs.train("frozen_te", "micro", progress=False)
    ref_state = load_state(ref.final)
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "runs2"))
    calls = {"n": 0}
    accum = recipes.resolve("frozen_te", "micro").grad_accum  # extra_loss runs once per micro-batch

    def crash_at_third_step(model):
        calls["n"] += 1
        if calls["n"] == 2 * accum + 1:
            raise KeyboardInterrupt("simulated stop")
        return torch.zeros(())

    with pytest.raises(KeyboardInterrupt):
        runs.train("frozen_te", "micro", progress=False, extra_loss=crash_at_third_step)
    d = runs.run_dir("frozen_te", "micro")
    assert (d / "resume.safetensors").exists() and not (d / "done.json").exists()
    resumed = runs.train("frozen_te", "micro", progress=False)
    assert [r["step"] for r in resumed.log] == [1, 2, 3]
    for k, v in load_state(resumed.final).items():
        torch.testing.assert_close(v, ref_state[k], rtol=0, atol=1e-6, msg=k)


def test_nan_loss_stops_with_a_clear_message():
    with pytest.raises(FloatingPointError, match="non-finite loss at step 1"):
        runs.train("frozen_te", "micro", progress=False, extra_loss=lambda m: torch.tensor(float("nan")))


def test_committed_base_manifest_matches_the_code():
    if not runs.BASE_MANIFEST.exists():
        pytest.skip("no committed tiny base yet")
    from common.worlds import worlds_hash

    manifest = read_json(runs.BASE_MANIFEST)
    assert manifest["config_hash"] == runs.base_hash("tiny", worlds_hash("tiny")), \
        "the committed base checkpoint was made by another config: run `make base`"
    assert runs.BASE_CHECKPOINT.exists()


def test_mask_readout_covers_positive_pairs(monkeypatch, tmp_path):
    """mask_readout scores every positive pair once; the best query is at least as good as any single kept mask,
    and the kept / GT areas are the read-out's and the GT's union areas."""
    import numpy as np

    from common.data import load_pairs
    from common.evaluate import mask_readout, predict
    from common.metrics import mask_iou, union_mask
    from common.model import SPECS
    from common.worlds import ensure_worlds

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "runs"))
    ds = load_pairs(ensure_worlds(scale="micro")["watch_test"])
    model = runs.load_model("base", "micro")
    tok = runs.tokenizer_for("micro")
    pos = [p for p in ds if p.masks][:12]
    out = mask_readout(model, ds, tok, SPECS["micro"].image_size, pos)
    assert set(out) == {p.pair_id for p in pos}
    for pred in predict(model, ds, tok, SPECS["micro"].image_size, pos):
        r = out[pred.pair.pair_id]
        gt = union_mask(ds.gt_masks(pred.pair))
        assert r["gt_area"] == pytest.approx(gt.mean())
        assert r["kept_area"] == pytest.approx(union_mask(pred.kept.masks, gt.shape).mean())
        assert 0.0 <= r["best_query_iou"] <= 1.0
    for pred in predict(model, ds, tok, SPECS["micro"].image_size, pos, threshold=0.0):
        if pred.kept.masks.shape[0]:
            gt = union_mask(ds.gt_masks(pred.pair), pred.kept.masks.shape[1:])
            assert out[pred.pair.pair_id]["best_query_iou"] >= max(mask_iou(m, gt) for m in pred.kept.masks) - 1e-9
    assert np.isfinite([r["kept_area"] for r in out.values()]).all()


def test_sam3_per_group_learning_rates():
    """SAM3's trainer: vision LR × scale × decay^(L − block), embeddings decay^(L+1), neck × scale, text × its scale."""
    from dataclasses import replace

    from common.model import build_model
    from common.train import lr_scale_of, param_groups

    r = replace(recipes.RECIPES["all_trainable"], vision_lr_scale=0.5, vision_lr_decay=0.8, text_lr_scale=0.1)
    assert lr_scale_of("vision_encoder.backbone.layers.3.mlp.fc1.weight", r, 4) == pytest.approx(0.5 * 0.8)
    assert lr_scale_of("vision_encoder.backbone.layers.0.mlp.fc1.weight", r, 4) == pytest.approx(0.5 * 0.8 ** 4)
    assert lr_scale_of("vision_encoder.backbone.embeddings.patch_embeddings.projection.weight", r, 4) == \
        pytest.approx(0.5 * 0.8 ** 5)
    assert lr_scale_of("vision_encoder.neck.fpn_layers.0.proj1.weight", r, 4) == pytest.approx(0.5)
    assert lr_scale_of("text_encoder.text_model.final_layer_norm.weight", r, 4) == pytest.approx(0.1)
    assert lr_scale_of("detr_encoder.layers.0.mlp.fc1.weight", r, 4) == 1.0
    default = recipes.RECIPES["lora_r8_a8"]  # no scales set: one LR for every tensor
    assert lr_scale_of("vision_encoder.backbone.layers.0.mlp.fc1.weight", default, 4) == 1.0
    full = recipes.RECIPES["all_trainable"]  # the full fine-tunes use SAM3's ratios
    assert lr_scale_of("text_encoder.text_model.final_layer_norm.weight", full, 4) == pytest.approx(5e-5 / 8e-4)
    model = build_model("micro", 40)
    trainable = dict(model.named_parameters())
    groups = param_groups(model, trainable, r)
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    assert len({g["lr_scale"] for g in groups}) == len(groups) and max(g["lr_scale"] for g in groups) == 1.0


def test_runpool_progress_line_reads_step_loss_and_eta(tmp_path, monkeypatch):
    """The periodic line `make table-9.15` prints for runs training in worker processes."""
    import json

    from common import runpool, runs

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path))
    d = runs.run_dir("frozen_te", "micro")
    d.mkdir(parents=True)
    assert runpool.progress_line("frozen_te", "micro") is None  # nothing logged yet
    (d / "config.json").write_text(json.dumps({"recipe": {"steps": 100}}))
    (d / "log.jsonl").write_text("\n".join(json.dumps({"step": s, "loss_per_sample": 2.0 / s, "elapsed_s": 3.0 * s})
                                           for s in (1, 2, 25)) + "\n")
    assert runpool.progress_line("frozen_te", "micro") == "frozen_te: step 25/100, loss 0.080, ETA 3.8 min"


def test_evaluation_split_into_pair_chunks_predicts_the_same(monkeypatch):
    """At sam3 scale one evaluation forward takes 5 pairs (their fusion tokens and 200 × 288² mask logits); chunking the
    pairs of an image batch, the vision pass shared, gives the predictions of one forward; the same for capture_pairs."""
    from common import evaluate
    from common.data import load_pairs
    from common.worlds import ensure_worlds

    model = runs.load_model("base", "micro")
    ds = load_pairs(ensure_worlds(scale="micro")["saco_gold"])
    pairs = list(ds)[:24]
    tok, size = runs.tokenizer_for("micro"), runs.image_size("micro")
    whole = evaluate.predict(model, ds, tok, size, pairs, threshold=0.0)
    from transformers import Sam3Config

    from common import forward

    tiny = runs.fresh_model("tiny", len(runs.tokenizer_for("tiny")))
    assert forward.pairs_per_forward(tiny, masks=True) > 16 * 40  # micro/tiny batches (≤ 16 images × 40 phrases) stay whole
    with torch.device("meta"):  # the real SAM3's sizes: 5 pairs with masks, 6 without
        from transformers import Sam3Model

        real = Sam3Model(Sam3Config())
    assert (forward.pairs_per_forward(real, masks=True), forward.pairs_per_forward(real, masks=False)) == (5, 6)
    monkeypatch.setattr(forward, "PAIR_BYTES_PER_FORWARD", 1)  # one pair per forward
    assert forward.pairs_per_forward(model, masks=True) == 1
    split = evaluate.predict(model, ds, tok, size, pairs, threshold=0.0)
    assert [p.pair.pair_id for p in split] == [p.pair.pair_id for p in whole]
    for a, b in zip(split, whole):
        assert a.presence_logits == pytest.approx(b.presence_logits, abs=1e-5)
        assert a.kept.scores == pytest.approx(b.kept.scores, abs=1e-5)
    from common.activations import capture_pairs

    items = [(ds, p) for p in pairs]
    mods = {"q0": (model.detr_decoder.presence_layer_norm, "input")}
    one, logit_one = capture_pairs(model, items, tok, size, mods)
    monkeypatch.undo()
    many, logit_many = capture_pairs(model, items, tok, size, mods)
    assert torch.allclose(one["q0"], many["q0"], atol=1e-5) and torch.allclose(logit_one, logit_many, atol=1e-5)


def test_vision_cache_is_bounded_and_gives_the_same_features():
    """The frozen-ViT cache keeps at most its byte limit (oldest dropped); a dropped image is recomputed, same features."""
    import numpy as np

    from common.train import Batch, VisionCache, _cached_vision

    model = runs.fresh_model("micro", len(runs.tokenizer_for("micro")))
    size = runs.image_size("micro")
    rng = np.random.default_rng(0)
    images = {f"im{i}": rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for i in range(4)}

    def batch(keys):
        return Batch([images[k] for k in keys], [], torch.zeros(0, dtype=torch.long), [], list(keys), "train")

    big, small = VisionCache(), VisionCache(limit=1)
    for keys in (["im0", "im1"], ["im2", "im3"], ["im0", "im2"]):
        a = _cached_vision(model, batch(keys), big, size, 0)
        b = _cached_vision(model, batch(keys), small, size, 0)
        for x, y in zip(a.fpn_hidden_states, b.fpn_hidden_states):
            assert torch.allclose(x, y, atol=1e-5)
    assert len(big.entries) == 4 and len(small.entries) == 1 and small.bytes <= big.bytes / 4 + 1
    assert small.bytes == VisionCache._size(next(iter(small.entries.values())))
