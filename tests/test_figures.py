"""Figures are derived, never stale: `make figures` over a copy of the committed results/ runs without an error and
redraws every committed figure byte-for-byte (common.io.save_figure is deterministic). And the training the results
come from repeats bit-for-bit on one machine at one thread count (a micro run, seconds).

Why bytes and not mtimes: a fresh clone gives every file its checkout time (in index order, so ``fig-9.15.png`` can
be older than ``table-9.15.json`` by microseconds), so "no figure older than its JSON" says nothing there; a JSON
rewritten without a redraw shows up as a figure that no longer matches its redraw, on any checkout.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from common.io import RESULTS, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import figures  # noqa: E402


@pytest.fixture(scope="module")
def redrawn(tmp_path_factory) -> tuple[Path, figures.Rendered]:
    """`make figures` over a copy of results/ without its figures (≈20 s on 2 shared cores)."""
    if not (RESULTS / "recipes.json").exists() and not any(RESULTS.glob("*/*.json")):
        pytest.skip("no committed results")
    tmp = tmp_path_factory.mktemp("results") / "results"
    shutil.copytree(RESULTS, tmp, ignore=shutil.ignore_patterns("*.png", "*.svg", "*.lock", "*.tmp"))
    return tmp, figures.render_all(tmp)


def test_every_figure_renders_from_the_committed_results(redrawn) -> None:
    tmp, done = redrawn
    failed = dict(done.failed)
    assert not failed, "renderers failed:\n" + "\n".join(f"  {k}: {v}" for k, v in failed.items())
    assert done.figures, "no figure drawn"
    outs = [j.out for j in done.jobs]
    assert len(outs) == len(set(outs)), "a figure file has two owners"


def _drawn_by(png: Path) -> str | None:
    """The "Software" text chunk matplotlib writes into a PNG ("Matplotlib version3.11.2, https://matplotlib.org/")."""
    data = png.read_bytes()
    i = data.find(b"Software\x00")
    return None if i < 0 else data[i + 9:data.find(b",", i)].decode("latin-1")


def test_committed_figures_equal_their_redraw(redrawn) -> None:
    """Each figure drawn from the committed JSON is byte-identical to the committed PNG/SVG: a result rewritten
    without `make figures`, a renderer changed without a redraw, or a non-deterministic renderer fails here.
    Bytes depend on the matplotlib version (requirements.txt does not pin it): figures committed by another
    version are not compared, and if none is comparable the test skips."""
    import matplotlib

    tmp, done = redrawn
    ours = f"Matplotlib version{matplotlib.__version__}"
    stale, missing, other_version = [], [], []
    for p in done.written:
        committed = RESULTS / p.relative_to(tmp)
        if not committed.exists():
            missing.append(str(committed.relative_to(ROOT)))
            continue
        png = committed.with_suffix(".png")
        if png.exists() and _drawn_by(png) != ours:
            other_version.append(str(committed.relative_to(ROOT)))
        elif hashlib.sha256(committed.read_bytes()).digest() != hashlib.sha256(p.read_bytes()).digest():
            stale.append(str(committed.relative_to(ROOT)))
    assert not missing and not stale, (f"run `make figures`: {len(stale)} committed figure(s) differ from a redraw of their "
                                       f"JSON {stale}; {len(missing)} not committed {missing}")
    if other_version and len(other_version) == len(done.written):
        pytest.skip(f"the committed figures were drawn by another matplotlib than {ours}; bytes not comparable")


def test_no_committed_figure_without_an_owner(redrawn) -> None:
    """Every ``results/<section>/fig-*.png`` is drawn by `make figures` from some results file (none is left over
    from a result that no longer exists or was renamed)."""
    tmp, done = redrawn
    owned = {Path(f"{j.out}.png").relative_to(tmp) for j in done.jobs}
    orphans = sorted(str(p.relative_to(RESULTS)) for sec in ("post01", "post02", "rank_series", "diagnostics")
                     for p in (RESULTS / sec).glob("fig-*.png") if p.relative_to(RESULTS) not in owned)
    assert not orphans, f"figures no results file draws (delete or rename them): {orphans}"


def test_a_micro_run_repeats_bit_for_bit(tmp_path, monkeypatch) -> None:
    """Same seed, same thread count, same machine: two fresh trainings give the same log and the same checkpoint
    bytes (what README "Reproducibility" promises; another thread count or CPU only repeats within a tolerance)."""
    import torch

    from common import runs

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        done = []
        for i in range(2):
            monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / f"runs{i}"))
            done.append(runs.train("frozen_te", "micro", progress=False))
    finally:
        torch.set_num_threads(threads)

    def log(run) -> list[str]:
        return [json.dumps({k: v for k, v in r.items() if k != "elapsed_s"}, sort_keys=True) for r in run.log]

    assert log(done[0]) == log(done[1]) and len(done[0].log) == 3
    assert done[0].final.read_bytes() == done[1].final.read_bytes()
