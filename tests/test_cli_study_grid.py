"""``ptm study --secure``'s grid flags: what they build, and every misuse a usage error
(exit 2) naming the flags, before anything connects (no home is needed to be told).

The runs on daemons are in tests/workflow/test_cli_secure_study.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ptm_p2p.cli import main
from ptm_p2p.cli.study_grid import secure_grid
from ptm_p2p.errors import EXIT_USAGE

COMMON = ["--to", "a,b", "--data", "x", "--duration", "t", "--event", "e"]
COX = ["study", "coxph", *COMMON, "--covariates", "age"]
KM = ["study", "km", *COMMON]


def test_grid_step_and_horizon_build_the_sites_lattice() -> None:
    grid = secure_grid(True, 30.0, 100.0, None, True, "x")
    assert grid == [0.0, 30.0, 60.0, 90.0, 120.0]  # up to the first multiple past 100
    assert secure_grid(True, 30.0, 90.0, None, True, "x") == [0.0, 30.0, 60.0, 90.0]
    assert secure_grid(False, None, None, None, True, "x") is None
    assert secure_grid(True, None, None, None, False, "x") is None  # stratified: none needed


def test_a_grid_file_gives_its_points(tmp_path: Path) -> None:
    path = tmp_path / "grid.txt"
    path.write_text("# the sites' quarters\n91.25, 182.5\n273.75 365\n")
    assert secure_grid(True, None, None, path, True, "x") == [91.25, 182.5, 273.75, 365.0]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([*KM, "--grid-step", "30", "--horizon", "90"], "add --secure"),
        ([*KM, "--secure"], "--grid-step 30 --horizon 3000"),
        ([*COX, "--secure"], "the pooled Cox model under --secure"),
        ([*KM, "--secure", "--grid-step", "30"], "--grid-step and --horizon go together"),
        ([*COX, "--secure", "--stratify-sites", "--grid-step", "30", "--horizon", "90"],
         "needs no --grid-step"),
        ([*KM, "--secure", "--group", "g", "--grid-step", "30", "--horizon", "90"],
         "--group g --levels A,B"),
        ([*KM, "--group", "g", "--levels", "a,b"], "with --secure"),
        ([*KM, "--secure", "--levels", "a,b", "--grid-step", "30", "--horizon", "90"],
         "give --group COL --levels A,B"),
        ([*KM, "--secure", "--group", "g", "--levels", "a,,b", "--grid-step", "30",
          "--horizon", "90"], "distinct, non-empty"),
        ([*KM, "--secure", "--group", "g", "--levels", "a,a", "--grid-step", "30",
          "--horizon", "90"], "--levels"),
        ([*KM, "--secure", "--grid-step", "0.01", "--horizon", "3000"], "at most 4096"),
        ([*KM, "--secure", "--grid-step", "30", "--horizon", "inf"], "not a finite number"),
        ([*KM, "--secure", "--grid-step", "nan", "--horizon", "90"], "not a finite number"),
    ],
)  # fmt: skip
def test_misused_grid_flags_are_usage_errors_naming_them(argv: list[str], says: str) -> None:
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == EXIT_USAGE, result.output
    assert says in result.output


def test_a_bad_grid_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "grid.txt"
    for text, says in (("30 60 x", "'x' is not a number"), ("60 30", "increasing")):
        path.write_text(text)
        result = CliRunner().invoke(main, [*KM, "--secure", "--grid", str(path)])
        assert result.exit_code == EXIT_USAGE and says in result.output, result.output
    both = CliRunner().invoke(main, [*KM, "--secure", "--grid", str(path), "--grid-step", "30"])
    assert both.exit_code == EXIT_USAGE and "not both" in both.output
