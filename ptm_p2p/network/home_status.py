"""``ptm status``: a peer's view, from its ledger copy and its running daemon's status file.

The ledger (size, checkpoints, evidence, this identity's membership) is read directly from
``HOME/ledger.db``; what only the daemon knows (connected peers, lag behind the hub, peers it
stopped trusting, verified cosigners) comes from ``HOME/status.json``, which the daemon
rewrites every second. A status file older than a few seconds, or one whose writer's pid is
gone (a daemon killed with SIGKILL leaves a fresh file behind), means the daemon is not
running and is reported as such.

Fast on purpose (``bench/bench_startup.py``): nothing here imports libp2p or the daemon, and
membership is folded from the admin's own chain (genesis plus its membership entries, found
by index), not from a replay of the whole log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from msgspec import UNSET

from ptm_p2p.errors import LedgerError, PtmError
from ptm_p2p.home import KEY_FILE, LEDGER_FILE
from ptm_p2p.home_files import DaemonStatus, read_status
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.store import SqliteStore

STALE_SECONDS = 5.0
# A site's disclosure record; equal to ``ptm_p2p.site.disclosure.DISCLOSURE_FILE`` (a test
# checks), read here with plain SQL: the network layer does not import the site's.
DISCLOSURE_FILE = "disclosure.db"


def membership(store: SqliteStore, key: bytes) -> dict[str, Any]:
    """``key``'s membership in the log held by ``store``, a home's verified copy.

    Only the admin admits and revokes (replay rule 4), so genesis and the admin's own chain
    decide every membership: those entries are folded by the same ``State`` rules as a full
    replay, each with its signature checked, without reading anyone else's entries.
    """
    info: dict[str, Any] = {"key": key.hex()}
    state = members_state(store)
    if state is None:
        info["status"] = "no log"
        return info
    info["origin"] = state.origin
    member = state.members.get(key)
    if member is None:
        info["status"] = "not admitted"
        return info
    info.update(
        status="revoked" if member.revoked_at is not None else "admitted",
        role=member.role,
        org=member.org,
        admitted_at=member.admitted_at,
        revoked_at=member.revoked_at,
    )
    return info


def members_state(store: SqliteStore) -> Any:
    """The ``State`` of every membership in ``store`` (None for an empty copy): genesis and
    the admin's own chain folded by the replay rules, each signature checked, nobody
    else's entries read (only the admin admits and revokes: replay rule 4)."""
    from ptm_p2p.ledger.entry import Entry
    from ptm_p2p.ledger.replay import State

    if store.size() == 0:
        return None
    genesis = Entry.from_bytes(store.raw(0))
    admin = genesis.payload.get("admin") if genesis.kind == "genesis" else None
    if not isinstance(admin, bytes):
        raise LedgerError(f"{store.path}: entry 0 is not a genesis entry")
    state = State()
    for index, raw in store.authored(admin):
        state.size = index  # the entries in between are other authors': they change no member
        state.apply(Entry.from_bytes(raw), index)
    return state


def _own_key(home: Path) -> bytes | None:
    """This home's public key, or None when the home holds no usable key (status still shows
    the rest; ``ptm id`` explains what is wrong with the key)."""
    from ptm_p2p.ledger.crypto import Signer

    try:
        return Signer(bytes.fromhex((home / KEY_FILE).read_text().strip())).public_key
    except (OSError, ValueError, PtmError):
        return None


def collect(home: Path) -> dict[str, Any]:
    """Everything ``ptm status`` shows: the ledger copy's view, then the daemon's."""
    data = _ledger_view(Path(home))
    data.update(running=False, daemon_seen=False)
    daemon = read_status(Path(home))
    if daemon is not None:
        data.update(_daemon_view(daemon, data["cosigners"]))
    return data


