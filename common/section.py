"""The one writer: a section result as JSON (source of truth) + Markdown table + figure + claim verdicts.

Every section script (``post01/``, ``post02/``, ``rank_series/``, ``scripts/diagnose_*``) ends with one call::

    section.emit(args, "9.15", rows, t0=t0, config=config, title="Table 9.15 — …",
                 published=PUBLISHED, extra=extra, figure=figure, section="post01")

:func:`emit` writes ``<--out>/<section>/<table-id>.json`` through :func:`common.report.write_result` (the
results contract), judges every claim that reads this table (the ``@claim``s beside the scripts,
:func:`common.claims.claims_reading`), writes the verdicts into the JSON, renders the Markdown table
(ours beside the published column, then the verdicts) and draws the script's ``figure(result)``, the one
figure signature (``make figures`` redraws it from the JSON alone).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from common.io import ROOT
from common.report import fmt_cell, markdown_table


def clean(x: Any) -> Any:
    """``x`` with every non-finite float replaced by None (recursively), numpy scalars made plain."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)) and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _caller_script(depth: int = 2) -> str | None:
    f = Path(sys._getframe(depth).f_globals.get("__file__", "")).resolve()
    return str(f.relative_to(ROOT)) if f.suffix == ".py" and f.is_relative_to(ROOT) else None


def claim_verdicts(rel: str, root: Path, scale: str) -> list[dict]:
    """Verdicts of every claim that reads ``rel`` (``"post01/table-9.15"``), on the results under ``root``."""
    from common import claims

    res = claims.Results(root)
    return [claims.evaluate(c, res, scale).to_dict() for c in claims.claims_reading(rel) if scale in c.scales]


def verdict_lines(verdicts: Sequence[dict]) -> list[str]:
    """The Markdown block of a table's claim verdicts."""
    if not verdicts:
        return []
    out = ["", "| claim | verdict | detail |", "|---|---|---|"]
    return out + [f"| {v['claim']} | **{v['verdict']}** | {fmt_cell(v['detail'])} |" for v in verdicts]


def emit(args, table_id: str, rows: list[dict], *, t0: float, config: dict, title: str,
         published: list[dict] | None = None, extra: dict | None = None, notes: str = "",
         md_keys: Sequence[str] | None = None, figure: Callable[[dict], Any] | None = None,
         section: str = "post01", script: str | None = None, checks: Sequence[dict] = ()) -> Path:
    """Write JSON + Markdown (+ figure) for one table and judge its claims; returns the JSON path.

    ``args`` is the parsed CLI (:func:`common.cli.parse`: ``--scale``, ``--out`` = this scale's results
    directory, ``--seed``); ``script`` defaults to the calling file. ``checks``: a diagnostic script's own
    checks (:func:`common.claims.check`, not claims of the posts), stored under ``checks`` and listed."""
    from common import report
    from common.io import atomic_write_text, read_json, run_meta, save_figure

    script = script or _caller_script()
    root = Path(args.out)
    rows, extra = clean(rows), clean(extra or {})
    if checks:
        extra["checks"] = clean(list(checks))
    seed = getattr(args, "seed", None)
    meta = run_meta(config, getattr(args, "seeds", None) if seed is None else seed, t0)

    def write(vs: list[dict]) -> Path:
        return report.write_result(section, table_id, rows, published=published, verdicts=vs, meta=meta,
                                   scale=args.scale, extra=extra, script=script, root=root)

    path = write([])
    verdicts = claim_verdicts(f"{section}/{path.stem}", root, args.scale)
    if verdicts:
        path = write(verdicts)
    doc = read_json(path)
    md = [f"# {title}", "", f"Scale `{args.scale}`; source of truth `{path.name}`; wall time "
          f"{doc['meta']['wall_time_s']} s (finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
          markdown_table(rows, published, keys=md_keys), *verdict_lines(verdicts)]
    if checks:
        md += ["", "| check | verdict | detail | published |", "|---|---|---|---|"]
        md += [f"| {fmt_cell(c['check'])} | **{c['verdict']}** | {fmt_cell(c['detail'])} | {fmt_cell(c.get('published', ''))} |"
               for c in checks]
    if notes:
        md += ["", notes]
    atomic_write_text(path.with_suffix(".md"), "\n".join(md) + "\n")
    if figure is not None:
        report.style()
        fig = figure(doc)
        if fig is not None:
            save_figure(fig, path.parent / report.figure_stem(table_id, section))
    return path
