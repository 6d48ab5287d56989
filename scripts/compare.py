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

A results file is attached to a published table by its own fields, never by a guess from its file name: its
``section`` / ``table`` (``post01`` / ``table-9.14``), or any ``published`` entry naming that table. A table with a
results file is never "not yet run": where the file maps none of the published cells its own rows are shown.
Units: the grids print ours in the post's printed unit (cgF1, pmF1, neg_correct … ×100, the ``factor`` of the
mapping); claim details quote the stored values (fractions in [0, 1]), and each table with a rescaled column
says so above its claims. A failing claim's relation is shown struck (``✗``), so it never reads as holding.
Provenance: results made from a dirty tree, with no commit recorded, or at a commit this checkout does not know
are listed (``meta.code``, :func:`common.io.code_version`).

Usage: python scripts/compare.py [--results DIR] [--readme PATH | --no-readme]
Never trains; runs in seconds.
"""
from __future__ import annotations

import argparse
import html
import re
from pathlib import Path
from typing import Any

from common import claims as C
from common import published as pub
from common import report
from common.io import RESULTS, ROOT, atomic_write_json, atomic_write_text, read_json

BEGIN, END = "<!-- status:begin -->", "<!-- status:end -->"
POST_TITLES = {"post01": "Post 01 — how SAM3 learns a watch task (LoRA, MP-rank, α)",
               "post02": "Post 02 — refusal collapse and its repair",
               "rank_series": "Rank series — papers 81–88 (K-basis adapters; Paper 86: true gradient effective rank)",
               "diagnostics": "Diagnostics — why a reproduction does (not) hold at this scale"}
WATCH_IOU, LVIS_MIOU = ("watch", "iou", 1.0), ("lvis", "mIoU", 1.0)
NEG = ("saco", "neg_correct", 100.0)
CG, PM, MCC = ("saco", "cgF1", 100.0), ("saco", "pmF1", 100.0), ("saco", "IL_MCC", 1.0)
POSMEAN, MEANMASK = ("saco", "pos_mean_IoU", 100.0), ("saco", "mean_mask_IoU", 100.0)
LORA = {f"LoRA F[0..4] r={k}": f"lora_r{k}" for k in (8, 16, 32, 48)}
#: How results/recipes.json fills published tables: published row → recipe, column → (suite, metric, factor
#: to the printed unit). Tables whose script reads the recipes itself (Post 02's) are not listed: the script's own
#: ``published`` entries attach them.
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
            for prow, recipe in spec["rows"].items():
                for pcol, (suite, metric, factor) in spec["columns"].items():
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
    for c in C.registry():
        claim_rows.append({"id": c.id, "post": c.post, "source": c.source, "table": c.table, "quote": c.quote,
                           "statement": c.statement, "reads": list(c.reads), "scales": list(c.scales),
                           "verdicts": {s: verdicts[s][c.id].to_dict() for s in scales if c.id in verdicts[s]}})
    attached = attach(results["tiny"])
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
            files = sorted(attached.get((source, tid), set()) | {c["file_tiny"] for c in cells if c.get("file_tiny")})
            own = [f for f in files if f != "recipes"]
            n_rep = sum(c.get("tiny") is not None for c in cells)
            tables.append({"id": tid, "label": meta.get("label", f"Table {tid}"), "caption": meta.get("caption", ""),
                           "section": meta.get("section", ""), "kind": meta.get("kind", "table"), "cells": cells,
                           "result_file": (own or files or [None])[0], "result_files": files, "reproduced": n_rep,
                           "ours": [] if n_rep else [_ours(rel, results["tiny"][rel], root) for rel in own],
                           "rescaled": _rescaled(source, tid, [results["tiny"][f] for f in own]),
                           "figure": _figure_rel(root, source, tid, [(f, results["tiny"][f]) for f in own]),
                           "claims": [c["id"] for c in claim_rows if c["post"] == source and c["table"] == tid]})
        mapped = {f for t in tables for f in t["result_files"]}
        extra = [rel for rel in results["tiny"] if rel.startswith(source + "/") and rel not in mapped]
        sections.append({"source": source, "title": POST_TITLES[source], "published_file": data is not None,
                         "tables": tables,
                         "other_results": [{**_ours(rel, results["tiny"][rel], root),
                                            "figure": _figure_rel(root, source, "", [(rel, results["tiny"][rel])])} for rel in extra],
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
            "stale": stale, "provenance": {s: provenance(results[s], scales[s]) for s in scales},
            "claims": claim_rows, "sections": sections}


def attach(results: dict[str, dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """``{(source, published table id): {rel, …}}`` from the results files' own fields: a file belongs to the table
    its ``section`` / ``table`` name (``post01`` / ``table-9.14`` → ``("post01", "9.14")``; ``fig-9.3`` → ``fig-9.3``)
    and to every table its ``published`` entries map columns of."""
    out: dict[tuple[str, str], set[str]] = {}
    for rel, doc in results.items():
        if rel == "recipes" or "error" in doc:
            continue
        sec, table = doc.get("section"), doc.get("table")
        if isinstance(sec, str) and isinstance(table, str):
            out.setdefault((sec, table[len("table-"):] if table.startswith("table-") else table), set()).add(rel)
        for p in doc.get("published") or []:
            if isinstance(p, dict) and p.get("source") and p.get("table"):
                out.setdefault((p["source"], str(p["table"])), set()).add(rel)
    return out


def _ours(rel: str, doc: dict[str, Any], root: Path, max_rows: int = 40) -> dict[str, Any]:
    """A results file's own rows for display (where none of its cells map to a published one), with its title."""
    rows = [r for r in doc.get("rows") or [] if isinstance(r, dict)][:max_rows]
    keys = list(dict.fromkeys(k for r in rows for k, v in r.items() if v is None or isinstance(v, (str, int, float, bool))))
    title = doc.get("title") or (doc.get("meta") or {}).get("title") or ""
    md = root / f"{rel}.md"
    if not title and md.exists():  # the Markdown's heading (section.emit writes "# <title>" first)
        first = md.read_text(encoding="utf-8").split("\n", 1)[0]
        title = first[2:].strip() if first.startswith("# ") else ""
    return {"file": rel, "title": title, "keys": keys, "rows": [{k: r.get(k) for k in keys} for r in rows],
            "n_rows": len(doc.get("rows") or []), "md": f"{rel}.md" if (root / f"{rel}.md").exists() else None}


