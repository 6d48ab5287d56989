"""The user CLI (``python -m common``, issue #19) at micro scale on generated COCO data: each command end to end, the
mAP against pycocotools run on the same files, the SA-Co metrics against the project's metrics module, and the errors a
malformed input gets."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from common import commands, runs
from common.io import read_json


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(runs.RUNS_ENV, str(tmp_path_factory.mktemp("runs")))
        data = tmp_path_factory.mktemp("data")
        commands.main(["make-example-data", str(data), "--scale", "micro", "--n-train", "4", "--n-valid", "2"])
        yield data


def test_example_data_has_sam3_loras_layout(env):
    for split in ("train", "valid"):
        doc = read_json(env / split / "_annotations.coco.json")
        assert doc["images"] and doc["annotations"] and doc["categories"]
        assert all((env / split / im["file_name"]).is_file() for im in doc["images"])


def test_validate_micro_matches_cocoeval_and_the_metrics_module(env, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from common.data import load_pairs
    from common.evaluate import predict, score_saco
    from common.model import SPECS

    out = tmp_path / "val"
    doc = commands.main(["validate", "--model", "base", "--data", str(env / "valid"), "--scale", "micro", "--out", str(out),
                         "--prob-threshold", "0.0"])  # keep every query, so there is something to score
    assert (out / "validate.json").exists() and (out / "validate.md").exists() and doc["n_detections"] > 0
    gt = COCO(str(env / "valid" / "_annotations.coco.json"))
    ev = COCOeval(gt, gt.loadRes(str(out / "detections.json")), "segm")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert doc["coco"]["mAP"] == pytest.approx(ev.stats[0]) and doc["coco"]["AR100"] == pytest.approx(ev.stats[8])
    ds = load_pairs(env / "valid" / "_annotations.coco.json", negatives="absent_categories")
    preds = predict(runs.load_model("base", "micro"), ds, runs.tokenizer_for("micro"), SPECS["micro"].image_size,
                    threshold=0.0)
    ref = score_saco(ds, preds)
    assert doc["saco"]["cgF1"] == pytest.approx(ref["cgF1"]) and doc["saco"]["neg_correct"] == pytest.approx(ref["neg_correct"])


def test_infer_micro(env, tmp_path):
    image = sorted((env / "valid").glob("*.png"))[0]
    doc = commands.main(["infer", "--model", "base", "--image", str(image), "--phrases", "dial, case", "--scale", "micro",
                         "--out", str(tmp_path), "--prob-threshold", "0.0"])
    assert [r["phrase"] for r in doc["results"]] == ["dial", "case"]
    assert all(o["rle"]["counts"] and len(o["box_xywh"]) == 4 for r in doc["results"] for o in r["objects"])
    assert (tmp_path / "overlay.png").exists() and (tmp_path / "infer.json").exists()
    with pytest.raises(FileNotFoundError, match="nope.png"):
        commands.main(["infer", "--model", "base", "--image", str(tmp_path / "nope.png"), "--phrases", "dial",
                       "--scale", "micro", "--out", str(tmp_path)])


def test_diagnose_and_prescribe_micro(env, tmp_path):
    from peft import LoraConfig

    d = commands.main(["diagnose", "base", "frozen_te", "--scale", "micro", "--out", str(tmp_path / "d")])
    groups = {g["group"]: g for g in d["groups"]}
    assert groups["text_encoder"]["rel_change"] == 0 and groups["fusion_encoder"]["rel_change"] > 0  # frozen-TE
    assert d["tensors"] and all(t["mp_rank"] <= t["full_rank"] for t in d["tensors"])
    assert (tmp_path / "d" / "diagnose.png").exists()
    p = commands.main(["prescribe", "base", "frozen_te", "--scale", "micro", "--out", str(tmp_path / "p")])
    cfg = LoraConfig.from_pretrained(str(tmp_path / "p"))  # peft reads it unchanged
    assert p["n_adapted"] == sum(r > 0 for r in p["ranks"].values()) > 0
    assert {r for r in p["ranks"].values() if r > 0} <= set(cfg.rank_pattern.values()) | {cfg.r}


def test_malformed_inputs_name_the_file_and_field(env, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(env / "valid", bad)
    ann = bad / "_annotations.coco.json"
    doc = json.loads(ann.read_text())
    ann.write_text(json.dumps({k: v for k, v in doc.items() if k != "annotations"}))
    with pytest.raises(Exception, match="annotations"):
        commands.main(["validate", "--model", "base", "--data", str(bad), "--scale", "micro", "--out", str(tmp_path / "o")])
    ann.write_text(json.dumps({**doc, "annotations": [{**doc["annotations"][0], "image_id": 987654}]}))
    with pytest.raises(Exception, match="987654"):
        commands.main(["validate", "--model", "base", "--data", str(bad), "--scale", "micro", "--out", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="_annotations.coco.json"):
        commands.main(["validate", "--model", "base", "--data", str(tmp_path / "empty"), "--scale", "micro",
                       "--out", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        commands.main(["diagnose", "base", str(tmp_path / "missing.safetensors"), "--scale", "micro", "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o" / "validate.json").exists()  # nothing half-written


def test_repair_presence_micro_moves_only_the_gate_head(env, tmp_path):
    from common import presence
    from common.model import load_state

    doc = commands.main(["repair-presence", "--model", "base", "--data", str(env / "train"), "--eval-data", str(env / "valid"),
                         "--scale", "micro", "--out", str(tmp_path), "--steps", "5"])
    assert doc["n_pairs"]["pos"] == doc["n_pairs"]["neg"] > 0 and set(doc) >= {"before", "after", "repaired_checkpoint"}
    fixed, base = load_state(doc["repaired_checkpoint"]), runs.load_model("base", "micro").state_dict()
    moved = {k for k in fixed if not torch.equal(fixed[k].float(), base[k].float())}
    assert moved and all(k.startswith(presence.HEAD_PREFIXES) for k in moved)
    # the repaired file is a model every command reads; new data is a new run (its hash is in the recipe name)
    assert commands.main(["validate", "--model", doc["repaired_checkpoint"], "--data", str(env / "valid"), "--scale", "micro",
                          "--out", str(tmp_path / "v")])["n_pairs"] > 0
    other = presence.repair_recipe("base", "micro", data=str(env / "valid" / "_annotations.coco.json"))
    assert other.name != doc["recipe"]
