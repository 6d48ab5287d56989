"""The published numbers (data/published/post01.json, post02.json) are faithful to the seeds.

Checks, per value: the schema fields are present; ``printed`` occurs in the seed text (inside the
table's own block when the file names its anchor); ``value`` is the number ``printed`` shows;
(table, row, column) is unique. Seed checks skip cleanly where ../shared/seeds is absent.
"""
from __future__ import annotations

import math
import re

import pytest

from common import published
from common.io import SHARED

SOURCES = ("post01", "post02")
SEEDS = SHARED / "seeds"
_SUP = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def parse_printed(printed: str) -> float:
    """The number a printed cell shows: '95.8 %' -> 95.8, '−0.32' -> -0.32, '2.5 × 10⁻⁵' -> 2.5e-5, '~660 M' -> 660."""
    s = printed.strip().replace("−", "-").replace("–", "-")
    m = re.fullmatch(r"([0-9.]+)\s*×\s*10([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)", s)
    if m:
        return float(m.group(1)) * 10 ** int(m.group(2).translate(_SUP))
    s = re.sub(r"^[~≈><]\s*", "", s)
    s = re.sub(r"\s*(%|×|pp|M|K|batches|\+)$", "", s)
    return float(s.replace(" ", ""))


def _seed_text(source: str) -> str:
    data = published.load(source)
    path = SEEDS / data["seed_file"]
    if not path.exists():
        pytest.skip(f"seed {path} absent")
    return path.read_text()


def _block(seed: str, meta: dict) -> str:
    start = seed.index(meta["anchor"])
    if meta.get("block_end"):
        end = seed.index(meta["block_end"], start) + len(meta["block_end"])
    else:
        end = seed.find("\n\n", start + len(meta["anchor"]))
    return seed[start:end if end > 0 else None]


@pytest.mark.parametrize("source", SOURCES)
def test_schema_and_parse(source: str) -> None:
    data = published.load(source)
    assert data["source"] == source and data["values"]
    for v in data["values"]:
        assert isinstance(v["value"], (int, float)) and math.isfinite(v["value"]), v
        assert math.isclose(parse_printed(v["printed"]), v["value"], rel_tol=1e-9, abs_tol=1e-12), v
        assert v["unit"], v
        if "cell" in v:
            assert v["printed"] in v["cell"], v


@pytest.mark.parametrize("source", SOURCES)
def test_unique_cells(source: str) -> None:
    keys = [(v["table"], v["row"], v["column"]) for v in published.load(source)["values"]]
    dups = {k for k in keys if keys.count(k) > 1}
    assert not dups, dups


@pytest.mark.parametrize("source", SOURCES)
def test_printed_occurs_in_seed(source: str) -> None:
    seed = _seed_text(source)
    tables = published.load(source).get("tables", {})
    for tid, meta in tables.items():
        assert meta["anchor"] in seed, (tid, meta["anchor"])
    for v in published.load(source)["values"]:
        assert v["printed"] in seed, v
        if v["table"] in tables:
            assert v["printed"] in _block(seed, tables[v["table"]]), v
        if "cell" in v:
            assert v["cell"] in seed, v


def test_every_table_of_the_posts_is_transcribed() -> None:
    """Every 'Table X.Y' caption in the two post seeds has values."""
    for source in SOURCES:
        seed = _seed_text(source)
        printed_ids = set(re.findall(r"^Table (\d+\.\d+) —", seed, flags=re.M))
        ids = {t.rstrip("b") for t in published.load(source)["tables"]} & printed_ids
        have = {v["table"].rstrip("b") for v in published.load(source)["values"]}
        assert printed_ids <= ids and printed_ids <= have, printed_ids - have


def test_lookup_helpers() -> None:
    assert published.value("post01", "9.15", "128", "watch IoU")["value"] == 0.885
    assert published.value("post02", "3.1", "lvis_replay_neg (adds negatives stream)", "SA-Co neg_correct")["printed"] == "41.3 %"
    assert len(published.lookup("post01", "2.1")) == 16
