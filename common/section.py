"""Writing one section result: JSON (source of truth) + Markdown table + figure + claim verdicts.

The plumbing the Post 01 §9–§10 LoRA scripts share (``post01/lora_ranks.py``, ``rank_saturation.py``,
``rslora_boost.py``, ``alpha_ladder.py``, ``alpha_vs_lr.py``): :func:`emit` writes
``<root>/[<scale>/]post01/<table>.json`` through :func:`common.report.write_result`, evaluates the
named claims of :mod:`common.claims` on the written file, renders the Markdown table (ours beside
the published column, then the verdicts) and draws the script's ``figure(result)``.

:func:`verdict` is the record for a reproduction check the script makes itself (a direction, an
ordering or a threshold the post states), :func:`clean` turns NaN/inf into null (the JSON writer
refuses NaN).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from common.io import RESULTS
from common.report import fmt_cell, markdown_table


def results_root(out: Path, scale: str) -> Path:
    """``root`` for write_result: ``--out`` itself, except the CLI's non-tiny default ``results/<scale>``
    (write_result adds the ``<scale>/`` level itself)."""
    out = Path(out)
    return RESULTS if scale != "tiny" and out == RESULTS / scale else out


def section_dir(out: Path, scale: str, section: str = "post01") -> Path:
    from common.report import results_root as rr

    return rr(scale, results_root(out, scale)) / section


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


def verdict(check: str, holds: bool | None, detail: str, published: str = "") -> dict[str, Any]:
    """A script's own reproduction verdict: "holds" / "does not hold" / "not measurable"."""
    v = "not measurable" if holds is None else ("holds" if holds else "does not hold")
    return {"check": check, "verdict": v, "detail": detail, **({"published": published} if published else {})}


def claim_verdicts(ids: Sequence[str], out: Path, scale: str) -> list[dict]:
    """Verdicts of the named claims (:mod:`common.claims`) on the results under ``out``."""
    from common import claims
    from common.report import results_root as rr

    res = claims.Results(rr(scale, results_root(out, scale)))
    return [claims.evaluate(claims.by_id(i), res, scale).to_dict() for i in ids]


def emit(args, table_id: str, rows: list[dict], *, t0: float, config: dict, script: str, title: str,
         published: list[dict] | None = None, verdicts: list[dict] | None = None, extra: dict | None = None,
         notes: str = "", md_keys: Sequence[str] | None = None, figure: Callable[[dict], Any] | None = None,
         claim_ids: Sequence[str] = (), section: str = "post01") -> Path:
    """Write JSON + Markdown (+ figure) for one table; returns the JSON path."""
    from common import report
    from common.io import atomic_write_text, read_json, run_meta, save_figure

    root = results_root(args.out, args.scale)
    rows = clean(rows)
    extra = clean(extra or {})

    def write(vs):
        return report.write_result(section, table_id, rows, published=published, verdicts=clean(vs),
                                   meta=run_meta(config, args.seed, t0), scale=args.scale, extra=extra,
                                   script=script, root=root)

    verdicts = list(verdicts or [])
    path = write(verdicts)
    if claim_ids:
        verdicts += claim_verdicts(claim_ids, args.out, args.scale)
        path = write(verdicts)
    doc = read_json(path)
    md = [f"# {title}", "", f"Scale `{args.scale}`; source of truth `{path.name}`; wall time "
          f"{doc['meta']['wall_time_s']} s (finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
          markdown_table(rows, published, keys=md_keys)]
    own = [v for v in verdicts if "check" in v]
    if own:
        md += ["", "| check | verdict | detail | published |", "|---|---|---|---|"]
        md += [f"| {fmt_cell(v['check'])} | **{v['verdict']}** | {fmt_cell(v['detail'])} | {fmt_cell(v.get('published', ''))} |"
               for v in own]
    cl = [v for v in verdicts if "claim" in v]
    if cl:
        md += ["", "| claim | verdict | detail |", "|---|---|---|"]
        md += [f"| {v['claim']} | **{v['verdict']}** | {fmt_cell(v['detail'])} |" for v in cl]
    if notes:
        md += ["", notes]
    atomic_write_text(path.with_suffix(".md"), "\n".join(md) + "\n")
    if figure is not None:
        report.style()
        fig = figure(doc)
        if fig is not None:
            save_figure(fig, path.parent / report.figure_stem(table_id))
    return path
