"""Use it on your own fine-tune: the commands of ``python -m common`` (issue #19; SAM3-LoRA's layout and checks).

- ``make-example-data DIR``: a small COCO dataset in SAM3-LoRA's layout (``train/`` and ``valid/``, each
  ``_annotations.coco.json`` + images), cut from the generated watch world.
- ``finetune --config cfg.yaml``: full / frozen-TE / fusion-only / LoRA fine-tune on your COCO data, optional replay and
  negatives streams, best and last checkpoints (``common.finetune``; several processes under ``torchrun``).
- ``validate``: a model on a COCO split: watch-style IoU (union of kept masks vs GT union per image × category), COCO
  segm mAP / mAR (pycocotools ``COCOeval``), and the SA-Co/Gold metrics (cgF1, IL_MCC, pmF1, neg_correct) with a
  negative pair for every category absent from an image.
- ``infer``: one image + phrases → kept masks (RLE), boxes, scores, and a PNG overlay.
- ``diagnose A B``: where the weights moved from A to B: per tensor rel_change, MP-rank, e90, a rank-R saturation
  verdict and intruder dimensions (``common.spectral``); per module group rel_change (``common.weightdiff``); figure.
- ``prescribe A B``: the MP-rank LoRA prescription (Post 01 §11–§12) from a partial fine-tune B of A, written as a
  ``peft.LoraConfig`` directory (``adapter_config.json``) that ``LoraConfig.from_pretrained`` reads unchanged.
- ``repair-presence``: Post 02 §5's fix on your model and your data — retrain only the presence gate's head (BCE on the
  unclamped presence logit, balanced positives = annotated categories, negatives = categories absent from an image, on
  the cached gate input; ``common.presence``), save the full repaired model, and report neg_correct / IoU before and
  after on ``--eval-data``.

A model (``--model``, ``A``, ``B``) is a recipe name (``base``, ``frozen_te`` …, trained through the run cache) or a
full-model ``.safetensors`` file of the same scale. Scales: micro / tiny (the project's models), and ``sam3``: the real
model from a local directory (``--checkpoint DIR``: config.json, safetensors weights, tokenizer files), where a model is
``base`` (that directory), a full-model ``.safetensors`` in HF names, or Meta's original ``sam3.pt`` (key map in
``common.sam3_checkpoint``).
Every command writes JSON (the source of truth) + Markdown into ``--out``, atomically.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from common import metrics, mprank, runs, spectral, weightdiff
from common.data import read_doc
from common.io import atomic_write_json, atomic_write_text, run_meta, save_figure
from common.model import DEVICE_ENV, fine_group_of, pick_device, to_pixels
from common.report import markdown_table, style
from common.worlds import encode_rle

SCALES = ("micro", "tiny", "sam3")
ANNOTATIONS = "_annotations.coco.json"  # a split directory's COCO file (SAM3-LoRA's layout)


# ----------------------------------------------------------------------------- shared
def _write(out: Path, name: str, doc: dict, md: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.md", md)
    return atomic_write_json(out / f"{name}.json", doc)


def split_json(data: Path) -> Path:
    """The annotation file of a split: ``DIR/_annotations.coco.json`` (SAM3-LoRA's layout) or a JSON path."""
    p = Path(data)
    p = p / ANNOTATIONS if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"no COCO annotations at {p} (expected DIR/_annotations.coco.json or a .json file)")
    return p


