"""``python -m common finetune --config`` (issue #19) at micro scale: the YAML schema's errors, each mode's trainable set,
best/last checkpoints that ``validate`` reads, a LoRA fine-tune from a ``prescribe`` output, and a 2-process gloo
``torchrun`` fine-tune whose per-step loss matches one process with the same global batch."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from common import commands, runs
from common.finetune import ConfigError, load_config, to_recipe
from common.io import read_json
from common.model import load_state
from common.train import read_log

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(runs_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("coco")
    commands.main(["make-example-data", str(d), "--scale", "micro", "--n-train", "4", "--n-valid", "2"])
    return d


def write(tmp_path: Path, **cfg) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump({"scale": "micro", "images_per_step": 2, "steps": 4, **cfg}))
    return p


def log_totals(out: Path) -> list[float]:
    return [row["total"] for row in read_log(out / "run" / "log.jsonl")]


# ----------------------------------------------------------------------------- the schema
@pytest.mark.parametrize("cfg, named", [
    ({"learning_rate": 1e-3}, "learning_rate"),  # unknown key
    ({"steps": "many"}, "steps"),  # wrong type
    ({"mode": "everything"}, "mode"),  # not one of the modes
    ({"lora": {"rank": 0}, "mode": "lora"}, "lora.rank"),  # out of range
    ({"lora": {"rnak": 4}, "mode": "lora"}, "lora.rnak"),  # unknown key in a section
    ({"mode": "lora"}, "needs a 'lora:' section"),
    ({"replay": {"data": "x", "every": 1}}, "replay.every"),
    ({"device": "tpu"}, "device"),  # not a device name
    ({"device": "cuda:99"}, "device"),  # a GPU this machine lacks
])
def test_config_errors_name_the_file_and_field(tmp_path, cfg, named):
    p = write(tmp_path, data=str(tmp_path), out="o", **cfg)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and named in str(e.value)


def test_config_missing_data_and_files(tmp_path, data):
    with pytest.raises(ConfigError, match="data"):
        load_config(write(tmp_path, out="o"))  # a required key
    with pytest.raises(FileNotFoundError, match="cfg.yaml"):
        load_config(tmp_path / "missing" / "cfg.yaml")
    cfg = load_config(write(tmp_path, data=str(tmp_path / "nowhere"), out="o"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        to_recipe(cfg)
    cfg = load_config(write(tmp_path, data=str(data), out="o", replay={"data": str(tmp_path / "gone")}))
    with pytest.raises(FileNotFoundError, match="gone"):
        to_recipe(cfg)


def test_relative_paths_read_against_the_config(tmp_path, data):
    shutil.copytree(data, tmp_path / "ds")
    cfg = load_config(write(tmp_path, data="ds", out="run1"))
    assert cfg.data == (tmp_path / "ds").resolve() and cfg.out == (tmp_path / "run1").resolve()
    assert to_recipe(cfg).streams[0].split == str((tmp_path / "ds" / "train" / "_annotations.coco.json").resolve())


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("mode, moved, kept", [
    ("frozen_te", "detr_encoder.", "text_encoder."),
    ("fusion_only", "detr_encoder.", "detr_decoder."),
])
def test_finetune_modes_train_their_modules_only(tmp_path, data, mode, moved, kept):
    out = tmp_path / "out"
    doc = commands.main(["finetune", "--config", str(write(tmp_path, data=str(data), out=str(out), mode=mode, lr=1e-2)),
                         "--no-progress"])
    base = runs.load_model("base", "micro").state_dict()
    last = load_state(out / "last.safetensors")
    changed = {k for k in base if not torch.equal(base[k], last[k])}
    assert any(k.startswith(moved) for k in changed) and not any(k.startswith(kept) for k in changed)
    assert doc["steps"] == 4 and [r["step"] for r in doc["checkpoints"]] == [1, 2, 3, 4]
    assert all(r["iou"] is not None and r["mAP"] is not None for r in doc["checkpoints"])
    assert (out / "best.safetensors").is_file() and (out / "finetune.md").is_file()
    # the written models are what validate reads
    v = commands.main(["validate", "--model", str(out / "best.safetensors"), "--data", str(data / "valid"),
                       "--scale", "micro", "--out", str(tmp_path / "val")])
    best = next(r for r in doc["checkpoints"] if r["step"] == doc["selected"]["step"])
    assert v["iou"] == pytest.approx(best["iou"]) and v["coco"]["mAP"] == pytest.approx(best["mAP"])


def test_a_finished_run_is_reused_and_a_changed_config_never_overwrites_it(tmp_path, data):
    out = tmp_path / "out"
    cfg = write(tmp_path, data=str(data), out=str(out), mode="fusion_only", lr=1e-3, steps=2)
    first = commands.main(["finetune", "--config", str(cfg), "--no-progress"])
    log = (out / "run" / "log.jsonl").read_bytes()
    again = commands.main(["finetune", "--config", str(cfg), "--no-progress"])  # reused: no step retrained
    assert (out / "run" / "log.jsonl").read_bytes() == log
    assert again["checkpoints"] == first["checkpoints"] and again["train_wall_s"] == first["train_wall_s"]
    assert load_state(out / "last.safetensors").keys() == load_state(out / "best.safetensors").keys()
    with pytest.raises(ConfigError, match=r"another config \(differs in: recipe\.lr\)"):
        commands.main(["finetune", "--config", str(write(tmp_path, data=str(data), out=str(out), mode="fusion_only",
                                                          lr=2e-3, steps=2)), "--no-progress"])
    assert (out / "run" / "log.jsonl").read_bytes() == log


def test_finetune_lora_from_a_prescription(tmp_path, data):
    # a partial fine-tune, its MP-rank prescription, then a LoRA fine-tune with those per-tensor ranks
    part = tmp_path / "part"
    commands.main(["finetune", "--config", str(write(tmp_path, data=str(data), out=str(part), mode="full", lr=1e-2)),
                   "--no-progress"])
    commands.main(["prescribe", "base", str(part / "last.safetensors"), "--scale", "micro", "--out", str(tmp_path / "rx")])
    out = tmp_path / "lora"
    cfg = write(tmp_path, data=str(data), out=str(out), mode="lora",
                lora={"prescription": str(tmp_path / "rx"), "targets": ["detr_encoder."]},
                replay={"data": str(data / "valid"), "every": 2}, negatives={"data": str(data), "every": 3}, steps=6)
    recipe = to_recipe(load_config(cfg))
    assert recipe.adapter.ranks and all(r >= 0 for _, r in recipe.adapter.ranks)
    doc = commands.main(["finetune", "--config", str(cfg), "--no-progress"])
    assert (out / "last_adapter" / "adapter_config.json").is_file()
    base = runs.load_model("base", "micro").state_dict()
    last = load_state(out / "last.safetensors")
    assert set(last) == set(base)  # merged into plain weights
    streams = {k for row in read_log(out / "run" / "log.jsonl") for k in row if k.startswith("stream_")}
    assert streams == {"stream_train", "stream_valid", "stream_train#2"} and doc["trainable_params"] > 0


@pytest.mark.parametrize("mode", [{"mode": "frozen_te"}, {"mode": "lora", "lora": {"rank": 4, "targets": ["detr_encoder."]}}])
def test_torchrun_two_processes_match_one(tmp_path, data, mode):
    cfg = write(tmp_path, data=str(data), out=str(tmp_path / "one"), lr=1e-3, steps=4, device="cpu", **mode)  # gloo
    commands.main(["finetune", "--config", str(cfg), "--no-progress"])
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "common", "finetune",
                        "--config", str(cfg), "--out", str(tmp_path / "two"), "--no-progress"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    one, two = log_totals(tmp_path / "one"), log_totals(tmp_path / "two")
    assert len(one) == len(two) == 4
    # each process normalises its shard's loss by its own GT count, so the two agree closely but not bit for bit
    assert two == pytest.approx(one, rel=0.03)
    doc = read_json(tmp_path / "two" / "finetune.json")
    assert doc["world_size"] == 2 and doc["device"] == "cpu" and doc["peak_memory_gib"]["rss"] > 0
    assert load_state(tmp_path / "two" / "last.safetensors").keys() == load_state(tmp_path / "one" / "last.safetensors").keys()


def test_an_empty_shard_still_reaches_every_trainable_tensor(tmp_path, data):
    """A process whose shard of a step holds no pairs returns a zero loss wired to every trainable tensor, so DDP's
    all-reduce sees its (zero) gradients instead of waiting for them."""
    from common.train import Batch, PairLoss

    recipe = to_recipe(load_config(write(tmp_path, data=str(data), out="o", mode="frozen_te")))
    model, tok, _ = runs.prepare(recipe, "micro")
    trainable = runs.trainable_params(model, recipe)
    empty = Batch([], [], torch.zeros(0, dtype=torch.long), [], [], "train")
    loss, terms = PairLoss(model, recipe, runs.image_size("micro"), vision_frozen=True)(empty, tok, 0, 1)
    loss.backward()
    assert float(loss.detach()) == 0.0 and terms == {}
    assert all(p.grad is not None and not p.grad.any() for p in trainable.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_gpu_finetune_matches_the_cpu(tmp_path, data, monkeypatch):
    """The same fine-tune on the GPU and on the CPU: the per-step losses agree to float tolerance, and validate scores
    the GPU's best checkpoint on the GPU as the fine-tune did."""
    from common.model import DEVICE_ENV

    monkeypatch.setenv(DEVICE_ENV, "cpu")  # the commands set it; restored after the test
    outs = {}
    for dev in ("cpu", "cuda"):
        cfg = write(tmp_path, data=str(data), out=str(tmp_path / dev), lr=1e-3, steps=4, device=dev)
        outs[dev] = commands.main(["finetune", "--config", str(cfg), "--no-progress"])
    assert log_totals(tmp_path / "cuda") == pytest.approx(log_totals(tmp_path / "cpu"), rel=1e-3)
    assert outs["cuda"]["device"].startswith("cuda") and outs["cuda"]["peak_memory_gib"]["gpu"] > 0
    v = commands.main(["validate", "--model", outs["cuda"]["best"], "--data", str(data / "valid"), "--scale", "micro",
                       "--device", "cuda", "--out", str(tmp_path / "v")])
    best = next(r for r in outs["cuda"]["checkpoints"] if r["step"] == outs["cuda"]["selected"]["step"])
    assert v["coco"]["mAP"] == pytest.approx(best["mAP"], abs=1e-6) and v["iou"] == pytest.approx(best["iou"], abs=1e-6)


def test_images_per_step_must_split_over_the_processes():
    from common.train import shard

    assert shard(4, 2, 0) == [0, 2] and shard(4, 2, 1) == [1, 3] and shard(3, 1, 0) == [0, 1, 2]
    with pytest.raises(ValueError, match="multiple of the process count"):
        shard(3, 2, 0)
