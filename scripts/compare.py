"""`make compare`: the reproduction at a glance — published vs reproduced, and every claim's verdict.

Reads ``data/published/*.json`` and the results JSON (``results/`` = tiny, ``results/sam3/`` if present;
the layout is the contract in :mod:`common.report`), evaluates :mod:`common.claims`, and writes

* ``results/COMPARISON.md`` — a section per post / paper; per table the published grid with ours
  (tiny; sam3 if present) and the difference beside each printed number, then each claim's verdict;
  the summary line "N claims: H hold, F fail, M not measurable, R not yet run" on top;
* ``results/comparison.json`` — the same, machine-readable;
* ``results/index.html`` — static page: every table and figure with caption, source section, and the
  claims it supports with verdicts (relative links to ``<section>/fig-*.png``);
* the "Reproduction status" block of ``README.md`` between ``<!-- status:begin -->`` and
  ``<!-- status:end -->`` (markers appended if absent; nothing else in the README is touched).

Usage: python scripts/compare.py [--results DIR] [--readme PATH | --no-readme]
Never trains; runs in seconds.
"""
from __future__ import annotations

import argparse
import html
from pathlib import Path
from typing import Any

from common import claims as C
from common import published as pub
from common import report
from common.io import RESULTS, ROOT, atomic_write_json, atomic_write_text, read_json

BEGIN, END = "<!-- status:begin -->", "<!-- status:end -->"
POST_TITLES = {"post01": "Post 01 — how SAM3 learns a watch task (LoRA, MP-rank, α)",
               "post02": "Post 02 — refusal collapse and its repair",
               "rank_series": "Rank series — Paper 86 (true gradient effective rank)",
               "diagnostics": "Diagnostics — why a reproduction does (not) hold at this scale"}