def _rescaled(source: str, tid: str, docs: list[dict[str, Any]]) -> list[str]:
    """The published columns of a table whose printed unit is ours × a factor ≠ 1 (recipe tables and ``published``
    entries), so the claims under it can say their details quote the stored fraction."""
    cols: dict[str, float] = {}
    rows: dict[str, float] = {}
    for spec in RECIPE_TABLES:
        if spec["source"] == source and spec["table"] == tid:
            for label, (_, _, factor) in spec["columns"].items():
                cols[label] = factor
    for d in docs:
        for p in d.get("published") or []:
            if p.get("source") == source and str(p.get("table")) == tid:
                cols[p["column"]] = float(p.get("factor", 1))
                rows.update({r: f for r, f in (p.get("row_factors") or {}).items() if f != 1})
    return [f"{c} (×{f:g})" for c, f in cols.items() if f != 1] + [f"row {r} (×{f:g})" for r, f in rows.items()]


def _figure_rel(root: Path, source: str, tid: str, owners: list[tuple[str, dict[str, Any]]] = ()) -> str | None:
    """The figure of a table (``<source>/fig-<id>.png``) or of the results files that own one (the stem
    ``scripts/figures.py`` writes: ``fig-<id>`` from the file's own ``table`` field; a legacy ``<stem>.png``)."""
    cands = [f"{source}/{report.figure_stem(tid, source)}.png"] if tid else []
    for rel, doc in owners:
        sec, stem = rel.split("/", 1)
        cands += [f"{sec}/{report.figure_stem(str(doc.get('table') or stem), sec)}.png", f"{rel}.png"]
    return next((c for c in cands if (root / c).exists()), None)


