"""Report helpers every results-producing script uses: write a result, render a table, draw a figure.

RESULTS CONTRACT (what ``make compare`` / ``make figures`` and the claims in :mod:`common.claims` read)
------------------------------------------------------------------------------------------------------
* Every script writes ``results/<section>/<table-id>.json`` with :func:`write_result`, where
  ``section`` is ``post01`` | ``post02`` | ``rank_series`` and ``table-id`` is ``table-<id>`` or
  ``fig-<id>`` with the id of ``data/published/<section>.json`` (``table-9.15``, ``fig-3.2``,
  ``table-5.1b``; rank series ``table-86.1`` …). Content::

      {"meta": {...common.io.run_meta...}, "scale": "tiny", "section": "post01", "table": "table-9.15",
       "script": "post01/alpha_ladder.py",
       "rows": [{"row": "128", "alpha": 128, "watch_iou": 0.61, ...}, ...],
       "published": [{"source": "post01", "table": "9.15", "column": "watch IoU", "key": "watch_iou", "factor": 1}],
       "verdicts": [...], ...extra}

  ``rows`` use snake_case keys; numbers are plain floats/ints (null where not measured). A row that
  corresponds to a published row carries ``"row": <the published row label>`` (exactly as in
  ``data/published``), and each ``published`` entry maps one of our keys to a published column:
  ``ours × factor`` is in the printed unit (``factor`` 100 when we store a fraction and the post
  prints %). Never copy a published number into ``rows``.
* Recipe evaluations write ``results/recipes.json``::

      {"meta": ..., "scale": "tiny", "recipes": {"base": {"watch": {"iou": .., "dice": ..},
        "saco": {"neg_correct": .., "cgF1": .., "IL_MCC": .., "pmF1": .., "pos_mean_IoU": ..,
                 "mean_mask_IoU": .., "neg_presence_sigmoid_mean": ..},
        "lvis": {"mIoU": .., "pmF1": ..}}, "frozen_te": {...}, ...}}

  (the dict :func:`common.evaluate.evaluate_model` returns, per recipe). Every metric is a
  **fraction in [0, 1]** (the posts print cgF1, pmF1, neg_correct … ×100). Recipe names:
  ``base, all_trainable, frozen_te, fusion_only, lora_r8, lora_r16, lora_r32, lora_r48,
  lvis_replay, lvis_replay_n100, lvis_replay_neg, recovery_frozen_te_boost, presence_only``.
* Scale ``tiny`` writes under ``results/``; any other scale under ``results/<scale>/`` with the same
  layout (``results/sam3/recipes.json``, ``results/sam3/post01/table-9.15.json``; ``micro`` runs
  go to ``results/micro/`` and are never reported).
* Figures: ``results/<section>/fig-<id>.{png,svg}``, redrawn by ``make figures`` from the JSON.
  A script plugs its figure in with one module-level function ``figure(result: dict) -> Figure``
  (``scripts/figures.py`` imports the script named in ``result["script"]``); a result without one
  gets a generic "ours vs published" figure. Use :func:`style` and :func:`mark_published`.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Sequence

from common.io import RESULTS, ROOT, atomic_write_json

SECTIONS = ("post01", "post02", "rank_series", "diagnostics")
SCALES = ("micro", "tiny", "sam3")
PALETTE = {"ours": "#1b6ca8", "published": "#c0392b", "sam3": "#2e8b57"}


def result_stem(table_id: str) -> str:
    """'9.15' -> 'table-9.15'; 'table-9.15' / 'fig-3.2' / 'paper-86' unchanged."""
    return table_id if not table_id[:1].isdigit() else f"table-{table_id}"


def figure_stem(table_id: str, section: str | None = None) -> str:
    """File stem of a result's figure: 'table-9.15' -> 'fig-9.15'. Where ``section``'s post numbers a table and a
    figure alike (Post 01 Table 6.2 and Fig 6.2), the table's figure is 'fig-6.2-table', so each has its own file."""
    stem = result_stem(table_id)
    if stem.startswith("table-"):
        fig = "fig-" + stem[len("table-"):]
        return f"{fig}-table" if section is not None and fig in _published_tables(section) else fig
    return stem if stem.startswith("fig-") else f"fig-{stem}"


def _published_tables(section: str) -> set[str]:
    """The table and figure ids a post's published data names (empty for a section without one)."""
    from common import published

    return set(published.load(section).get("tables", {})) if section in published.SOURCES else set()


