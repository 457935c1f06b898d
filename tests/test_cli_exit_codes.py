"""`ptm` exits with a code that tells the kind of outcome apart, from the one table in
``ptm_p2p.errors``: 0 ok, 1 domain error, 2 usage error, 3 refused, 4 not done, 5 unreachable.

Real commands as subprocesses: a bad file, a bad option, a hub address nobody listens on,
and (network) a running hub that refuses.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptm_p2p.cli import main
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.errors import (
    EXIT_CODES,
    EXIT_DOMAIN,
    EXIT_NOT_DONE,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ConfigError,
    NetworkError,
    PeerUnreachable,
    Refused,
    RemoteError,
    exit_code_of,
)
from ptm_p2p.home import Home
from ptm_p2p.network.host import free_port, peer_id_of
from ptm_p2p.network.invitation import Invitation

PTM = [sys.executable, "-m", "ptm_p2p.cli"]
ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "example.org/exit-codes"
IMAGE = "127.0.0.1:5000/ptm/summary:latest"


def ptm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PTM, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def test_the_codes_are_distinct_and_click_keeps_2_for_usage() -> None:
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 4, 5]
    assert (EXIT_USAGE, EXIT_NOT_DONE) == (2, 4)  # click's own, and `ptm wait`'s since before


def test_ptm_help_and_the_readme_show_the_table() -> None:
    shown = CliRunner().invoke(main, ["--help"]).output
    readme = (ROOT / "README.md").read_text()
    assert "Exit codes:" in shown
    for code, meaning in EXIT_CODES.items():
        assert f"  {code}  {meaning}" in shown
        assert f"| {code} |" in readme, f"the README's table lacks exit code {code}"


def test_the_kind_follows_explicit_causes() -> None:
    def chained(outer: Exception, cause: BaseException) -> Exception:
        try:
            try:
                raise cause
            except BaseException as exc:
                raise outer from exc
        except Exception as raised:
            return raised

    unreachable = PeerUnreachable("cannot reach peer X", "no connection")
    assert exit_code_of(unreachable) == EXIT_UNREACHABLE
    assert exit_code_of(chained(NetworkError("cannot reach the hub"), unreachable)) == 5
    assert exit_code_of(chained(NetworkError("no answer in 30 s"), TimeoutError())) == 5
    assert exit_code_of(RemoteError("refused", "not a member")) == EXIT_REFUSED
    assert exit_code_of(RemoteError("unavailable", "retry in a moment")) == EXIT_UNREACHABLE
    assert exit_code_of(RemoteError("bad-request", "no such field")) == EXIT_DOMAIN
    assert exit_code_of(Refused("already revoked")) == EXIT_REFUSED
    assert exit_code_of(NetworkError("not a peer address")) == EXIT_DOMAIN
    assert exit_code_of(ConfigError("no such home")) == EXIT_DOMAIN
    # Only `raise … from` counts: an error met while handling another is not its cause.
    try:
        try:
            raise unreachable
        except PeerUnreachable:
            raise ConfigError("unrelated") from None
    except ConfigError as exc:
        assert exit_code_of(exc) == EXIT_DOMAIN


def test_a_bad_file_is_a_domain_error_and_a_bad_option_a_usage_error(tmp_path: Path) -> None:
    missing = ptm("audit", str(tmp_path / "nothing.db"))
    assert missing.returncode == EXIT_DOMAIN, missing.stderr
    assert missing.stderr.startswith("error: ") and "no such ledger file" in missing.stderr
    (tmp_path / "notes.txt").write_text("some notes\n")
    Home.init(tmp_path / "admin", "admin")
    bad = ptm(
        "collab", "members", "--home", str(tmp_path / "admin"),
        "--invitation", str(tmp_path / "notes.txt"),
    )  # fmt: skip
    assert bad.returncode == EXIT_DOMAIN and "is not a ptm invitation" in bad.stderr
    usage = ptm("publish", IMAGE)  # no targets
    assert usage.returncode == EXIT_USAGE and "--to-all" in usage.stderr


@pytest.mark.slow
def test_a_hub_nobody_listens_on_is_unreachable(tmp_path: Path) -> None:
    researcher = Home.init(tmp_path / "researcher", "researcher")
    admin = Home.init(tmp_path / "admin", "admin")
    hub_key = Home.init(tmp_path / "hub", "hub").public_key
    invite = tmp_path / "invite.json"
    address = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{peer_id_of(hub_key)}"
    Invitation(address, hub_key, ORIGIN).save(invite)

    published = ptm(
        "publish", IMAGE, "--to", "site-a", "--param", "data=x",
        "--home", str(researcher.path), "--invitation", str(invite),
    )  # fmt: skip
    assert published.returncode == EXIT_UNREACHABLE, published.stderr
    assert "cannot reach the hub at /ip4/127.0.0.1/tcp/" in published.stderr
    assert "Traceback" not in published.stderr

    site_key = Home.init(tmp_path / "site-a", "site-a").public_key.hex()
    admitted = ptm(
        "collab", "admit", "--home", str(admin.path), "--invitation", str(invite),
        "--role", "site", "--org", "site-a", site_key,
    )  # fmt: skip
    assert admitted.returncode == EXIT_UNREACHABLE, admitted.stderr
    assert "is `ptm hub` running?" in admitted.stderr


@pytest.mark.network
@pytest.mark.slow
def test_what_the_hub_refuses_exits_3(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "cluster") as cluster:
        cluster.create(ORIGIN, "uni")
        cluster.start_hub()
        cluster.admit("site-a")
        invite = ["--invitation", str(cluster.invitation_path)]
        admin = ["--home", str(cluster.path("admin")), *invite]
        site_key = cluster.home("site-a").public_key.hex()

        again = ptm("collab", "admit", *admin, "--role", "site", "--org", "site-a", site_key)
        assert again.returncode == EXIT_REFUSED, again.stderr
        assert again.stderr.startswith("error: the hub refused the admit: ")
        assert "already a member" in again.stderr

        # Not the admin: the hub refuses the membership entry a researcher signs.
        outsider = str(cluster.home("outsider").path)
        other_key = cluster.home("site-b").public_key.hex()
        forged = ptm(
            "collab", "admit", "--home", outsider, *invite, "--role", "site", "--org", "b",
            other_key,
        )  # fmt: skip
        assert forged.returncode == EXIT_REFUSED, forged.stderr
        assert forged.stderr.startswith("error: the hub refused the admit: ")

        # A researcher that was never admitted publishes: the hub refuses the task.
        published = ptm(
            "publish", IMAGE, "--to", "site-a", "--param", "data=x", "--home", outsider,
            *invite,
        )  # fmt: skip
        assert published.returncode == EXIT_REFUSED, published.stderr
        assert "Traceback" not in published.stderr

        # Revoking a key that is no member is refused before anything is signed; giving
        # the wrong organisation for a member is a mistake in the input (a domain error).
        never = ptm("collab", "revoke", *admin, other_key)
        assert never.returncode == EXIT_REFUSED and "was never admitted" in never.stderr
        wrong = ptm("collab", "revoke", *admin, "--org", "site-b", site_key)
        assert wrong.returncode == EXIT_DOMAIN and "was admitted as site of site-a" in wrong.stderr