WATCH_IOU, LVIS_MIOU = ("watch", "iou", 1.0), ("lvis", "mIoU", 1.0)
NEG = ("saco", "neg_correct", 100.0)
CG, PM, MCC = ("saco", "cgF1", 100.0), ("saco", "pmF1", 100.0), ("saco", "IL_MCC", 1.0)
POSMEAN, MEANMASK = ("saco", "pos_mean_IoU", 100.0), ("saco", "mean_mask_IoU", 100.0)
LORA = {f"LoRA F[0..4] r={k}": f"lora_r{k}" for k in (8, 16, 32, 48)}
#: How results/recipes.json fills published tables: published row → recipe, column → (suite, metric, factor
#: to the printed unit). ``transposed``: the table's rows are metrics and its columns recipes.
RECIPE_TABLES: list[dict[str, Any]] = [
    {"source": "post01", "table": "4.2", "rows": {"all-trainable fine-tune": "all_trainable", "frozen-TE fine-tune": "frozen_te"},
     "columns": {"Watch IoU": WATCH_IOU, "Watch Dice": ("watch", "dice", 100.0), "SA-Co/Gold cgF1": CG}},
    {"source": "post01", "table": "9.2",
     "rows": {"base SAM3": "base", "all-trainable": "all_trainable", "frozen-TE": "frozen_te", "fusion-only F[0..4]": "fusion_only", **LORA},
     "columns": {"Watch IoU": WATCH_IOU, "LVIS mIoU": LVIS_MIOU, "cgF1": CG, "pmF1": PM, "neg-correct": NEG}},
    {"source": "post01", "table": "9.4", "rows": {str(k): f"lora_r{k}" for k in (8, 16, 32, 48)},
     "columns": {"Watch IoU (in-domain)": WATCH_IOU, "LVIS-val mIoU (pos)": LVIS_MIOU, "SA-Co neg-correct": NEG}},
    {"source": "post01", "table": "9.11", "rows": {"base SAM3": "base", "r=16 std": "lora_r16", "r=32 std": "lora_r32", "r=48 std": "lora_r48"},
     "columns": {"cgF1": CG, "pmF1": PM, "neg_correct %": NEG, "watch IoU": WATCH_IOU}},
    {"source": "post01", "table": "9.13",
     "rows": {"base SAM3 (no fine-tune)": "base", "LoRA F[0..4] r=48 (std α)": "lora_r48", "fusion04_only (full-rank)": "fusion_only",
              "frozen-TE full FT": "frozen_te", "all-trainable full FT": "all_trainable"},
     "columns": {"watch IoU": WATCH_IOU}},
    {"source": "post02", "table": "1.1", "transposed": True, "columns": {"base SAM3": "base", "watch FT (frozen-TE)": "frozen_te"},
     "rows": {"neg_correct": NEG, "cgF1": CG, "IL_MCC": MCC, "mean_mask_IoU": MEANMASK, "pmF1": PM, "pos_mean_IoU": POSMEAN,
              "LVIS mIoU": ("lvis", "mIoU", 100.0)}},
    {"source": "post02", "table": "3.1",
     "rows": {"base SAM3": "base", "frozen-TE FT (no replay)": "frozen_te", "lvis_replay (N=10, positive-only)": "lvis_replay",
              "lvis_replay_n100 (N=100, sparsity ablation)": "lvis_replay_n100", "lvis_replay_neg (adds negatives stream)": "lvis_replay_neg",
              "recovery@2000 (post-hoc, no negatives)": "recovery"},
     "columns": {"Watch IoU": WATCH_IOU, "LVIS mIoU": ("lvis", "mIoU", 100.0), "LVIS pmF1": ("lvis", "pmF1", 100.0), "SA-Co pmF1": PM,
                 "SA-Co cgF1": CG, "SA-Co IL_MCC": MCC, "SA-Co pos_mean": POSMEAN, "SA-Co neg_correct": NEG}},
    {"source": "post02", "table": "4.1", "transposed": True,
     "columns": {"lvis_replay": "lvis_replay", "recovery@2000": "recovery", "base SAM3 (ref)": "base"},
     "rows": {"Watch IoU": WATCH_IOU, "LVIS mIoU": ("lvis", "mIoU", 100.0), "SA-Co pos_mean_IoU": POSMEAN}},
    {"source": "post02", "table": "5.2",
     "rows": {"base SAM3": "base", "lvis_replay": "lvis_replay", "recovery@2000": "recovery",
              "lvis_replay_neg (full FT + negatives)": "lvis_replay_neg", "presence_only (162 s on top of lvis_replay)": "presence_only"},
     "columns": {"Watch IoU": WATCH_IOU, "SA-Co cgF1": CG, "SA-Co IL_MCC": MCC, "SA-Co mean_mask_IoU": MEANMASK, "SA-Co pos_mean": POSMEAN,
                 "SA-Co neg_correct": NEG}},
]


# ----------------------------------------------------------------------------- collecting
def scan(root: Path) -> dict[str, dict[str, Any]]:
    """``{rel: doc}`` of one scale's results (``recipes`` and ``<section>/<stem>``); unreadable files are reported."""
    out: dict[str, Any] = {}
    if (root / "recipes.json").exists():
        out["recipes"] = _read(root / "recipes.json")
    for section in report.SECTIONS:
        for p in sorted((root / section).glob("*.json")) if (root / section).is_dir() else []:
            out[f"{section}/{p.stem}"] = _read(p)
    return out


def _read(p: Path) -> dict[str, Any]:
    try:
        d = read_json(p)
        return d if isinstance(d, dict) else {"error": f"{p.name}: not a JSON object"}
    except (ValueError, OSError) as e:
        return {"error": str(e)}


def _recipe_value(doc: dict[str, Any], recipe: str, suite: str, metric: str) -> float | None:
    recs = doc.get("recipes") or {}
    for alias in C.RECIPE_ALIASES.get(recipe, (recipe,)):
        v = ((recs.get(alias) or {}).get(suite) or {}).get(metric)
        if isinstance(v, (int, float)):
            return float(v)
    return None


