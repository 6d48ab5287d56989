"""Running the recipes of :mod:`common.recipes`: train one (or reuse its finished run), find its run directory, load
the model it leaves.

Runs are cached by config hash (recipe, scale, worlds, model widths and, recursively, the init run) under
``$SAM3_REPRO_RUNS`` (default ``data/runs/<scale>/<recipe>-<hash>/``: ``config.json``, ``log.jsonl``, step and final
checkpoints, ``done.json``); a lock file makes a second process wait for a run in progress and then reuse it.
``train(name, scale)`` runs a recipe and ``load_model(name, scale)`` returns the trained model (init chain + trained
tensors); ``"base"`` is the committed tiny base (or a base run where its hash does not match the code).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import replace
from pathlib import Path

import torch

from common.io import DATA, atomic_write_json, read_json
from common.model import SPECS, PhraseTokenizer, WordTokenizer, build_model, config_hash, load_into, load_sam3, load_state, run_device
from common.recipes import AdapterSpec, Recipe, resolve

#: The environment variable naming the runs cache (default ``data/runs``); tests point it at a temporary directory and
#: spawned worker processes inherit it (no module state to overwrite).
RUNS_ENV = "SAM3_REPRO_RUNS"
BASE_CHECKPOINT = DATA / "checkpoints" / "tiny_base.safetensors"
BASE_MANIFEST = DATA / "checkpoints" / "tiny_base.json"


#: Scale ``sam3``: the directory of the real model (``config.json``, safetensors weights, tokenizer files), set by the
#: CLI's ``--checkpoint`` (an environment variable, so torchrun's processes and spawned workers inherit it).
SAM3_ENV = "SAM3_REPRO_CHECKPOINT"
#: Full-model files a model reference may name: the project's safetensors (HF names) or Meta's original layout.
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


def sam3_dir() -> Path:
    """The real SAM3's directory (``$SAM3_REPRO_CHECKPOINT``); a clear error if unset or not a model directory."""
    d = os.environ.get(SAM3_ENV)
    if not d:
        raise ValueError("scale sam3 needs the real model on disk: --checkpoint DIR (a local SAM3 directory with "
                         "config.json, the safetensors weights and the tokenizer files; nothing is downloaded)")
    if not (Path(d) / "config.json").is_file():
        raise FileNotFoundError(f"--checkpoint {d}: no config.json there (expected a local SAM3 directory)")
    return Path(d)


def _sam3_config():
    return _config_at(str(sam3_dir()))


@functools.lru_cache(maxsize=4)
def _config_at(directory: str):
    """A SAM3 directory's config, read once (sizes and tokenizer length are asked for per command)."""
    from transformers import Sam3Config

    return Sam3Config.from_pretrained(directory, local_files_only=True)


def tokenizer_for(scale: str) -> WordTokenizer | PhraseTokenizer:
    """The micro/tiny word-level tokenizer (vocabulary fixed by the worlds' code), or the real SAM3's tokenizer read
    from its directory, padded to its text context (32 tokens)."""
    if scale == "sam3":
        from transformers import AutoTokenizer

        return PhraseTokenizer(AutoTokenizer.from_pretrained(str(sam3_dir()), local_files_only=True),
                               _sam3_config().text_config.max_position_embeddings)
    from common.worlds import vocabulary

    return WordTokenizer(vocabulary(), SPECS[scale].max_text_len)


def mask_size(scale: str) -> int:
    """Side of the predicted mask grid (the vision neck's finest level; 4× the ViT token grid at SAM3's scales)."""
    if scale == "sam3":
        return int(_sam3_config().vision_config.backbone_feature_sizes[0][0])
    return SPECS[scale].mask_grid


def image_size(scale: str) -> int:
    """Input side of the model's images (1008 for the real SAM3)."""
    if scale == "sam3":
        return int(_sam3_config().vision_config.backbone_config.image_size)
    return SPECS[scale].image_size


