"""``fetch_range`` against a real sync server in process (its answers, no sockets)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from ledgers import HubLog

from ptm_p2p.errors import BadRange, RootMismatch, StepTooLarge
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import membership_payload
from ptm_p2p.network import protocol
from ptm_p2p.network.fetch import fetch_range
from ptm_p2p.network.host import peer_id_of
from ptm_p2p.network.sync_server import SyncServer

Tamper = Callable[[dict[str, Any]], dict[str, Any]]


class Peer:
    """What ``fetch_range`` needs of a ``PeerClient``: ``ask``, answered by a real server
    through the wire map (which ``tamper`` may change) and the client's reply check."""

    def __init__(self, server: SyncServer, tamper: Tamper = lambda a: a) -> None:
        self.server, self.tamper, self.calls = server, tamper, 0
        # It asks as the admitted site: entries are served to members only (issue 14).
        site = server.log.state.active_members("site")[0]
        self.who = str(peer_id_of(site.key))

    async def ask(self, request: protocol.Request, timeout: float = 0) -> Any:
        self.calls += 1
        answer = protocol.as_map(await self.server.answer(request, self.who))
        return protocol.parse_reply(request, self.tamper(answer))


def _grow(log: HubLog, count: int) -> None:
    now = int(time.time() * 1000)
    log.append(
        [
            log.chain.append(
                "membership",
                membership_payload("admit", Signer.generate().public_key, f"x{i}", "researcher"),
                now,
            )
            for i in range(count)
        ]
    )


def _fetch(log: HubLog, site: SyncServer, peer: Peer, **kw: Any) -> Any:
    ours = site.book.note_of(site.log.size)
    return trio.run(
        lambda: fetch_range(
            peer,
            log.signed,
            site.log.log_verifier(),
            "peer-x",
            base=site.log.frontier,
            base_note=cp.parse_checkpoint(ours) if ours else None,
            **kw,
        )
    )


def _caught_up_then_grown(tmp_path: Path, researchers: int, grow: int) -> tuple[HubLog, Any]:
    """A fresh site that fetched and committed the whole log; then the log grew by ``grow``."""
    log = HubLog(tmp_path, researchers)
    site = log.fresh_site()
    got = _fetch(log, site, Peer(log.server))
    site.log.commit(got.entries, got.frontier, log.signed, "peer-x")
    _grow(log, grow)
    return log, site


def test_a_whole_log_then_its_growth(tmp_path: Path) -> None:
    log, site = _caught_up_then_grown(tmp_path, 20, 7)
    got = _fetch(log, site, Peer(log.server))
    assert got.start == site.log.size and len(got.entries) == 7
    site.log.commit(got.entries, got.frontier, log.signed, "peer-x")
    assert site.log.frontier.root() == log.signed.checkpoint.root


def _drop_one(answer: dict[str, Any]) -> dict[str, Any]:
    entries = answer["entries"]
    return answer | {"entries": entries[:2] + entries[3:]}


def _flip(answer: dict[str, Any]) -> dict[str, Any]:
    bad = bytearray(answer["entries"][3])
    bad[-1] ^= 1
    return answer | {"entries": [*answer["entries"][:3], bytes(bad), *answer["entries"][4:]]}


def test_lies_are_named(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 20)
    site = log.fresh_site()
    with pytest.raises(BadRange, match="peer-x served entry 3"):
        _fetch(log, site, Peer(log.server, _flip))
    with pytest.raises(RootMismatch, match="peer-x served entries 0..21"):
        _fetch(log, site, Peer(log.server, _drop_one))
    older = log.signed.text
    _grow(log, 2)
    with pytest.raises(BadRange, match="under checkpoint 22, asked for 24"):
        _fetch(log, site, Peer(log.server, lambda a: a | {"note": older}))
    assert site.log.size == 0


def test_a_bad_consistency_proof_is_refused(tmp_path: Path) -> None:
    log, site = _caught_up_then_grown(tmp_path, 5, 5)
    with pytest.raises(BadRange, match="consistency proof that does not verify"):
        _fetch(log, site, Peer(log.server, lambda a: a | {"proof": [bytes(32)] * 3}))
    with pytest.raises(BadRange, match="malformed answer: .*proof"):
        _fetch(log, site, Peer(log.server, lambda a: a | {"proof": "no"}))
    with pytest.raises(BadRange, match="malformed consistency proof"):
        _fetch(log, site, Peer(log.server, lambda a: a | {"proof": [bytes(32)] * 200}))


def test_bounds_before_and_while_fetching(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 20)
    site = log.fresh_site()
    peer = Peer(log.server)
    with pytest.raises(StepTooLarge):
        _fetch(log, site, peer, max_entries=10)
    assert peer.calls == 0  # refused before asking
    with pytest.raises(StepTooLarge):
        _fetch(log, site, peer, max_bytes=1000)