# ----------------------------------------------------------------------------- make-example-data
def make_example_data(out: Path, scale: str = "tiny", n_train: int = 24, n_valid: int = 12, seed: int = 0) -> dict:
    """Cut ``n_train`` + ``n_valid`` images of the watch world into ``out/{train,valid}`` (COCO + images)."""
    from common.worlds import ensure_worlds

    paths = ensure_worlds(scale=scale)
    made = {}
    for split, src, n in (("train", "watch_train", n_train), ("valid", "watch_test", n_valid)):
        doc = read_doc(paths[src])
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice([im["id"] for im in doc["images"]], min(n, len(doc["images"])), replace=False).tolist())
        keep = set(ids)
        d = Path(out) / split
        d.mkdir(parents=True, exist_ok=True)
        images = [im for im in doc["images"] if im["id"] in keep]
        for im in images:
            dst = d / Path(im["file_name"]).name
            shutil.copyfile(paths[src].parent / im["file_name"], dst)
            im["file_name"] = dst.name
        sub = {**{k: v for k, v in doc.items() if k not in ("images", "annotations")}, "images": images,
               "annotations": [a for a in doc["annotations"] if a["image_id"] in keep]}
        atomic_write_json(d / ANNOTATIONS, sub)
        made[split] = {"images": len(images), "annotations": len(sub["annotations"]), "categories": len(doc["categories"])}
    return made


# ----------------------------------------------------------------------------- validate
def coco_map(gt_doc: dict, dets: list[dict]) -> dict[str, float]:
    """COCO segm AP / AR of ``dets`` against ``gt_doc`` (pycocotools ``COCOeval``, its 12 summary numbers named)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from pycocotools import mask as mask_utils

    gt_doc = copy.deepcopy(gt_doc)
    for a in gt_doc["annotations"]:  # COCOeval needs area and iscrowd; fill them where a file leaves them out
        a.setdefault("iscrowd", 0)
        if "area" not in a and isinstance(a.get("segmentation"), dict):
            a["area"] = float(mask_utils.area(a["segmentation"]))
    gt = COCO()
    gt.dataset = gt_doc
    gt.createIndex()
    names = ["mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
             "AR_medium", "AR_large"]
    if not dets:
        return {k: 0.0 for k in names}
    ev = COCOeval(gt, gt.loadRes(dets), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return {k: float(v) for k, v in zip(names, ev.stats)}


def validate(model_ref: str, data: Path, scale: str = "tiny", prob_threshold: float = metrics.KEEP_THRESHOLD,
             nms_iou: float | None = 0.5) -> tuple[dict, list[dict]]:
    """Score a model (recipe name or full-model file) on a COCO split: :func:`score_model`."""
    doc, dets = score_model(runs.load_model(model_ref, scale), split_json(data), scale, prob_threshold, nms_iou)
    return {"model": model_ref, **doc}, dets


def score_model(model: torch.nn.Module, path: Path, scale: str, prob_threshold: float = metrics.KEEP_THRESHOLD,
                nms_iou: float | None = 0.5) -> tuple[dict, list[dict]]:
    """A model on a COCO annotation file: watch-style IoU, COCO segm mAP / mAR, SA-Co/Gold metrics (a negative pair
    for every category absent from an image); also the detections in COCO results format (what ``COCOeval`` scored)."""
    from common.data import load_pairs
    from common.evaluate import predict, score_saco

    ds = load_pairs(path, negatives="absent_categories")
    preds = predict(model, ds, runs.tokenizer_for(scale), runs.image_size(scale), threshold=prob_threshold,
                    nms_iou=nms_iou)
    pos = [p for p in preds if p.pair.masks]
    iou = metrics.watch_iou([(p.kept.masks, ds.gt_masks(p.pair)) for p in pos])
    dets = []
    for p in preds:
        for m, s in zip(p.kept.masks, p.kept.scores):
            dets.append({"image_id": p.pair.image_id, "category_id": p.pair.category_id, "segmentation": encode_rle(m),
                         "score": float(s)})
    saco = score_saco(ds, preds)
    return {"data": str(path), "scale": scale, "prob_threshold": prob_threshold, "nms_iou": nms_iou,
            "n_pairs": len(preds), "n_positive": len(pos), "n_detections": len(dets),
            "iou": iou.mean, "coco": coco_map(read_doc(path), dets),
            "saco": {k: saco.get(k) for k in ("cgF1", "IL_MCC", "pmF1", "neg_correct", "pos_mean_IoU")}}, dets


# ----------------------------------------------------------------------------- infer
def infer(model_ref: str, image: Path, phrases: Sequence[str], scale: str = "tiny",
          prob_threshold: float = metrics.KEEP_THRESHOLD, nms_iou: float | None = 0.5) -> tuple[dict, Any]:
    """Kept masks / boxes / scores per phrase on one image, and the overlay figure."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    from common.forward import forward_pairs

    if not Path(image).is_file():
        raise FileNotFoundError(f"image {image} does not exist")
    if not phrases:
        raise ValueError("infer needs at least one phrase (--phrases 'a,b')")
    im = np.asarray(Image.open(image).convert("RGB"))
    model = runs.load_model(model_ref, scale)
    ids, am = runs.tokenizer_for(scale)(list(phrases))
    with torch.no_grad():
        o = forward_pairs(model.eval(), to_pixels([im], runs.image_size(scale)), ids, am,
                          torch.zeros(len(phrases), dtype=torch.long)).cpu()
    out = []
    for r, ph in enumerate(phrases):
        k = metrics.postprocess(o.logits[-1, r], o.presence[-1, r], o.masks[r], threshold=prob_threshold, nms_iou=nms_iou,
                                out_size=im.shape[:2])
        objs = []
        for m, s in zip(k.masks, k.scores):
            rle = encode_rle(m)
            objs.append({"score": float(s), "box_xywh": [float(v) for v in mask_utils.toBbox(rle)],
                         "area": int(m.sum()), "rle": rle})
        out.append({"phrase": ph, "presence_sigmoid": float(torch.sigmoid(o.presence[-1, r])), "objects": objs,
                    "_masks": k.masks})
    fig = overlay(im, out)
    return {"image": str(image), "model": model_ref, "scale": scale, "prob_threshold": prob_threshold,
            "results": [{k: v for k, v in r.items() if k != "_masks"} for r in out]}, fig


