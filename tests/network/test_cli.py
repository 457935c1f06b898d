"""The network commands as a newcomer meets them: set-up mistakes, unreachable hubs, bad files.

Mostly in-process (click's ``CliRunner`` and the daemons' constructors, no sockets), so these
run in well under a second each; the one test that needs a running hub says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from harness import Cluster, wait_for

from ptm_p2p.cli import main
from ptm_p2p.errors import EXIT_REFUSED, EXIT_UNREACHABLE, ConfigError
from ptm_p2p.home import Home
from ptm_p2p.hub.daemon import GENESIS_FILE, Hub
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network.host import peer_id_of
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.site.replicator import Site

ORIGIN = "example.org/sv"


def ptm(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _homes(root: Path, *names: str) -> dict[str, Home]:
    return {name: Home.init(root / name, name) for name in names}


def _create(root: Path, *extra: str) -> Result:
    return ptm(
        "collab",
        "create",
        "--home",
        str(root / "admin"),
        "--hub-home",
        str(root / "hub"),
        "--origin",
        ORIGIN,
        "--org",
        "uni",
        *extra,
    )


def _invitation(hub: Home) -> Invitation:
    addr = f"/ip4/127.0.0.1/tcp/1/p2p/{peer_id_of(hub.public_key)}"
    return Invitation(addr, hub.public_key, ORIGIN)


def _size(home: Home) -> int:
    store = SqliteStore(home.ledger_path, read_only=True)
    try:
        return store.size()
    finally:
        store.close()


def test_a_hub_start_with_the_wrong_home_writes_nothing_and_a_site_refuses_stray_entries(
    tmp_path: Path,
) -> None:
    homes = _homes(tmp_path, "admin", "hub", "site")
    assert _create(tmp_path).exit_code == 0
    other = tmp_path / "other.entry"
    assert _create(tmp_path, "--out", str(other)).exit_code == 1  # genesis.entry exists
    (tmp_path / "hub" / GENESIS_FILE).rename(other)
    # `ptm hub --home site --genesis other.entry`: the genesis names another key.
    with pytest.raises(ConfigError, match=r"names the hub key .* \(nothing was written"):
        Hub(homes["site"], other)
    assert _size(homes["site"]) == 0

    # A home holding an entry no hub-signed checkpoint covers (as an older `ptm hub` left
    # it) must not start as a site: comparing it with the hub would fake a split view.
    store = SqliteStore(homes["site"].ledger_path)
    store.append([Entry.from_bytes(other.read_bytes())])
    store.close()
    with pytest.raises(ConfigError, match="never verified against the hub .* no checkpoint"):
        Site(homes["site"], _invitation(homes["hub"]), [])
    store = SqliteStore(homes["site"].ledger_path, read_only=True)
    assert store.evidence() == []
    store.close()


def test_collab_create_never_overwrites_a_genesis_or_a_running_log(tmp_path: Path) -> None:
    homes = _homes(tmp_path, "admin", "hub")
    assert _create(tmp_path).exit_code == 0
    first = (tmp_path / "hub" / GENESIS_FILE).read_bytes()
    again = _create(tmp_path)
    assert again.exit_code == 1
    assert "already exists" in again.output
    out = tmp_path / "copy.entry"
    assert _create(tmp_path, "--out", str(out)).exit_code == 1
    assert not out.exists()  # nothing written when any target is taken
    assert (tmp_path / "hub" / GENESIS_FILE).read_bytes() == first
    # Once the hub has started its log, no new genesis for that home at all.
    Hub(homes["hub"]).store.close()
    (tmp_path / "hub" / GENESIS_FILE).unlink()
    started = _create(tmp_path)
    assert started.exit_code == 1
    assert "already holds a log (1 entry)" in started.output


def test_bad_invitation_files_are_named_with_the_field(tmp_path: Path) -> None:
    homes = _homes(tmp_path, "hub")
    good = json.loads(_invitation(homes["hub"]).to_json())
    cases = {
        "notes.txt": ("some notes\n", "is not a ptm invitation: it is not JSON"),
        "list.json": ("[]", "holds a JSON list, not an object"),
        "hex.json": (json.dumps(good | {"hub_key": "zz" + "00" * 31}), "field hub_key must be"),
        "short.json": (json.dumps(good | {"hub_key": "abcd"}), "field hub_key must be a 32-byte"),
        "addr.json": (json.dumps(good | {"hub_addr": "nowhere"}), "field hub_addr"),
        "origin.json": (json.dumps({k: good[k] for k in ("hub_addr", "hub_key")}), "origin is"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            Invitation.load(path)
        assert str(caught.value).startswith(str(path)), caught.value
        assert expected in str(caught.value)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="it is not text"):
        Invitation.load(tmp_path / "bin.json")


def test_key_arguments_name_the_argument_and_hint_at_ptm_id(tmp_path: Path) -> None:
    homes = _homes(tmp_path, "admin", "hub")
    invite = tmp_path / "invite.json"
    _invitation(homes["hub"]).save(invite)
    peer_id = str(peer_id_of(homes["hub"].public_key))
    for key, expected in ((peer_id, "is a libp2p peer id"), ("xyz", "is not hex")):
        args = ["--home", str(tmp_path / "admin"), "--join", str(invite)]
        result = CliRunner().invoke(
            main, ["collab", "admit", *args, "--role", "site"] + ["--org", "a", key]
        )
        assert result.exit_code == 2
        assert "Invalid value for 'PUBKEY'" in result.output
        assert expected in result.output and "ptm id --home THAT_HOME" in result.output


def test_status_of_a_home_without_a_daemon(tmp_path: Path) -> None:
    _homes(tmp_path, "admin")
    result = ptm("status", "--home", str(tmp_path / "admin"))
    assert result.exit_code == 0
    assert "no daemon has run in this home" in result.output


@pytest.mark.network
@pytest.mark.slow
def test_commands_against_a_stopped_and_a_running_hub(cluster: Cluster) -> None:
    """One hub life cycle: clean stop, unreachable hub, late start, refusals, revoke."""
    cluster.start_hub()
    assert cluster.stop_keeping_status("hub") == 0
    assert not cluster.status("hub")["running"]  # at once, not after the status goes stale
    assert "hub not running" in ptm("status", "--home", str(cluster.path("hub"))).output

    site_key = cluster.home("site-a").public_key.hex()
    admin = ["--home", str(cluster.path("admin")), "--join", str(cluster.invitation_path)]
    dead = ptm("collab", "admit", *admin, "--role", "site", "--org", "site-a", site_key)
    # Issue 7 changed this from 1: an unreachable hub has its own exit code (5).
    assert dead.exit_code == EXIT_UNREACHABLE
    assert "cannot reach the hub at /ip4/127.0.0.1/tcp/" in dead.output
    assert "is `ptm hub` running?" in dead.output
    assert "Failed to open TCP stream" not in dead.output and "refused" not in dead.output

    # A site started while the hub is down says so once, and again when the hub is back.
    cluster.start_site("site-a")
    down = "; retrying (and syncing from other known peers)"
    wait_for("site-a to report the hub down", lambda: down in cluster.logs("site-a"))
    cluster.start_hub()
    wait_for("site-a to reconnect", lambda: "reconnected to the hub" in cluster.logs("site-a"))
    assert cluster.logs("site-a").count(down) == 1

    admitted = ptm("collab", "admit", *admin, "--role", "site", "--org", "site-a", site_key)
    assert admitted.exit_code == 0, admitted.output
    # The site's own status says it is admitted, from its replica (issue 10).
    wait_for(
        "site-a's status to show its admission",
        lambda: (
            "member      site of site-a, admitted at log entry"
            in ptm("status", "--home", str(cluster.path("site-a"))).output
        ),
    )
    again = ptm("collab", "admit", *admin, "--role", "site", "--org", "site-a", site_key)
    # Issue 7 changed this from 1: a refusal has its own exit code (3).
    assert again.exit_code == EXIT_REFUSED
    assert again.output.startswith("error: the hub refused the admit: ")
    assert "peer refused" not in again.output and "refused: refused" not in again.output
    assert "already a member" in again.output

    wrong = ptm("collab", "revoke", *admin, "--org", "site-b", site_key)
    assert wrong.exit_code == 1
    assert "was admitted as site of site-a" in wrong.output
    revoked = ptm("collab", "revoke", *admin, "--reason", "test", site_key)
    assert revoked.exit_code == 0, revoked.output
    assert "revoke: site-a (site)" in revoked.output

    # The admin keeps no log copy; it reads the members from the hub's verified log.
    invitation = ["--invitation", str(cluster.invitation_path)]
    members = ptm("collab", "members", "--home", str(cluster.path("admin")), *invitation, "--json")
    assert members.exit_code == 0, members.output
    by_org = {m["org"]: m for m in json.loads(members.output)["members"]}
    assert by_org["site-a"]["role"] == "site" and by_org["site-a"]["revoked_at"] is not None
    assert by_org["hub"]["active"]

    hub_status = ptm("status", "--home", str(cluster.path("hub"))).output
    assert "hub running" in hub_status and "behind" not in hub_status