def _ledger_view(home: Path) -> dict[str, Any]:
    """Size, newest checkpoint, cosigners, evidence and membership, from ``HOME/ledger.db``."""
    store = SqliteStore(home / LEDGER_FILE, read_only=True)
    try:
        size = store.size()
        notes = store.checkpoints()
        evidence = [
            {"kind": e.kind, "detail": e.detail, "recorded_at": e.recorded_at}
            for e in store.evidence()
        ]
        own_key = _own_key(home)
        try:
            member = membership(store, own_key) if own_key else None
        except LedgerError as exc:
            member = {"status": "unknown", "error": str(exc)}
    finally:
        store.close()
    # The newest note of the largest tree, not simply the last row: a cosignature merged into
    # an older checkpoint is stored (as a new row for that older size) after newer notes.
    note = max(enumerate(notes), key=lambda row: (row[1][0], row[0]))[1][1] if notes else None
    checkpoint: dict[str, Any] | None = None
    signers: list[str] = []
    if note:
        try:
            signed = cp.parse_checkpoint(note)
            checkpoint = {
                "size": signed.checkpoint.size,
                "origin": signed.checkpoint.origin,
                "root": signed.checkpoint.root.hex(),
            }
            signers = [s.name for s in signed.signatures if s.name != signed.checkpoint.origin]
        except LedgerError as exc:
            checkpoint = {"error": str(exc)}
    return {
        "home": str(home),
        "disclosure": disclosure(home),
        "size": size,
        "checkpoint": checkpoint,
        "cosigners": signers,
        "evidence": evidence,
        "membership": member,
    }


def _daemon_view(daemon: DaemonStatus, signers: list[str]) -> dict[str, Any]:
    """Whether the daemon runs, and what it wrote that ``ptm status`` shows."""
    stopped = daemon.stopped is not UNSET
    fresh = time.time() - daemon.updated < STALE_SECONDS and not stopped
    view: dict[str, Any] = daemon.shown()
    # A daemon killed with SIGKILL leaves a fresh-looking status file for a few seconds:
    # the process itself decides, not the file's age.
    if fresh and not process_alive(daemon.pid, daemon.updated):
        fresh = False
        view["died"] = (
            f"its process (pid {daemon.pid}) is gone without a clean stop "
            "(killed or crashed); start it again"
        )
    view.update(running=fresh, daemon_seen=True)
    if fresh:
        view["cosigners"] = signers if daemon.cosigners is UNSET else daemon.cosigners
    return view


def process_alive(pid: Any, updated: Any = None) -> bool:
    """Whether ``pid`` (a daemon's, from its status file) is a live process, and the same one
    that wrote the file at ``updated`` (a reused pid belongs to a process started later).
    Unknown (no pid written, psutil missing): assumed alive, as the file's age said."""
    if not isinstance(pid, int) or isinstance(pid, bool):
        return True
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency; stay usable without it
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True
    return not isinstance(updated, int | float) or started <= float(updated) + 1.0


def render(data: dict[str, Any]) -> str:
    lines = [f"home        {data['home']}"]
    if data["running"]:
        lines.append(f"daemon      {data.get('role', '?')} running {data.get('address', '')}")
    elif data.get("died"):
        lines.append(f"daemon      {data.get('role', '?')} NOT RUNNING: {data['died']}")
    elif data.get("role"):
        lines.append(f"daemon      {data['role']} not running")
    else:
        lines.append("daemon      none: no daemon has run in this home")
    if data.get("error"):
        lines.append(f"STOPPED     {data['error']}")
    if data["running"] and data.get("local_fault"):
        lines.append(f"LOCAL FAULT {data['local_fault']} (this machine's, not a peer's)")
    if data["running"] and data.get("not_admitted"):
        lines.append(f"NOT ADMITTED {data['not_admitted']}")
    lines.append(f"log size    {data['size']}")
    lines.append(f"member      {_render_membership(data.get('membership'))}")
    tasks = data.get("tasks") if data["running"] else None
    if tasks:
        active = tasks.get("active") or []
        running = sum(1 for a in active if a.get("state") == "running")
        lines.append(
            f"tasks       {running} running, {len(active) - running} queued "
            f"(at most {tasks.get('parallel', 1)} at once), "
            f"{tasks.get('answered_this_run', 0)} answered since start"
        )
        if tasks.get("halted"):
            lines.append(f"EXECUTION   HALTED: {tasks['halted']}")
    lines.extend(render_disclosure(data.get("disclosure")))
    cpd = data.get("checkpoint") or {}
    if "size" in cpd:
        lines.append(f"checkpoint  {cpd['origin']} size {cpd['size']} root {cpd['root'][:16]}…")
    lines.append(f"cosigners   {', '.join(data.get('cosigners') or []) or '-'}")
    if data["running"]:
        lines.append(f"connected   {len(data.get('connected') or [])} peer(s)")
        if data.get("role") == "hub":
            # The hub is the log: lag behind itself means nothing. Its blob store instead.
            blobs = data.get("blobs")
            if isinstance(blobs, dict):
                lines.append(
                    f"blobs       {blobs.get('count', 0)} stored, {blobs.get('bytes', 0):,} "
                    f"bytes, {blobs.get('parts', 0)} upload(s) unfinished"
                )
        elif data.get("lag") is not None:
            lines.append(f"lag         {data['lag']} entries behind the hub")
        elif data.get("role") == "node":
            lines.append("lag         unknown (hub unreachable)")
    for who, why in (data.get("distrusted") or {}).items():
        lines.append(f"DISTRUSTED  {who}: {why}")
    if data["evidence"]:
        lines.append(f"EVIDENCE    {len(data['evidence'])} item(s):")
        for item in data["evidence"]:
            lines.append(f"  - {item['kind']}: {item['detail'][:200]}")
    else:
        lines.append("evidence    none")
    return "\n".join(lines)


