"""Fixtures for the survival tests: lifelines' GBSG2 study, numeric, split over sites.

GBSG2 (686 breast-cancer patients, 299 recurrences) ships inside lifelines. Its categorical
columns are coded as the researcher would before a Cox fit: ``horTh`` and ``menostat`` as
0/1, ``tgrade`` as indicators of grades II and III (grade I the reference).
"""

from __future__ import annotations

import pandas as pd
import pytest

from ptm_p2p.algorithms import datasets

COVARIATES = list(datasets.COVARIATES)
SIZES = datasets.SIZES  # 360, 214, 112: uneven on purpose
load_gbsg2 = datasets.load_gbsg2
split = datasets.split


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
