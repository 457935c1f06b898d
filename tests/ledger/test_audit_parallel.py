"""The audit with signature-checking workers reports exactly what the one-process audit does.

The workers read each entry's author at its fixed offset (``entry.claimed_author``) instead of
decoding the body, so these tests damage entries in the ways that could fool such a shortcut:
a changed author, another key's signature, a changed kind, a non-canonical body signed
properly, a truncated entry. Every one must be reported the same way in both modes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.audit import PARALLEL_BATCH, AuditReport, audit
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.simulate import identity, simulate
from ptm_p2p.ledger.store import SqliteStore

SIZE = 3 * PARALLEL_BATCH + 17  # several worker chunks and a partial last one


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "ledger.db"
    store = SqliteStore(path)
    simulate(store, SIZE, 3, seed=5, checkpoint_every=200)
    store.close()
    return path


def _body(raw: bytes) -> list[Any]:
    body: list[Any] = msgpack.unpackb(E.split_raw(raw)[0])
    return body


def _signed(signer: Signer, body: list[Any], *, canonical: bool = True) -> bytes:
    body_bytes = E.pack(body) if canonical else msgpack.packb(body, use_bin_type=True)
    return E.pack([body_bytes, signer.sign(E.SIGNING_PREFIX + body_bytes)])


def _other_author(raw: bytes) -> bytes:
    body = _body(raw)
    body[2] = identity(5, "hub").public_key  # a member, but not who signed it
    return E.pack([E.pack(body), E.split_raw(raw)[1]])


def _signed_by_another_key(raw: bytes) -> bytes:
    return _signed(Signer(b"\x07" * 32), _body(raw))


def _other_kind(raw: bytes) -> bytes:
    body = _body(raw)
    body[1] = "cancel"
    return E.pack([E.pack(body), E.split_raw(raw)[1]])


def _unsorted_but_signed(raw: bytes) -> bytes:
    body = _body(raw)
    body[6] = dict(reversed(list(body[6].items())))
    site = next(i for i in range(1, 4) if identity(5, f"site-{i}").public_key == body[2])
    return _signed(identity(5, f"site-{site}"), body, canonical=False)


def _truncated(raw: bytes) -> bytes:
    return raw[:-3]


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "author changed": _other_author,
    "signed by another key": _signed_by_another_key,
    "kind changed": _other_kind,
    "non-canonical, properly signed": _unsorted_but_signed,
    "truncated": _truncated,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_parallel_and_serial_audits_report_the_same_damage(
    ledger: Path, tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "copy.db"
    path.write_bytes(ledger.read_bytes())
    with sqlite3.connect(path) as db:
        # A result entry (by a site) in the second worker chunk.
        index, raw = next(
            (i, r)
            for i, r in db.execute(
                "SELECT idx, raw FROM entries WHERE idx > ? ORDER BY idx",
                (PARALLEL_BATCH + 5,),
            )
            if _body(r)[1] == E.RESULT
        )
        db.execute("UPDATE entries SET raw = ? WHERE idx = ?", (DAMAGE[damage](raw), index))
    serial, parallel = audit_both_ways(path)
    assert not serial.ok
    assert serial.problems[0].index == index, serial.problems[0]
    assert serial.to_json() == parallel.to_json()


def audit_both_ways(path: Path) -> tuple[AuditReport, AuditReport]:
    """The audit of the ledger at ``path`` in this process, then with two workers."""
    store = SqliteStore(path, read_only=True)
    try:
        return audit(store, workers=0), audit(store, workers=2)
    finally:
        store.close()


def test_an_undamaged_ledger_passes_both_ways(ledger: Path) -> None:
    serial, parallel = audit_both_ways(ledger)
    assert serial.ok, serial.problems[:3]
    assert serial.to_json() == parallel.to_json()