def data_hash(scale: str) -> str:
    """What a run's data and base depend on besides the recipe: the synthetic worlds' config (micro / tiny), or the
    real model's identity (its config and weight files' names and sizes) at scale sam3, whose streams are files."""
    if scale == "sam3":
        d = sam3_dir()
        files = sorted((p.name, p.stat().st_size) for p in d.iterdir() if p.suffix in (".safetensors", ".json"))
        return config_hash({"config": (d / "config.json").read_text(), "files": files})
    from common.worlds import worlds_hash

    return worlds_hash(scale)


def fresh_model(scale: str, vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A model to load a state into: a seeded micro/tiny build, or the real SAM3 with its own (base) weights, on
    :func:`common.model.run_device`."""
    model = load_sam3(sam3_dir()) if scale == "sam3" else build_model(scale, vocab_size, seed=seed)
    return model.to(run_device())


def trained_names(model: torch.nn.Module, recipe: Recipe) -> set[str]:
    """Names of the tensors ``recipe`` trains on ``model`` (an adapter recipe: the adapter tensors, which
    ``apply_adapter`` left trainable); its checkpoints hold exactly these."""
    if recipe.adapter is not None:
        return {n for n, p in model.named_parameters() if p.requires_grad}
    return {n for n, _ in model.named_parameters()
            if (recipe.trainable is None or n.startswith(recipe.trainable)) and not (recipe.frozen and n.startswith(recipe.frozen))}


def trainable_params(model: torch.nn.Module, recipe: Recipe) -> dict[str, torch.nn.Parameter]:
    """The recipe's trainable parameters (requires_grad set accordingly on every parameter)."""
    if recipe.adapter is not None:  # adapters were applied: exactly their tensors train
        out = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not out:
            raise ValueError(f"recipe {recipe.name}: adapter has no trainable tensors")
        return out
    names = trained_names(model, recipe)
    out = {}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
        if n in names:
            out[n] = p
    if not out:
        raise ValueError(f"recipe {recipe.name}: no trainable parameters")
    return out




def apply_adapter(model: torch.nn.Module, spec: AdapterSpec) -> torch.nn.Module:
    """Put the recipe's LoRA/AdaLoRA adapters on ``model`` (fresh init; every other tensor frozen)."""
    from common import lora

    if spec.ranks:
        ranks = dict(spec.ranks)
        if spec.kind != "lora":
            raise ValueError("per-tensor rank prescriptions are for LoRA")
        return lora.add_lora(model, lora.prescription_spec(ranks, boost=spec.boost, scaling=spec.scaling))
    targets = lora.linear_names(model, include=list(spec.targets), exclude=list(spec.exclude))
    if spec.kind == "lora":
        return lora.add_lora(model, lora.make_spec(targets, spec.rank, spec.alpha, scaling=spec.scaling))
    if spec.kind == "adalora":
        return lora.add_adalora(model, targets, spec.rank, spec.alpha, init=spec.init)
    raise ValueError(f"unknown adapter kind {spec.kind!r}")


def adapter_loss(spec: AdapterSpec):
    """AdaLoRA's regulariser (L1 on λ + orthogonality) as an ``extra_loss`` callable, or None."""
    if spec is None or spec.kind != "adalora" or not (spec.l1 or spec.orth):
        return None
    from common.lora import adalora_penalties

    def loss(model):
        l1, orth = adalora_penalties(model)
        return spec.l1 * l1 + spec.orth * orth
    return loss




def runs_root() -> Path:
    """Where training runs are cached: ``$SAM3_REPRO_RUNS`` if set, else ``data/runs``."""
    return Path(os.environ.get(RUNS_ENV) or DATA / "runs")


def run_hash(recipe: Recipe, scale: str, worlds_hash: str) -> str:
    """Config hash of a run: recipe, scale, worlds, and (recursively) its init run."""
    parent = init_hash(recipe.init, scale, worlds_hash)
    d = {"recipe": recipe.to_dict(), "scale": scale, "worlds": worlds_hash, "init": parent}
    if scale in SPECS:  # the model's widths (base v4 changed them at the same scale name)
        d["spec"] = dataclasses.asdict(SPECS[scale])
    return config_hash(d)


def is_checkpoint_path(init: str) -> bool:
    """An ``init`` that names a full-model file (a user's own fine-tune, or Meta's ``sam3.pt``) rather than a recipe."""
    return str(init).endswith(CHECKPOINT_SUFFIXES)


def init_hash(init: str, scale: str, worlds_hash: str) -> str:
    if init == "scratch":
        return "scratch"
    if is_checkpoint_path(init):
        import hashlib

        if not Path(init).is_file():
            raise FileNotFoundError(f"init checkpoint {init} does not exist")
        return "file-" + hashlib.sha256(Path(init).read_bytes()).hexdigest()[:12]
    if init == "base":
        return base_hash(scale, worlds_hash)
    return run_hash(resolve(init, scale), scale, worlds_hash)


def base_hash(scale: str, worlds_hash: str) -> str:
    """Hash identifying the base model of a scale (the tiny one is the committed checkpoint's; sam3's is its directory's)."""
    if scale == "sam3":
        return "sam3-" + worlds_hash
    return run_hash(resolve("base_pretrain", scale), scale, worlds_hash)


def run_dir(name: str | Recipe, scale: str) -> Path:
    r = resolve(name, scale)
    return runs_root() / scale / f"{r.name}-{run_hash(r, scale, data_hash(scale))}"


def trained(name: str | Recipe, scale: str) -> bool:
    """Whether recipe ``name`` has a finished run at ``scale`` with its current config hash."""
    return (run_dir(name, scale) / "done.json").exists()


def run_steps(name: str | Recipe, scale: str) -> int:
    """Total optimiser steps of a finished run (its done.json), training it first if needed."""
    train(name, scale)
    return int(read_json(run_dir(name, scale) / "done.json")["steps"])


def saved_steps(name: str | Recipe, scale: str) -> list[int]:
    """The intermediate checkpoints a run saved (``step-<k>.safetensors``), ascending."""
    return sorted(int(p.stem.split("-", 1)[1]) for p in run_dir(name, scale).glob("step-*.safetensors"))


def artifact_dir(name: str | Recipe, scale: str, train_if_missing: bool = True) -> Path:
    """Where per-model caches (evaluations, probes) live: the run directory (trained if needed and allowed),
    or ``data/runs/<scale>/base-<hash>/`` for ``"base"``."""
    if name == "base":
        return runs_root() / scale / f"base-{base_hash(scale, data_hash(scale))}"
    if train_if_missing:
        train(name, scale)
    return run_dir(name, scale)


def load_model(name: str | Recipe, scale: str, train_if_missing: bool = True, merge: bool = True,
               step: int | None = None) -> torch.nn.Module:
    """A model in the state recipe ``name`` leaves it (``base`` = the base model), in eval mode.

    Adapter recipes come back merged into plain weights (``merge=False`` keeps the adapter modules,
    e.g. to read ``common.lora.lora_deltas``). ``step`` loads a saved intermediate checkpoint instead.
    """
    tok = tokenizer_for(scale)
    model = fresh_model(scale, len(tok), seed=0)
    model = _apply_init(model, name, scale, train_if_missing, step=step)
    if merge and isinstance(name, (str, Recipe)) and name not in ("base", "scratch") and not is_checkpoint_path(str(name)) \
            and resolve(name, scale).adapter:
        from common.lora import adalora_layers, merge_lora

        if adalora_layers(model) or any("lora_" in n for n, _ in model.named_parameters()):
            model = merge_lora(model)
    return model.eval()


def _apply_init(model: torch.nn.Module, name: str | Recipe, scale: str, train_if_missing: bool,
                step: int | None = None) -> torch.nn.Module:
    if name == "scratch":
        return model
    if name == "base":
        if scale == "sam3":  # fresh_model loaded it
            return model
        state, source = base_state(scale, train_if_missing)
        load_into(model, {k: v.float() for k, v in state.items()}, source=source)
        return model
    if isinstance(name, (str, Path)) and is_checkpoint_path(str(name)):  # a full model state (save_model, or Meta's)
        if str(name).endswith(".safetensors"):
            state = load_state(name)
        else:
            from common.sam3_checkpoint import read_meta_state

            state = read_meta_state(name)
        load_into(model, {k: v.float() for k, v in state.items()}, source=str(name))
        return model
    recipe = resolve(name, scale)
    model = _apply_init(model, recipe.init, scale, train_if_missing)
    d = run_dir(recipe, scale)
    ckpt = d / ("final.safetensors" if step is None else f"step-{step}.safetensors")
    if not ckpt.exists():
        if step is not None or not train_if_missing:
            raise FileNotFoundError(f"recipe {recipe.name} has no checkpoint {ckpt.name} at {d} (run `make recipes`)")
        train(recipe, scale)
    if recipe.adapter is not None:
        from common.lora import merge_lora

        if any("lora_" in n for n, _ in model.named_parameters()):  # an adapter init chain: fold it in first
            model = merge_lora(model)
        model = apply_adapter(model, recipe.adapter)
    state = load_state(ckpt)
    missing = sorted(trained_names(model, recipe) - set(state))
    if missing:  # a partial checkpoint would silently keep the init's value for these
        raise KeyError(f"{ckpt}: checkpoint of recipe {recipe.name} lacks {len(missing)} tensor(s) it trains: "
                       f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")
    load_into(model, state, source=str(ckpt), strict=False)
    return model


def base_state(scale: str, train_if_missing: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The base model's full state: the committed tiny checkpoint (if its hash matches the code) or a run."""
    want = base_hash(scale, data_hash(scale))
    if scale == "tiny" and BASE_CHECKPOINT.exists():
        manifest = read_json(BASE_MANIFEST)
        if manifest.get("config_hash") == want:
            return load_state(BASE_CHECKPOINT), str(BASE_CHECKPOINT)
        print(f"note: {BASE_CHECKPOINT} was made by config {manifest.get('config_hash')}, the code now gives {want}; "
              "using/training a fresh base run instead (make base refreshes the committed one)")
    d = run_dir("base_pretrain", scale)
    full = d / "full.safetensors"
    if not full.exists():
        if not train_if_missing:
            raise FileNotFoundError(f"no base model for scale {scale} (run `make base`)")
        train("base_pretrain", scale)
    return load_state(full), str(full)


def train(name: str | Recipe, scale: str, progress: bool = True, force: bool = False, extra_loss=None):
    """Train recipe ``name`` at ``scale`` (or reuse its finished run); returns the RunResult.

    ``extra_loss(model)`` adds a regulariser to every step (see ``common.train.train_loop``). A lock file
    in the run directory makes a second process wait for a run in progress and then reuse it.
    """
    from common.io import exclusive

    d = run_dir(resolve(name, scale), scale)
    with exclusive(d.parent / f".{d.name}.lock"):
        return _train(name, scale, progress, force, extra_loss)


def make_streams(recipe: Recipe, paths: dict[str, Path]) -> tuple[list, Recipe]:
    """The recipe's data streams as ``(sampler, every, images, split)`` and the recipe with its step count and
    checkpoints resolved (``epochs`` → steps: one step consumes images × grad_accum visits of the primary stream)."""
    from common.data import load_pairs
    from common.train import StreamSampler

    streams = []
    for j, s in enumerate(recipe.streams):
        if s.split.endswith(".json"):  # a COCO file (a user's data): its absent categories are the negative phrases
            ds = load_pairs(s.split, negatives="absent_categories" if s.neg else None)
        elif s.split in paths:
            ds = load_pairs(paths[s.split])
        else:
            raise KeyError(f"recipe {recipe.name}: stream split {s.split!r} not among the worlds' splits {sorted(paths)}")
        sampler = StreamSampler(ds, s.pos, s.neg, seed=recipe.seed * 1000 + j, hard_types=s.hard_types)
        label = s.split
        if s.split.endswith(".json"):  # the log names a file's stream by its split directory (train, valid, …)
            label = Path(s.split).parent.name or Path(s.split).stem
            label = label if label not in [x[3] for x in streams] else f"{label}#{j}"
        streams.append((sampler, s.every, s.images, label))
    if recipe.steps is None:
        per_epoch = streams[0][0].visits_per_epoch() / (recipe.streams[0].images * recipe.grad_accum)
        recipe = replace(recipe, steps=max(1, math.ceil(recipe.epochs * per_epoch)))
    if recipe.checkpoint_fractions:
        extra = {max(1, round(f * recipe.steps)) for f in recipe.checkpoint_fractions}
        recipe = replace(recipe, checkpoints=tuple(sorted(set(recipe.checkpoints) | extra)))
    return streams, recipe


def _train(name: str | Recipe, scale: str, progress: bool, force: bool, extra_loss):
    from common.train import RunResult, read_log, train_loop
    from common.worlds import ensure_worlds

    recipe = resolve(name, scale)
    d = run_dir(recipe, scale)
    done = d / "done.json"
    if done.exists() and not force:
        return RunResult(d, d / "final.safetensors", read_log(d / "log.jsonl"), read_json(done))
    paths = {} if scale == "sam3" else ensure_worlds(scale=scale)  # sam3's streams are files
    model, tok, adapter_extra = prepare(recipe, scale)
    extra_loss = extra_loss or adapter_extra
    d.mkdir(parents=True, exist_ok=True)
    if recipe.objective == "presence_gate":
        atomic_write_json(d / "config.json", {"recipe": recipe.to_dict(), "scale": scale,
                                              "worlds_hash": data_hash(scale), "run_dir": str(d)})
        return _train_presence_gate(model, recipe, d, scale, paths, tok, progress)
    streams, recipe = make_streams(recipe, paths)
    atomic_write_json(d / "config.json", {"recipe": recipe.to_dict(), "scale": scale,
                                          "worlds_hash": data_hash(scale), "run_dir": str(d)})
    trainable = trainable_params(model, recipe)
    result = train_loop(model, trainable, streams, tok, recipe, d, mask_size(scale), image_size(scale),
                        progress=progress, extra_loss=extra_loss)
    if recipe.name == "base_pretrain":
        from common.model import save_model

        save_model(model, d / "full.safetensors")
    return result


def prepare(recipe: Recipe, scale: str) -> tuple[torch.nn.Module, WordTokenizer, object]:
    """The model a run of ``recipe`` starts from (its init loaded, its adapters put on, seeded), the tokenizer, and the
    adapter's regulariser (or None)."""
    tok = tokenizer_for(scale)
    model = fresh_model(scale, len(tok), seed=recipe.seed)
    model = _apply_init(model, recipe.init, scale, train_if_missing=True)
    extra = None
    if recipe.adapter is not None:
        torch.manual_seed(recipe.seed)
        model = apply_adapter(model, recipe.adapter)
        extra = adapter_loss(recipe.adapter)
    return model, tok, extra


def _train_presence_gate(model: torch.nn.Module, recipe: Recipe, d: Path, scale: str, paths: dict[str, Path], tok,
                         progress: bool):
    """Post 02 §5's repair (:func:`common.presence.train_gate`): positives of the first stream's split, negatives of
    the second's (a worlds split, or a COCO JSON path whose absent categories give the negatives), balanced to
    :data:`common.presence.PAIRS_PER_CLASS`."""
    from common.data import load_pairs
    from common.presence import PAIRS_PER_CLASS, balanced_pairs, train_gate

    pos_ds, neg_ds = (load_pairs(s.split, negatives="absent_categories") if s.split.endswith(".json")
                      else load_pairs(paths[s.split]) for s in recipe.streams[:2])
    items = balanced_pairs([(pos_ds, p) for p in pos_ds if p.masks], [(neg_ds, p) for p in neg_ds if not p.masks],
                           PAIRS_PER_CLASS[scale], recipe.seed)
    return train_gate(model, recipe, d, items, tok, image_size(scale), progress=progress)