def overlay(im: np.ndarray, results: list[dict]):
    """The image with each phrase's kept masks tinted and boxed, one colour per phrase."""
    import matplotlib.pyplot as plt

    style()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(im)
    cmap = plt.get_cmap("tab10")
    for i, r in enumerate(results):
        c = np.array(cmap(i % 10)[:3])
        for m, o in zip(r["_masks"], r["objects"]):
            tint = np.zeros((*m.shape, 4))
            tint[m] = [*c, 0.45]
            ax.imshow(tint)
            x, y, w, h = o["box_xywh"]
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color=c, lw=1.5))
            ax.text(x, y, f"{r['phrase']} {o['score']:.2f}", color="white", fontsize=7, backgroundcolor=(*c, 0.8))
        if not r["objects"]:
            ax.plot([], [], color=c, label=f"{r['phrase']}: none (presence σ {r['presence_sigmoid']:.2f})")
    if any(not r["objects"] for r in results):
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.02))
    ax.set_axis_off()
    return fig


# ----------------------------------------------------------------------------- diagnose
def diagnose(a_ref: str, b_ref: str, scale: str = "tiny", rank: int = 16, intruder_k: int = 8, top: int = 20) -> dict:
    """Weight movement A → B: per tensor (≥ 2-D: rel_change, MP-rank, e90, rank-``rank`` saturation verdict, intruder
    dimensions among the top ``intruder_k`` singular vectors) and per module group."""
    a, b = runs.load_model(a_ref, scale).state_dict(), runs.load_model(b_ref, scale).state_dict()
    rep = spectral.spectral_report(a, b)
    rows = []
    for r in rep.sort_values("rel_change", ascending=False).to_dict("records"):
        if not r["fro_delta"] > 0:
            continue
        name = r["name"]
        delta = spectral.as_matrix(b[name]) - spectral.as_matrix(a[name])
        sat = spectral.saturation_diagnostics(delta, min(rank, min(delta.shape)))
        intr = spectral.intruder_dimensions(spectral.as_matrix(a[name]), spectral.as_matrix(b[name]),
                                            k=min(intruder_k, min(delta.shape)))
        rows.append({"tensor": name, "group": fine_group_of(name), "shape": list(r["shape"]),
                     "rel_change": r["rel_change"], "mp_rank": int(r["mp_rank_rms"]), "e90": int(r["e90"]),
                     "full_rank": int(min(delta.shape)), "saturation_verdict": sat["verdict"],
                     "n_intruders": intr["n_intruders"]})
    groups = weightdiff.group_rel_change(a, b)
    return {"a": a_ref, "b": b_ref, "scale": scale, "rank": rank, "n_moved_tensors": len(rows),
            "groups": [{"group": g, **v} for g, v in sorted(groups.items(), key=lambda kv: -(kv[1]["rel_change"] or 0))],
            "tensors": rows, "top": rows[:top]}


