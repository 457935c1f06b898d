"""``ptm status``: a peer's view, from its ledger copy and its running daemon's status file.

The ledger (size, checkpoints, evidence) is read directly from ``HOME/ledger.db``; what only
the daemon knows (connected peers, lag behind the hub, peers it stopped trusting, verified
cosigners) comes from ``HOME/status.json``, which the daemon rewrites every second. A status
file older than a few seconds means the daemon is not running and is reported as such.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ptm_p2p.errors import LedgerError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network.daemon import STATUS_FILE

STALE_SECONDS = 5.0


def collect(home: Path) -> dict[str, Any]:
    store = SqliteStore(Path(home) / "ledger.db", read_only=True)
    try:
        size = store.size()
        notes = store.checkpoints()
        evidence = [
            {"kind": e.kind, "detail": e.detail, "recorded_at": e.recorded_at}
            for e in store.evidence()
        ]
    finally:
        store.close()
    note = notes[-1][1] if notes else None
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
    data: dict[str, Any] = {
        "home": str(home),
        "size": size,
        "checkpoint": checkpoint,
        "cosigners": signers,
        "evidence": evidence,
        "running": False,
        "daemon_seen": False,
    }
    status_path = Path(home) / STATUS_FILE
    if status_path.exists():
        try:
            daemon = json.loads(status_path.read_text())
        except ValueError:
            daemon = {}
        fresh = (
            time.time() - float(daemon.get("updated", 0)) < STALE_SECONDS
            and "stopped" not in daemon
        )
        data["running"] = fresh
        data["daemon_seen"] = True
        if "stopped" in daemon:
            data["stopped"] = daemon["stopped"]
        if fresh:
            data["cosigners"] = daemon.get("cosigners", signers)
        for key in (
            "role",
            "address",
            "connected",
            "lag",
            "hub_up",
            "distrusted",
            "known_peers",
            "witness_size",
            "split_view",
            "sequenced",
        ):
            if key in daemon:
                data[key] = daemon[key]
    return data


def render(data: dict[str, Any]) -> str:
    lines = [f"home        {data['home']}"]
    if data["running"]:
        lines.append(f"daemon      {data.get('role', '?')} running {data.get('address', '')}")
    elif data.get("role"):
        lines.append(f"daemon      {data['role']} not running")
    else:
        lines.append("daemon      none: no daemon has run in this home")
    lines.append(f"log size    {data['size']}")
    cpd = data.get("checkpoint") or {}
    if "size" in cpd:
        lines.append(f"checkpoint  {cpd['origin']} size {cpd['size']} root {cpd['root'][:16]}…")
    lines.append(f"cosigners   {', '.join(data.get('cosigners') or []) or '-'}")
    if data["running"]:
        lines.append(f"connected   {len(data.get('connected') or [])} peer(s)")
        if data.get("role") == "hub":
            pass  # the hub is the log: lag behind itself means nothing
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