def results_root(scale: str, root: str | Path = RESULTS) -> Path:
    """``results/`` for tiny, ``results/<scale>/`` otherwise."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {SCALES}")
    return Path(root) if scale == "tiny" else Path(root) / scale


#: Sections whose results are made from the SAM3 base model (the rank series runs its own small GPT).
BASED_SECTIONS = ("post01", "post02", "diagnostics")


def current_base_hash(scale: str) -> str | None:
    """The config hash of the base model the code gives at ``scale`` (micro / tiny; None for sam3, whose base
    is the user's checkpoint): every results JSON of :data:`BASED_SECTIONS` records it as ``meta.base_hash``,
    and ``make compare`` marks a result made on another base as stale."""
    if scale not in ("micro", "tiny"):
        return None
    from common.runs import base_hash
    from common.worlds import worlds_hash

    return base_hash(scale, worlds_hash(scale))


def result_base_hash(rel: str, doc: dict[str, Any]) -> str | None:
    """The base hash a results file records (``recipes.json``: top-level ``base_hash``; others ``meta.base_hash``)."""
    return doc.get("base_hash") if rel == "recipes" else (doc.get("meta") or {}).get("base_hash")


def stale_results(results: dict[str, dict[str, Any]], scale: str) -> dict[str, str]:
    """``{rel: why}`` for the results of ``scale`` made on another base than the one the code gives now (or
    recording none); ``results`` maps ``recipes`` / ``<section>/<stem>`` to the parsed JSON."""
    want = current_base_hash(scale)
    if want is None:
        return {}
    out = {}
    for rel, doc in results.items():
        if "error" in doc or not (rel == "recipes" or rel.split("/", 1)[0] in BASED_SECTIONS):
            continue
        got = result_base_hash(rel, doc)
        if got != want:
            out[rel] = f"made on base {got or '(not recorded)'}; the committed base is {want}"
    return out


def _script_name() -> str | None:
    try:
        p = Path(sys.argv[0]).resolve()
        return str(p.relative_to(ROOT)) if p.suffix == ".py" else None
    except (ValueError, IndexError):
        return None


def load_script(path: str | Path) -> ModuleType:
    """Import a section script (``post01/alpha_ladder.py``) as a module without running its ``main``: the one
    loader ``make figures`` (for ``figure(result)``) and the claims registry (for its ``@claim``s) use."""
    path = (ROOT / path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"script {path} does not exist")
    name = "_script_" + "_".join(path.relative_to(ROOT).with_suffix("").parts)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def write_result(section: str, table_id: str, rows: Sequence[dict[str, Any]], *, published: Sequence[dict[str, Any]] | None = None,
                 verdicts: Sequence[dict[str, Any]] | None = None, meta: dict[str, Any], scale: str,
                 extra: dict[str, Any] | None = None, script: str | None = None, root: str | Path | None = None) -> Path:
    """Atomically write ``<root>/<section>/<table-id>.json`` per the contract above; returns the path. ``root`` is
    the scale's results directory (default :func:`results_root`; the CLI's ``--out``). Called by
    :func:`common.section.emit`, the one writer; scripts do not call it themselves."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; expected one of {SECTIONS}")
    rows = [dict(r) for r in rows]
    for i, r in enumerate(rows):
        bad = [k for k in r if not isinstance(k, str) or " " in k]
        if bad:
            raise ValueError(f"{section}/{table_id}: rows[{i}] has keys {bad}; use snake_case strings")
    for p in published or ():
        missing = {"source", "table", "column", "key"} - set(p)
        if missing:
            raise ValueError(f"{section}/{table_id}: published entry {p} lacks {sorted(missing)}")
    stem = result_stem(table_id)
    if section in BASED_SECTIONS and "base_hash" not in meta:
        meta = {**meta, "base_hash": current_base_hash(scale)}
    doc = {"meta": meta, "scale": scale, "section": section, "table": stem, "script": script or _script_name(),
           "rows": rows, "published": list(published or []), "verdicts": list(verdicts or []), **(extra or {})}
    root = results_root(scale) if root is None else Path(root)
    return atomic_write_json(root / section / f"{stem}.json", doc)


