"""``ptm run-local`` and ``ptm dev status`` driven through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ptm_p2p.cli import main

pytestmark = pytest.mark.docker


def test_run_local_summary_json(stack, summary_ref, tmp_path):
    data = tmp_path / "t.csv"
    data.write_text("age,sex\n" + "".join(f"{40 + i},{'fm'[i % 2]}\n" for i in range(12)))
    params = tmp_path / "in.json"
    params.write_text(json.dumps({"data": "t"}))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "run-local",
            summary_ref,
            "--data",
            f"t={data}",
            "--input",
            str(params),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "ok" and record["exit_code"] == 0
    assert record["output_files"] == ["output.json"]
    summary = json.loads((out / "output.json").read_text())
    assert summary["rows"] == 12
    assert summary["numeric"]["age"]["sum"] == sum(40 + i for i in range(12))
    assert summary["categorical"]["sex"] == {"f": 6, "m": 6}


def test_run_local_failure_exits_1(stack, probe_ref, tmp_path):
    params = tmp_path / "in.json"
    params.write_text(json.dumps({"action": "sleep", "seconds": 60}))
    result = CliRunner().invoke(
        main,
        [
            "run-local",
            probe_ref,
            "--input",
            str(params),
            "--out",
            str(tmp_path / "o"),
            "--timeout",
            "1",
        ],
    )
    assert result.exit_code == 1
    assert "status     timeout" in result.stdout


def test_run_local_unknown_image_is_a_domain_error(stack, tmp_path):
    result = CliRunner().invoke(main, ["run-local", "no-such-image:1", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not in the local engine" in result.output


def test_run_local_bad_data_option_is_usage_error(stack, tmp_path):
    result = CliRunner().invoke(
        main, ["run-local", "x", "--data", "nolabel", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2


def test_dev_status_json(stack):
    result = CliRunner().invoke(main, ["dev", "status", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["engine"] and info["registry_up"] and info["base_image_present"]
