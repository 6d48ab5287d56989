"""report helpers, `make compare` and `make figures` on a temporary results directory (fast, no training)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from common import report
from common.io import ROOT, code_version, read_json, run_meta

sys.path.insert(0, str(ROOT / "scripts"))
import compare  # noqa: E402
import figures  # noqa: E402

LADDER = [(16, 0.50), (22, 0.40), (64, 0.60), (128, 0.70), (160, 0.65)]


def _ladder(root: Path, scale: str = "tiny") -> Path:
    root = report.results_root(scale, root)
    rows = [{"row": str(a), "alpha": a, "watch_iou": iou} for a, iou in LADDER]
    pubs = report.columns("post01", "9.15", {"watch_iou": "watch IoU"})
    return report.write_result("post01", "9.15", rows, published=pubs, meta={"seed": 0}, scale=scale, root=root)


def _recipes(root: Path) -> None:
    rec = {"base": {"watch": {"iou": 0.2}, "saco": {"neg_correct": 0.95, "cgF1": 0.5}, "lvis": {"mIoU": 0.5}},
           "frozen_te": {"watch": {"iou": 0.85}, "saco": {"neg_correct": 0.04, "cgF1": 0.07}, "lvis": {"mIoU": 0.45}},
           "all_trainable": {"watch": {"iou": 0.80}, "saco": {"neg_correct": 0.03, "cgF1": 0.05}}}
    (root / "recipes.json").write_text(json.dumps({"meta": {}, "scale": "tiny", "recipes": rec}))


def test_write_result_contract(tmp_path: Path) -> None:
    p = _ladder(tmp_path)
    assert p == tmp_path / "post01" / "table-9.15.json"
    d = read_json(p)
    assert d["scale"] == "tiny" and d["table"] == "table-9.15" and d["rows"][0]["watch_iou"] == 0.5
    assert _ladder(tmp_path, "sam3") == tmp_path / "sam3" / "post01" / "table-9.15.json"
    with pytest.raises(ValueError):
        report.write_result("post09", "9.15", [], meta={}, scale="tiny", root=tmp_path)
    with pytest.raises(ValueError):
        report.write_result("post01", "9.15", [{"watch IoU": 1}], meta={}, scale="tiny", root=tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))


def test_run_meta_records_the_code_commit() -> None:
    meta = run_meta({"k": 1}, 3, t0=0.0)
    assert meta["config"] == {"k": 1} and meta["seed"] == 3 and "torch" in meta["versions"]
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        assert meta["code"]["commit"] == head and isinstance(meta["code"]["dirty"], bool)
    else:
        assert code_version() == {"commit": None}


def test_pairs_and_markdown(tmp_path: Path) -> None:
    d = read_json(_ladder(tmp_path))
    ps = {p["row"]: p for p in report.pairs(d)}
    assert ps["128"]["published"] == 0.885 and ps["128"]["ours"] == 0.70
    assert ps["128"]["diff"] == pytest.approx(0.70 - 0.885)
    md = report.markdown_table(d["rows"], published=d["published"])
    assert "watch_iou (published)" in md and "0.885" in md and "post01 Table 9.15" in md
    assert report.figure_stem("table-9.15") == "fig-9.15" and report.figure_stem("fig-3.2") == "fig-3.2"


def test_compare_on_temp_results(tmp_path: Path) -> None:
    _ladder(tmp_path)
    _recipes(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nkeep me\n")
    rep = compare.main(["--results", str(tmp_path), "--readme", str(readme)])
    n = len(rep["claims"])
    assert rep["summary"].startswith(f"{n} claims: ") and " hold, " in rep["summary"] and "not yet run" in rep["summary"]
    byid = {c["id"]: c["verdicts"]["tiny"]["verdict"] for c in rep["claims"]}
    assert byid["p01-9.15-alpha-peak"] == "holds" and byid["p01-4.2-frozen-te-iou"] == "holds"
    assert byid["p02-5.2-presence-only-order"] == "not yet run"
    md = (tmp_path / "COMPARISON.md").read_text()
    assert md.splitlines()[2].startswith(f"**{n} claims:")
    assert "0.885 → **0.7 (Δ -0.185)**" in md  # published beside ours with the difference
    t915 = md[md.index("### Table 9.15"):md.index("### Table 9.21")]
    row16 = next(line for line in t915.splitlines() if line.startswith("| 16 |"))
    assert row16.count("→") == 1  # only the reproduced column (watch IoU) gets ours; the rest show the published value
    assert (tmp_path / "comparison.json").exists() and "<html>" in (tmp_path / "index.html").read_text()
    text = readme.read_text()
    assert text.startswith("# Title\n\nkeep me\n") and compare.BEGIN in text and compare.END in text
    compare.main(["--results", str(tmp_path), "--readme", str(readme)])
    assert readme.read_text() == text  # idempotent: the block is replaced, not appended again


def test_figures_on_temp_results(tmp_path: Path) -> None:
    _ladder(tmp_path)
    _recipes(tmp_path)
    done = figures.render_all(tmp_path)
    assert not done.failed
    names = {p.name for p in done.figures}
    assert "fig-9.15.png" in names and "fig-9.2.png" in names
    assert len(done.written) == 2 * len(done.figures) == len(set(done.written))  # PNG + SVG, each counted once
    rep = compare.build(tmp_path)
    t = next(t for s in rep["sections"] for t in s["tables"] if s["source"] == "post01" and t["id"] == "9.15")
    assert t["figure"] == "post01/fig-9.15.png"


def test_figures_one_owner_per_file_and_failures_reported(tmp_path: Path) -> None:
    """A script's own figure wins over the recipe-table figure of the same published table; a renderer that raises
    is reported, the others are still drawn, and the command exits non-zero."""
    _recipes(tmp_path)
    rows = [{"row": "base SAM3", "recipe": "base", "watch_iou": 0.2}]
    pubs = report.columns("post01", "9.2", {"watch_iou": "Watch IoU"})
    report.write_result("post01", "9.2", rows, published=pubs, meta={}, scale="tiny", root=tmp_path, script="post01/lora_ranks.py")
    report.write_result("post01", "9.15", [], meta={}, scale="tiny", root=tmp_path, script="post01/no_such_script.py")
    jobs, errors = figures.plan(tmp_path)
    owners = {j.out.name: j.owner for j in jobs}
    assert owners["fig-9.2"] == "post01/lora_ranks.py" and owners["fig-4.2"] == "recipes.json"
    assert len(jobs) == len({j.out for j in jobs})
    assert "tiny:post01/table-9.15" in errors and "fig-9.15" not in owners
    assert figures.main(["--results", str(tmp_path)]) == 1
    assert (tmp_path / "post01" / "fig-4.2.png").exists()


def test_compare_attaches_results_by_their_own_fields(tmp_path: Path) -> None:
    """A results file whose `published` list maps nothing is attached to its table by its `section`/`table` fields:
    never "not yet run", and its own rows are shown (Markdown and HTML)."""
    report.write_result("rank_series", "86.1", [{"step": 1, "true_er_mean": 12.5}], meta={}, scale="tiny", root=tmp_path,
                        script="rank_series/paper86_true_gradient_er.py")
    rep = compare.build(tmp_path)
    t = next(t for s in rep["sections"] for t in s["tables"] if s["source"] == "rank_series" and t["id"] == "86.1")
    assert t["result_file"] == "rank_series/table-86.1" and t["reproduced"] == 0 and t["ours"][0]["rows"][0]["true_er_mean"] == 12.5
    md = compare.markdown(rep)
    sec = md[md.index("### Table 86.1"):md.index("### Table 86.2")]
    assert "not yet run" not in sec and "Results exist" in sec and "| 1 | 12.5 |" in sec
    page = compare.html_page(rep)
    assert "<td>12.5</td>" in page


def test_failing_claim_detail_is_marked_not_holding() -> None:
    assert compare.detail_text({"verdict": "fails", "detail": "x: 0.004195 >= 0.3"}) == "✗ x: 0.004195 >= 0.3 — does not hold"
    assert compare.detail_text({"verdict": "holds", "detail": "x: 0.5 >= 0.3"}) == "x: 0.5 >= 0.3"
    assert compare.detail_text({"verdict": "fails", "detail": "a: 1 > 2 ✗; b: 3 > 2"}) == "a: 1 > 2 ✗; b: 3 > 2"
    nm = compare.detail_text({"verdict": "not measurable", "detail": "precondition p fails (g: 0.1 >= 0.3); would read “holds”: y"})
    assert nm == "precondition p fails (✗ g: 0.1 >= 0.3 — does not hold); would read “holds”: y"


def test_compare_lists_results_that_do_not_pin_their_code(tmp_path: Path) -> None:
    head = code_version().get("commit")
    _ladder(tmp_path)  # run_meta-less: meta {"seed": 0}, no code recorded
    _recipes(tmp_path)
    doc = read_json(tmp_path / "recipes.json")
    doc["meta"] = {"code": {"commit": head or "0" * 40, "dirty": True, "dirty_files": ["post02/new.py"]}}
    (tmp_path / "recipes.json").write_text(json.dumps(doc))
    rep = compare.build(tmp_path)
    prov = rep["provenance"]["tiny"]
    assert prov["post01/table-9.15"] == "no code commit recorded" and "dirty tree" in prov["recipes"]
    assert "Provenance: 2 results file(s)" in compare.markdown(rep)


def test_code_version_counts_untracked_scripts_as_dirty(tmp_path: Path, monkeypatch) -> None:
    import common.io as cio

    if shutil.which("git") is None:
        pytest.skip("git absent")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "post01").mkdir()
    (tmp_path / "post01" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("n\n")
    subprocess.run([*git, "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "c"], check=True)
    monkeypatch.setattr(cio, "ROOT", tmp_path)
    assert code_version()["dirty"] is False
    (tmp_path / "scratch.txt").write_text("untracked, not code\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "gen.py").write_text("# untracked outside the code folders\n")
    assert code_version()["dirty"] is False
    (tmp_path / "post02").mkdir()
    (tmp_path / "post02" / "new_table.py").write_text("# a new script, not committed\n")
    v = code_version()
    assert v["dirty"] is True and v["dirty_files"] == ["post02/new_table.py"]


def _chromium() -> str | None:
    return next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)


@pytest.mark.skipif(_chromium() is None, reason="chromium absent")
def test_index_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    """Screenshot results/index.html (built on temp results) with headless Chromium; a non-trivial PNG means it rendered."""
    _ladder(tmp_path)
    _recipes(tmp_path)
    compare.main(["--results", str(tmp_path), "--no-readme"])
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tempfile.mkdtemp()}",
           "--window-size=1280,2000", f"--screenshot={shot}", (tmp_path / "index.html").as_uri()]
    subprocess.run(cmd, check=False, timeout=60, capture_output=True, env={**os.environ, "HOME": str(tmp_path)})
    assert shot.exists() and shot.stat().st_size > 10_000


def test_compare_marks_results_made_on_another_base_stale(tmp_path: Path) -> None:
    """A result records the base it was made on; `make compare` flags files made on another base and their claims."""
    p = _ladder(tmp_path)  # written now: records the base hash the code gives
    assert read_json(p)["meta"]["base_hash"] == report.current_base_hash("tiny")
    _recipes(tmp_path)  # written by hand with no base hash: stale
    rep = compare.build(tmp_path)
    assert set(rep["stale"]["tiny"]) == {"recipes"}
    byid = {c["id"]: c["verdicts"]["tiny"] for c in rep["claims"]}
    assert byid["p01-4.2-frozen-te-iou"]["stale"] == ["recipes"] and byid["p01-9.15-alpha-peak"]["stale"] == []
    doc = read_json(tmp_path / "recipes.json")
    doc["base_hash"] = report.current_base_hash("tiny")
    (tmp_path / "recipes.json").write_text(json.dumps(doc))
    doc = read_json(p)
    doc["meta"]["base_hash"] = "0123456789ab"
    p.write_text(json.dumps(doc))
    rep = compare.build(tmp_path)
    assert set(rep["stale"]["tiny"]) == {"post01/table-9.15"} and "0123456789ab" in rep["stale"]["tiny"]["post01/table-9.15"]
    assert "Stale: 1 results file" in compare.markdown(rep)
