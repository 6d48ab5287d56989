"""Plumbing shared by the rank-series scripts: CLI, published-value lookup, mean ± sd, verdicts,
Markdown tables and the JSON/MD/figure writer (JSON is the source of truth)."""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any, Iterable

from common import published as pub
from common.io import RESULTS, atomic_write_json, atomic_write_text, run_meta, save_figure

OUT = RESULTS / "rank_series"


def parse(doc: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The common CLI: --scale micro|tiny, --seeds, --out, --corpus, --recompute."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=("micro", "tiny"), default="tiny", help="micro: seconds (tests); tiny: the results")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output directory (default {OUT})")
    ap.add_argument("--corpus", default=None, help="text file to use instead of pydoc_data.topics")
    ap.add_argument("--recompute", action="store_true", help="ignore cached runs in data/cache/rank_series")
    ap.add_argument("--start", choices=("fresh", "pretrained"), default=None,
                    help="starting point of the adapter runs (default: the script's; fresh = the series' regime, "
                         "step-1 loss ≈ ln V)")
    return ap.parse_args(argv)


def published(table: str, row: str | None = None, column: str | None = None) -> list[dict[str, Any]]:
    """Published values of the rank series page (data/published/rank_series.json)."""
    return pub.lookup("rank_series", table, row, column)


def claim(paper: str) -> dict[str, Any]:
    """The series-table claim of ``paper`` ("81" … "88"): {paper, topic, printed, value?}."""
    for c in pub.load("rank_series").get("claims", []):
        if c["paper"] == paper:
            return c
    raise KeyError(f"data/published/rank_series.json has no claim for paper {paper}")


def pval(table: str, row: str, column: str) -> float | None:
    """One published value (None if the page gives none)."""
    hits = published(table, row, column)
    return hits[0]["value"] if len(hits) == 1 else None


def ms(xs: Iterable[float]) -> dict[str, float]:
    """Mean, sd (0 for one seed) and the per-seed values."""
    xs = [float(x) for x in xs]
    return {"mean": sum(xs) / len(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "per_seed": xs}


def fmt(x: Any, nd: int = 2) -> str:
    """Render a number, a mean±sd dict, or None for a table cell."""
    if x is None:
        return "—"
    if isinstance(x, dict) and "mean" in x:
        return f"{x['mean']:.{nd}f} ± {x['sd']:.{nd}f}"
    if isinstance(x, float):
        return "—" if math.isnan(x) else f"{x:.{nd}f}"
    return str(x)


def verdict(holds: bool | None, rule: str, note: str = "") -> dict[str, Any]:
    """A verdict record: "holds" / "fails" / "not comparable", with the rule that decided it."""
    v = "not comparable" if holds is None else ("holds" if holds else "fails")
    return {"verdict": v, "rule": rule, **({"note": note} if note else {})}


def md_table(rows: list[dict[str, Any]], cols: list[tuple[str, str]], nd: int = 2) -> str:
    """A Markdown table of ``rows`` with columns [(key, header), …]."""
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(k), nd) for k, _ in cols) + " |")
    return "\n".join(out)


def write(args: argparse.Namespace, stem: str, title: str, config: dict, results: dict, md_body: str,
          t0: float, fig: Any = None) -> Path:
    """Write ``<out>/<stem>.json`` (run_meta + results), ``<stem>.md`` and the figure ``<stem>.png/.svg``."""
    out = Path(args.out)
    cfg = {**config, "scale": args.scale, "seeds": args.seeds, "corpus": args.corpus or "pydoc_data.topics"}
    meta = run_meta(cfg, args.seeds[0] if len(args.seeds) == 1 else args.seeds, t0)  # type: ignore[arg-type]
    if fig is not None:
        save_figure(fig, out / stem)
    payload = {"title": title, **meta, "results": results}
    path = atomic_write_json(out / f"{stem}.json", payload)
    md = f"# {title}\n\nScale `{args.scale}`, seeds {args.seeds}, wall time {meta['wall_time_s']} s. " \
         f"Source of truth: `{stem}.json`.\n\n{md_body}\n"
    atomic_write_text(out / f"{stem}.md", md)
    return path


def now() -> float:
    return time.time()
