"""Federated descriptive statistics over one CSV data source of a site.

Input (JSON, every key optional)::

    {"data": "table",            # data label (default: the only one mounted)
     "columns": ["age", "sex"],  # restrict to these columns (default: all)
     "categorical": ["grade"]}   # treat these as categories even if they look numeric

Output: ``rows``; per numeric column ``count``/``sum``/``sum_sq``/``min``/``max``/``missing``
(sums combine across sites into means and variances); per categorical column the counts of
each category. A category seen fewer than ``PTM_MIN_GROUP_SIZE`` times is suppressed, and
so is the next smallest one when the suppressed rows would otherwise add up to a small,
derivable group; the output lists what was suppressed. Fewer rows than the minimum in
the whole data set: no statistics at all (exit 2 with an ``error``).

Under disclosure control (``PTM_TIME_RESOLUTION`` set: the site's ``[policy]
disclosure_control = true``, docs/privacy.md) no exact value of one patient and no count
under k leaves: ``min``/``max`` are withheld, a numeric column with 1 to k − 1 missing
values is suppressed whole (its count would give that number away), and ``rows`` is
rounded up to a multiple of k.
"""

from __future__ import annotations

import csv
import math
from typing import Any

from ptm_p2p import algorithm
from ptm_p2p.algorithm import AlgorithmError

MISSING = {"", "na", "nan", "null", "none"}
MISSING_CATEGORY = "(missing)"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def suppress(counts: dict[str, int], k: int) -> tuple[dict[str, int], list[str]]:
    """Drop categories smaller than k, plus the smallest others while the dropped rows
    total less than k (otherwise rows minus the shown counts reveals a small group)."""
    order = sorted(counts, key=lambda c: (counts[c], c))
    hidden = [c for c in order if counts[c] < k]
    shown = [c for c in order if counts[c] >= k]
    while hidden and sum(counts[c] for c in hidden) < k and shown:
        hidden.append(shown.pop(0))
    return {c: counts[c] for c in sorted(shown)}, sorted(hidden)


def compute(params: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise AlgorithmError("the input must be a JSON object")
    labels = algorithm.data_labels()
    label = params.get("data") or (labels[0] if len(labels) == 1 else None)
    if not label:
        raise AlgorithmError(f"name the data source with 'data' (available: {labels})")
    k = algorithm.min_group_size()
    controlled = algorithm.time_resolution() is not None
    path = algorithm.data_file(label, suffix=".csv")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        wanted = params.get("columns") or header
        missing_cols = [c for c in wanted if c not in header]
        if missing_cols:
            raise AlgorithmError(f"columns not in {label}: {missing_cols} (columns: {header})")
        values: dict[str, list[str]] = {c: [] for c in wanted}
        rows = 0
        for row in reader:
            rows += 1
            for column in wanted:
                values[column].append((row.get(column) or "").strip())
    if rows < k:
        raise AlgorithmError(
            f"{label} has fewer rows than the minimum group size {k}: nothing is reported"
        )
    forced = set(params.get("categorical") or [])
    # A misspelt categorical column would otherwise be dropped without a word. (One the
    # file has but 'columns' leaves out is simply not summarised, as before.)
    unknown = sorted(c for c in forced if c not in header)
    if unknown:
        raise AlgorithmError(
            f"categorical names columns not in {label}: {unknown} (columns: {header})"
        )
    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    suppressed: dict[str, list[str]] = {}
    for column in wanted:
        cells = values[column]
        present = [v for v in cells if v.lower() not in MISSING]
        parsed = [_number(v) for v in present]
        if column not in forced and present and all(p is not None for p in parsed):
            nums = [p for p in parsed if p is not None]
            missing = len(cells) - len(nums)
            if controlled and 0 < missing < k:
                suppressed[column] = [f"fewer than {k} missing values: the column is withheld"]
                continue
            numeric[column] = {
                "count": len(nums),
                "missing": len(cells) - len(nums),
                "sum": math.fsum(nums),
                "sum_sq": math.fsum(x * x for x in nums),
                "min": min(nums),
                "max": max(nums),
            }
            if controlled:  # one patient's exact value each
                del numeric[column]["min"], numeric[column]["max"]
        else:
            counts: dict[str, int] = {}
            for v in cells:
                key = MISSING_CATEGORY if v.lower() in MISSING else v
                counts[key] = counts.get(key, 0) + 1
            shown, hidden = suppress(counts, k)
            categorical[column] = shown
            if hidden:
                suppressed[column] = hidden
    if controlled:
        rows = math.ceil(rows / k) * k
    return {
        "data": label,
        "rows": rows,
        "disclosure_control": controlled,
        "min_group_size": k,
        "numeric": numeric,
        "categorical": categorical,
        "suppressed": suppressed,
        "note": (
            f"categories with fewer than {k} rows (and complements that would reveal them) "
            "are suppressed; see 'suppressed'"
        ),
    }


if __name__ == "__main__":
    algorithm.main(compute)
