"""Shared fixtures of the privacy tests."""

from __future__ import annotations

import pandas as pd
import pytest

from ptm_p2p.algorithms import datasets


@pytest.fixture(scope="module")
def sites() -> dict[str, pd.DataFrame]:
    """GBSG2 split over three hospitals, 360/214/112 patients (a module may override it)."""
    frames = datasets.split(datasets.load_gbsg2(), datasets.SIZES)
    return dict(zip(("hospital-a", "hospital-b", "hospital-c"), frames, strict=True))
