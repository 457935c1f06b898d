"""The trust registry: typed parties, one persistence, one way to declare a split view."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from ledgers import ORIGIN, HubLog

from ptm_p2p.errors import SplitViewError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.crypto import Signer, short
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network import trust as trust_module
from ptm_p2p.network.trust import HUB, Party, TrustRegistry


def test_parties_are_typed_and_shown_as_before() -> None:
    key = Signer.generate().public_key
    assert str(HUB) == "hub"
    assert str(Party.peer("12D3KooWabc")) == "peer 12D3KooWabc"
    assert str(Party.author(key)) == f"author {short(key)}"
    assert Party.author(key) == Party.author(key) and Party.author(key) != HUB
    assert Party.peer("x") != Party("author", "x")


def test_refused_peers_are_kept_in_one_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "distrusted.json"
    store = SqliteStore(tmp_path / "ledger.db")
    trust = TrustRegistry(store, path)
    trust.distrust(Party.peer("liar"), "served entries that do not hash")
    trust.distrust(Party.peer("liar"), "again")  # one record, the first reason
    trust.distrust(HUB, "not a peer: kept in the store's evidence, not in the file")
    recorded = json.loads(path.read_text())
    assert list(recorded) == ["liar"] and "do not hash" in recorded["liar"]["reason"]
    with caplog.at_level(logging.INFO):
        again = TrustRegistry(store, path)
    assert not again.trusted(Party.peer("liar")) and again.trusted(HUB)
    assert "still distrusting 1 peer(s)" in caplog.text
    assert again.distrusted() == {"peer liar": "served entries that do not hash"}
    path.write_text("{not json")
    assert TrustRegistry(store, path).trusted(Party.peer("liar"))  # reported, not fatal


def test_declaring_a_split_view_stores_distrusts_and_raises(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 1)
    trust = log.server.trust
    other = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, log.log.size, bytes(32)), log.hub)
    for _ in range(2):
        with pytest.raises(SplitViewError, match="split view detected: two roots") as raised:
            trust.declare_split_view(log.signed.text, other.text, "two roots")
        assert (raised.value.first, raised.value.second) == (log.signed.text, other.text)
    assert [e.kind for e in log.log.store.evidence()] == ["split-view"]  # stored once
    assert trust.split_view and not trust.hub_trusted
    restarted = TrustRegistry(log.log.store)
    assert restarted.split_view and not restarted.hub_trusted


def test_evidence_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trust_module, "MAX_EVIDENCE", 3)
    trust = TrustRegistry(SqliteStore(tmp_path / "ledger.db"))
    added = [trust.record_evidence("equivocation", bytes([i]), b"x", "d") for i in range(5)]
    assert added == [True, True, True, False, False]
