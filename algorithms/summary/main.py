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
    if params.get("secure_sum") is not None:
        return secure(params)
    return _plain(params)


def _read(params: dict[str, Any], wanted: list[str] | None) -> tuple[str, list[str], dict, int]:
    """(label, header, the wanted columns' cells, rows) of the task's data source."""
    labels = algorithm.data_labels()
    label = params.get("data") or (labels[0] if len(labels) == 1 else None)
    if not label:
        raise AlgorithmError(f"name the data source with 'data' (available: {labels})")
    path = algorithm.data_file(label, suffix=".csv")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        wanted = wanted or header
        missing_cols = [c for c in wanted if c not in header]
        if missing_cols:
            raise AlgorithmError(f"columns not in {label}: {missing_cols} (columns: {header})")
        values: dict[str, list[str]] = {c: [] for c in wanted}
        rows = 0
        for row in reader:
            rows += 1
            for column in wanted:
                values[column].append((row.get(column) or "").strip())
    return label, header, values, rows


def secure(params: dict[str, Any]) -> dict[str, Any]:
    """The summary as a secure-sum answer (the site daemon masks it; the researcher sees
    only sums over the sites). The request names what to sum, so every site answers in one
    shape: ``{"secure_sum": {"numeric": [COL, ...], "categorical": {COL: [CATEGORY, ...]}}}``.

    Summed fields: ``rows``; per numeric column i ``numeric.i`` = [count, missing, sum,
    sum_sq, withheld] (under control a column with 1 … k − 1 missing values is withheld:
    zeros and withheld = 1); per categorical column i ``categorical.i`` = the count of
    each listed category, then the rows of categories not listed, then the rows this site
    suppressed (its categories under k and the complements that would reveal them, as in
    the plain answer: kept under secure aggregation, defence against collusion). No min or
    max. ``public`` echoes the request's names and the site's k: nothing of the data.
    """
    spec = params["secure_sum"]
    numeric = spec.get("numeric", []) if isinstance(spec, dict) else None
    categorical = spec.get("categorical", {}) if isinstance(spec, dict) else None
    if (
        not isinstance(numeric, list)
        or not all(isinstance(c, str) and c for c in numeric)
        or not isinstance(categorical, dict)
        or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in categorical.values()
        )  # fmt: skip
        or not (numeric or categorical)
    ):
        raise AlgorithmError(
            '\'secure_sum\' must be {"numeric": [COL, ...], "categorical": {COL: [CATEGORY, '
            "...]}} naming at least one column"
        )
    k = algorithm.min_group_size()
    controlled = algorithm.time_resolution() is not None
    label, _, values, rows = _read(params, list(dict.fromkeys([*numeric, *categorical])))
    if rows < k:
        raise AlgorithmError(
            f"{label} has fewer rows than the minimum group size {k}: nothing is reported"
        )
    summed: dict[str, list[float]] = {"rows": [math.ceil(rows / k) * k if controlled else rows]}
    for i, column in enumerate(numeric):
        cells = [v for v in values[column] if v.lower() not in MISSING]
        nums = [_number(v) for v in cells]
        if any(x is None for x in nums):
            raise AlgorithmError(f"column {column!r} holds values that are not numbers")
        present = [x for x in nums if x is not None]
        missing = rows - len(present)
        if controlled and 0 < missing < k:
            summed[f"numeric.{i}"] = [0, 0, 0.0, 0.0, 1]
            continue
        summed[f"numeric.{i}"] = [len(present), missing, math.fsum(present),
                                  math.fsum(x * x for x in present), 0]  # fmt: skip
    for i, (column, listed) in enumerate(categorical.items()):
        counts: dict[str, int] = {}
        for v in values[column]:
            key = MISSING_CATEGORY if v.lower() in MISSING else v
            counts[key] = counts.get(key, 0) + 1
        shown, hidden = suppress(counts, k)
        other = sum(n for c, n in shown.items() if c not in listed)
        summed[f"categorical.{i}"] = [*(shown.get(c, 0) for c in listed), other,
                                      sum(counts[c] for c in hidden)]  # fmt: skip
    public = {"data": label, "min_group_size": k, "disclosure_control": controlled,
              "numeric": numeric, "categorical": categorical}  # fmt: skip
    return {"secure_sum": summed, "public": public}


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    k = algorithm.min_group_size()
    controlled = algorithm.time_resolution() is not None
    label, header, values, rows = _read(params, params.get("columns"))
    wanted = list(values)
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
