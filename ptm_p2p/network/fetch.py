"""Fetch a range of entries from a peer and verify it against a checkpoint the hub signed.

``fetch_range`` is the one way entries enter from the network (sites catching up from the hub
or another site, the researcher's follower, one-shot commands reading the hub's log). From a
verified tree of size ``start`` (``base``, empty for a whole log) to a hub-signed ``target``:

1. ask ``entries`` page by page (a response is cut at the frame budget; the client goes on);
   the note served with the first page must be the hub-signed target, and its proof
   well-formed (later pages need no note: step 3 checks the whole range against the target);
2. every entry decodes canonically and its signature verifies (``decode_entries_async``);
3. the entries, appended to ``base``, hash to exactly the target's root (RFC 9162), so the
   range is neither forged, altered, truncated nor reordered;
4. the served consistency proof from our checkpoint at ``start`` to the target verifies
   (``checkpoint.check_consistent``; RFC 9162 §2.1.4.2).

Any failure names the peer (``BadRange``, ``RootMismatch``); nothing is stored here: the
caller commits the result (``VerifiedLog.commit``). ``pages`` is the request loop alone, for a
caller that only rehashes a peer's log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ptm_p2p.errors import BadRange, LedgerError, MalformedAnswer, StepTooLarge
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.network import protocol
from ptm_p2p.network.verified_log import decode_entries_async, extend_to_root

MAX_PROOF = 128  # hashes in a consistency proof (a tree of 2**64 leaves needs fewer)


@dataclass(frozen=True)
class Page:
    start: int
    raws: list[bytes]
    note: str  # the note served with the page, not yet checked
    proof: list[bytes]  # the consistency proof served with the page, not yet checked


@dataclass(frozen=True)
class VerifiedRange:
    start: int
    entries: list[Entry]
    frontier: merkle.CompactRange  # the tree over the whole log up to the target


async def pages(
    peer: Any, start: int, end: int, *, old_size: int, source: str
) -> AsyncIterator[Page]:
    """The raw entries [start, end) as the peer serves them, one response at a time."""
    at = start
    while at < end:
        request = protocol.EntriesRequest(start=at, end=end, old_size=old_size)
        try:
            resp = await peer.ask(request, timeout=60)
        except MalformedAnswer as exc:
            # Junk instead of entries is a lie about the log, like a forged entry.
            raise BadRange(f"{source} sent a malformed answer: {exc}") from exc
        got = resp.entries
        if not got:
            raise BadRange(f"{source} answered entries {at}.. with no entries")
        if at + len(got) > end:
            raise BadRange(f"{source} sent more entries than the checkpoint covers")
        yield Page(at, got, resp.note, resp.proof)
        at += len(got)


async def fetch_range(
    peer: Any,
    target: cp.SignedCheckpoint,
    verifier: cp.Verifier,
    source: str,
    *,
    base: merkle.CompactRange | None = None,
    base_note: cp.SignedCheckpoint | None = None,
    max_entries: int | None = None,
    max_bytes: int | None = None,
) -> VerifiedRange:
    """Entries [base.size, target.size) from ``peer``, verified against ``target``.

    ``verifier`` is the hub's key (the served note must be the target it signed);
    ``base_note`` is our hub-signed checkpoint of size ``base.size``, against which the
    served consistency proof is checked (the root check alone already proves the prefix).
    ``StepTooLarge`` when the range exceeds ``max_entries`` or ``max_bytes``: not a lie,
    just more than the caller will hold in memory at once.
    """
    base = base if base is not None else merkle.CompactRange()
    start, size = base.size, target.checkpoint.size
    if size < start:
        raise BadRange(f"{source}: a checkpoint of size {size} is behind our {start} entries")
    if max_entries is not None and size - start > max_entries:
        raise StepTooLarge()
    raws: list[bytes] = []
    proof: list[bytes] | None = None
    held = 0
    async for page in pages(peer, start, size, old_size=start, source=source):
        held += sum(len(r) for r in page.raws)
        if max_bytes is not None and held > max_bytes:
            raise StepTooLarge()
        if proof is None:
            proof = _check_served(page, target, verifier, source)
        raws.extend(page.raws)
    entries = await decode_entries_async(raws, start, source)
    frontier = extend_to_root(base, entries, target, source)
    if start > 0 and base_note is not None:
        try:
            cp.check_consistent(base_note, target, proof or [], verifier)
        except LedgerError as exc:
            # The entries gave the signed root, so the tree is consistent: the proof is junk.
            raise BadRange(
                f"{source} sent a consistency proof that does not verify: {exc.__cause__ or exc}"
            ) from exc
    return VerifiedRange(start, entries, frontier)


def _check_served(
    page: Page, target: cp.SignedCheckpoint, verifier: cp.Verifier, source: str
) -> list[bytes]:
    """The served note must be the target the hub signed; returns the served proof."""
    served = cp.parse_checkpoint(page.note)  # CheckpointError: not hub-signed
    cp.verify_checkpoint(served, verifier)
    if served.checkpoint != target.checkpoint:
        if served.checkpoint.size == target.checkpoint.size:
            # Two hub-signed roots for one size: the verified log decides once we hold that
            # size; for now the peer is not serving our target.
            raise BadRange(
                f"{source} served a different checkpoint of size {target.checkpoint.size}"
            )
        raise BadRange(
            f"{source} served entries under checkpoint "
            f"{served.checkpoint.size}, asked for {target.checkpoint.size}"
        )
    if len(page.proof) > MAX_PROOF:
        raise BadRange(f"{source} sent a malformed consistency proof")
    return page.proof


__all__ = ["Page", "VerifiedRange", "fetch_range", "pages"]
