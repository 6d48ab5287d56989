"""Scale ``sam3`` end to end (issue #19): a small randomly initialised ``Sam3Model`` saved with ``save_pretrained`` (plus
a tokenizer, as a real SAM3 directory has) stands in for the real model; every CLI command runs on it through the sam3
code path (``--scale sam3 --checkpoint DIR``: tokenizer, image and mask sizes read from the directory), and the same
weights in Meta's original layout (``sam3.pt``) score exactly as the HF directory does."""
from __future__ import annotations

import os

import pytest
import torch
import yaml

from common import commands, runs
from common.model import DEVICE_ENV, SPECS, build_config, save_random_sam3
from common.sam3_checkpoint import hf_to_meta


@pytest.fixture(scope="module")
def sam3(runs_dir, tmp_path_factory):
    """(model directory, COCO data directory); $SAM3_REPRO_CHECKPOINT restored afterwards."""
    d = save_random_sam3(tmp_path_factory.mktemp("sam3_random"), build_config(SPECS["micro"], len(runs.tokenizer_for("micro"))))
    data = tmp_path_factory.mktemp("coco")
    commands.main(["make-example-data", str(data), "--scale", "micro", "--n-train", "4", "--n-valid", "2"])
    old = os.environ.get(runs.SAM3_ENV)
    yield d, data
    if old is None:
        os.environ.pop(runs.SAM3_ENV, None)
    else:
        os.environ[runs.SAM3_ENV] = old


def cli(*args, model_dir) -> dict:
    return commands.main([*args, "--scale", "sam3", "--checkpoint", str(model_dir)])


def test_sizes_and_tokenizer_come_from_the_directory(sam3):
    d, _ = sam3
    os.environ[runs.SAM3_ENV] = str(d)
    assert runs.image_size("sam3") == SPECS["micro"].image_size and runs.mask_size("sam3") == SPECS["micro"].mask_grid
    ids, am = runs.tokenizer_for("sam3")(["dial", "metal strap"])
    ref = runs.tokenizer_for("micro")(["dial", "metal strap"])
    assert torch.equal(ids, ref[0]) and torch.equal(am, ref[1])


def test_sam3_scale_needs_a_directory(sam3, tmp_path):
    os.environ.pop(runs.SAM3_ENV, None)
    with pytest.raises(ValueError, match="--checkpoint DIR"):
        runs.sam3_dir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        commands.main(["validate", "--model", "base", "--data", str(sam3[1] / "valid"), "--scale", "sam3",
                       "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o")])


def test_every_command_runs_through_the_sam3_path(sam3, tmp_path):
    d, data = sam3
    base = cli("validate", "--model", "base", "--data", str(data / "valid"), "--out", str(tmp_path / "v0"),
               "--prob-threshold", "0.0", model_dir=d)
    assert base["n_pairs"] > 0 and base["coco"]["mAP"] is not None
    # the same weights in Meta's layout score identically
    torch.save(hf_to_meta(runs.load_model("base", "sam3").state_dict()), tmp_path / "sam3.pt")
    meta = cli("validate", "--model", str(tmp_path / "sam3.pt"), "--data", str(data / "valid"), "--out",
               str(tmp_path / "v1"), "--prob-threshold", "0.0", model_dir=d)
    assert meta["iou"] == base["iou"] and meta["coco"] == base["coco"] and meta["saco"] == base["saco"]
    image = sorted((data / "valid").glob("*.png"))[0]
    inf = cli("infer", "--model", "base", "--image", str(image), "--phrases", "dial,crown", "--out", str(tmp_path / "i"),
              model_dir=d)
    assert [r["phrase"] for r in inf["results"]] == ["dial", "crown"] and (tmp_path / "i" / "overlay.png").is_file()
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(data), "out": str(tmp_path / "ft"), "scale": "sam3", "checkpoint": str(d),
                                   "mode": "lora", "lora": {"rank": 2}, "steps": 2, "images_per_step": 2, "lr": 1e-3}))
    ft = commands.main(["finetune", "--config", str(cfg), "--no-progress"])
    last = str(tmp_path / "ft" / "last.safetensors")
    assert ft["steps"] == 2 and os.path.isfile(last)
    diag = cli("diagnose", "base", last, "--out", str(tmp_path / "dg"), model_dir=d)
    assert diag["n_moved_tensors"] > 0 and all(t["tensor"].startswith("detr_encoder.") for t in diag["tensors"])
    rx = cli("prescribe", "base", last, "--out", str(tmp_path / "rx"), model_dir=d)
    assert (tmp_path / "rx" / "adapter_config.json").is_file() and rx["n_tensors"] > 0
    rep = cli("repair-presence", "--model", last, "--data", str(data / "train"), "--eval-data", str(data / "valid"),
              "--steps", "5", "--out", str(tmp_path / "rp"), model_dir=d)
    assert rep["steps"] == 5 and rep["trainable_params"] > 0 and "before" in rep and "after" in rep


def test_sam3_scale_check_micro(tmp_path, monkeypatch):
    """scripts/sam3_scale_check.py --size micro: every command of the sequence runs on a random SAM3 directory and gets
    a timed row (the full size is the GPU check)."""
    from pathlib import Path

    for env in (runs.RUNS_ENV, runs.SAM3_ENV, DEVICE_ENV):  # the script sets them; each is restored after the test
        monkeypatch.setenv(env, os.environ.get(env, "unset"))
        if os.environ[env] == "unset":
            monkeypatch.delenv(env)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import sam3_scale_check

    doc = sam3_scale_check.main(["--size", "micro", "--steps", "2", "--repair-steps", "3", "--device", "cpu",
                       "--work", str(tmp_path / "w"), "--out", str(tmp_path / "sam3-scale")])
    assert [(r["command"], r["mode"]) for r in doc["rows"]] == [
        ("save_random_sam3", "micro"), ("finetune", "lora"), ("finetune", "frozen_te"), ("validate", "lora"),
        ("repair-presence", "lora")]
    ft = [r for r in doc["rows"] if r["command"] == "finetune"]
    assert all(r["steps"] == 2 and r["s_per_step"] > 0 and r["peak_rss_gib"] > 0 for r in ft)
    assert ft[0]["trainable_params"] < ft[1]["trainable_params"]  # LoRA trains far fewer tensors than frozen-TE
    assert (tmp_path / "sam3-scale.md").read_text().startswith("# sam3-scale check (micro")