#: Results folders outside :data:`report.SECTIONS` whose JSON also records its code (checked for provenance only).
PROVENANCE_EXTRA = ("base", "bench")


def provenance(results: dict[str, dict[str, Any]], root: Path) -> dict[str, str]:
    """``{rel: why}`` for the results files whose code is not pinned: made from a dirty tree (uncommitted or untracked
    code, :func:`common.io.code_version`), with no commit recorded, or at a commit this checkout does not have."""
    docs = dict(results)
    for d in PROVENANCE_EXTRA:
        for p in sorted((root / d).glob("*.json")) if (root / d).is_dir() else []:
            docs[f"{d}/{p.stem}"] = _read(p)
    out, commits = {}, {}
    for rel, doc in docs.items():
        if "error" in doc:
            continue
        code = (doc.get("meta") or {}).get("code") or doc.get("code") or {}
        if not code.get("commit"):
            out[rel] = "no code commit recorded"
        elif code.get("dirty"):
            n = code.get("n_dirty_files") or len(code.get("dirty_files") or [])
            out[rel] = f"made from a dirty tree at {code['commit'][:10]}" + (f" ({n} changed/untracked code files)" if n else "")
        else:
            commits[rel] = code["commit"]
    known = _known_commits(set(commits.values()))
    for rel, c in commits.items():
        if known is not None and c not in known:
            out[rel] = f"commit {c[:10]} is not in this checkout's history"
    return dict(sorted(out.items()))


def _known_commits(commits: set[str]) -> set[str] | None:
    """The subset of ``commits`` this git checkout has (None outside a checkout)."""
    import subprocess

    if not commits:
        return set()
    try:
        r = subprocess.run(["git", "cat-file", "--batch-check"], cwd=ROOT, input="".join(f"{c}^{{commit}}\n" for c in sorted(commits)),
                           capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.split()[0] for line in r.stdout.splitlines() if line.endswith(" commit") or " commit " in line}


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


def detail_text(v: dict[str, Any]) -> str:
    """A verdict's detail as shown: a failing claim's relation is marked ``✗`` so "0.004 >= 0.3" never reads as
    holding (``every`` already marks its failing parts; a precondition that failed is marked the same way)."""
    d = str(v.get("detail", ""))
    if v.get("verdict") == "fails" and "✗" not in d:
        d = "✗ " + d + " — does not hold"
    m = re.match(r"^precondition (\S+) fails \((.*)\); would read (.*)$", d, re.S)
    if m and "✗" not in m.group(2):
        d = f"precondition {m.group(1)} fails (✗ {m.group(2)} — does not hold); would read {m.group(3)}"
    return d


def _claims_md(ids: list[str], claims: dict[str, dict[str, Any]], scales: list[str]) -> list[str]:
    out = []
    for cid in ids:
        c = claims[cid]
        vs = "; ".join(f"{s}: **{ICON[c['verdicts'][s]['verdict']]}**"
                       + (f" _stale_ ({', '.join(c['verdicts'][s]['stale'])})" if c["verdicts"][s].get("stale") else "")
                       + f" — {detail_text(c['verdicts'][s])}" for s in scales if s in c["verdicts"])
        out.append(f"- **{cid}** — {vs}. Claim: {c['statement']}. *“{c['quote']}”* ({c['source']})")
    return out


def _short(v: Any, n: int = 90) -> str:
    t = report.fmt_cell(v)
    return t if len(t) <= n else t[:n - 1] + "…"


