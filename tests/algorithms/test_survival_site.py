"""The site side on its own: reading data, packing, the deterministic solver, refusals,
and the algorithm contract's exit codes (``{"refused": ...}`` with exit 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ptm_p2p import algorithm
from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.algorithms.rounds import LocalRunner, check_outputs, tables_from_frames
from ptm_p2p.errors import StudyError

from .conftest import COVARIATES

ROOT = Path(__file__).resolve().parents[2]


def _describe(**extra: object) -> dict[str, object]:
    return {"step": "describe", "duration": "time", "event": "cens",
            "covariates": COVARIATES, "ties": "efron", **extra}  # fmt: skip


def test_csv_and_dataframe_give_the_same_bits(sites: dict[str, pd.DataFrame], tmp_path) -> None:
    frame = sites["hospital-c"].astype({"age": float})
    frame.loc[4, "age"] = 61.123456789012345  # a float that needs all its digits
    frame.to_csv(tmp_path / "c.csv", index=False)
    from_csv = site.load_csv(tmp_path / "c.csv")
    from_frame = tables_from_frames({"c": frame})["c"]
    assert set(from_csv) == set(from_frame)
    for name in from_csv:
        assert from_csv[name].tobytes() == from_frame[name].tobytes(), name
    answer = site.compute("coxph-pooled", from_csv, _describe(), 5)
    assert answer == site.compute("coxph-pooled", from_frame, _describe(), 5)


def test_cells_are_numbers_missing_markers_or_text() -> None:
    col = site.column(["1", " 2.5 ", "", "NA", "true", "False"])
    assert col.dtype == np.float64
    assert col[:2].tolist() == [1.0, 2.5] and np.isnan(col[2:4]).all()
    assert col[4:].tolist() == [1.0, 0.0]
    assert site.column(["1", "II", ""]).dtype == object
    assert site.column([1.0, float("inf")]).dtype == object  # infinities are not data


def test_only_requested_columns_are_read(tmp_path) -> None:
    (tmp_path / "d.csv").write_text("a,b,secret\n1,2,x\n3,4,y\n")
    assert set(site.load_csv(tmp_path / "d.csv", ["a", "b", "zz"])) == {"a", "b"}


@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=20)))
def test_pack_round_trips_every_bit(array: np.ndarray) -> None:
    packed = json.loads(json.dumps(site.pack(array)))
    assert site.unpack(packed).tobytes() == np.ascontiguousarray(array, "<f8").tobytes()


@settings(max_examples=100)
@given(
    hnp.arrays(np.float64, (6, 6), elements=st.floats(-10, 10)),
    hnp.arrays(np.float64, 6, elements=st.floats(-10, 10)),
)
def test_solve_agrees_with_lapack_on_well_conditioned_systems(a: np.ndarray, b: np.ndarray):
    spd = a @ a.T + 6 * np.eye(6)
    np.testing.assert_allclose(site.solve(spd, b), np.linalg.solve(spd, b), rtol=1e-9, atol=1e-9)


def test_solve_reports_singular_matrices() -> None:
    assert site.solve(np.ones((3, 3)), np.ones(3)) is None
    assert site.solve(np.zeros((2, 2)), np.ones(2)) is None


def test_refusal_is_an_output_and_exit_code_3(sites: dict[str, pd.DataFrame]) -> None:
    table = tables_from_frames(sites)["hospital-c"]
    output, code = algorithm.evaluate(
        lambda p: site.compute("coxph-stratified", table, p, 500), _describe()
    )
    assert code == algorithm.EXIT_REFUSED == 3
    assert output == {"refused": "fewer than 500 patients with complete data (this site's "
                      "minimum group size)"}  # fmt: skip
    output, code = algorithm.evaluate(lambda p: site.compute("coxph-pooled", table, p, 5), [])
    assert code == 2 and "JSON object" in output["error"]


def test_check_outputs_names_every_site() -> None:
    with pytest.raises(StudyError) as caught:
        check_outputs("km", {"a": {"refused": "too few"}, "b": {"error": "no column"},
                             "c": {"version": 1}, "d": []})  # fmt: skip
    assert caught.value.sites == {
        "a": "refused: too few",
        "b": "failed: no column",
        "d": "failed: its output is not a JSON object",
    }


def test_local_runner_knows_its_sites(sites: dict[str, pd.DataFrame]) -> None:
    runner = LocalRunner(tables_from_frames(sites))
    with pytest.raises(StudyError, match="no such site"):
        runner("km", {"elsewhere": {}})


def test_the_image_entry_point_writes_refused_and_exits_3(
    sites: dict[str, pd.DataFrame], tmp_path
) -> None:
    """main.py run as a plain process with the contract's variables (no Docker)."""
    (tmp_path / "data").mkdir()
    sites["hospital-c"].to_csv(tmp_path / "data" / "gbsg2", index=False)
    (tmp_path / "input").write_text(json.dumps(_describe(data="gbsg2")))
    (tmp_path / "out").mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PTM_INPUT": str(tmp_path / "input"),
        "PTM_DATA_DIR": str(tmp_path / "data"),
        "PTM_OUTPUT": str(tmp_path / "out"),
        "PTM_MIN_GROUP_SIZE": "113",
    }
    main = ROOT / "algorithms" / "coxph-pooled" / "main.py"
    done = subprocess.run([sys.executable, str(main)], env=env, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert json.loads((tmp_path / "out" / "output.json").read_text()) == {
        "refused": "fewer than 113 patients with complete data (this site's minimum group size)"
    }
    env["PTM_MIN_GROUP_SIZE"] = "5"
    done = subprocess.run([sys.executable, str(main)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    answer = json.loads((tmp_path / "out" / "output.json").read_text())
    assert answer["n"] == 112 and answer["covariates"] == COVARIATES


def test_the_sandbox_verdict_for_exit_code_3() -> None:
    from ptm_p2p.executor.limits import Limits
    from ptm_p2p.executor.sandbox import _verdict

    status, reason = _verdict(3, False, {}, None, Limits())
    assert status == "refused" and "refused" in reason
    assert _verdict(2, False, {}, None, Limits())[0] == "failed"
