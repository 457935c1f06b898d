"""Shared fixtures of the privacy tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from ptm_p2p.algorithms import datasets

SUMMARY_MAIN = Path(__file__).resolve().parents[2] / "algorithms" / "summary" / "main.py"


@pytest.fixture(scope="module")
def sites() -> dict[str, pd.DataFrame]:
    """GBSG2 split over three hospitals, 360/214/112 patients (a module may override it)."""
    frames = datasets.split(datasets.load_gbsg2(), datasets.SIZES)
    return dict(zip(("hospital-a", "hospital-b", "hospital-c"), frames, strict=True))


@pytest.fixture
def summary_main(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The ``summary`` image's own module, loaded from its file, with the environment a
    site's sandbox gives it (data label ``gbsg2``, minimum group size 5); a test sets
    ``PTM_DATA_DIR`` and ``PTM_TIME_RESOLUTION``, which it reads when it computes."""
    monkeypatch.setenv("PTM_DATA_LABELS", "gbsg2")
    monkeypatch.setenv("PTM_MIN_GROUP_SIZE", "5")
    spec = importlib.util.spec_from_file_location("summary_main", SUMMARY_MAIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
