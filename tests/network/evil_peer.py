"""Test harness: a peer that serves a real ledger copy but tampers with entry ranges.

Run as its own process: ``python evil_peer.py HOME PORT MODE``. HOME holds an identity and a
copy of an honest ledger.db; MODE is one of:

* ``forge``    an entry's signature is corrupted (the bytes no longer verify);
* ``alter``    an entry is replaced by another validly signed entry the hub never sequenced;
* ``truncate`` an entry in the middle of each range is left out;
* ``reorder``  two entries of each range are swapped;
* ``junk``     ``checkpoint`` is answered with a map of the wrong shape (a number for a note).

Everything else (checkpoints, proofs) is served honestly, so only the range check (or, for
``junk``, the typed reply check) can catch it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from evil_daemon import serve

from ptm_p2p.home import Home
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import AuthorChain, membership_payload
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network import protocol
from ptm_p2p.network.daemon_runner import setup_logging
from ptm_p2p.network.sync_server import SyncServer


def tamper(mode: str, raws: list[bytes], forger: Signer) -> list[bytes]:
    raws = list(raws)
    mid = len(raws) // 2
    if mode == "forge":
        raw = bytearray(raws[mid])
        raw[-1] ^= 0x01  # last byte of the signature
        raws[mid] = bytes(raw)
    elif mode == "alter":
        payload = membership_payload(
            "admit", Signer.generate().public_key, "intruder", "researcher"
        )
        raws[mid] = AuthorChain(forger).append("membership", payload, int(time.time() * 1000)).raw
    elif mode == "truncate" and len(raws) >= 2:
        del raws[mid]
    elif mode == "reorder" and len(raws) >= 2:
        raws[mid - 1], raws[mid] = raws[mid], raws[mid - 1]
    return raws


def main() -> None:
    home = Home.load(Path(sys.argv[1]))
    port, mode = int(sys.argv[2]), sys.argv[3]
    setup_logging()
    store = SqliteStore(home.ledger_path)
    replica = SyncServer(store, home.name, public=True)  # a liar serves whoever asks
    forger = Signer.generate()

    async def handle(request: protocol.Request, peer: Any) -> dict[str, Any]:
        if mode == "junk" and request.op == "checkpoint":
            return {"ok": True, "note": 5, "size": 0}
        answer = protocol.as_map(await replica.answer(request, peer))
        if request.op == "entries" and answer.get("ok"):
            answer["entries"] = tamper(mode, answer["entries"], forger)
        return answer

    try:
        serve(home, port, handle, lambda host: replica.status(), f"evil-{mode}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
