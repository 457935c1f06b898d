"""The ``summary`` algorithm's coordinator: pool the sites' sums into the figures of the whole.

Each site's ``summary`` image (``algorithms/summary/main.py``) answers with per-column
counts, sums and sums of squares for numeric columns and category counts for categorical
ones; the researcher adds them up here. Means and standard deviations come out exactly as
on the pooled patients, without any patient leaving a site (one round, no iteration, so
unlike ``coxph`` and ``km`` there is no ``RoundRunner`` to drive).
"""

from __future__ import annotations

import math
from typing import Any


def combine(outputs: list[dict[str, Any]]) -> dict[str, float]:
    """Pool per-site sums into ``patients``, ``mean C``/``sd C`` per numeric column C and
    ``C=value`` counts per categorical column, for the columns every site answered."""
    combined: dict[str, float] = {"patients": float(sum(o["rows"] for o in outputs))}
    for column in _shared(outputs, "numeric"):
        n = sum(o["numeric"][column]["count"] for o in outputs)
        total = math.fsum(o["numeric"][column]["sum"] for o in outputs)
        squares = math.fsum(o["numeric"][column]["sum_sq"] for o in outputs)
        mean = total / n
        combined[f"mean {column}"] = mean
        combined[f"sd {column}"] = math.sqrt((squares - n * mean * mean) / (n - 1))
    for column in _shared(outputs, "categorical"):
        for category in sorted({c for o in outputs for c in o["categorical"][column]}):
            count = sum(o["categorical"][column].get(category, 0) for o in outputs)
            combined[f"{column}={category}"] = float(count)
    return combined


def _shared(outputs: list[dict[str, Any]], kind: str) -> list[str]:
    """The columns of ``kind`` every site answered, in the first site's order (every site
    runs the same request, so they answer the same columns)."""
    if not outputs:
        return []
    return [c for c in outputs[0][kind] if all(c in o[kind] for o in outputs)]