def _ours_md(o: dict[str, Any]) -> list[str]:
    """Our rows of a results file that maps no published cell (long strings cut; the full table is its .md)."""
    if not o["keys"]:
        return [f"`results/{o['file']}.json`" + (f" — {o['title']}" if o["title"] else "") + ": no rows in the results "
                "contract (legacy format)" + (f"; see `results/{o['md']}`" if o["md"] else "") + ".", ""]
    L = [f"Ours (`results/{o['file']}.json`, {o['n_rows']} rows" + (f", first {len(o['rows'])}" if o["n_rows"] > len(o["rows"]) else "")
         + (f"; full table `results/{o['md']}`" if o["md"] else "") + "):", "", "| " + " | ".join(_md_escape(k) for k in o["keys"]) + " |",
         "|" + "---|" * len(o["keys"])]
    L += ["| " + " | ".join(_md_escape(_short(r.get(k))) for k in o["keys"]) + " |" for r in o["rows"]]
    return L + [""]


def _status_text(t: dict[str, Any]) -> str:
    n = t["reproduced"]
    line = f"Reproduced: {n} of {len(t['cells'])} published values (tiny)."
    if n:
        return line
    own = [f for f in t["result_files"] if f != "recipes"]
    if own:
        return line + " Results exist (" + ", ".join(f"`{f}.json`" for f in own) + ") but map no published cell of this table " \
            "(their `published` list names none of its columns, or their rows carry no matching `row` label); our rows follow."
    return line + " — not yet run."


def _units_note(t: dict[str, Any]) -> str | None:
    if not t["rescaled"] or not t["claims"]:
        return None
    return ("Units: the grid prints " + ", ".join(t["rescaled"]) + " in the post's unit; the claim details below quote "
            "the results JSON as stored (fractions in [0, 1]).")


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
    L += provenance_md(rep)
    for sec in rep["sections"]:
        L += [f"## {sec['title']}", ""]
        if not sec["published_file"]:
            L += [f"_No `data/published/{sec['source']}.json` yet._", ""]
        for t in sec["tables"]:
            L += [f"### {t['label']}" + (f" — {t['caption']}" if t["caption"] else ""), "", f"Source: {sec['source']} {t['section']}".rstrip() + "."
                  + (" Results: " + ", ".join(f"`results/{f}.json`" for f in t["result_files"]) + "." if t["result_files"] else "")
                  + (f" Figure: `results/{t['figure']}`." if t["figure"] else ""), ""]
            rows, cols, g = _grid(t["cells"])
            if cols:
                L.append("| row | " + " | ".join(_md_escape(c) for c in cols) + " |")
                L.append("|---|" + "---|" * len(cols))
                for r in rows:
                    L.append(f"| {_md_escape(r)} | " + " | ".join(_md_escape(_cell_text(g.get((r, c)), scales)) for c in cols) + " |")
                L.append("")
            L += [_status_text(t), ""]
            for o in t["ours"]:
                L += _ours_md(o)
            if _units_note(t):
                L += [f"_{_units_note(t)}_", ""]
            L += _claims_md(t["claims"], claims, scales) + [""] if t["claims"] else []
        if sec["unattached_claims"]:
            L += ["### Claims without a published table", ""] + _claims_md(sec["unattached_claims"], claims, scales) + [""]
        if sec["other_results"]:
            L += ["### Other results (no published table)", ""]
            for o in sec["other_results"]:
                L += [f"#### `results/{o['file']}.json`" + (f" — {o['title']}" if o["title"] else ""), ""]
                L += ([f"Figure: `results/{o['figure']}`.", ""] if o["figure"] else []) + (_ours_md(o) if o["keys"] else
                      ["Legacy format (no `rows`)" + (f"; see `results/{o['md']}`" if o["md"] else "") + ".", ""])
    return "\n".join(L).rstrip() + "\n"


def stale_md(rep: dict[str, Any]) -> list[str]:
    """The stale-results warning: files made on another base than the committed one (their claims say so too)."""
    rows = [(s, rel, why) for s, d in rep.get("stale", {}).items() for rel, why in sorted(d.items())]
    if not rows:
        return []
    return [f"**Stale: {len(rows)} results file(s) were made on another base model than the committed one** "
            "(rerun their scripts; claims reading them are marked _stale_):", "",
            "| scale | file | why |", "|---|---|---|", *[f"| {s} | `{rel}` | {why} |" for s, rel, why in rows], ""]