def columns(source: str, table: str, keys: dict[str, str | tuple[str, float]],
            row_factors: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Build ``published`` entries: ``{"watch_iou": "watch IoU", "neg_correct": ("neg-correct", 100)}``.

    ``row_factors`` is for a table whose rows are metrics (Post 02 Tables 1.1, 4.1: one printed unit per row):
    ``{row label: factor}`` overrides the column's factor on that row."""
    out = []
    for key, col in keys.items():
        name, factor = (col, 1.0) if isinstance(col, str) else col
        out.append({"source": source, "table": table, "column": name, "key": key, "factor": factor,
                    **({"row_factors": dict(row_factors)} if row_factors else {})})
    return out


def factor_of(spec: dict[str, Any], row: Any) -> float:
    """The factor that takes our value on ``row`` to the printed unit of the published column ``spec``."""
    return float((spec.get("row_factors") or {}).get(str(row), spec.get("factor", 1.0)))


def pairs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours beside published for a result: one dict per (row, mapped column) with both values present or not."""
    from common import published as pub

    out = []
    for spec in result.get("published") or []:
        for r in result.get("rows", []):
            label, ours = r.get("row"), r.get(spec["key"])
            if label is None:
                continue
            try:
                p = pub.value(spec["source"], spec["table"], str(label), spec["column"])
            except (KeyError, FileNotFoundError):
                p = None
            ours_printed_unit = None if ours is None else float(ours) * factor_of(spec, label)
            out.append({"source": spec["source"], "table": spec["table"], "row": str(label), "column": spec["column"],
                        "key": spec["key"], "ours": ours_printed_unit, "published": None if p is None else p["value"],
                        "printed": None if p is None else p["printed"], "unit": None if p is None else p["unit"],
                        "diff": None if p is None or ours is None else ours_printed_unit - p["value"]})
    return out


def transpose(rows: Sequence[dict[str, Any]], metrics: dict[str, str], columns: dict[str, str],
              by: str = "recipe") -> list[dict[str, Any]]:
    """Recipe rows → metric rows, for a table printed with metrics as rows (Post 02 Tables 1.1, 4.1): one row per
    ``{row label: metric key}``, one key per ``{column key: rows' `by` value}``; absent values stay None."""
    index = {r[by]: r for r in rows}
    return [{"row": label, "metric": key, **{ck: (index.get(rv) or {}).get(key) for ck, rv in columns.items()}}
            for label, key in metrics.items()]


def fmt_cell(v: Any) -> str:
    """One Markdown cell: floats to 4 significant digits, dicts as ``k: v`` lists, ``|`` escaped (the posts' labels use it)."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items())
    return str(v).replace("|", "\\|")


def markdown_table(rows: Sequence[dict[str, Any]], published: Sequence[dict[str, Any]] | None = None,
                   keys: Sequence[str] | None = None) -> str:
    """Markdown of ``rows``; for each key mapped in ``published`` a '(published)' column follows ours,
    showing the printed string, and a source line names post, table, row label and column."""
    from common import published as pub

    keys = list(keys or dict.fromkeys(k for r in rows for k in r))
    specs = {p["key"]: p for p in published or []}
    head: list[str] = []
    for k in keys:
        head.append(k)
        if k in specs:
            head.append(f"{k} (published)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = []
        for k in keys:
            cells.append(fmt_cell(r.get(k)))
            if k in specs:
                try:
                    p = pub.value(specs[k]["source"], specs[k]["table"], str(r.get("row")), specs[k]["column"])
                    cells.append(fmt_cell(p["printed"]))
                except (KeyError, FileNotFoundError):
                    cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    if specs:
        src = "; ".join(f"`{k}` ← {p['source']} Table {p['table']}, column “{p['column']}”".replace("|", "\\|")
                        + (f" (ours ×{p['factor']:g})" if float(p.get('factor', 1)) != 1 else "")
                        + ("; ours × " + ", ".join(f"{f:g} on “{r}”" for r, f in p["row_factors"].items() if f != 1)
                           if p.get("row_factors") else "") for k, p in specs.items())
        lines.append("")
        lines.append(f"Published values by row label (`row`): {src}.")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- figures
def style() -> None:
    """The project's one plotting style (seaborn whitegrid, readable sizes, no top/right spines)."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", font_scale=0.9)
    matplotlib.rcParams.update({"figure.figsize": (6.4, 4.0), "figure.dpi": 110, "axes.spines.top": False,
                                "axes.spines.right": False, "axes.titlesize": 11, "legend.frameon": False,
                                "savefig.bbox": "tight"})


def mark_published(ax: Any, xs: Iterable[Any], ys: Iterable[float | None], label: str = "published", *,
                   color: str = PALETTE["published"], line: bool = True) -> None:
    """Draw published values as hollow markers joined by a dashed line (missing values skipped)."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if not pts:
        return
    x, y = zip(*pts)
    ax.plot(x, y, linestyle="--" if line else "none", marker="o", markerfacecolor="none", markeredgecolor=color,
            color=color, linewidth=1.0, markersize=7, label=label, zorder=3)


def generic_figure(result: dict[str, Any]) -> Any | None:
    """Fallback figure: every mapped (row, column) — ours as bars, published as hollow markers.

    Values are shown in the post's printed unit. Returns None when nothing is mapped.
    """
    import matplotlib.pyplot as plt

    ps = [p for p in pairs(result) if p["ours"] is not None or p["published"] is not None]
    if not ps:
        return None
    cols = list(dict.fromkeys(p["column"] for p in ps))
    fig, axes = plt.subplots(1, len(cols), figsize=(min(4.2 * len(cols), 16), 3.6), squeeze=False)
    for ax, col in zip(axes[0], cols):
        sub = [p for p in ps if p["column"] == col]
        xs = list(range(len(sub)))
        ax.bar(xs, [p["ours"] or 0.0 for p in sub], color=PALETTE["ours"], alpha=0.85, label=f"ours ({result.get('scale')})")
        mark_published(ax, xs, [p["published"] for p in sub], line=False)
        ax.set_xticks(xs, [p["row"] for p in sub], rotation=40, ha="right", fontsize=7)
        ax.set_title(f"{col}" + (f" [{sub[0]['unit']}]" if sub[0]["unit"] else ""))
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{result.get('section')} {result.get('table')} — ours vs published", fontsize=10)
    return fig