def diagnose_figure(doc: dict):
    """Per group rel_change (left) and per tensor MP-rank as a share of full rank vs rel_change (right)."""
    import matplotlib.pyplot as plt

    style()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
    gs = [g for g in doc["groups"] if g["rel_change"]]
    ax.barh(range(len(gs)), [g["rel_change"] for g in gs], color="#1b6ca8")
    ax.set_yticks(range(len(gs)), [g["group"] for g in gs], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="weighted mean rel_change", title=f"{doc['a']} → {doc['b']}: per module group")
    t = doc["tensors"]
    bx.scatter([r["rel_change"] for r in t], [r["mp_rank"] / r["full_rank"] for r in t], s=12, alpha=0.7, color="#1b6ca8")
    bx.set(xscale="log", xlabel="rel_change (log)", ylabel="MP-rank / full rank", title="per tensor")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- prescribe
def prescribe(a_ref: str, b_ref: str, out: Path, scale: str = "tiny", boost: float = 4.0) -> dict:
    """MP-rank per Linear weight of B − A (outside the text encoder; the rms edge of Table 9.17) → a peft LoraConfig
    with the §12 α rule, saved to ``out`` (``adapter_config.json``)."""
    from common import lora

    a, b = runs.load_model(a_ref, scale), runs.load_model(b_ref, scale)
    deltas = mprank.linear_deltas(a, b, lora.linear_names(b, include=list(mprank.LORA_ABLE)))
    ranks = mprank.mp_ranks(deltas)
    config = lora.prescription_config(ranks, boost)
    Path(out).mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    kept = {n: r for n, r in ranks.items() if r > 0}
    return {"a": a_ref, "b": b_ref, "scale": scale, "boost": boost, "n_tensors": len(ranks), "n_adapted": len(kept),
            "ranks": ranks, "rank_hist": {str(k): int(v) for k, v in zip(*np.unique(list(ranks.values()), return_counts=True))},
            "peft_config": str(Path(out) / "adapter_config.json")}


# ----------------------------------------------------------------------------- repair-presence
def repair_presence(model_ref: str, data: Path, out: Path, scale: str = "tiny", steps: int | None = None,
                    lr: float | None = None, pos_weight: float = 1.0, seed: int = 0, eval_data: Path | None = None) -> dict:
    """Retrain the presence gate of ``model_ref`` on ``data`` (``common.presence.repair_recipe``); the repaired full model
    goes to ``out/repaired.safetensors``; with ``eval_data`` the SA-Co metrics and IoU before and after."""
    from common import presence
    from common.model import save_model

    recipe = presence.repair_recipe(model_ref, scale, steps, lr, seed, pos_weight, data=str(split_json(data)))
    summary = runs.train(recipe, scale).summary
    ckpt = save_model(runs.load_model(recipe, scale), Path(out) / "repaired.safetensors")
    doc = {"model": model_ref, "data": str(split_json(data)), "scale": scale, "recipe": recipe.name,
           "repaired_checkpoint": str(ckpt),
           **{k: summary[k] for k in ("gate_params", "trainable_params", "n_pairs", "steps", "cache_wall_s", "train_wall_s",
                                      "repair_wall_s", "speedup_per_step")}}
    if eval_data is not None:
        for when, ref in (("before", model_ref), ("after", str(ckpt))):
            v, _ = validate(ref, eval_data, scale)
            doc[when] = {"iou": v["iou"], "mAP": v["coco"]["mAP"], **v["saco"]}
    return doc


