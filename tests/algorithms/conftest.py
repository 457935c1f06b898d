"""Fixtures for the survival tests: lifelines' GBSG2 study, numeric, split over sites.

GBSG2 (686 breast-cancer patients, 299 recurrences) ships inside lifelines. Its categorical
columns are coded as the researcher would before a Cox fit: ``horTh`` and ``menostat`` as
0/1, ``tgrade`` as indicators of grades II and III (grade I the reference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

COVARIATES = [
    "horTh",
    "age",
    "menostat",
    "tsize",
    "tgrade_II",
    "tgrade_III",
    "pnodes",
    "progrec",
    "estrec",
]
SIZES = (360, 214, 112)  # uneven on purpose


def load_gbsg2() -> pd.DataFrame:
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


def split(frame: pd.DataFrame, sizes: tuple[int, ...], seed: int = 20261124) -> list[pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    bounds = np.cumsum((0, *sizes))
    return [
        frame.iloc[order[a:b]].reset_index(drop=True)
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]


@pytest.fixture(scope="session")
def gbsg2() -> pd.DataFrame:
    return load_gbsg2()


@pytest.fixture(scope="session")
def sites(gbsg2: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """GBSG2 over three hospitals: 360, 214 and 112 patients."""
    assert sum(SIZES) == len(gbsg2)
    return dict(zip(("hospital-a", "hospital-b", "hospital-c"), split(gbsg2, SIZES), strict=True))


@pytest.fixture(scope="session")
def pooled_with_site(sites: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([f.assign(site=name) for name, f in sites.items()], ignore_index=True)
