"""Post 02 claims of tables whose script is not written yet (§9 Table 8.1).

Each claim moves into the script that writes its table when that script lands (``post02/presence_only.py``
already holds the Table 5.1 / 5.2 claims, the other post02/ scripts theirs). Until then ``make compare`` judges them
here, as "not yet run".
"""
from __future__ import annotations

from common.claims import NotYetRun, Outcome, Results, claim, cmp

# ----------------------------------------------------------------------------- Post 02
P2 = "post02"


@claim("p02-8.1-interventions-null", P2, "Table 8.1", table="8.1", reads=("post02/table-8.1",),
       quote="Every intervention designed from the four-probe synthesis returned a null result.",
       statement="no training-free intervention raises neg_correct by more than 5 pp over lvis_replay (rows: intervention, neg_correct)")
def _(r: Results) -> Outcome:
    col = r.column("post02/table-8.1", "neg_correct", by="intervention")
    if "lvis_replay" not in col or len(col) < 2:
        raise NotYetRun("post02/table-8.1.json needs the lvis_replay row and at least one intervention")
    best = max((k for k in col if k != "lvis_replay"), key=col.get)
    return cmp(col[best] - col["lvis_replay"], "<=", 0.05, f"best intervention ({best}) − start")
