"""Where a sealed output leaves the site: inline in the result entry, or, when larger than
``INLINE_MAX``, as a blob uploaded to the hub *before* the result is signed (so a signed
result never names a blob the hub does not hold; the researcher fetches it from there, also
while this site is offline)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from ptm_p2p.backoff import Backoff
from ptm_p2p.errors import BlobError, BlobRefused, NetworkError
from ptm_p2p.ledger.entry import INLINE_MAX

if TYPE_CHECKING:
    from collections.abc import Callable

    from ptm_p2p.ledger.entry import SealedOutput

log = logging.getLogger(__name__)

BLOB_RETRY_FIRST, BLOB_RETRY_MAX = 1.0, 60.0  # seconds between tries to store an output blob


async def place_output(sealed: SealedOutput, hub: Callable[[], Any]) -> dict[str, Any]:
    """The result's ``output`` map for ``sealed``, uploading its ciphertext first if large.

    ``hub()`` gives a client of the hub (``NetworkError`` while not connected). An
    unreachable hub is waited for (resumable uploads, jittered back-off, one log line per
    pause); the store's refusal (quota, size, no room) raises ``BlobRefused`` so the task is
    answered ``failed`` with that reason."""
    if sealed.size <= INLINE_MAX:
        return sealed.output_map(inline=True)
    from ptm_p2p.network import blobs  # libp2p streams: only where outputs are large

    pause = Backoff(BLOB_RETRY_FIRST, BLOB_RETRY_MAX)
    while True:
        try:
            sent = await blobs.put(hub(), sealed.blob, sealed.ciphertext)
            log.info(
                "output blob %s… (%d bytes) stored at the hub (%d sent)",
                sealed.blob.hex()[:16],
                sealed.size,
                sent.sent,
            )
            return sealed.output_map(inline=False)
        except BlobRefused:
            raise
        except (NetworkError, BlobError, trio.TooSlowError) as exc:
            wait = pause.next()
            log.warning(
                "cannot store an output blob of %d bytes at the hub (%s); retrying in %.0f s",
                sealed.size,
                exc,
                wait,
            )
            await trio.sleep(wait)
