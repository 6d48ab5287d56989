"""Rank-series helpers the paper scripts share: their extra CLI flags, mean ± sd over seeds (and its split into
the contract's flat rows), the page's series-table claims, and the pieces of their figures.

Writing, verdicts and the published lookup are the project's (:func:`common.section.emit`, the ``@claim``s in
each script, :func:`common.published.get`); nothing here duplicates them.
"""
from __future__ import annotations

import argparse
import statistics
from typing import Any, Iterable

from common import published as pub
from common.report import PALETTE

SEEDS = (0, 1, 2)
SOURCE = "rank_series"
SECTION = "rank_series"
COLORS = {"ours": PALETTE["ours"], "null": "#7f7f7f", "pretrained": "#e08214"}


def add_args(ap: argparse.ArgumentParser) -> None:
    """The rank-series flags on top of :func:`common.cli.parse`'s: ``--seeds``, ``--corpus``, ``--start`` and
    ``--recompute`` (the same as ``--force``: ignore the cached runs). ``--seed N`` is ``--seeds N``, so the one
    seed list the runs use is the one :func:`common.section.emit` records in the meta."""
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds (default 0 1 2)")
    ap.add_argument("--corpus", default=None, help="text file to use instead of pydoc_data.topics")
    ap.add_argument("--start", choices=("fresh", "pretrained"), default=None,
                    help="starting point of the adapter runs (default: the script's; fresh = the series' regime, "
                         "step-1 loss ≈ ln V)")
    ap.add_argument("--recompute", dest="force", action="store_true", help="same as --force: retrain, ignoring the "
                    "cached runs in data/cache/rank_series")
    seed = ap._option_string_actions.get("--seed")  # the shared flag, here one seed: --seed N = --seeds N
    if seed is not None:
        seed.dest, seed.nargs, seed.default, seed.metavar = "seeds", 1, argparse.SUPPRESS, "N"
        seed.help = "one seed (same as --seeds N)"


def config(args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    """The run config every rank-series result records."""
    return {**kw, "scale": args.scale, "seeds": list(args.seeds), "corpus": args.corpus or "pydoc_data.topics"}


def ms(xs: Iterable[float]) -> dict[str, Any]:
    """Mean, sd (0 for one seed) and the per-seed values."""
    xs = [float(x) for x in xs]
    return {"mean": sum(xs) / len(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "per_seed": xs}


def split(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, list[float]]]]:
    """Rows holding :func:`ms` dicts → (contract rows: ``key`` = mean, ``key_sd`` = sd; and, parallel to them,
    ``{key: per-seed values}``, which the scripts keep in the result's ``per_seed``)."""
    flat, seeds = [], []
    for r in rows:
        f: dict[str, Any] = {}
        s: dict[str, list[float]] = {}
        for k, v in r.items():
            if isinstance(v, dict) and "mean" in v:
                f[k], f[f"{k}_sd"], s[k] = v["mean"], v["sd"], v["per_seed"]
            else:
                f[k] = v
        flat.append(f)
        seeds.append(s)
    return flat, seeds


def seeds_of(result: dict[str, Any], key: str, **match: Any) -> list[float]:
    """Per-seed values of ``key`` in the first row matching ``match`` (from the result's ``per_seed``)."""
    for r, s in zip(result["rows"], result.get("per_seed") or []):
        if all(r.get(k) == v for k, v in match.items()) and key in s:
            return s[key]
    raise KeyError(f"{result.get('table')}: no per-seed {key!r} for {match}")


def series_claim(paper: str) -> dict[str, Any]:
    """The page's series-table entry of ``paper`` ("81" … "88"): {paper, topic, printed, value?} (the text findings
    that are not table cells, data/published/rank_series.json → ``claims``)."""
    for c in pub.load(SOURCE).get("claims", []):
        if c["paper"] == paper:
            return c
    raise KeyError(f"data/published/rank_series.json has no claim for paper {paper}")


def series_value(paper: str) -> float | None:
    """The number of ``paper``'s series-table entry (Paper 83's K-constrained ER, Paper 85's ER bound), or None."""
    v = series_claim(paper).get("value")
    return float(v) if isinstance(v, (int, float)) else None


# ----------------------------------------------------------------------------- figure pieces
def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def legend_below(fig: Any, axes: Iterable[Any], ncol: int = 3) -> None:
    """One legend for the whole figure, below the panels (off the data), each label once."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.tight_layout()
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
                   fontsize=8, frameon=False)


def curves(ax: Any, runs: dict[str, list[dict[str, float]]]) -> None:
    """Held-out loss curves of several adapter runs: mean over seeds, ± sd band where there are several seeds."""
    for name, cs in runs.items():
        steps = sorted(int(s) for s in cs[0])
        ys = [ms(c[str(s)] for c in cs) for s in steps]
        m = [y["mean"] for y in ys]
        line, = ax.plot(steps, m, marker="o", markersize=3, label=name)
        if len(cs) > 1:
            ax.fill_between(steps, [a - y["sd"] for a, y in zip(m, ys)], [a + y["sd"] for a, y in zip(m, ys)],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set(xlabel="adapter step", ylabel="held-out loss (mean ± sd over seeds)")


def subtitle(result: dict[str, Any]) -> str:
    """'scale tiny, seeds [0, 1, 2]' for a figure title."""
    cfg = (result.get("meta") or {}).get("config") or {}
    return f"scale {result.get('scale')}, seeds {cfg.get('seeds')}"
