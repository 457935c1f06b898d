"""GBSG2, coded for a Cox fit and split over sites: the study the tests, benchmarks and demo use.

GBSG2 (German Breast Cancer Study Group 2: 686 patients, 299 recurrences) ships inside
lifelines. Its categorical columns are coded as a researcher would before a Cox fit:
``horTh`` and ``menostat`` as 0/1, ``tgrade`` as indicators of grades II and III (grade I
the reference). lifelines and pandas are imported only when called.
"""

from __future__ import annotations

from typing import Any

COVARIATES = (
    "horTh",
    "age",
    "menostat",
    "tsize",
    "tgrade_II",
    "tgrade_III",
    "pnodes",
    "progrec",
    "estrec",
)
DURATION = "time"
EVENT = "cens"
SIZES = (360, 214, 112)  # uneven on purpose
SEED = 20261124


def load_gbsg2() -> Any:
    """GBSG2 as a pandas DataFrame of numbers: the covariates above, ``time`` and ``cens``."""
    import pandas as pd
    from lifelines.datasets import load_gbsg2 as raw

    d = raw()
    return pd.DataFrame(
        {
            "horTh": (d.horTh == "yes").astype(int),
            "age": d.age,
            "menostat": (d.menostat == "Post").astype(int),
            "tsize": d.tsize,
            "tgrade_II": (d.tgrade == "II").astype(int),
            "tgrade_III": (d.tgrade == "III").astype(int),
            "pnodes": d.pnodes,
            "progrec": d.progrec,
            "estrec": d.estrec,
            "time": d.time,
            "cens": d.cens,
        }
    )


def split(frame: Any, sizes: tuple[int, ...], seed: int = SEED) -> list[Any]:
    """Disjoint random shares of ``frame`` with these numbers of rows (a seeded permutation)."""
    import numpy as np

    if sum(sizes) > len(frame):
        raise ValueError(f"shares of {sum(sizes)} rows from a frame of {len(frame)}")
    order = np.random.default_rng(seed).permutation(len(frame))
    bounds = np.cumsum((0, *sizes))
    return [
        frame.iloc[order[a:b]].reset_index(drop=True)
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]


def uneven_sizes(n_sites: int, total: int) -> tuple[int, ...]:
    """``n_sites`` shares of ``total`` rows, each about 0.8 of the one before (uneven)."""
    weights = [0.8**i for i in range(n_sites)]
    sizes = [int(total * w / sum(weights)) for w in weights]
    sizes[0] += total - sum(sizes)
    return tuple(sizes)
