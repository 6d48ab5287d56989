"""The one judge: the posts' qualitative findings as checkable predicates on our results JSON.

A :class:`Claim` carries its source (post, table/section), the sentence it paraphrases (a verbatim
quote from the seed, checked by ``tests/test_claims.py``), the scales it is expected to hold at,
the results files it reads, and a predicate ``check(results) -> (ok, detail)``. The predicate reads
results only through :class:`Results`, whose accessors raise :class:`NotYetRun` when a file, row or
key is missing, so a claim whose script has not run yet reports "not yet run" instead of failing.

**Claims live beside the code that makes their table**: a section script declares them with ``@claim``
at module level; :func:`registry` imports every script under :data:`CLAIM_DIRS` that declares one, so
``make compare`` sees them all, and :func:`common.section.emit` judges the claims that read the table it
has just written. Published values are read from ``data/published`` (:func:`common.published.get`), never
typed into code. Claims of tables whose script is not written yet wait in ``<post>/pending_claims.py`` and
move into the script when it lands.

Verdicts (:data:`VERDICTS`, the project's one vocabulary): ``holds`` / ``fails`` / ``not measurable`` /
``not yet run`` / ``error`` (any other exception, with its message). A failing claim is reported as
failing, never hidden. The results layout the predicates read is the contract in :mod:`common.report`.

Adding a claim (in the script that writes ``results/post01/table-9.15.json``)::

    @claim("p01-9.15-peak", "post01", "Table 9.15", table="9.15", reads=("post01/table-9.15",),
           quote="The peak is at α = 128", statement="α-ladder watch IoU peaks at α > 22")
    def peak_above_rslora(r: Results) -> Outcome:
        ious = r.column("post01/table-9.15", "watch_iou", by="alpha")
        return cmp(max(ious, key=ious.get), ">", 22, "argmax α")
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from common.io import RESULTS, ROOT, read_json

Outcome = tuple[bool, str]
VERDICTS = ("holds", "fails", "not measurable", "not yet run", "error")
BOTH = ("tiny", "sam3")
LORA_RANKS = (8, 16, 32, 48)  # Post 01 Table 9.2's LoRA ranks
#: Recipe names in ``results/recipes.json`` (first) and the aliases a script may have used.
RECIPE_ALIASES: dict[str, tuple[str, ...]] = {
    "recovery": ("recovery_frozen_te_boost", "recovery", "recovery@2000"),
    "base": ("base", "base_sam3"),
    # Post 01 Table 9.2's LoRA rows: standard α = r (recipes.POST01_LORA)
    **{f"lora_r{k}": (f"lora_r{k}_a{k}", f"lora_r{k}") for k in LORA_RANKS},
}
#: Metrics stored as fractions in [0, 1] in recipes.json (the posts print some of them ×100).
FRACTION_METRICS = {"iou", "dice", "neg_correct", "cgF1", "IL_MCC", "pmF1", "pos_mean_IoU", "mean_mask_IoU", "mIoU"}


class NotYetRun(LookupError):
    """A results file, row or key a claim needs does not exist (yet)."""


class WithinSpread(Exception):
    """Two recipes differ by less than the run-to-run (seed) spread: the ordering is not measurable."""


class NotMeasurable(Exception):
    """The results exist but cannot decide the claim (e.g. the scale cannot express what it tests): "not measurable"."""


# ----------------------------------------------------------------------------- results access
class Results:
    """Read-only view of one results root (``results/`` for tiny, ``results/sam3/`` for sam3).

    ``rel`` names are paths without ``.json`` relative to the root: ``"post01/table-9.15"``, ``"recipes"``.
    Every accessor raises :class:`NotYetRun` naming the missing file / row / key.
    """

    def __init__(self, root: str | Path = RESULTS) -> None:
        self.root = Path(root)
        self._cache: dict[str, Any] = {}
        self.touched: dict[str, str | None] = {}  # rel -> the file's "scale" field, for reporting

    def path(self, rel: str) -> Path:
        return self.root / f"{rel}.json"

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def load(self, rel: str) -> dict[str, Any]:
        if rel not in self._cache:
            p = self.path(rel)
            if not p.exists():
                raise NotYetRun(f"{rel}.json not written yet")
            self._cache[rel] = read_json(p)
        data = self._cache[rel]
        self.touched[rel] = data.get("scale") if isinstance(data, dict) else None
        return data

    def rows(self, rel: str) -> list[dict[str, Any]]:
        data = self.load(rel)
        if not isinstance(data.get("rows"), list) or not data["rows"]:
            raise NotYetRun(f"{rel}.json has no rows")
        return data["rows"]

    def row(self, rel: str, **match: Any) -> dict[str, Any]:
        for r in self.rows(rel):
            if all(_same(r.get(k), v) for k, v in match.items()):
                return r
        raise NotYetRun(f"{rel}.json: no row with {match}")

    def cell(self, rel: str, key: str, **match: Any) -> float:
        r = self.row(rel, **match)
        return _num(r, key, f"{rel}.json row {match}")

    def column(self, rel: str, key: str, by: str) -> dict[Any, float]:
        """``{row[by]: row[key]}`` over the rows that have both keys (NotYetRun if none do)."""
        out = {r[by]: float(r[key]) for r in self.rows(rel) if r.get(by) is not None and r.get(key) is not None}
        if not out:
            raise NotYetRun(f"{rel}.json: no rows with keys {by!r} and {key!r}")
        return out

    def metric(self, recipe: str, suite: str, name: str) -> float:
        """``recipes.json`` → ``recipes[recipe][suite][name]``; fraction metrics must lie in [0, 1]."""
        recipes = self.load("recipes").get("recipes")
        if not isinstance(recipes, dict):
            raise NotYetRun("recipes.json has no 'recipes' mapping")
        for alias in RECIPE_ALIASES.get(recipe, (recipe,)):
            if alias in recipes:
                v = _num(recipes[alias].get(suite) or {}, name, f"recipes.json {alias}.{suite}")
                if name in FRACTION_METRICS and not -1e-9 <= v <= 1 + 1e-9:
                    raise ValueError(f"recipes.json {alias}.{suite}.{name} = {v}: the contract stores it as a fraction in [0, 1]")
                return v
        raise NotYetRun(f"recipes.json has no recipe {recipe!r}")


    def spread(self, suite: str, name: str) -> float | None:
        """The run-to-run spread of a recipe metric (``recipes.json`` → ``seed_spread.max["suite.name"]``: the largest
        |seed 0 − seed 1| over the recipes retrained with another seed); None where it was not measured."""
        v = ((self.load("recipes").get("seed_spread") or {}).get("max") or {}).get(f"{suite}.{name}")
        return None if v is None else float(v)


def _same(a: Any, b: Any) -> bool:
    if a is None:
        return False
    try:
        return math.isclose(float(a), float(b))
    except (TypeError, ValueError):
        return str(a) == str(b)


def _num(d: dict[str, Any], key: str, where: str) -> float:
    if key not in d or d[key] is None:
        raise NotYetRun(f"{where} lacks {key!r}")
    v = float(d[key])
    if not math.isfinite(v):
        raise ValueError(f"{where}: {key} = {v} is not finite")
    return v


# ----------------------------------------------------------------------------- outcome helpers
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq}


def cmp(a: float, op: str, b: float, what: str = "") -> Outcome:
    """``a op b`` with the numbers in the detail string."""
    ok = bool(_OPS[op](a, b))
    return ok, f"{what + ': ' if what else ''}{_fmt(a)} {op} {_fmt(b)}"


def vs(r: "Results", a: str, op: str, b: str, suite: str = "watch", name: str = "iou") -> Outcome:
    """Recipe ``a`` vs recipe ``b`` on one ``recipes.json`` metric, read against the run-to-run spread: a margin no
    larger than the seed spread (:meth:`Results.spread`) is no ordering, and the claim is "not measurable"."""
    return ordered(r, r.metric(a, suite, name), op, r.metric(b, suite, name), f"{suite} {name} {a} vs {b}", (suite, name))


def ordered(r: "Results", x: float, op: str, y: float, what: str, spread: tuple[str, str]) -> Outcome:
    """``x op y`` for two recipes' values of the metric ``spread`` = (suite, name), read against that metric's
    run-to-run spread in ``recipes.json`` (:meth:`Results.spread`): a margin within it is "not measurable"."""
    ok, detail = cmp(x, op, y, what)
    s = r.spread(*spread) if r.exists("recipes") else None
    if s is not None and abs(x - y) <= s:
        raise WithinSpread(f"{detail}, a margin of {abs(x - y):.4g} within the seed spread {s:.4g}")
    return ok, detail + ("" if s is None else f" (seed spread {s:.3g})")


def check(statement: str, holds: bool | None, detail: str, published: str = "") -> dict[str, Any]:
    """A diagnostic script's own check (not a claim of the posts), recorded in the same vocabulary: "holds" /
    "fails" / "not measurable" (``holds`` None). Written under ``checks`` by :func:`common.section.emit`."""
    v = "not measurable" if holds is None else ("holds" if holds else "fails")
    return {"check": statement, "verdict": v, "detail": detail, **({"published": published} if published else {})}


def within(a: float, b: float, tol: float, what: str = "") -> Outcome:
    ok = abs(a - b) <= tol
    return ok, f"{what + ': ' if what else ''}|{_fmt(a)} − {_fmt(b)}| ≤ {_fmt(tol)}"


def every(*outcomes: Outcome) -> Outcome:
    return all(o[0] for o in outcomes), "; ".join(o[1] + ("" if o[0] else " ✗") for o in outcomes)


def spearman(xs: Iterable[float], ys: Iterable[float]) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr(list(xs), list(ys)).statistic
    return float(rho)


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Claim:
    id: str
    post: str                     # "post01" | "post02" | "rank_series"
    source: str                   # "Table 9.15", "§8", "Fig. 3.2"
    quote: str                    # verbatim from the seed
    statement: str                # what the predicate checks, in words
    check: Callable[[Results], Outcome]
    reads: tuple[str, ...]        # results files (rel, without .json)
    table: str | None = None      # published table id this claim reads off (data/published)
    scales: tuple[str, ...] = BOTH
    needs: str | None = None      # a precondition claim: where it fails, this one is "not measurable"
    origin: str = ""              # the script that declares it (repo-relative path)


@dataclass
class Verdict:
    claim: str
    verdict: str
    detail: str
    scale: str
    files: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "verdict": self.verdict, "detail": self.detail, "scale": self.scale, "files": self.files}


_REGISTRY: dict[str, Claim] = {}
#: Folders whose scripts declare claims (imported by :func:`registry`).
CLAIM_DIRS = ("post01", "post02", "rank_series", "scripts")
_loaded = False


def _origin(fn: Callable) -> str:
    p = Path(fn.__code__.co_filename).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def claim(id: str, post: str, source: str, *, quote: str, statement: str, reads: tuple[str, ...],
          table: str | None = None, scales: tuple[str, ...] = BOTH,
          needs: str | None = None) -> Callable[[Callable[[Results], Outcome]], Callable]:
    """Decorator declaring ``fn`` the predicate of a claim (``needs``: its precondition claim). A script imported
    twice (run as ``__main__`` and loaded by :func:`registry`) re-declares its claims; two scripts may not share an id."""
    def deco(fn: Callable[[Results], Outcome]) -> Callable[[Results], Outcome]:
        origin = _origin(fn)
        old = _REGISTRY.get(id)
        if old is not None and old.origin != origin:
            raise ValueError(f"claim {id!r} declared in {origin} and in {old.origin}")
        _REGISTRY[id] = Claim(id, post, source, quote, statement, fn, tuple(reads), table, scales, needs, origin)
        return fn
    return deco


def registry() -> list[Claim]:
    """Every claim of the project: imports each script under :data:`CLAIM_DIRS` that declares one (once)."""
    global _loaded
    if not _loaded:
        from common.report import load_script

        for d in CLAIM_DIRS:
            for f in sorted((ROOT / d).glob("*.py")):
                if "@claim(" in f.read_text(encoding="utf-8"):
                    load_script(f)
        _loaded = True
    return sorted(_REGISTRY.values(), key=lambda c: (c.post, c.origin, c.id))


def claims_reading(rel: str) -> list[Claim]:
    """The claims that read ``rel`` (``"post01/table-9.15"``): the ones judged when that table is written."""
    return [c for c in registry() if rel in c.reads]


def evaluate(c: Claim, results: Results, scale: str = "tiny", gate: bool = True) -> Verdict:
    """Run one claim's predicate; never raises. A claim whose precondition (``needs``) fails is "not measurable"
    (unless ``gate=False``): its predicate's reading is kept in the detail, but an ordering of noise neither
    holds nor fails."""
    pre = evaluate(by_id(c.needs), results, scale) if (c.needs and gate) else None
    results.touched = {}
    try:
        ok, detail = c.check(results)
        verdict = "holds" if ok else "fails"
    except NotYetRun as e:
        verdict, detail = "not yet run", str(e)
    except (WithinSpread, NotMeasurable) as e:
        verdict, detail = "not measurable", str(e)
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        verdict, detail = "error", f"{type(e).__name__}: {e}"
    if pre is not None and pre.verdict == "fails" and verdict in ("holds", "fails"):
        verdict, detail = "not measurable", f"precondition {c.needs} fails ({pre.detail}); would read “{verdict}”: {detail}"
    return Verdict(c.id, verdict, detail, scale, dict(results.touched))


def evaluate_all(root: str | Path = RESULTS, scale: str = "tiny", claims: Iterable[Claim] | None = None) -> list[Verdict]:
    """Verdicts of every claim expected at ``scale`` against the results under ``root``."""
    res = Results(root)
    return [evaluate(c, res, scale) for c in (registry() if claims is None else claims) if scale in c.scales]


def summary_line(verdicts: Iterable[Verdict]) -> str:
    vs = list(verdicts)
    n = {k: sum(v.verdict == k for v in vs) for k in VERDICTS}
    line = (f"{len(vs)} claims: {n['holds']} hold, {n['fails']} fail, {n['not measurable']} not measurable, "
            f"{n['not yet run']} not yet run")
    return line + (f", {n['error']} error" if n["error"] else "")


def by_id(claim_id: str) -> Claim:
    """The claim with this id (KeyError naming it if no script declares one)."""
    registry()
    if claim_id not in _REGISTRY:
        raise KeyError(f"no script declares claim {claim_id!r}")
    return _REGISTRY[claim_id]


# ============================================================================= shared predicate helpers
# The claims themselves live beside their scripts; thresholds encode the posts' qualitative statements, not
# their values.
def iou_of(r: Results, recipe: str) -> float:
    """A recipe's watch IoU (``recipes.json``)."""
    return r.metric(recipe, "watch", "iou")


def neg_of(r: Results, recipe: str) -> float:
    """A recipe's SA-Co-like neg_correct (``recipes.json``)."""
    return r.metric(recipe, "saco", "neg_correct")


#: The precondition of every in-domain IoU ordering: the watch fine-tune learned the task at this scale. Declared in
#: post01/lora_ranks.py (the script of Table 9.2, the table it cites); claims of every post name it in ``needs``.
LEARNED = "p01-1-watch-task-learned"
