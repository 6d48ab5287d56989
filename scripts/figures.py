"""`make figures`: redraw every figure from the results JSON, in one style, without training.

Every figure file has exactly one owner (:func:`plan`):

* ``results/[<scale>/]<section>/<stem>.json`` (contract: :mod:`common.report`) owns
  ``<section>/fig-<id>.{png,svg}`` beside it (``<id>`` from the file's own ``table`` field: ``table-9.15`` →
  ``fig-9.15``). It is drawn by ``figure(result)`` of the script named in ``result["script"]`` (loaded with
  :func:`common.report.load_script`), or by :func:`common.report.generic_figure` when the result names no
  script or the script defines no ``figure``.
* ``results/recipes.json`` owns the recipe-table figures (Post 01 Table 4.2, Post 02 Tables 1.1 / 3.1 / 4.1 / 5.2
  …: :data:`compare.RECIPE_TABLES`) **only for the published tables no results file owns**: a script's own figure
  wins (Post 01 Tables 9.2, 9.4, 9.11, 9.13 are drawn by their scripts, not from recipes.json).

A renderer that raises is reported and the others still run; the process exits 1 at the end if any failed.
A renderer that returns None draws nothing (a result without a figure). Figures are deterministic
(:func:`common.io.save_figure`): redrawing unchanged JSON leaves the committed PNG/SVG byte-identical, which
``tests/test_figures.py`` checks.

Usage: python scripts/figures.py [--results DIR]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from common import published as pub
from common import report
from common.io import RESULTS, save_figure

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (RECIPE_TABLES, scan, _recipe_value)


@dataclass
class Job:
    """One figure file pair to draw: ``out`` is the stem (``…/post01/fig-9.15``), ``source`` the results file it
    is drawn from, ``owner`` who draws it (a script path, ``generic`` or ``recipes.json``)."""
    scale: str
    out: Path
    source: str
    owner: str
    draw: Callable[[], Any]


@dataclass
class Rendered:
    """What :func:`render_all` did: ``written`` the distinct files (PNG and SVG), ``failed`` ``{source: error}``,
    ``empty`` the sources whose renderer returned no figure, ``jobs`` the plan."""
    written: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def figures(self) -> list[Path]:
        """The PNG files written (one per figure)."""
        return [p for p in self.written if p.suffix == ".png"]


def script_renderer(script: str | None) -> tuple[str, Callable[[dict], Any]]:
    """``(owner, figure)`` for a result written by ``script``: that script's module-level ``figure(result)``, else
    :func:`common.report.generic_figure`. A script that is named but cannot be loaded raises (reported as a failure)."""
    if script:
        fn = getattr(report.load_script(script), "figure", None)
        if callable(fn):
            return script, fn
    return "generic", report.generic_figure


def figure_out(sroot: Path, rel: str, doc: dict[str, Any]) -> Path:
    """The figure stem a results file owns: beside it, ``fig-<id>`` from its own ``table`` field (else its file name)."""
    section, stem = rel.split("/", 1)
    return sroot / section / report.figure_stem(str(doc.get("table") or stem), section)


def recipe_figure(spec: dict[str, Any], recipes_doc: dict[str, Any], scale: str) -> Any | None:
    """Ours (bars) vs published (hollow markers) for one recipe table, one panel per column."""
    import matplotlib.pyplot as plt

    panels = []
    for mlabel, (suite, metric, factor) in spec["columns"].items():
        xs, ours, pubs = [], [], []
        for rlabel, recipe in spec["rows"].items():
            v = compare._recipe_value(recipes_doc, recipe, suite, metric)
            xs.append(recipe)
            ours.append(None if v is None else v * factor)
            pubs.append(pub.get(spec["source"], spec["table"], rlabel, mlabel))
        if any(o is not None for o in ours):
            panels.append((mlabel + (" (×100)" if factor != 1 else ""), xs, ours, pubs,
                           "score (0–100)" if factor != 1 else "fraction (0–1)"))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(min(3.6 * len(panels), 18), 3.6), squeeze=False)
    for ax, (mlabel, xs, ours, pubs, unit) in zip(axes[0], panels):
        pos = list(range(len(xs)))
        ax.bar(pos, [o or 0.0 for o in ours], color=report.PALETTE["ours"], alpha=0.85, label=f"ours ({scale})")
        report.mark_published(ax, pos, pubs, line=False)
        ax.set_xticks(pos, xs, rotation=45, ha="right", fontsize=7)
        ax.set_title(mlabel, fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper right", frameon=False)  # off the bars
    fig.tight_layout(rect=(0, 0, 0.94, 0.93))
    fig.suptitle(f"{spec['source']} Table {spec['table']} — recipes, ours vs published (printed units)", fontsize=10)
    return fig


def _scales(root: Path) -> dict[str, Path]:
    return {"tiny": root, **({"sam3": root / "sam3"} if (root / "sam3").is_dir() else {})}


def _unused_figure_functions(script: str | None) -> list[str]:
    """``figure_*`` functions of a script that has no ``figure(result)``: `make figures` cannot find them (only
    ``section.emit(..., figure=…)`` draws them), so its results get the generic figure instead."""
    if not script:
        return []
    mod = report.load_script(script)
    return [] if callable(getattr(mod, "figure", None)) else sorted(
        n for n in vars(mod) if n.startswith("figure_") and callable(getattr(mod, n)))


def plan(root: Path = RESULTS, warnings: list[str] | None = None) -> tuple[list[Job], dict[str, str]]:
    """Every figure to draw under ``root`` (and ``root/sam3``), one owner per figure file; and ``{source: error}``
    for results whose renderer cannot be resolved (a script that does not load) or two files claiming one figure.
    ``warnings`` (if given) collects scripts whose ``figure_*`` functions `make figures` cannot reach."""
    jobs: list[Job] = []
    errors: dict[str, str] = {}
    for scale, sroot in _scales(root).items():
        results = compare.scan(sroot)
        owned: dict[Path, str] = {}
        for rel, doc in results.items():
            if rel == "recipes" or "error" in doc:
                continue
            src = f"{scale}:{rel}"
            out = figure_out(sroot, rel, doc)
            if out in owned:
                errors[src] = f"{out.name}.png is also drawn from {owned[out]}; a figure has one owner"
                continue
            try:
                owner, fn = script_renderer(doc.get("script"))
                unused = _unused_figure_functions(doc.get("script")) if owner == "generic" else []
                if unused and warnings is not None:
                    warnings.append(f"{src}: {doc.get('script')} defines {', '.join(unused)} but no module-level "
                                    "figure(result); drawn with the generic figure")
            except Exception as e:  # noqa: BLE001 - a script that does not import is this result's failure only
                errors[src] = f"loading {doc.get('script')}: {type(e).__name__}: {e}"
                continue
            owned[out] = src
            jobs.append(Job(scale, out, src, owner, lambda fn=fn, doc=doc: fn(doc)))
        recipes_doc = results.get("recipes")
        if recipes_doc and "error" not in recipes_doc:
            for spec in compare.RECIPE_TABLES:
                out = sroot / spec["source"] / report.figure_stem(spec["table"], spec["source"])
                if out in owned:  # a script writes this table and draws its figure
                    continue
                owned[out] = f"{scale}:recipes"
                jobs.append(Job(scale, out, f"{scale}:recipes → {spec['source']} Table {spec['table']}", "recipes.json",
                                lambda spec=spec, scale=scale: recipe_figure(spec, recipes_doc, scale)))
    return jobs, errors


def render_all(root: Path = RESULTS) -> Rendered:
    """Draw every figure of :func:`plan`; a failing renderer is recorded (and printed) and the rest still run."""
    import matplotlib

    warnings: list[str] = []
    jobs, failed = plan(Path(root), warnings)
    done = Rendered(failed=dict(failed), jobs=jobs, warnings=warnings)
    for job in jobs:
        with matplotlib.rc_context():  # a renderer's rcParams changes do not leak into the next figure
            report.style()
            try:
                fig = job.draw()
                if fig is None:
                    done.empty.append(job.source)
                    continue
                done.written += save_figure(fig, job.out)
            except Exception as e:  # noqa: BLE001 - one broken renderer must not stop the rest
                done.failed[job.source] = f"{job.owner}: {type(e).__name__}: {e}"
            finally:
                import matplotlib.pyplot as plt

                plt.close("all")
    done.written = sorted(set(done.written))
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    done = render_all(args.results)
    root = args.results
    print(f"{len(done.figures)} figures written ({len(done.written)} files, PNG + SVG)")
    by_out = {Path(f"{j.out}.png"): j for j in done.jobs}
    for p in done.figures:
        j = by_out.get(p)
        print(f"  {p.relative_to(root) if p.is_relative_to(root) else p}  ← {j.owner if j else '?'}")
    if done.empty:
        print(f"{len(done.empty)} results draw no figure: {', '.join(done.empty)}")
    for w in done.warnings:
        print(f"warning: {w}")
    sys.stdout.flush()
    if done.failed:
        print(f"{len(done.failed)} figure(s) FAILED:", file=sys.stderr)
        for src, err in done.failed.items():
            print(f"  {src}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
