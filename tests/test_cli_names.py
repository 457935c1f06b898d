"""One name per member, and a site's config that says what is wrong (issue 17).

``ptm init`` writes a commented ``[policy]`` template; ``ptm config check`` says to write
``"512m"`` for a bare ``memory = 512`` and warns on ``publishers`` that name no admitted
researcher in the home's ledger copy (real SQLite, written as a node's verified copy would
be); ``ptm collab admit`` refuses a second key under an organisation name another member
holds unless ``--same-org`` (a real hub in its own process); ``ptm status`` does not call a
SIGKILLed daemon running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptm_p2p.cli import main
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.errors import EXIT_REFUSED
from ptm_p2p.home import Home
from ptm_p2p.ledger.store import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collab_log import collaboration_log  # noqa: E402

T0 = 1_700_000_000_000
PTM = [sys.executable, "-m", "ptm_p2p.cli"]


def ptm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PTM, *args], capture_output=True, text=True, timeout=120)


def uncomment_policy(config: Path) -> None:
    """Uncomment the template's TOML lines (tables and keys), as an operator would."""
    text = re.sub(r"(?m)^# (\[|[a-z_0-9]+ = )", r"\1", config.read_text())
    config.write_text(text)


def test_init_writes_a_commented_policy_template_that_config_check_reads(tmp_path: Path) -> None:
    home = tmp_path / "hospital-a"
    made = ptm("init", "--home", str(home), "--name", "hospital-a", "--role", "site")
    assert made.returncode == 0, made.stderr
    text = (home / "config.toml").read_text()
    assert "# [policy]" in text and "# publishers = " in text and '# memory = "512m"' in text
    # As written (all commented) the site runs nothing, and the file is valid.
    assert ptm("config", "check", "--home", str(home)).returncode == 0
    # Uncommented, it is a policy config check accepts, once its data file exists.
    data = tmp_path / "gbsg2.csv"
    data.write_text("time,cens\n1,0\n")
    data.chmod(0o644)
    uncomment_policy(home / "config.toml")
    config = home / "config.toml"
    config.write_text(config.read_text().replace("/srv/ptm-data/gbsg2.csv", str(data)))
    checked = ptm("config", "check", "--home", str(home), "--json")
    assert checked.returncode == 0, checked.stderr
    policy = json.loads(checked.stdout)["policy"]
    assert policy["publishers"] == ["uni-research"] and list(policy["data"]) == ["gbsg2"]


def test_a_bare_memory_number_is_refused_with_the_string_to_write(tmp_path: Path) -> None:
    home = Home.init(tmp_path / "site", "site")
    with open(home.config_path, "a") as config:
        config.write("[policy]\n[policy.limits]\nmemory = 512\n")
    result = CliRunner().invoke(main, ["config", "check", "--home", str(home.path)])
    assert result.exit_code == 1
    assert "memory = 512 means 512 bytes" in result.output
    assert 'write memory = "512m"' in result.output


def _site_with_log(tmp_path: Path, publishers: list[str]) -> Home:
    """A site home whose ledger copy admits it and two researchers, one later revoked."""
    homes = {n: Home.init(tmp_path / n, n) for n in ("admin", "hub", "site", "r1", "r2")}
    changes = [
        ("admit", "site", "hospital-a", "site"),
        ("admit", "r1", "uni-research", "researcher"),
        ("admit", "r2", "pharma", "researcher"),
        ("revoke", "r2", "pharma", "researcher", "left"),
    ]
    entries = collaboration_log(homes, "example.org/s", "consortium", changes, T0)
    with SqliteStore(homes["site"].ledger_path) as store:
        store.append(entries)
    with open(homes["site"].config_path, "a") as config:
        config.write(f"[policy]\npublishers = {json.dumps(publishers)}\n")
    return homes["site"]


def test_config_check_warns_on_publishers_no_admitted_researcher_has(tmp_path: Path) -> None:
    site = _site_with_log(tmp_path, ["uni", "pharma", "hospital-a", "uni-research"])
    result = ptm("config", "check", "--home", str(site.path), "--json")
    assert result.returncode == 0, result.stderr  # a warning, not an error
    warnings = json.loads(result.stdout)["warnings"]
    assert len(warnings) == 3, warnings
    uni, pharma, hospital = sorted(warnings, key=lambda w: ["'uni'" in w, "'pharma'" in w])[::-1]
    assert "'uni', but no admitted member has that organisation" in uni
    assert "did you mean 'uni-research'?" in uni
    assert "'pharma'" in pharma  # revoked: its tasks are refused anyway
    assert "a site: only researchers publish tasks" in hospital
    text = ptm("config", "check", "--home", str(site.path))
    assert "warning:" in text.stderr and "config ok" in text.stdout


def test_config_check_is_quiet_when_publishers_match_the_members(tmp_path: Path) -> None:
    site = _site_with_log(tmp_path, ["uni-research", "*"])
    result = ptm("config", "check", "--home", str(site.path), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["warnings"] == []
    assert json.loads(result.stdout)["publishers_checked"] is True


@pytest.mark.network
def test_collab_admit_refuses_a_second_member_under_one_name_unless_same_org(
    tmp_path: Path,
) -> None:
    with LocalCluster(tmp_path) as cluster:
        cluster.create("example.org/names", "consortium")
        cluster.start_hub()
        admin = ["--home", str(cluster.path("admin")), "--invitation", str(cluster.invitation_path)]
        keys = {n: cluster.home(n).public_key.hex() for n in ("r1", "r2", "r3", "site")}
        first = ptm("collab", "admit", *admin, "--role", "researcher", "--org", "uni", keys["r1"])
        assert first.returncode == 0, first.stderr
        second = ptm("collab", "admit", *admin, "--role", "researcher", "--org", "uni", keys["r2"])
        assert second.returncode == EXIT_REFUSED, second.stderr
        assert "organisation 'uni' is already researcher key" in second.stderr
        assert "--same-org" in second.stderr
        # The admin's own organisation is taken too (the "uni" was both).
        admins = ptm(
            "collab", "admit", *admin, "--role", "site", "--org", "consortium", keys["site"]
        )
        assert admins.returncode == EXIT_REFUSED and "already admin key" in admins.stderr
        meant = ptm(
            "collab", "admit", *admin, "--role", "researcher", "--org", "uni", "--same-org",
            keys["r3"],
        )  # fmt: skip
        assert meant.returncode == 0, meant.stderr
        listed = ptm("collab", "members", *admin, "--json")
        orgs = [m["org"] for m in json.loads(listed.stdout)["members"]]
        assert orgs.count("uni") == 2  # r1 and r3; r2 was never signed


@pytest.mark.network
def test_status_does_not_call_a_killed_daemon_running(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        cluster.create("example.org/killed", "consortium")
        cluster.start_hub()
        hub = str(cluster.path("hub"))
        assert "daemon      hub running" in ptm("status", "--home", hub).stdout
        pid = cluster.procs["hub"].pid
        os.kill(pid, signal.SIGKILL)
        cluster.procs["hub"].wait(timeout=30)
        # At once: the status file is still fresh (written < 1 s ago), the process is gone.
        shown = ptm("status", "--home", hub)
        assert "running" not in shown.stdout.replace("NOT RUNNING", ""), shown.stdout
        assert f"hub NOT RUNNING: its process (pid {pid}) is gone" in shown.stdout
        data = json.loads(ptm("status", "--home", hub, "--json").stdout)
        assert data["running"] is False and "killed or crashed" in data["died"]
