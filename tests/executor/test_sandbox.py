"""The sandbox's walls, probed by a hostile image in the real engine."""

from __future__ import annotations

import json
import time

import pytest

from ptm_p2p.errors import ExecutorError
from ptm_p2p.executor import run_local

pytestmark = pytest.mark.docker


def test_runs_as_nobody_with_the_contract_environment(probe):
    result = probe({"action": "whoami"})
    assert result.status == "ok", result.reason
    out = json.loads(result.output)
    assert (out["uid"], out["gid"]) == (65534, 65534)
    env = out["env"]
    assert env["PTM_INPUT"] == "/ptm/input"
    assert env["PTM_OUTPUT"] == "/ptm/output"
    assert env["PTM_DATA_DIR"] == "/ptm/data"
    assert env["PTM_MIN_GROUP_SIZE"] == "5"


def test_no_network_only_loopback(probe):
    result = probe({"action": "network"})
    assert result.status == "ok", result.reason
    out = json.loads(result.output)
    assert out["interfaces"] == ["lo"]
    assert all(outcome != "connected" for outcome in out["attempts"].values()), out
    assert "unreachable" in out["attempts"]["192.0.2.1:80"]


def test_cannot_write_outside_output(probe, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "table.csv").write_text("a\n1\n")
    paths = [
        "/evil",
        "/etc/evil",
        "/opt/ptm/evil",
        "/ptm/input",
        "/ptm/data/table/evil",
        "/ptm/data/table/table.csv",
        "/tmp/ok",
        "/ptm/output/ok",
    ]
    result = probe({"action": "write", "paths": paths}, data={"table": data})
    assert result.status == "ok", result.reason
    writes = json.loads(result.output)["writes"]
    for path in paths[:6]:
        assert "Read-only file system" in writes[path], (path, writes[path])
    assert writes["/tmp/ok"] == "written"
    assert writes["/ptm/output/ok"] == "written"
    assert sorted(p.name for p in data.iterdir()) == ["table.csv"]
    assert (data / "table.csv").read_text() == "a\n1\n"


def test_sleeper_is_killed_at_timeout(probe):
    started = time.monotonic()
    result = probe({"action": "sleep", "seconds": 120}, timeout_s=1.5)
    assert result.status == "timeout"
    assert "1.5 s" in result.reason
    assert time.monotonic() - started < 15


def test_memory_hog_is_stopped(probe):
    result = probe({"action": "memory", "mb": 512}, memory_bytes=64 * 1024**2)
    assert result.status == "failed"
    assert result.reason.startswith("memory limit")
    assert result.exit_code == 137
    assert result.output == b""


def test_fork_bomb_hits_pid_limit(probe):
    result = probe({"action": "fork", "count": 500}, pids=32)
    assert result.status == "ok", result.reason
    out = json.loads(result.output)
    assert out["forked"] < 32
    assert "Resource temporarily unavailable" in out["error"]


def test_output_over_cap_is_reported_not_stored(probe):
    cap = 1024 * 1024
    result = probe({"action": "output", "mb": 8}, output_bytes=cap)
    assert result.status == "failed"
    assert "larger than the cap" in result.reason
    assert result.files == {}
    assert result.output_bytes > cap
    # As root the folder is a host tmpfs: the kernel stopped the writer near the cap.
    assert result.output_bytes < 3 * cap
    assert b"No space left on device" in result.logs


def test_logs_over_cap_are_cut_and_reported(probe):
    cap = 64 * 1024
    result = probe({"action": "logs", "mb": 2}, log_bytes=cap)
    assert result.status == "ok", result.reason
    assert len(result.logs) == cap
    assert result.logs_truncated
    assert result.log_bytes >= 2 * 1024 * 1024
    assert set(result.logs) <= set(b"L\n")


def test_echo_output_and_logs_kept(probe, probe_ref):
    result = probe({"action": "echo", "n": 7})
    assert result.status == "ok"
    assert json.loads(result.output)["echo"] == {"action": "echo", "n": 7}
    assert result.logs == b"probe: echo\n" and not result.logs_truncated
    assert result.digest == probe_ref


def test_planted_links_and_fifos_are_never_followed(probe, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    started = time.monotonic()
    result = probe({"action": "plant", "target": str(secret)})
    assert time.monotonic() - started < 20  # the fifo did not block the reader
    assert result.status == "ok", result.reason
    assert b"probe: planted" in result.logs
    assert "output.json" not in result.files and result.output == b""
    assert not any(name.startswith(("root", "fifo", "sub/link")) for name in result.files)
    assert all(b"host secret" not in content for content in result.files.values())
    assert secret.read_text() == "host secret"


def test_a_malformed_image_name_is_an_executor_error(client):
    with pytest.raises(ExecutorError, match="cannot be looked up"):
        run_local(client, "Not A Valid Name!", {})