def provenance_md(rep: dict[str, Any], full: bool = True) -> list[str]:
    """Results whose code is not pinned: dirty tree, no commit recorded, or a commit this checkout lacks."""
    rows = [(s, rel, why) for s, d in rep.get("provenance", {}).items() for rel, why in d.items()]
    if not rows:
        return []
    head = (f"**Provenance: {len(rows)} results file(s) do not pin their code** (made from a dirty tree, with no commit "
            "recorded, or at a commit not in this checkout; rerun them from a clean commit)")
    if not full:
        return [head + ": listed in [results/COMPARISON.md](results/COMPARISON.md).", ""]
    return [head + ":", "", "| scale | file | why |", "|---|---|---|", *[f"| {s} | `{rel}` | {why} |" for s, rel, why in rows], ""]


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
             *counts, "", *stale_md(rep), *provenance_md(rep, full=False), "_not measurable_: the claim's precondition fails at this scale (e.g. an in-domain IoU ordering "
             "when the watch fine-tune did not learn the task); its reading is kept in the detail.", "",
             "- `make compare` — published vs reproduced numbers and every claim's verdict: "
             "[results/COMPARISON.md](results/COMPARISON.md), [results/comparison.json](results/comparison.json), "
             "[results/index.html](results/index.html) (static; open in a browser). No training, seconds.",
             "- `make figures` — redraws every figure from the results JSON (no training; byte-identical for unchanged JSON) into "
             "`results/<section>/fig-*.png|svg`: each figure by the `figure(result)` of the script that wrote it, the "
             "recipe-table figures from `recipes.json` only for published tables no script writes.",
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
.verdict{font-weight:bold;white-space:nowrap}.notheld{color:#b42318}
figure{margin:.5em 0}figure img{max-width:100%;border:1px solid #ddd}.caption{color:#555;font-size:13px}
section.t{border-top:1px solid #eee;padding-top:.5em}.summary{font-size:18px}.warn{background:#fff7e6;padding:.5em}"""
VCLASS = {"holds": "holds", "fails": "fails", "not measurable": "nyr", "not yet run": "nyr", "error": "error"}


def html_page(rep: dict[str, Any]) -> str:
    e = html.escape
    scales = rep["scales"]
    claims = {c["id"]: c for c in rep["claims"]}

    def detail_html(v: dict[str, Any]) -> str:
        d = e(detail_text(v))
        return d.replace("✗", "<span class='notheld'>✗</span>")

    def claim_list(ids: list[str], units: str | None = None) -> str:
        items = []
        for cid in ids:
            c = claims[cid]
            vs = " ".join(f"<span class='verdict {VCLASS[c['verdicts'][s]['verdict']]}'>{e(s)}: {e(ICON[c['verdicts'][s]['verdict']])}</span>"
                          + (f" <i>stale ({e(', '.join(c['verdicts'][s]['stale']))})</i>" if c["verdicts"][s].get("stale") else "")
                          + f" <small>{detail_html(c['verdicts'][s])}</small>" for s in scales if s in c["verdicts"])
            items.append(f"<li>{vs}<br><b>{e(cid)}</b> — {e(c['statement'])}. <i>“{e(c['quote'])}”</i> ({e(c['source'])})</li>")
        note = f"<p class='caption'>{e(units)}</p>" if units else ""
        return note + "<ul>" + "".join(items) + "</ul>" if items else ""

    def ours_html(o: dict[str, Any]) -> str:
        if not o["keys"]:
            return ("<p class='caption'>Legacy format (no <code>rows</code>)" + (f"; see <a href='{e(o['md'])}'><code>{e(o['md'])}</code></a>"
                    if o["md"] else "") + ".</p>")
        head = (f"<p class='caption'>Ours: <code>{e(o['file'])}.json</code>, {o['n_rows']} rows"
                + (f" (first {len(o['rows'])})" if o["n_rows"] > len(o["rows"]) else "")
                + (f"; full table <a href='{e(o['md'])}'><code>{e(o['md'])}</code></a>" if o["md"] else "") + "</p>")
        body = "".join("<tr>" + "".join(f"<td>{e(_short(r.get(k), 160))}</td>" for k in o["keys"]) + "</tr>" for r in o["rows"])
        return head + "<table><tr>" + "".join(f"<th>{e(k)}</th>" for k in o["keys"]) + "</tr>" + body + "</table>"

    def table_html(rows: list[list[str]]) -> str:
        return "<table>" + "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in r) + "</tr>" for r in rows) + "</table>"

    P = [f"<!doctype html><html><head><meta charset='utf-8'><title>Reproduction at a glance</title><style>{CSS}</style></head><body>",
         "<h1>SAM3 fine-tune reproductions — at a glance</h1>", f"<p class='summary'><b>{e(rep['summary'])}</b> (tiny scale)</p>",
         "<p>Generated by <code>make compare</code> from the results JSON. Cells: published as printed → <b>ours (Δ)</b>, "
         "in the post's printed unit. Claim details quote the results JSON as stored (fractions); a relation marked "
         "<span class='notheld'>✗</span> does not hold.</p>"]
    stale = [[s, rel, why] for s, d in rep.get("stale", {}).items() for rel, why in sorted(d.items())]
    if stale:
        P.append(f"<div class='warn'><b>Stale: {len(stale)} results file(s) made on another base model</b>" + table_html(stale) + "</div>")
    prov = [[s, rel, why] for s, d in rep.get("provenance", {}).items() for rel, why in d.items()]
    if prov:
        P.append(f"<div class='warn'><b>Provenance: {len(prov)} results file(s) do not pin their code</b> "
                 "(dirty tree, no commit recorded, or a commit not in this checkout)" + table_html(prov) + "</div>")
    P.append("<nav><ul>" + "".join(f"<li><a href='#{s['source']}'>{e(s['title'])}</a></li>" for s in rep["sections"]) + "</ul></nav>")
    for sec in rep["sections"]:
        P.append(f"<h2 id='{sec['source']}'>{e(sec['title'])}</h2>")
        for t in sec["tables"]:
            anchor = f"{sec['source']}-{t['id']}"
            P.append(f"<section class='t' id='{e(anchor)}'><h3>{e(t['label'])}" + (f" — {e(t['caption'])}" if t["caption"] else "") + "</h3>")
            P.append(f"<p class='caption'>Source: {e(sec['source'])} {e(t['section'])}"
                     + (" · results " + ", ".join(f"<code>{e(f)}.json</code>" for f in t["result_files"]) if t["result_files"]
                        else " · <span class='nyr'>not yet run</span>") + f" · {e(_status_text(t).replace('`', ''))}</p>")
            rows, cols, g = _grid(t["cells"])
            if cols:
                P.append("<table><tr><th>row</th>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
                for r in rows:
                    P.append(f"<tr><th>{e(r)}</th>" + "".join(f"<td>{_cell_text(g.get((r, c)), scales, True)}</td>" for c in cols) + "</tr>")
                P.append("</table>")
            P.extend(ours_html(o) for o in t["ours"])
            if t["figure"]:
                P.append(f"<figure><img src='{e(t['figure'])}' alt='{e(t['label'])}'><figcaption class='caption'>"
                         f"{e(t['label'])} — {e(t['caption'])} (redrawn by make figures)</figcaption></figure>")
            P.append(claim_list(t["claims"], _units_note(t)) + "</section>")
        if sec["unattached_claims"]:
            P.append("<h3>Claims without a published table</h3>" + claim_list(sec["unattached_claims"]))
        for o in sec["other_results"]:
            P.append(f"<section class='t'><h3>{e(o['file'])}" + (f" — {e(o['title'])}" if o["title"] else "") + "</h3>"
                     + "<p class='caption'>No published table.</p>" + ours_html(o)
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
