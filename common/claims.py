"""The posts' qualitative findings as checkable predicates on our results JSON.

A :class:`Claim` carries its source (post, table/section), the sentence it paraphrases (a verbatim
quote from the seed, checked by ``tests/test_claims.py``), the scales it is expected to hold at,
the results files it reads, and a predicate ``check(results) -> (ok, detail)``. The predicate reads
results only through :class:`Results`, whose accessors raise :class:`NotYetRun` when a file, row or
key is missing, so a claim whose script has not run yet reports "not yet run" instead of failing.

Verdicts: ``holds`` / ``fails`` / ``not yet run`` / ``error`` (any other exception, with its message).
A failing claim is reported as failing, never hidden. The results layout the predicates read is the
contract documented in :mod:`common.report`.

Adding a claim::

    @claim("p01-9.15-peak", "post01", "Table 9.15", table="9.15", reads=("post01/table-9.15",),
           quote="The peak is at α = 128", statement="α-ladder watch IoU peaks at α > 22")
    def _(r: Results) -> Outcome:
        ious = r.column("post01/table-9.15", "watch_iou", by="alpha")
        return cmp(max(ious, key=ious.get), ">", 22, "argmax α")
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from common.io import RESULTS, read_json

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
    x, y = r.metric(a, suite, name), r.metric(b, suite, name)
    ok, detail = cmp(x, op, y, f"{suite} {name} {a} vs {b}")
    s = r.spread(suite, name)
    if s is not None and abs(x - y) <= s:
        raise WithinSpread(f"{detail}, a margin of {abs(x - y):.4g} within the seed spread {s:.4g}")
    return ok, detail + ("" if s is None else f" (seed spread {s:.3g})")


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


@dataclass
class Verdict:
    claim: str
    verdict: str
    detail: str
    scale: str
    files: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "verdict": self.verdict, "detail": self.detail, "scale": self.scale, "files": self.files}


CLAIMS: list[Claim] = []


def claim(id: str, post: str, source: str, *, quote: str, statement: str, reads: tuple[str, ...],
          table: str | None = None, scales: tuple[str, ...] = BOTH,
          needs: str | None = None) -> Callable[[Callable[[Results], Outcome]], Callable]:
    """Decorator registering ``fn`` as the predicate of a new claim (``needs``: its precondition claim)."""
    def deco(fn: Callable[[Results], Outcome]) -> Callable[[Results], Outcome]:
        if any(c.id == id for c in CLAIMS):
            raise ValueError(f"claim {id!r} registered twice")
        CLAIMS.append(Claim(id, post, source, quote, statement, fn, reads, table, scales, needs))
        return fn
    return deco


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
    except WithinSpread as e:
        verdict, detail = "not measurable", str(e)
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        verdict, detail = "error", f"{type(e).__name__}: {e}"
    if pre is not None and pre.verdict == "fails" and verdict in ("holds", "fails"):
        verdict, detail = "not measurable", f"precondition {c.needs} fails ({pre.detail}); would read “{verdict}”: {detail}"
    return Verdict(c.id, verdict, detail, scale, dict(results.touched))


def evaluate_all(root: str | Path = RESULTS, scale: str = "tiny", claims: Iterable[Claim] | None = None) -> list[Verdict]:
    """Verdicts of every claim expected at ``scale`` against the results under ``root``."""
    res = Results(root)
    return [evaluate(c, res, scale) for c in (CLAIMS if claims is None else claims) if scale in c.scales]


def summary_line(verdicts: Iterable[Verdict]) -> str:
    vs = list(verdicts)
    n = {k: sum(v.verdict == k for v in vs) for k in VERDICTS}
    line = (f"{len(vs)} claims: {n['holds']} hold, {n['fails']} fail, {n['not measurable']} not measurable, "
            f"{n['not yet run']} not yet run")
    return line + (f", {n['error']} error" if n["error"] else "")


def by_id(claim_id: str) -> Claim:
    for c in CLAIMS:
        if c.id == claim_id:
            return c
    raise KeyError(claim_id)


# ============================================================================= the claims
# Table-file row keys each predicate reads are named in its ``statement``; recipes.json paths follow
# the contract in common.report. Thresholds encode the posts' qualitative statements, not their values.
def _iou(r: Results, recipe: str) -> float:
    return r.metric(recipe, "watch", "iou")


def _neg(r: Results, recipe: str) -> float:
    return r.metric(recipe, "saco", "neg_correct")


def _gap(r: Results, cell: str) -> float:
    """Table 2.1: share of the base→FT IoU gap a swap cell recovers."""
    a, b = r.cell("post01/table-2.1", "iou", cell="A"), r.cell("post01/table-2.1", "iou", cell="B")
    if b - a <= 0:
        raise ValueError(f"table-2.1: topline IoU {b} not above baseline {a}; gap undefined")
    return (r.cell("post01/table-2.1", "iou", cell=cell) - a) / (b - a)


# ----------------------------------------------------------------------------- Post 01
P1 = "post01"
#: The precondition of every in-domain IoU ordering: the watch fine-tune learned the task at this scale.
LEARNED = "p01-1-watch-task-learned"


@claim("p01-1.1-low-rank", P1, "Fig. 1.1", table="fig-1.1", reads=("post01/fig-1.1",),
       quote="Nothing moves in a full-rank way.",
       statement="every parameter group's weight-delta effective rank (90 % energy, key effective_rank_fraction) is below 50 % of full rank")
def _(r: Results) -> Outcome:
    er = r.column("post01/fig-1.1", "effective_rank_fraction", by="group")
    g = max(er, key=er.get)
    return cmp(er[g], "<", 0.5, f"max over groups ({g})")


@claim("p01-2.1-text-zero", P1, "Table 2.1 cell C", table="2.1", needs=LEARNED, reads=("post01/table-2.1",),
       quote="Cell C: the text encoder’s parameters carry 0 % of the gap on their own.",
       statement="swap cell C (text only) recovers under 10 % of the A→B IoU gap (rows: cell, iou)")
def _(r: Results) -> Outcome:
    return cmp(_gap(r, "C"), "<", 0.10, "gap(C)")


@claim("p01-2.1-distributed", P1, "Table 2.1 cells D–F", table="2.1", needs=LEARNED, reads=("post01/table-2.1",),
       quote="Cells D, E, F: no single module reaches the topline; each carries 34–54 %.",
       statement="each single-module cell D, E, F recovers a positive share of the gap but under 90 %")
def _(r: Results) -> Outcome:
    return every(*(every(cmp(_gap(r, c), ">", 0.0, f"gap({c})"), cmp(_gap(r, c), "<", 0.9, f"gap({c})")) for c in "DEF"))


@claim("p01-2.1-downstream", P1, "Table 2.1 cell H", table="2.1", needs=LEARNED, reads=("post01/table-2.1",),
       quote="Cell H: handing the fine-tune’s fusion and decoder weights to the base vision encoder recovers 68 % of the gap.",
       statement="cell H (F + D) recovers more of the gap than fusion alone (E) or decoder alone (F)")
def _(r: Results) -> Outcome:
    return cmp(_gap(r, "H"), ">", max(_gap(r, "E"), _gap(r, "F")), "gap(H) vs max(gap(E), gap(F))")


@claim("p01-3.2-plateau", P1, "Fig. 3.2", table="fig-3.2", needs=LEARNED, reads=("post01/fig-3.2",),
       quote="Recovery rises through the fusion stack and saturates by fusion[3].",
       statement="patching FT's fusion activation into base: recovery(F[3]) ≥ recovery(F[0]) and F[3..5] within 10 pp of each other (rows: layer, recovery)")
def _(r: Results) -> Outcome:
    rec = r.column("post01/fig-3.2", "recovery", by="layer")
    need = [f"F[{i}]" for i in range(6)]
    missing = [k for k in need if k not in rec]
    if missing:
        raise NotYetRun(f"post01/fig-3.2.json lacks layers {missing}")
    plateau = [rec[f"F[{i}]"] for i in (3, 4, 5)]
    return every(cmp(rec["F[3]"], ">=", rec["F[0]"], "F[3] vs F[0]"), cmp(max(plateau) - min(plateau), "<=", 0.10, "spread F[3..5]"))


@claim("p01-3.2-decoder-zero", P1, "Fig. 3.2", table="fig-3.2", needs=LEARNED, reads=("post01/fig-3.2",),
       quote="The decoder bars are at exactly 0.0 — patching FT’s decoder activation into base breaks the prediction entirely",
       statement="patching FT's decoder activation into base recovers under 10 % at every decoder layer D[0..5]")
def _(r: Results) -> Outcome:
    rec = {k: v for k, v in r.column("post01/fig-3.2", "recovery", by="layer").items() if str(k).startswith("D[")}
    if not rec:
        raise NotYetRun("post01/fig-3.2.json has no decoder rows D[i]")
    return cmp(max(rec.values()), "<", 0.10, "max decoder recovery")


@claim("p01-3.3-patch-beats-swap", P1, "Table 3.3", table="3.3", needs=LEARNED, reads=("post01/table-3.3",),
       quote="Activation patching at fusion[4] recovers 97.7 % — the extra ~30 points is V_FT’s contribution arriving via the patched activation.",
       statement="gap recovered by patching the fusion[4] activation > gap recovered by the cell-H parameter swap (rows: probe ∈ {patch_fusion4, cell_h_swap}, gap_fraction)")
def _(r: Results) -> Outcome:
    t = "post01/table-3.3"
    return cmp(r.cell(t, "gap_fraction", probe="patch_fusion4"), ">", r.cell(t, "gap_fraction", probe="cell_h_swap"), "patch vs swap")


@claim("p01-1-watch-task-learned", P1, "Cover / Table 9.2", table="9.2", reads=("recipes",),
       quote="Watch-component test IoU rose from 0.23 on base SAM3 to 0.92 after fine-tuning.",
       statement="frozen_te watch IoU − base watch IoU ≥ 0.3 (the precondition of every in-domain ordering: "
                 "where it fails, in-domain claims that hold are vacuous)")
def _(r: Results) -> Outcome:
    return cmp(_iou(r, "frozen_te") - _iou(r, "base"), ">=", 0.3, "IoU gain frozen_te − base")


@claim("p01-4.2-frozen-te-iou", P1, "Table 4.2", table="4.2", needs=LEARNED, reads=("recipes",),
       quote="Freezing the text encoder is strictly better on every metric we measured.",
       statement="watch IoU: frozen_te ≥ all_trainable")
def _(r: Results) -> Outcome:
    return vs(r, "frozen_te", ">=", "all_trainable")


@claim("p01-4.2-frozen-te-cgf1", P1, "Table 4.2", table="4.2", reads=("recipes",),
       quote="In-domain IoU is +0.006, Dice is +0.4, and the out-of-domain open-vocabulary cgF1 is +1.86.",
       statement="SA-Co cgF1: frozen_te ≥ all_trainable")
def _(r: Results) -> Outcome:
    return vs(r, "frozen_te", ">=", "all_trainable", "saco", "cgF1")


@claim("p01-4.3-earlier-commit", P1, "Fig. 4.3", table="fig-4.3", needs=LEARNED, reads=("post01/fig-4.3",),
       quote="Freezing the text encoder lets the vision encoder commit to its answer two blocks earlier (block 23 vs block 29) and at a higher peak probe IoU (0.836 vs 0.809).",
       statement="mask-lens probe: frozen_te peaks no later and no lower than all_trainable (rows: recipe, block, probe_iou)")
def _(r: Results) -> Outcome:
    peaks = {}
    for rec in ("frozen_te", "all_trainable"):
        rows = [x for x in r.rows("post01/fig-4.3") if x.get("recipe") == rec and x.get("probe_iou") is not None]
        if not rows:
            raise NotYetRun(f"post01/fig-4.3.json has no rows for {rec}")
        best = max(rows, key=lambda x: x["probe_iou"])
        peaks[rec] = (best["block"], best["probe_iou"])
    return every(cmp(peaks["frozen_te"][0], "<=", peaks["all_trainable"][0], "peak block"),
                 cmp(peaks["frozen_te"][1], ">=", peaks["all_trainable"][1], "peak probe IoU"))


@claim("p01-5.1-decoder-coadapted", P1, "Table 5.1", table="5.1", needs=LEARNED, reads=("post01/table-5.1",),
       quote="At any decoder layer, replacing the fine-tune’s activation with base’s produces zero IoU.",
       statement="reverse patch (base → frozen-TE FT): mean IoU over decoder[i] rows < 25 % of the mean over fusion[i] rows (rows: layer, iou)")
def _(r: Results) -> Outcome:
    rows = r.column("post01/table-5.1", "iou", by="layer")
    dec = [v for k, v in rows.items() if str(k).startswith("decoder")]
    fus = [v for k, v in rows.items() if str(k).startswith("fusion")]
    if not dec or not fus:
        raise NotYetRun("post01/table-5.1.json needs both fusion[i] and decoder[i] rows")
    return cmp(sum(dec) / len(dec), "<", 0.25 * sum(fus) / len(fus), "mean decoder IoU vs 0.25 × mean fusion IoU")


@claim("p01-6.2-asymmetry-vanishes", P1, "Table 6.2", table="6.2", needs=LEARNED, reads=("post01/table-6.2",),
       quote="the catastrophic asymmetry disappears entirely — no layer collapses to zero.",
       statement="reverse patch into the decoder: min over layers of fusion_only_iou > max over layers of frozen_te_iou")
def _(r: Results) -> Outcome:
    fo = r.column("post01/table-6.2", "fusion_only_iou", by="layer")
    ft = r.column("post01/table-6.2", "frozen_te_iou", by="layer")
    return cmp(min(fo.values()), ">", max(ft.values()), "min fusion-only vs max frozen-TE")


@claim("p01-6-fusion-only-gap", P1, "§6", table="9.13", needs=LEARNED, reads=("recipes",),
       quote="Most of the in-domain capacity of a vision-language fine-tune lives in the cross-attention fusion stack, not in the encoders or the decoder.",
       statement="fusion_only recovers ≥ 80 % of the base→frozen_te watch-IoU gap (post: 92.5 %)")
def _(r: Results) -> Outcome:
    b = _iou(r, "base")
    return cmp((_iou(r, "fusion_only") - b) / (_iou(r, "frozen_te") - b), ">=", 0.8, "gap share")


@claim("p01-6.1-f0-smuggled", P1, "Fig. 6.1", table="fig-6.1", needs=LEARNED, reads=("post01/fig-6.1",),
       quote="In the fusion-only recipe (green), V is byte-identical to base, so F[0]’s cross-attention reads unchanged image features — recovery drops to 2 %.",
       statement="patch recovery at F[0]: fusion_only < frozen_te (rows: recipe, layer, recovery)")
def _(r: Results) -> Outcome:
    t = "post01/fig-6.1"
    return cmp(r.cell(t, "recovery", recipe="fusion_only", layer="F[0]"), "<", r.cell(t, "recovery", recipe="frozen_te", layer="F[0]"), "F[0]")


@claim("p01-6.2-most-moved-least", P1, "Fig. 6.2", table="fig-6.2", reads=("post01/fig-6.2",),
       quote="F[0]’s weights moved farthest of any fusion layer (18.9 % of base-norm magnitude) but contributed essentially nothing functionally.",
       statement="fusion-only: rel_change(F[0]) > rel_change(F[4]) and contribution(F[0]) < contribution(F[4])")
def _(r: Results) -> Outcome:
    t = "post01/fig-6.2"
    return every(cmp(r.cell(t, "rel_change", layer="F[0]"), ">", r.cell(t, "rel_change", layer="F[4]"), "weight motion F[0] vs F[4]"),
                 cmp(r.cell(t, "contribution", layer="F[0]"), "<", r.cell(t, "contribution", layer="F[4]"), "contribution F[0] vs F[4]"))


SYNONYMS = ("bezel ↔ lunette", "leather ↔ strap", "pearl ↔ pearls", "clockwork ↔ movement", "diamonds ↔ stones", "hour hand ↔ minute hand")
PERIPHERAL = ("lugs ↔ metal", "metal ↔ rehaut", "bezel ↔ rehaut", "bezel ↔ lugs", "dial ↔ lugs")


@claim("p01-7.2-synonyms-overlap", P1, "Tables 7.2 / 7.3", table="7.2", reads=("post01/table-7.2", "post01/table-7.3"),
       quote="These are the pairs where we’d expect the model to behaviourally treat the prompts as referring to the same thing, and indeed at the predicted-mask level it mostly does",
       statement="frozen-TE: mean pred_iou_frozen_te over the synonym pairs (7.2) > mean over the five peripheral-metal pairs (7.3)")
def _(r: Results) -> Outcome:
    syn = r.column("post01/table-7.2", "pred_iou_frozen_te", by="pair")
    per = {k: v for k, v in r.column("post01/table-7.3", "pred_iou_frozen_te", by="pair").items() if k in PERIPHERAL}
    if not per:
        raise NotYetRun("post01/table-7.3.json has none of the peripheral pairs")
    return cmp(sum(syn.values()) / len(syn), ">", sum(per.values()) / len(per), "mean synonym vs mean peripheral pred_IoU")


@claim("p01-7.3-fusion-merge", P1, "Table 7.3", table="7.3", reads=("post01/table-7.3",),
       quote="they leapt from 0.49–0.66 in base on watch images to 0.89–0.96 in every fine-tune.",
       statement="fus[4] cosine rises from base to frozen-TE for at least 4 of the 5 peripheral-metal pairs (keys fus4_base, fus4_frozen_te)")
def _(r: Results) -> Outcome:
    base = r.column("post01/table-7.3", "fus4_base", by="pair")
    ft = r.column("post01/table-7.3", "fus4_frozen_te", by="pair")
    pairs = [p for p in PERIPHERAL if p in base and p in ft]
    if not pairs:
        raise NotYetRun("post01/table-7.3.json has none of the peripheral pairs")
    up = sum(ft[p] > base[p] for p in pairs)
    return cmp(up, ">=", min(4, len(pairs)), f"pairs with a rise (of {len(pairs)})")


@claim("p01-7.3-distinct-masks", P1, "Table 7.3", table="7.3", reads=("post01/table-7.3",),
       quote="The model has merged the residual stream for these prompts but is still producing different mask outputs",
       statement="mean pred_iou_frozen_te over the five peripheral-metal pairs < mean fus4_frozen_te cosine over them")
def _(r: Results) -> Outcome:
    pi = {k: v for k, v in r.column("post01/table-7.3", "pred_iou_frozen_te", by="pair").items() if k in PERIPHERAL}
    co = {k: v for k, v in r.column("post01/table-7.3", "fus4_frozen_te", by="pair").items() if k in PERIPHERAL}
    if not pi or not co:
        raise NotYetRun("post01/table-7.3.json has none of the peripheral pairs")
    return cmp(sum(pi.values()) / len(pi), "<", sum(co.values()) / len(co), "pred_IoU vs fus[4] cosine")


@claim("p01-7.4-compound-split", P1, "Table 7.4", table="7.4", reads=("post01/table-7.4",),
       quote="Text-encoder rotation in the all-trainable recipe pulls the compound apart by 0.32 and 0.40 cosine",
       statement="text-embedding cosine of both compound pairs drops from base to all-trainable (keys text_base, text_all_trainable)")
def _(r: Results) -> Outcome:
    b = r.column("post01/table-7.4", "text_base", by="pair")
    a = r.column("post01/table-7.4", "text_all_trainable", by="pair")
    return every(*(cmp(a[p], "<", b[p], p) for p in b if p in a))


@claim("p01-8-refusal-collapse", P1, "§8 / Table 9.2", table="9.2", reads=("recipes",),
       quote="collapsed from base’s 95.8 % to about 2–3 % on the all-trainable and frozen-TE recipes",
       statement="neg_correct(base) − neg_correct(frozen_te) > 50 pp, and the same for all_trainable")
def _(r: Results) -> Outcome:
    b = _neg(r, "base")
    return every(cmp(b - _neg(r, "frozen_te"), ">", 0.5, "base − frozen_te"), cmp(b - _neg(r, "all_trainable"), ">", 0.5, "base − all_trainable"))


@claim("p01-8-fusion-only-less", P1, "§8 / Table 9.2", table="9.2", reads=("recipes",),
       quote="the same evaluation gives negative-correctness 8.07 % — modestly better than the standard recipes (about 3× their score) but still about 88 points below base.",
       statement="neg_correct: max(frozen_te, all_trainable) < fusion_only < base")
def _(r: Results) -> Outcome:
    fo = _neg(r, "fusion_only")
    return every(cmp(fo, ">", max(_neg(r, "frozen_te"), _neg(r, "all_trainable")), "fusion_only vs standard"), cmp(fo, "<", _neg(r, "base"), "fusion_only vs base"))


@claim("p01-9.1-ffn-widest", P1, "Table 9.1", table="9.1", reads=("post01/table-9.1",),
       quote="Signal rank per tensor group (fusion04_only)",
       statement="median MP signal rank: ffn > self_attn_out_proj (post: 38 vs 18; rows: group, median)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.1"
    return cmp(r.cell(t, "median", group="ffn"), ">", r.cell(t, "median", group="self_attn_out_proj"), "FFN vs out_proj")


@claim("p01-9.2-lora-rank-iou", P1, "Table 9.2", table="9.2", needs=LEARNED, reads=("recipes",),
       quote="Rank changes how cleanly the same circuit reads out; it does not change which circuit.",
       statement="fusion LoRA watch IoU does not decrease with rank: lora_r8 ≤ lora_r16 ≤ lora_r32 ≤ lora_r48 (tolerance 0.005)")
def _(r: Results) -> Outcome:
    v = [_iou(r, f"lora_r{k}") for k in LORA_RANKS]
    return every(*(cmp(v[i + 1] + 0.005, ">=", v[i], f"r={LORA_RANKS[i + 1]} vs r={LORA_RANKS[i]}") for i in range(3)))


@claim("p01-9.2-r48-matches-fusion-only", P1, "Table 9.2", table="9.2", needs=LEARNED, reads=("recipes",),
       quote="At r=48 (1.84 M trainables, 0.22 % of the model) LoRA matches fusion-only’s in-domain watch IoU within rounding (0.87 vs 0.87)",
       statement="|IoU(lora_r48) − IoU(fusion_only)| ≤ 0.02")
def _(r: Results) -> Outcome:
    return within(_iou(r, "lora_r48"), _iou(r, "fusion_only"), 0.02, "r48 vs fusion_only")


@claim("p01-9.4-lora-protects-refusal", P1, "Table 9.4 / §9", table="9.4", reads=("recipes",),
       quote="The frozen head ends up being a useful regulariser by accident: parameter-efficient training cannot damage the negative-prompt rejection as comprehensively as a full fine-tune can.",
       statement="neg_correct of every fusion LoRA rank > max(neg_correct frozen_te, all_trainable)")
def _(r: Results) -> Outcome:
    full = max(_neg(r, "frozen_te"), _neg(r, "all_trainable"))
    return every(*(cmp(_neg(r, f"lora_r{k}"), ">", full, f"r={k} vs full FT") for k in LORA_RANKS))


@claim("p01-9.4-lower-rank-worse-neg", P1, "Table 9.4", table="9.4", reads=("recipes",),
       quote="But on the negative side, lower rank is worse, not better",
       statement="mean neg_correct of lora_r32, lora_r48 > mean of lora_r8, lora_r16")
def _(r: Results) -> Outcome:
    hi = (_neg(r, "lora_r32") + _neg(r, "lora_r48")) / 2
    lo = (_neg(r, "lora_r8") + _neg(r, "lora_r16")) / 2
    return cmp(hi, ">", lo, "r32/48 vs r8/16")


@claim("p01-9.4-lower-rank-lvis", P1, "Table 9.4", table="9.4", reads=("recipes",),
       quote="Lower rank does protect base ability on the positive side",
       statement="LVIS mIoU: lora_r8 ≥ lora_r48")
def _(r: Results) -> Outcome:
    return vs(r, "lora_r8", ">=", "lora_r48", "lvis", "mIoU")


@claim("p01-9.6-spare-capacity", P1, "Table 9.6", table="9.6", reads=("post01/table-9.6",),
       quote="r=32 and r=48 have huge spare capacity",
       statement="fraction of the rank budget above the MP edge and r_eff/r both fall from r=8 to r=48 (rows: rank, mp_fraction, reff_fraction)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.6"
    return every(cmp(r.cell(t, "mp_fraction", rank=8), ">", r.cell(t, "mp_fraction", rank=48), "MP fraction r8 vs r48"),
                 cmp(r.cell(t, "reff_fraction", rank=8), ">", r.cell(t, "reff_fraction", rank=48), "reff/r r8 vs r48"))


@claim("p01-9.9-boost-lowers-loss", P1, "Table 9.9", table="9.9", needs=LEARNED, reads=("post01/table-9.9",),
       quote="Both columns track the same monotone pattern in the direction the rsLoRA math predicts: the smaller-rank end gets the biggest boost.",
       statement="the rsLoRA boost lowers end loss at r=8, and the IoU gain at r=8 exceeds the gain at r=48 (rows: rank, std_loss, boost_loss, std_iou, boost_iou)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.9"
    d = {k: r.cell(t, "boost_iou", rank=k) - r.cell(t, "std_iou", rank=k) for k in (8, 48)}
    return every(cmp(r.cell(t, "boost_loss", rank=8), "<", r.cell(t, "std_loss", rank=8), "r=8 loss boost vs std"),
                 cmp(d[8], ">", d[48], "ΔIoU r=8 vs r=48"))


@claim("p01-9.15-alpha-peak", P1, "Table 9.15", table="9.15", needs=LEARNED, reads=("post01/table-9.15",),
       quote="The peak is at α = 128 (boost factor 16×, equivalent to rsLoRA c ≈ 45) — about six times the rsLoRA default",
       statement="r=8 α-ladder: watch IoU peaks at α > 22 (rows: alpha, watch_iou)")
def _(r: Results) -> Outcome:
    ious = r.column("post01/table-9.15", "watch_iou", by="alpha")
    a = max(ious, key=ious.get)
    return cmp(float(a), ">", 22, "argmax α")


@claim("p01-9.15-interior-optimum", P1, "Table 9.15", table="9.15", needs=LEARNED, reads=("post01/table-9.15",),
       quote="At α=160 the loss climbs back up and watch IoU drops 0.016.",
       statement="the α-ladder has an interior optimum: IoU at the largest α < the peak IoU")
def _(r: Results) -> Outcome:
    ious = r.column("post01/table-9.15", "watch_iou", by="alpha")
    top = max(ious, key=float)
    return cmp(ious[top], "<", max(ious.values()), f"IoU at α={top} vs peak")


@claim("p01-9.21-alpha-beats-lr", P1, "Table 9.21", table="9.21", needs=LEARNED, reads=("post01/table-9.21",),
       quote="At 12× and 16× the α-boost wins.",
       statement="at k=16, α-boost IoU ≥ LR-boost IoU (rows: k, alpha_boost_iou, lr_boost_iou)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.21"
    return cmp(r.cell(t, "alpha_boost_iou", k=16), ">=", r.cell(t, "lr_boost_iou", k=16), "k=16")


@claim("p01-9.10-r8-strongest", P1, "Table 9.10", table="9.10", needs=LEARNED, reads=("post01/table-9.10",),
       quote="r=8 α=128 is the strongest signal in the table.",
       statement="the r=8 α=128 pair has the largest Cohen's d and paired-t p < 0.05 (rows: rank, cohens_d, paired_t_p)")
def _(r: Results) -> Outcome:
    d = r.column("post01/table-9.10", "cohens_d", by="rank")
    best = max(d, key=d.get)
    return every(cmp(float(best), "==", 8.0, "rank with largest d"), cmp(r.cell("post01/table-9.10", "paired_t_p", rank=8), "<", 0.05, "paired-t p at r=8"))


@claim("p01-9.11-ood-penalty", P1, "Table 9.11", table="9.11", needs=LEARNED, reads=("post01/table-9.11",),
       quote="At every rank where the boost helps in-domain IoU, it slightly hurts at least one OOD metric",
       statement="for each rank where boost watch_iou > std watch_iou, one of cgF1 / pmF1 / neg_correct is lower under boost (rows: rank, variant ∈ {std, boost}, …)")
def _(r: Results) -> Outcome:
    t, outs = "post01/table-9.11", []
    ranks = sorted({x["rank"] for x in r.rows(t) if x.get("variant") == "boost"})
    if not ranks:
        raise NotYetRun(f"{t}.json has no boost rows")
    for k in ranks:
        s, b = r.row(t, rank=k, variant="std"), r.row(t, rank=k, variant="boost")
        if b["watch_iou"] > s["watch_iou"]:
            hurt = [m for m in ("cgF1", "pmF1", "neg_correct") if b[m] < s[m]]
            outs.append((bool(hurt), f"r={k}: boost helps IoU, hurts {hurt or 'nothing'}"))
    return every(*outs) if outs else (True, "boost helped IoU at no rank (vacuous)")


def _mp_at_quarter_epoch(r: Results) -> tuple[dict[str, Any], dict[str, Any]]:
    rows = sorted((x for x in r.rows("post01/table-9.17") if x.get("step") is not None), key=lambda x: x["step"])
    ep1 = [x for x in rows if str(x.get("label", "")).strip() == "end ep 1"]
    if not ep1:
        raise NotYetRun("post01/table-9.17.json has no row labelled 'end ep 1'")
    target = ep1[0]["step"] * 1200 / 5313  # the post's step 1200 = 22.6 % of epoch 1
    early = min(rows, key=lambda x: abs(x["step"] - target))
    return early, rows[-1]


@claim("p01-9.17-mp-converges", P1, "Table 9.17", table="9.17", reads=("post01/table-9.17",),
       quote="MP-rank stabilises by step ~1200— less than 25 % of one epoch — and stays at median 16 through another three full epochs.",
       statement="median MP-rank at the step nearest 22.6 % of epoch 1 (the post's step 1200) equals the final MP-rank within ±1 (rows: step, label, mp_rank, e90)")
def _(r: Results) -> Outcome:
    early, last = _mp_at_quarter_epoch(r)
    return within(early["mp_rank"], last["mp_rank"], 1, f"MP-rank step {early['step']} vs end")


@claim("p01-9.17-e90-noise", P1, "Table 9.17", table="9.17", reads=("post01/table-9.17",),
       quote="Operationally: do not use e90 to size your LoRA. Do use MP-rank. The two diverge by 7× at convergence on this task.",
       statement="at the end, e90 ≥ 2 × MP-rank, and e90 grows after the MP-rank has settled")
def _(r: Results) -> Outcome:
    early, last = _mp_at_quarter_epoch(r)
    return every(cmp(last["e90"], ">=", 2 * last["mp_rank"], "e90 vs 2×MP-rank at end"), cmp(last["e90"], ">", early["e90"], "e90 end vs early"))


@claim("p01-9.19-adalora-init", P1, "Table 9.19", table="9.19", needs=LEARNED, reads=("post01/table-9.19",),
       quote="The 15-point IoU jump at 1 epoch (+0.150) is the warm-up advantage cashed in.",
       statement="AdaLoRA 1-epoch IoU: LoRA-style init > paper-default init (rows: init ∈ {paper, lora_style}, iou_1ep)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.19"
    return cmp(r.cell(t, "iou_1ep", init="lora_style"), ">", r.cell(t, "iou_1ep", init="paper"), "1-ep IoU")


@claim("p01-9.13-mp-lora-beats-ft", P1, "Table 9.13", table="9.13", needs=LEARNED, reads=("post01/table-9.13",),
       quote="The MP-rank LoRA at 4× α beats the frozen-TE full fine-tune: 0.9232 vs 0.9215.",
       statement="watch IoU: full_lora_mp_4x ≥ frozen_te (rows: recipe, watch_iou)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.13"
    return cmp(r.cell(t, "watch_iou", recipe="full_lora_mp_4x"), ">=", r.cell(t, "watch_iou", recipe="frozen_te"), "MP-LoRA 4× vs frozen-TE")


@claim("p01-9.13-alpha-lever", P1, "Table 9.13", table="9.13", needs=LEARNED, reads=("post01/table-9.13",),
       quote="The +0.012 IoU between the two is pure α — the rank prescription is identical.",
       statement="watch IoU: full_lora_mp_4x > full_lora_mp_2x, with a trainable count < 5 % of frozen_te's (key trainable)")
def _(r: Results) -> Outcome:
    t = "post01/table-9.13"
    return every(cmp(r.cell(t, "watch_iou", recipe="full_lora_mp_4x"), ">", r.cell(t, "watch_iou", recipe="full_lora_mp_2x"), "4× vs 2× α"),
                 cmp(r.cell(t, "trainable", recipe="full_lora_mp_4x"), "<", 0.05 * r.cell(t, "trainable", recipe="frozen_te"), "trainable vs 5 % of frozen-TE"))


# ----------------------------------------------------------------------------- Post 02
P2 = "post02"
REPLAYS = ("lvis_replay", "lvis_replay_n100", "lvis_replay_neg", "recovery")


@claim("p02-1.1-presence-problem", P2, "Table 1.1", table="1.1", reads=("recipes",),
       quote="Catastrophic forgetting on SAM3-watch is a presence-detection problem, not a mask-quality problem.",
       statement="base→frozen_te drop in neg_correct > 5 × the drop in SA-Co pos_mean_IoU")
def _(r: Results) -> Outcome:
    dn = _neg(r, "base") - _neg(r, "frozen_te")
    dp = r.metric("base", "saco", "pos_mean_IoU") - r.metric("frozen_te", "saco", "pos_mean_IoU")
    return cmp(dn, ">", 5 * max(dp, 0.0), "neg_correct drop vs 5 × pos_mean_IoU drop")


@claim("p02-1.1-gate-stuck-open", P2, "Fig. 1.1", table="1.1", reads=("recipes",),
       quote="The gate is stuck open.",
       statement="mean presence σ on SA-Co negatives: frozen_te > 0.5 > base (recipes.json saco.neg_presence_sigmoid_mean)")
def _(r: Results) -> Outcome:
    ft, b = r.metric("frozen_te", "saco", "neg_presence_sigmoid_mean"), r.metric("base", "saco", "neg_presence_sigmoid_mean")
    return every(cmp(ft, ">", 0.5, "frozen_te"), cmp(b, "<", 0.5, "base"))


@claim("p02-3.1-negatives-only", P2, "Table 3.1", table="3.1", reads=("recipes",),
       quote="The negatives stream is the only intervention that meaningfully recovers refusal.",
       statement="neg_correct(lvis_replay_neg) > max over lvis_replay, lvis_replay_n100, recovery")
def _(r: Results) -> Outcome:
    others = {k: _neg(r, k) for k in ("lvis_replay", "lvis_replay_n100", "recovery")}
    return vs(r, "lvis_replay_neg", ">", max(others, key=others.get), "saco", "neg_correct")


@claim("p02-3.1-replay-no-refusal", P2, "Table 3.1", table="3.1", reads=("recipes",),
       quote="Adding more positive data doesn’t teach refusal at any density or timing.",
       statement="neg_correct of lvis_replay and lvis_replay_n100 within 10 pp of frozen_te")
def _(r: Results) -> Outcome:
    ft = _neg(r, "frozen_te")
    return every(*(cmp(_neg(r, k) - ft, "<=", 0.10, f"{k} − frozen_te") for k in ("lvis_replay", "lvis_replay_n100")))


@claim("p02-3.1-cgf1-tracks-neg", P2, "Table 3.1", table="3.1", reads=("recipes",),
       quote="cgF1 tracks neg_correct closely",
       statement="Spearman ρ(cgF1, neg_correct) across frozen_te and the four data-side recipes ≥ 0.7")
def _(r: Results) -> Outcome:
    names = ("frozen_te", *REPLAYS)
    rho = spearman([r.metric(k, "saco", "cgF1") for k in names], [_neg(r, k) for k in names])
    return cmp(rho, ">=", 0.7, "Spearman ρ")


@claim("p02-3.1-replay-pareto", P2, "Table 3.1", table="3.1", needs=LEARNED, reads=("recipes",),
       quote="Replay doesn’t trade off in-domain performance for OOD preservation.",
       statement="watch IoU of lvis_replay and lvis_replay_neg within 0.02 of frozen_te")
def _(r: Results) -> Outcome:
    ft = _iou(r, "frozen_te")
    return every(*(within(_iou(r, k), ft, 0.02, k) for k in ("lvis_replay", "lvis_replay_neg")))


@claim("p02-4.1-replay-preserves", P2, "Table 4.1", table="4.1", reads=("recipes",),
       quote="lvis_replay preserves base-level positive quality on SA-Co (62.3 vs base 63.0).",
       statement="SA-Co pos_mean_IoU: lvis_replay > recovery")
def _(r: Results) -> Outcome:
    return vs(r, "lvis_replay", ">", "recovery", "saco", "pos_mean_IoU")


@claim("p02-4.1-recovery-degrades", P2, "Table 4.1", table="4.1", reads=("recipes",),
       quote="Recovery degrades it further (55.2, well below the already-FT-degraded starting point of 58.7).",
       statement="SA-Co pos_mean_IoU: recovery < frozen_te")
def _(r: Results) -> Outcome:
    return vs(r, "recovery", "<", "frozen_te", "saco", "pos_mean_IoU")


@claim("p02-4.1-recovery-watch-cost", P2, "Table 4.1", table="4.1", needs=LEARNED, reads=("recipes",),
       quote="Recovery erodes it ~2 IoU points.",
       statement="watch IoU: recovery < frozen_te")
def _(r: Results) -> Outcome:
    return vs(r, "recovery", "<", "frozen_te")


@claim("p02-5.2-presence-only-order", P2, "Table 5.2", table="5.2", reads=("recipes",),
       quote="neg_correct: 2.9 % → 87.85 %— recovers almost all the way to base’s 95.8 %.",
       statement="neg_correct: presence_only > lvis_replay_neg > lvis_replay")
def _(r: Results) -> Outcome:
    return every(vs(r, "presence_only", ">", "lvis_replay_neg", "saco", "neg_correct"),
                 vs(r, "lvis_replay_neg", ">", "lvis_replay", "saco", "neg_correct"))


@claim("p02-5.2-watch-kept", P2, "Table 5.2", table="5.2", needs=LEARNED, reads=("recipes",),
       quote="This is a calibration trade-off, not a mask-quality loss",
       statement="presence_only keeps ≥ 80 % of lvis_replay's watch-IoU gain over base")
def _(r: Results) -> Outcome:
    b = _iou(r, "base")
    return cmp((_iou(r, "presence_only") - b) / (_iou(r, "lvis_replay") - b), ">=", 0.8, "gain share")


@claim("p02-5.1-gate-learns", P2, "Table 5.1", table="5.1", reads=("post02/table-5.1",),
       quote="The gate learns to discriminate cleanly within 5 minutes of wall-clock.",
       statement="presence_only retrain: at the last step neg_pres_sigma < 0.5 < pos_pres_sigma (rows: step, pos_pres_sigma, neg_pres_sigma)")
def _(r: Results) -> Outcome:
    rows = sorted((x for x in r.rows("post02/table-5.1") if x.get("neg_pres_sigma") is not None), key=lambda x: x["step"])
    if not rows:
        raise NotYetRun("post02/table-5.1.json has no rows with neg_pres_sigma")
    last = rows[-1]
    return every(cmp(last["neg_pres_sigma"], "<", 0.5, "neg σ"), cmp(last["pos_pres_sigma"], ">", 0.5, "pos σ"))


DRIFT_KEYS = ("f4_watch", "f4_lvis", "f4_saco", "q0_watch", "q0_lvis", "q0_saco", "d5_watch", "d5_lvis", "d5_saco")


@claim("p02-5.1b-replay-neg-cleanest", P2, "Table 5.1 (§6, id 5.1b)", table="5.1b", reads=("post02/table-5.1b",),
       quote="lvis_replay_neg is the only recipe that cleans every layer × source.",
       statement="rel_Δ of lvis_replay_neg < frozen_te in every one of the 9 layer × prompt-source cells (rows: recipe, f4_watch … d5_saco)")
def _(r: Results) -> Outcome:
    t = "post02/table-5.1b"
    rn, ft = r.row(t, recipe="lvis_replay_neg"), r.row(t, recipe="frozen_te")
    keys = [k for k in DRIFT_KEYS if k in rn and k in ft]
    if not keys:
        raise NotYetRun(f"{t}.json rows lack the drift keys {DRIFT_KEYS}")
    worse = [k for k in keys if not rn[k] < ft[k]]
    return not worse, f"{len(keys) - len(worse)}/{len(keys)} cells cleaner" + (f"; not cleaner: {worse}" if worse else "")


@claim("p02-5.1b-recovery-walks-away", P2, "Table 5.1 (§6, id 5.1b)", table="5.1b", reads=("post02/table-5.1b",),
       quote="Recovery training isn’t walking the model back toward base.",
       statement="fusion[4] rel_Δ on LVIS prompts: recovery at its last step > lvis_replay (rows: recipe='recovery' with step, f4_lvis)")
def _(r: Results) -> Outcome:
    t = "post02/table-5.1b"
    rec = [x for x in r.rows(t) if x.get("recipe") == "recovery" and x.get("f4_lvis") is not None]
    if not rec:
        raise NotYetRun(f"{t}.json has no recovery rows")
    last = max(rec, key=lambda x: x.get("step") or 0)
    return cmp(last["f4_lvis"], ">", r.cell(t, "f4_lvis", recipe="lvis_replay"), f"recovery@{last.get('step')} vs lvis_replay")


WM_GROUPS = ("dot_prod_scoring", "decoder_ca_text", "geometry_encoder", "fusion_encoder", "decoder_self_attn", "transformer_decoder", "vision_trunk")


@claim("p02-6.1-same-circuit", P2, "Table 6.1", table="6.1", reads=("post02/table-6.1",),
       quote="The structural reading is every recipe moves the same circuit, just by different amounts.",
       statement="Spearman ρ of per-group rel_change between frozen_te and each of lvis_replay, lvis_replay_neg, recovery ≥ 0.7 (rows: group, <recipe> keys)")
def _(r: Results) -> Outcome:
    t = "post02/table-6.1"
    ref = r.column(t, "frozen_te", by="group")
    outs = []
    for k in ("lvis_replay", "lvis_replay_neg", "recovery"):
        col = r.column(t, k, by="group")
        gs = [g for g in WM_GROUPS if g in ref and g in col]
        if len(gs) < 3:
            raise NotYetRun(f"{t}.json: fewer than 3 module groups for {k}")
        outs.append(cmp(spearman([ref[g] for g in gs], [col[g] for g in gs]), ">=", 0.7, f"ρ(frozen_te, {k})"))
    return every(*outs)


@claim("p02-6.1-neg-moves-more", P2, "Table 6.1", table="6.1", reads=("post02/table-6.1",),
       quote="lvis_replay_neg pushes every cross-modal group further than lvis_replay does",
       statement="rel_change of dot_prod_scoring and decoder_ca_text: lvis_replay_neg ≥ lvis_replay")
def _(r: Results) -> Outcome:
    t = "post02/table-6.1"
    return every(*(cmp(r.cell(t, "lvis_replay_neg", group=g), ">=", r.cell(t, "lvis_replay", group=g), g) for g in ("dot_prod_scoring", "decoder_ca_text")))


@claim("p02-7.1-replay-same-direction", P2, "Table 7.1", table="7.1", reads=("post02/table-7.1",),
       quote="The FT’s break and lvis_replay’s movement are essentially the same direction (cos = +0.96).",
       statement="presence-norm bias delta: cos(lvis_replay − base, frozen_te − base) > 0.8 (rows: trajectory, cos_frozen_te)")
def _(r: Results) -> Outcome:
    return cmp(r.cell("post02/table-7.1", "cos_frozen_te", trajectory="lvis_replay"), ">", 0.8, "cos")


@claim("p02-7.1-presence-only-flips", P2, "Table 7.1", table="7.1", reads=("post02/table-7.1",),
       quote="The recipes that fix refusal flip the direction.",
       statement="cos(presence_only − base, frozen_te − base) < 0 and cos(lvis_replay_neg − base, ·) < cos(lvis_replay − base, ·)")
def _(r: Results) -> Outcome:
    t = "post02/table-7.1"
    return every(cmp(r.cell(t, "cos_frozen_te", trajectory="presence_only"), "<", 0.0, "presence_only"),
                 cmp(r.cell(t, "cos_frozen_te", trajectory="lvis_replay_neg"), "<", r.cell(t, "cos_frozen_te", trajectory="lvis_replay"), "replay_neg vs replay"))


@claim("p02-7.1-recovery-continues", P2, "Table 7.1", table="7.1", reads=("post02/table-7.1",),
       quote="The recovery training is geometrically identical to a continuation of the FT’s break.",
       statement="cos(recovery − frozen_te, frozen_te − base) > 0")
def _(r: Results) -> Outcome:
    return cmp(r.cell("post02/table-7.1", "cos_frozen_te", trajectory="recovery"), ">", 0.0, "cos")


@claim("p02-8.1-interventions-null", P2, "Table 8.1", table="8.1", reads=("post02/table-8.1",),
       quote="Every intervention designed from the four-probe synthesis returned a null result.",
       statement="no training-free intervention raises neg_correct by more than 5 pp over lvis_replay (rows: intervention, neg_correct)")
def _(r: Results) -> Outcome:
    col = r.column("post02/table-8.1", "neg_correct", by="intervention")
    if "lvis_replay" not in col or len(col) < 2:
        raise NotYetRun("post02/table-8.1.json needs the lvis_replay row and at least one intervention")
    best = max((k for k in col if k != "lvis_replay"), key=col.get)
    return cmp(col[best] - col["lvis_replay"], "<=", 0.05, f"best intervention ({best}) − start")


# ----------------------------------------------------------------------------- rank series (Paper 86)
RS = "rank_series"


@claim("rs-86-er-dynamic", RS, "Paper 86, step table", table="86.1", reads=("rank_series/table-86.1",),
       quote="True gradient ER is DYNAMIC: 5.55 → 19.17 → 9.33 across training steps",
       statement="true gradient ER (rows: step, true_er_mean) peaks at an interior step: ER(peak) > ER(first) and ER(last) < ER(peak)")
def _(r: Results) -> Outcome:
    er = r.column("rank_series/table-86.1", "true_er_mean", by="step")
    steps = sorted(er, key=float)
    peak = max(er, key=er.get)
    return every(cmp(er[peak], ">", er[steps[0]], f"peak (step {peak}) vs first"), cmp(er[steps[-1]], "<", er[peak], "last vs peak"))


@claim("rs-86-k8-covers", RS, "Paper 86, K table", table="86.2", reads=("rank_series/table-86.2", "rank_series/table-86.1"),
       quote="At step 1: K=8 is OPTIMAL — it achieves 98% of the true gradient ER with 4× fewer parameters than K=32.",
       statement="K-constrained ER at K=8 ≥ 0.95 × true ER at step 1 (rows: k, k_constrained_er; table-86.1 rows: step, true_er_mean)")
def _(r: Results) -> Outcome:
    k8 = r.cell("rank_series/table-86.2", "k_constrained_er", k=8)
    er = r.column("rank_series/table-86.1", "true_er_mean", by="step")
    first = er[min(er, key=float)]
    return cmp(k8, ">=", 0.95 * first, "K=8 constrained ER vs 0.95 × step-1 true ER")


@claim("rs-86-k-bound", RS, "Paper 86, K table", table="86.2", reads=("rank_series/table-86.2",),
       quote="This measures the effective rank of the K=32-projected gradient, which is always ≤ K=32.",
       statement="K-constrained ER ≤ K for every K (rows: k, k_constrained_er)")
def _(r: Results) -> Outcome:
    col = r.column("rank_series/table-86.2", "k_constrained_er", by="k")
    return every(*(cmp(v, "<=", float(k), f"K={k}") for k, v in sorted(col.items(), key=lambda kv: float(kv[0]))))


@claim("rs-86-early-layers", RS, "Paper 86, layer table", table="86.3", reads=("rank_series/table-86.3",),
       quote="Earlier layers (L0-L2) need slightly more K than later layers (L6-L7).",
       statement="mean true ER of layers 0–2 > mean of layers 6–7 (rows: layer, true_er)")
def _(r: Results) -> Outcome:
    col = {int(k): v for k, v in r.column("rank_series/table-86.3", "true_er", by="layer").items()}
    early, late = [col[i] for i in (0, 1, 2) if i in col], [col[i] for i in (6, 7) if i in col]
    if not early or not late:
        raise NotYetRun("rank_series/table-86.3.json needs layers 0–2 and 6–7")
    return cmp(sum(early) / len(early), ">", sum(late) / len(late), "L0–2 vs L6–7")
