"""Published numbers from the seeds, machine-readable (``data/published/<source>.json``).

Schema of one file::

    {"source": "post01", "seed_file": "000_c9eda1532dbf2c80.txt", "title": "...",
     "values": [{"table": "9.15", "row": "alpha=128", "column": "watch IoU",
                 "value": 0.885, "unit": "fraction", "printed": "0.885"}, ...]}

``unit`` is how the post printed it ("fraction", "%", "count", "loss", "params", ...); ``printed``
is the exact string as it appears in the seed text (a test checks it occurs there). ``value`` is
the number in the printed unit (so 95.8 % is stored as value 95.8, unit "%").
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from common.io import DATA, read_json

PUBLISHED = DATA / "published"
SOURCES = ("post01", "post02", "rank_series")


@lru_cache(maxsize=None)
def load(source: str) -> dict[str, Any]:
    """The whole published file for ``source`` (one of SOURCES)."""
    if source not in SOURCES:
        raise ValueError(f"unknown published source {source!r}; expected one of {SOURCES}")
    data = read_json(PUBLISHED / f"{source}.json")
    for i, v in enumerate(data.get("values", [])):
        for key in ("table", "row", "column", "value", "unit", "printed"):
            if key not in v:
                raise ValueError(f"{PUBLISHED / (source + '.json')}: values[{i}] lacks field {key!r}")
    return data


def lookup(source: str, table: str, row: str | None = None, column: str | None = None) -> list[dict[str, Any]]:
    """All published values of ``table`` (optionally one row / column), each a dict with its source."""
    out = []
    for v in load(source)["values"]:
        if v["table"] != table or (row is not None and v["row"] != row) or (column is not None and v["column"] != column):
            continue
        out.append({**v, "source": source})
    return out


def value(source: str, table: str, row: str, column: str) -> dict[str, Any]:
    """Exactly one published value; raises KeyError naming the cell if it is absent or ambiguous."""
    hits = lookup(source, table, row, column)
    if len(hits) != 1:
        raise KeyError(f"published {source} table {table} row {row!r} column {column!r}: {len(hits)} matches")
    return hits[0]


def get(source: str, table: str, row: str, column: str) -> float | None:
    """The published number of one cell in its printed unit, or None where the post prints none (the lookup
    every figure and claim uses to draw or test against a published value)."""
    try:
        return value(source, table, str(row), column)["value"]
    except KeyError:
        return None