def _render_membership(info: dict[str, Any] | None) -> str:
    if info is None:
        return "unknown: this home has no usable identity.key (see `ptm id`)"
    status = info.get("status")
    if status == "admitted":
        return f"{info['role']} of {info['org']}, admitted at log entry {info['admitted_at']}"
    if status == "revoked":
        return (
            f"REVOKED at log entry {info['revoked_at']} (was {info['role']} of {info['org']} "
            f"since entry {info['admitted_at']}); this key may sign nothing more"
        )
    if status == "not admitted":
        return (
            f"NOT ADMITTED: key {info['key'][:16]}… is not a member of {info.get('origin')}; "
            "the admin admits it with `ptm collab admit --role ROLE --org ORG KEY` "
            "(the key: `ptm id`)"
        )
    if status == "no log":
        return (
            "unknown: this home's ledger copy is empty (only a running hub or node keeps "
            "one); see the members with `ptm collab members --invitation FILE`"
        )
    return f"unknown: {info.get('error', 'the ledger copy could not be read')}"


def disclosure(home: Path) -> dict[str, Any] | None:
    """Per data source what this site has revealed (``site/disclosure.py``), read-only from
    ``HOME/disclosure.db``; None when the home has no record (disclosure control off, or not
    a site)."""
    import sqlite3

    path = home / DISCLOSURE_FILE
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            answers = db.execute("SELECT label FROM answers").fetchall()
            probes = db.execute("SELECT label, org FROM probes").fetchall()
            groupings = db.execute("SELECT label, columns FROM groupings").fetchall()
            versions = db.execute("SELECT label FROM populations").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return {"error": f"cannot read {path}: {exc}"}
    limit: int | None = None
    try:
        from ptm_p2p.config import load_config

        limit = load_config(home).policy.max_beta_probes
    except PtmError:
        pass  # the status still shows what was revealed
    sources: dict[str, dict[str, Any]] = {}

    def source(label: str) -> dict[str, Any]:
        empty = {"answers": 0, "probes": 0, "probes_by": {}, "groupings": [], "versions": 0}
        return sources.setdefault(label, empty)

    for (labels,) in answers:
        for label in str(labels).split(","):
            if label:
                source(label)["answers"] += 1
    for label, org in probes:
        entry = source(label)
        entry["probes"] += 1
        entry["probes_by"][org] = entry["probes_by"].get(org, 0) + 1
    for label, columns in groupings:
        source(label)["groupings"].append(json.loads(columns))
    for (label,) in versions:
        source(label)["versions"] += 1
    return {"max_beta_probes": limit, "sources": sources}


def render_disclosure(info: dict[str, Any] | None) -> list[str]:
    """``disclosure  LABEL: …`` lines: answers, β probes used and left (and by whom),
    data versions answered, groupings answered."""
    if not info:
        return []
    if "error" in info:
        return [f"disclosure  {info['error']}"]
    limit = info.get("max_beta_probes")
    lines = []
    for label, s in sorted(info.get("sources", {}).items()):
        used = s["probes"]
        budget = (
            f"{used}" if limit is None else f"{used} of {limit} used, {max(0, limit - used)} left"
        )
        by = ", ".join(f"{org} {n}" for org, n in sorted(s["probes_by"].items()))
        groups = "; ".join("×".join(g) for g in s["groupings"]) or "none"
        lines.append(
            f"disclosure  {label}: {s['answers']} answer(s) over {s['versions']} version(s); "
            f"β probes {budget}{f' (by {by})' if by else ''}; groupings {groups}"
        )
    return lines
