"""What a researcher reads when a request names a column wrongly (issue 17), and the fit's
lifelines-style accessors.

The column checks run the real images in the real sandbox through ``ptm run-local`` (a
subprocess, as a site would run them): a misspelt covariate is named with the site file's
columns, not only the ones loaded; an unknown ``categorical`` column is refused, not dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ptm_p2p.algorithms import coxph
from ptm_p2p.dev.stack import Stack

from .conftest import COVARIATES


@pytest.fixture
def csv(tmp_path: Path, sites: dict[str, pd.DataFrame]) -> Path:
    path = tmp_path / "gbsg2.csv"
    sites["hospital-a"].to_csv(path, index=False)
    path.chmod(0o644)
    return path


def run_local(image: str, csv: Path, request: dict[str, Any], tmp: Path) -> tuple[Any, Any]:
    (tmp / "input.json").write_text(json.dumps(request))
    out = tmp / "out"
    done = subprocess.run(
        [sys.executable, "-m", "ptm_p2p.cli", "run-local", image, "--data", f"gbsg2={csv}",
         "--input", str(tmp / "input.json"), "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    record = json.loads(done.stdout)
    output = out / "output.json"
    return record, (json.loads(output.read_text()) if output.exists() else None)


@pytest.mark.docker
def test_a_misspelt_covariate_is_named_with_the_sites_columns(
    stack: Stack, csv: Path, tmp_path: Path
) -> None:
    request = {
        "step": "describe",
        "data": "gbsg2",
        "duration": "time",
        "event": "cens",
        "covariates": ["age", "horth"],
        "ties": "efron",
    }  # fmt: skip  (horTh misspelt)
    record, output = run_local(stack.images["coxph-pooled"], csv, request, tmp_path)
    assert record["status"] == "failed", record
    error = output["error"]
    assert "no column 'horth' (did you mean 'horTh'?)" in error
    # Every column of the file, not only the three the task loaded (age, time, cens).
    header = pd.read_csv(csv, nrows=0).columns
    assert all(name in error for name in header), error


@pytest.mark.docker
def test_an_unknown_categorical_column_is_refused_with_the_columns(
    stack: Stack, csv: Path, tmp_path: Path
) -> None:
    request = {"data": "gbsg2", "categorical": ["horTh", "grade"]}
    record, output = run_local(stack.images["summary"], csv, request, tmp_path)
    assert record["status"] == "failed", record
    assert "categorical names columns not in gbsg2: ['grade']" in output["error"]
    assert "'horTh'" in output["error"]  # the columns there are


def test_a_fit_has_lifelines_style_series_and_keeps_its_dicts(
    sites: dict[str, pd.DataFrame], gbsg2: pd.DataFrame
) -> None:
    from lifelines import CoxPHFitter

    fit = coxph.fit_local(sites, "time", "cens", COVARIATES)
    lifelines = CoxPHFitter().fit(gbsg2[["time", "cens", *COVARIATES]], "time", "cens")
    assert isinstance(fit.params, dict)  # existing users keep their dict
    assert fit.params_.name == lifelines.params_.name == "coef"
    assert fit.params_.index.name == lifelines.params_.index.name
    assert list(fit.params_.index) == list(lifelines.params_.index)
    pd.testing.assert_series_equal(fit.params_, lifelines.params_, atol=1e-5, rtol=0)
    pd.testing.assert_series_equal(
        fit.standard_errors_, lifelines.standard_errors_, atol=1e-5, rtol=0
    )
    pd.testing.assert_series_equal(fit.hazard_ratios_, lifelines.hazard_ratios_, atol=1e-4)
    pd.testing.assert_frame_equal(
        fit.confidence_intervals_, lifelines.confidence_intervals_, atol=1e-5, rtol=0
    )