def reproduced(results: dict[str, dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """``{(source, table, row, column): {"value": ours in the printed unit, "file": rel}}`` for one scale."""
    idx: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    if "recipes" in results and "error" not in results["recipes"]:
        for spec in RECIPE_TABLES:
            for prow, a in spec["rows"].items():
                for pcol, b in spec["columns"].items():
                    recipe, (suite, metric, factor) = (b, a) if spec.get("transposed") else (a, b)
                    v = _recipe_value(results["recipes"], recipe, suite, metric)
                    if v is not None:
                        idx[(spec["source"], spec["table"], prow, pcol)] = {"value": v * factor, "file": "recipes"}
    for rel, doc in results.items():
        if rel == "recipes" or "error" in doc:
            continue
        for p in report.pairs(doc):
            if p["ours"] is not None:
                idx[(p["source"], p["table"], p["row"], p["column"])] = {"value": p["ours"], "file": rel}
    return idx


def _published(source: str) -> dict[str, Any] | None:
    try:
        return pub.load(source)
    except (FileNotFoundError, ValueError):
        return None


# ----------------------------------------------------------------------------- building
def build(root: Path = RESULTS) -> dict[str, Any]:
    """Everything compare reports, as one JSON-able dict."""
    scales = {"tiny": root}
    if (root / "sam3").is_dir():
        scales["sam3"] = root / "sam3"
    results = {s: scan(r) for s, r in scales.items()}
    index = {s: reproduced(results[s]) for s in scales}
    verdicts = {s: {v.claim: v for v in C.evaluate_all(r, s)} for s, r in scales.items()}
    claim_rows = []
    for c in C.CLAIMS:
        claim_rows.append({"id": c.id, "post": c.post, "source": c.source, "table": c.table, "quote": c.quote,
                           "statement": c.statement, "reads": list(c.reads), "scales": list(c.scales),
                           "verdicts": {s: verdicts[s][c.id].to_dict() for s in scales if c.id in verdicts[s]}})
    sections = []
    for source in report.SECTIONS:
        data = _published(source)
        tables_meta = (data or {}).get("tables") or {}
        values = (data or {}).get("values") or []
        tids = list(dict.fromkeys([*tables_meta, *(v["table"] for v in values)]))
        tables = []
        for tid in tids:
            cells = []
            for v in (x for x in values if x["table"] == tid):
                cell = {k: v[k] for k in ("row", "column", "value", "unit", "printed")}
                for s in scales:
                    hit = index[s].get((source, tid, v["row"], v["column"]))
                    cell[s] = None if hit is None else hit["value"]
                    cell[f"diff_{s}"] = None if hit is None else hit["value"] - v["value"]
                    if hit:
                        cell[f"file_{s}"] = hit["file"]
                cells.append(cell)
            meta = tables_meta.get(tid, {})
            stem = report.result_stem(tid)
            tables.append({"id": tid, "label": meta.get("label", f"Table {tid}"), "caption": meta.get("caption", ""),
                           "section": meta.get("section", ""), "kind": meta.get("kind", "table"), "cells": cells,
                           "result_file": f"{source}/{stem}" if f"{source}/{stem}" in results["tiny"] else None,
                           "figure": _figure_rel(root, source, tid),
                           "claims": [c["id"] for c in claim_rows if c["post"] == source and c["table"] == tid]})
        mapped = {t["result_file"] for t in tables}
        extra = [rel for rel in results["tiny"] if rel.startswith(source + "/") and rel not in mapped]
        sections.append({"source": source, "title": POST_TITLES[source], "published_file": data is not None,
                         "tables": tables, "other_results": [{"file": rel, "figure": _figure_rel(root, source, rel.split("/", 1)[1])} for rel in extra],
                         "unattached_claims": [c["id"] for c in claim_rows if c["post"] == source
                                               and (c["table"] is None or c["table"] not in tids)]})
    errors = {f"{s}:{rel}": d["error"] for s in scales for rel, d in results[s].items() if "error" in d}
    stale = {s: report.stale_results(results[s], s) for s in scales}
    for c in claim_rows:
        for s, v in c["verdicts"].items():
            v["stale"] = sorted(set(v.get("files") or {}) & set(stale[s]))
    return {"summary": C.summary_line(verdicts["tiny"].values()),
            "summary_by_scale": {s: C.summary_line(verdicts[s].values()) for s in scales},
            "scales": list(scales), "results_files": {s: sorted(results[s]) for s in scales}, "unreadable": errors,
            "stale": stale,
            "claims": claim_rows, "sections": sections}


def _figure_rel(root: Path, source: str, tid: str) -> str | None:
    rel = f"{source}/{report.figure_stem(tid)}.png"
    return rel if (root / rel).exists() else None


# ----------------------------------------------------------------------------- rendering
def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def _cell_text(c: dict[str, Any] | None, scales: list[str], html_mode: bool = False) -> str:
    if c is None:
        return ""
    out = c["printed"]
    for s in scales:
        if c.get(s) is not None:
            tag = "" if s == "tiny" else f"{s} "
            ours = f"{tag}{_f(c[s])} (Δ {c['diff_' + s]:+.3g})"
            out += f" → <b>{html.escape(ours)}</b>" if html_mode else f" → **{ours}**"
    return html.escape(out, quote=False) if html_mode and "<b>" not in out else out


def _grid(cells: list[dict[str, Any]]) -> tuple[list[str], list[str], dict[tuple[str, str], dict[str, Any]]]:
    rows = list(dict.fromkeys(c["row"] for c in cells))
    cols = list(dict.fromkeys(c["column"] for c in cells))
    return rows, cols, {(c["row"], c["column"]): c for c in cells}


ICON = {"holds": "✅ holds", "fails": "❌ fails", "not measurable": "➖ not measurable", "not yet run": "⏳ not yet run",
        "error": "⚠️ error"}


def _claims_md(ids: list[str], claims: dict[str, dict[str, Any]], scales: list[str]) -> list[str]:
    out = []
    for cid in ids:
        c = claims[cid]
        vs = "; ".join(f"{s}: {ICON[c['verdicts'][s]['verdict']]}"
                       + (f" _stale_ ({', '.join(c['verdicts'][s]['stale'])})" if c["verdicts"][s].get("stale") else "")
                       + f" — {c['verdicts'][s]['detail']}" for s in scales if s in c["verdicts"])
        out.append(f"- **{cid}** — {c['statement']}. *“{c['quote']}”* ({c['source']}) — {vs}")
    return out


def markdown(rep: dict[str, Any]) -> str:
    scales = rep["scales"]
    claims = {c["id"]: c for c in rep["claims"]}
    L = ["# Reproduction vs published", "", f"**{rep['summary']}** (tiny scale)", ""]
    if "sam3" in scales:
        L += [f"sam3 scale: **{rep['summary_by_scale']['sam3']}**", ""]
    L += ["Generated by `make compare` from `data/published/*.json` and `results/**/*.json` (no training). "
          "Each cell shows the published number as printed; where we have a result it is followed by "
          "→ **ours (Δ = ours − published)**, in the post's printed unit. Tiny-scale results reproduce the "
          "*shape* of the findings (directions, orderings), not the values; the claims below are the test.", ""]
    if rep["unreadable"]:
        L += ["**Unreadable results files:** " + "; ".join(f"{k}: {v}" for k, v in rep["unreadable"].items()), ""]
    L += stale_md(rep)
    for sec in rep["sections"]:
        L += [f"## {sec['title']}", ""]
        if not sec["published_file"]:
            L += [f"_No `data/published/{sec['source']}.json` yet._", ""]
        for t in sec["tables"]:
            L += [f"### {t['label']}" + (f" — {t['caption']}" if t["caption"] else ""), "", f"Source: {sec['source']} {t['section']}".rstrip() + "."
                  + (f" Results: `results/{t['result_file']}.json`." if t["result_file"] else "")
                  + (f" Figure: `results/{t['figure']}`." if t["figure"] else ""), ""]
            rows, cols, g = _grid(t["cells"])
            if cols:
                L.append("| row | " + " | ".join(_md_escape(c) for c in cols) + " |")
                L.append("|---|" + "---|" * len(cols))
                for r in rows:
                    L.append(f"| {_md_escape(r)} | " + " | ".join(_md_escape(_cell_text(g.get((r, c)), scales)) for c in cols) + " |")
                L.append("")
            n_rep = sum(c.get("tiny") is not None for c in t["cells"])
            L.append(f"Reproduced: {n_rep} of {len(t['cells'])} published values (tiny)."
                     + ("" if n_rep else " — not yet run."))
            L.append("")
            L += _claims_md(t["claims"], claims, scales) + [""] if t["claims"] else []
        if sec["unattached_claims"]:
            L += ["### Claims without a published table", ""] + _claims_md(sec["unattached_claims"], claims, scales) + [""]
        if sec["other_results"]:
            L += ["### Other results", ""] + [f"- `results/{o['file']}.json`" for o in sec["other_results"]] + [""]
    return "\n".join(L).rstrip() + "\n"


def stale_md(rep: dict[str, Any]) -> list[str]:
    """The stale-results warning: files made on another base than the committed one (their claims say so too)."""
    rows = [(s, rel, why) for s, d in rep.get("stale", {}).items() for rel, why in sorted(d.items())]
    if not rows:
        return []
    return [f"**Stale: {len(rows)} results file(s) were made on another base model than the committed one** "
            "(rerun their scripts; claims reading them are marked _stale_):", "",
            "| scale | file | why |", "|---|---|---|", *[f"| {s} | `{rel}` | {why} |" for s, rel, why in rows], ""]


def status_block(rep: dict[str, Any]) -> str:
    counts = []
    for post in report.SECTIONS:
        cs = [c for c in rep["claims"] if c["post"] == post and "tiny" in c["verdicts"]]
        if not cs:
            continue
        n = {k: sum(c["verdicts"]["tiny"]["verdict"] == k for c in cs) for k in C.VERDICTS}
        counts.append(f"| {post} | {len(cs)} | {n['holds']} | {n['fails']} | {n['not measurable']} | {n['not yet run']} | {n['error']} |")
    lines = [BEGIN, "## Reproduction status", "",
             "_Regenerated by `make compare`; edits between these markers are overwritten._", "",
             f"**{rep['summary']}** (tiny scale)" + (f"; sam3: **{rep['summary_by_scale']['sam3']}**" if "sam3" in rep["scales"] else ""), "",
             "| source | claims | hold | fail | not measurable | not yet run | error |", "|---|---|---|---|---|---|---|",
             *counts, "", *stale_md(rep), "_not measurable_: the claim's precondition fails at this scale (e.g. an in-domain IoU ordering "
             "when the watch fine-tune did not learn the task); its reading is kept in the detail.", "",
             "- `make compare` — published vs reproduced numbers and every claim's verdict: "
             "[results/COMPARISON.md](results/COMPARISON.md), [results/comparison.json](results/comparison.json), "
             "[results/index.html](results/index.html) (static; open in a browser). No training, seconds.",
             "- `make figures` — redraws every figure from the results JSON (no training) into `results/<section>/fig-*.png|svg`.",
             END]
    return "\n".join(lines)


def update_readme(path: Path, block: str) -> None:
    """Replace the text between the status markers (append the block if the markers are absent)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        new = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        new = text + ("" if text.endswith("\n") or not text else "\n") + "\n" + block + "\n"
    if new != text:
        atomic_write_text(path, new)


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}.holds{color:#18794e}.fails{color:#b42318}.nyr{color:#777}.error{color:#b54708}
figure{margin:.5em 0}figure img{max-width:100%;border:1px solid #ddd}.caption{color:#555;font-size:13px}
section.t{border-top:1px solid #eee;padding-top:.5em}.summary{font-size:18px}"""
VCLASS = {"holds": "holds", "fails": "fails", "not measurable": "nyr", "not yet run": "nyr", "error": "error"}


def html_page(rep: dict[str, Any]) -> str:
    e = html.escape
    scales = rep["scales"]
    claims = {c["id"]: c for c in rep["claims"]}

    def claim_list(ids: list[str]) -> str:
        items = []
        for cid in ids:
            c = claims[cid]
            vs = " ".join(f"<span class='{VCLASS[c['verdicts'][s]['verdict']]}'>[{s}: {e(c['verdicts'][s]['verdict'])}]</span>"
                          f" <small>{e(c['verdicts'][s]['detail'])}</small>" for s in scales if s in c["verdicts"])
            items.append(f"<li><b>{e(cid)}</b> — {e(c['statement'])}. <i>“{e(c['quote'])}”</i> ({e(c['source'])}) {vs}</li>")
        return "<ul>" + "".join(items) + "</ul>" if items else ""

    P = [f"<!doctype html><html><head><meta charset='utf-8'><title>Reproduction at a glance</title><style>{CSS}</style></head><body>",
         "<h1>SAM3 fine-tune reproductions — at a glance</h1>", f"<p class='summary'><b>{e(rep['summary'])}</b> (tiny scale)</p>",
         "<p>Generated by <code>make compare</code> from the results JSON. Cells: published as printed → <b>ours (Δ)</b>.</p>"]
    P.append("<nav><ul>" + "".join(f"<li><a href='#{s['source']}'>{e(s['title'])}</a></li>" for s in rep["sections"]) + "</ul></nav>")
    for sec in rep["sections"]:
        P.append(f"<h2 id='{sec['source']}'>{e(sec['title'])}</h2>")
        for t in sec["tables"]:
            anchor = f"{sec['source']}-{t['id']}"
            P.append(f"<section class='t' id='{e(anchor)}'><h3>{e(t['label'])}" + (f" — {e(t['caption'])}" if t["caption"] else "") + "</h3>")
            P.append(f"<p class='caption'>Source: {e(sec['source'])} {e(t['section'])}"
                     + (f" · results <code>{e(t['result_file'])}.json</code>" if t["result_file"] else " · <span class='nyr'>not yet run</span>") + "</p>")
            rows, cols, g = _grid(t["cells"])
            if cols:
                P.append("<table><tr><th>row</th>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
                for r in rows:
                    P.append(f"<tr><th>{e(r)}</th>" + "".join(f"<td>{_cell_text(g.get((r, c)), scales, True)}</td>" for c in cols) + "</tr>")
                P.append("</table>")
            if t["figure"]:
                P.append(f"<figure><img src='{e(t['figure'])}' alt='{e(t['label'])}'><figcaption class='caption'>"
                         f"{e(t['label'])} — {e(t['caption'])} (redrawn by make figures)</figcaption></figure>")
            P.append(claim_list(t["claims"]) + "</section>")
        if sec["unattached_claims"]:
            P.append("<h3>Claims without a published table</h3>" + claim_list(sec["unattached_claims"]))
        for o in sec["other_results"]:
            P.append(f"<section class='t'><h3>{e(o['file'])}</h3>"
                     + (f"<figure><img src='{e(o['figure'])}' alt='{e(o['file'])}'></figure>" if o["figure"] else "") + "</section>")
    P.append("</body></html>")
    return "\n".join(P) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS, help="results root (default results/)")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README to update between the status markers")
    ap.add_argument("--no-readme", action="store_true", help="do not touch the README")
    args = ap.parse_args(argv)
    rep = build(args.results)
    atomic_write_json(args.results / "comparison.json", rep)
    atomic_write_text(args.results / "COMPARISON.md", markdown(rep))
    atomic_write_text(args.results / "index.html", html_page(rep))
    if not args.no_readme:
        update_readme(args.readme, status_block(rep))
    print(rep["summary"])
    for s in rep["scales"][1:]:
        print(f"{s}: {rep['summary_by_scale'][s]}")
    return rep


if __name__ == "__main__":
    main()
