"""`make figures`: redraw every figure from the results JSON, in one style, without training.

For each ``results/[<scale>/]<section>/<stem>.json`` (contract: :mod:`common.report`) the renderer is,
in order:

1. ``figure(result) -> matplotlib Figure`` defined at module level in the script that wrote it
   (``result["script"]``, e.g. ``post01/alpha_ladder.py``) — the one function a new script adds;
2. a renderer registered with ``@common.report.figure_for("post01/table-9.15")``;
3. :func:`common.report.generic_figure` (ours as bars, published as hollow markers).

``results/recipes.json`` also yields the recipe-table figures (Post 01 Table 9.2, Post 02 Tables
3.1 / 5.2 …) with the published values marked. Output: ``<section>/fig-<id>.{png,svg}`` beside the JSON.

Usage: python scripts/figures.py [--results DIR]
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from common import published as pub
from common import report
from common.io import RESULTS, ROOT
from common.io import save_figure

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (RECIPE_TABLES, scan)


def _script_renderer(script: str | None) -> Callable[[dict], Any] | None:
    """The ``figure`` function of the script that wrote a result, if it has one."""
    if not script:
        return None
    path = (ROOT / script).resolve()
    if path.suffix != ".py" or not path.exists():
        return None
    name = "_fig_" + "_".join(path.relative_to(ROOT).with_suffix("").parts)
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    fn = getattr(mod, "figure", None)
    return fn if callable(fn) else None


def recipe_figure(spec: dict[str, Any], recipes_doc: dict[str, Any], scale: str) -> Any | None:
    """Ours (bars) vs published (hollow markers) for one recipe table, one panel per column."""
    import matplotlib.pyplot as plt

    transposed = spec.get("transposed", False)
    recipes_of = spec["columns"] if transposed else spec["rows"]
    metrics_of = spec["rows"] if transposed else spec["columns"]
    panels = []
    for mlabel, (suite, metric, factor) in metrics_of.items():
        xs, ours, pubs = [], [], []
        for rlabel, recipe in recipes_of.items():
            row, col = (mlabel, rlabel) if transposed else (rlabel, mlabel)
            v = compare._recipe_value(recipes_doc, recipe, suite, metric)
            try:
                p = pub.value(spec["source"], spec["table"], row, col)["value"]
            except KeyError:
                p = None
            xs.append(recipe)
            ours.append(None if v is None else v * factor)
            pubs.append(p)
        if any(o is not None for o in ours):
            panels.append((mlabel, xs, ours, pubs))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(min(3.6 * len(panels), 18), 3.6), squeeze=False)
    for ax, (mlabel, xs, ours, pubs) in zip(axes[0], panels):
        pos = list(range(len(xs)))
        ax.bar(pos, [o or 0.0 for o in ours], color=report.PALETTE["ours"], alpha=0.85, label=f"ours ({scale})")
        report.mark_published(ax, pos, pubs, line=False)
        ax.set_xticks(pos, xs, rotation=45, ha="right", fontsize=7)
        ax.set_title(mlabel, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{spec['source']} Table {spec['table']} — recipes, ours vs published (printed units)", fontsize=10)
    return fig


def render_all(root: Path = RESULTS) -> list[Path]:
    """Draw every figure under ``root`` (and ``root/sam3``); returns the PNG paths written."""
    report.style()
    written: list[Path] = []
    scales = {"tiny": root, **({"sam3": root / "sam3"} if (root / "sam3").is_dir() else {})}
    for scale, sroot in scales.items():
        results = compare.scan(sroot)
        if "recipes" in results and "error" not in results["recipes"]:
            for spec in compare.RECIPE_TABLES:
                fig = recipe_figure(spec, results["recipes"], scale)
                if fig is not None:
                    written += save_figure(fig, sroot / spec["source"] / report.figure_stem(spec["table"]))[:1]
        for rel, doc in results.items():
            if rel == "recipes" or "error" in doc:
                continue
            section, stem = rel.split("/", 1)
            try:
                fn = _script_renderer(doc.get("script")) or report.FIGURE_REGISTRY.get(rel) or report.generic_figure
                fig = fn(doc)
            except Exception as e:  # noqa: BLE001 - one broken renderer must not stop the rest
                print(f"figure for {scale}:{rel} failed: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            if fig is not None:
                written += save_figure(fig, sroot / section / report.figure_stem(stem))[:1]
    return written


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    paths = render_all(args.results)
    print(f"{len(paths)} figures written")
    for p in paths:
        print(f"  {p.relative_to(args.results) if p.is_relative_to(args.results) else p}")
    return paths


if __name__ == "__main__":
    main()