# ----------------------------------------------------------------------------- the command line
def _common(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--scale", default="tiny", choices=SCALES, help="model scale (default tiny)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="scale sam3: the real model's local directory (config.json, safetensors, tokenizer); "
                         "model references are then 'base', a full-model .safetensors, or Meta's sam3.pt")
    ap.add_argument("--out", type=Path, required=True, help="output directory (JSON + Markdown)")
    ap.add_argument("--seed", type=int, default=0)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m common", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-example-data", help="a small COCO dataset (train/ + valid/) from the watch world")
    p.add_argument("out", type=Path)
    p.add_argument("--scale", default="tiny", choices=("micro", "tiny"), help="the watch world to cut it from")
    p.add_argument("--n-train", type=int, default=24)
    p.add_argument("--n-valid", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    for name, hlp in (("validate", "IoU, COCO mAP/mAR and SA-Co metrics of a model on a COCO split"),
                      ("infer", "masks, boxes and scores for phrases on one image, with a PNG overlay")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--model", required=True, help="recipe name or full-model .safetensors")
        p.add_argument("--prob-threshold", type=float, default=metrics.KEEP_THRESHOLD)
        p.add_argument("--nms-iou", type=float, default=0.5, help="mask NMS IoU (≤ 0 disables)")
        _common(p)
        _device(p)
        if name == "validate":
            p.add_argument("--data", type=Path, required=True, help="a split directory (_annotations.coco.json) or a JSON")
        else:
            p.add_argument("--image", type=Path, required=True)
            p.add_argument("--phrases", required=True, help="comma-separated phrases")
    p = sub.add_parser("finetune", help="fine-tune on your COCO data from a YAML config (full / frozen-TE / fusion-only / "
                       "LoRA; replay and negatives streams); torchrun for several processes")
    p.add_argument("--config", type=Path, required=True, help="YAML config (schema: common.finetune.FinetuneConfig)")
    p.add_argument("--out", type=Path, default=None, help="override the config's out directory")
    p.add_argument("--steps", type=int, default=None, help="override the config's steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = sub.add_parser("diagnose", help="where the weights moved from A to B (per tensor and group)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rank", type=int, default=16, help="LoRA budget for the saturation verdict")
    _common(p)
    p = sub.add_parser("prescribe", help="MP-rank LoRA prescription from a partial fine-tune, as a peft LoraConfig")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--boost", type=float, default=4.0, help="α rule boost (Post 01 §12)")
    _common(p)
    p = sub.add_parser("repair-presence", help="retrain only the presence gate on your data (Post 02 §5 presence_only)")
    p.add_argument("--model", required=True, help="recipe name or full-model .safetensors to repair")
    p.add_argument("--data", type=Path, required=True,
                   help="a COCO split (dir or JSON): annotated categories are the positives, absent ones the negatives")
    p.add_argument("--eval-data", type=Path, default=None, help="a COCO split to score before and after the repair")
    p.add_argument("--steps", type=int, default=None, help="training steps (default the recipe's: 1000 at tiny)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4)")
    p.add_argument("--pos-weight", type=float, default=1.0, help="BCE weight of the positives (Post 02 suggests > 1)")
    _common(p)
    _device(p)
    return ap


def _device(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", default="auto",
                    help="auto (this process's GPU when CUDA is available, else the CPU), cpu, cuda or cuda:N")


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    t0 = time.time()
    cmd = args.command
    if getattr(args, "checkpoint", None) is not None:
        os.environ[runs.SAM3_ENV] = str(args.checkpoint.resolve())
    if getattr(args, "scale", None) == "sam3":
        runs.sam3_dir()  # a clear error before any work
    if getattr(args, "device", None) is not None:
        os.environ[DEVICE_ENV] = str(pick_device(args.device))  # every model the command builds goes there
    if cmd == "make-example-data":
        made = make_example_data(args.out, args.scale, args.n_train, args.n_valid, args.seed)
        print(f"wrote {args.out}/train and {args.out}/valid: {made}")
        return made
    if cmd == "finetune":
        from common.finetune import finetune, load_config

        over = {k: v for k, v in (("out", args.out and args.out.resolve()), ("steps", args.steps)) if v is not None}
        doc = finetune(load_config(args.config, over), progress=not args.no_progress, command=vars(args))
        if doc:
            print(f"finetune: {doc['steps']} steps in {doc['train_wall_s']:.1f} s; best (by {doc['selected']['by']}) "
                  f"step {doc['selected']['step']} → {doc['best']}; last → {doc['last']} ({time.time() - t0:.1f} s)")
        return doc
    nms = getattr(args, "nms_iou", None)
    nms = None if nms is not None and nms <= 0 else nms
    fig = None
    if cmd == "validate":
        doc, dets = validate(args.model, args.data, args.scale, args.prob_threshold, nms)
        doc["detections_file"] = str(atomic_write_json(args.out / "detections.json", dets))
        md = markdown_table([{"metric": k, "value": v} for k, v in
                             [("watch-style IoU", doc["iou"]), *doc["coco"].items(), *doc["saco"].items()]])
    elif cmd == "infer":
        doc, fig = infer(args.model, args.image, [p.strip() for p in args.phrases.split(",") if p.strip()], args.scale,
                         args.prob_threshold, nms)
        md = markdown_table([{"phrase": r["phrase"], "presence_sigmoid": r["presence_sigmoid"], "n_objects": len(r["objects"]),
                              "best_score": max((o["score"] for o in r["objects"]), default=None)} for r in doc["results"]])
    elif cmd == "diagnose":
        doc = diagnose(args.a, args.b, args.scale, args.rank)
        fig = diagnose_figure(doc)
        md = "## Module groups\n\n" + markdown_table(doc["groups"]) + "\n## Most-moved tensors\n\n" + markdown_table(doc["top"])
    elif cmd == "repair-presence":
        doc = repair_presence(args.model, args.data, args.out, args.scale, args.steps, args.lr, args.pos_weight, args.seed,
                              args.eval_data)
        md = markdown_table([{"": k, **doc[k]} for k in ("before", "after") if k in doc]) if "before" in doc else ""
        md += (f"\nRepaired `{doc['model']}` on {doc['n_pairs']['pos']} + {doc['n_pairs']['neg']} pairs in "
               f"{doc['repair_wall_s']} s ({doc['trainable_params']:,} parameters): `{doc['repaired_checkpoint']}`\n")
    else:
        doc = prescribe(args.a, args.b, args.out, args.scale, args.boost)
        md = markdown_table([{"rank": k, "tensors": v} for k, v in doc["rank_hist"].items()]) + \
            f"\npeft config: `{doc['peft_config']}` ({doc['n_adapted']} of {doc['n_tensors']} tensors adapted)\n"
    doc["meta"] = run_meta(vars(args), args.seed, t0)
    path = _write(args.out, cmd, doc, f"# {cmd}\n\n{md}")
    if fig is not None:
        save_figure(fig, args.out / ("overlay" if cmd == "infer" else cmd))
    print(f"{cmd}: {path} ({time.time() - t0:.1f} s)")
    return doc
