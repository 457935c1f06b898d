"""What ``ptm status`` shows of a running site: its server's status, its hub, its faults.

Every file of ours that fails (the ledger, ``witness.json``, the task journal) is this
machine's fault, not a peer's: they are joined into one ``local_fault`` line.
"""

from __future__ import annotations

from typing import Any

from ptm_p2p.network.sync_server import SyncServer


def node_status(
    server: SyncServer,
    *,
    hub_up: bool,
    hub_size: int,
    witness_size: int,
    not_admitted: str | None,
    faults: list[str | None],
    tasks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status map of a site (and ``tasks``, its task worker's, if it executes tasks).

    ``faults`` say what of this site's own fails (the ledger's writes, its small files).
    """
    data = server.status()
    data.update(
        hub_up=hub_up,
        hub_size=hub_size,
        lag=max(0, hub_size - server.log.size) if hub_up else None,
        witness_size=witness_size,
        not_admitted=not_admitted,
    )
    faults = list(faults)
    if tasks is not None:
        data["tasks"] = tasks
        faults.append(tasks.get("local_fault"))
    data["local_fault"] = "; ".join(f for f in faults if f) or None
    return data


__all__ = ["node_status"]
