"""The researcher's connection: the home, its invitation, the verified copy and the hub.

``Connection`` opens the home (its key and ``ledger.db``), finds the invitation, keeps the
verified copy (``LogFollower``) and one ``Session`` to the hub, and makes every request the
client sends the hub as one blocking call: catch the copy up, our chain's head, submit an
entry, wait for a new checkpoint, fetch a blob. Each is safe to repeat, so the session's
``reconnecting`` may make it again while the hub restarts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ptm_p2p.client.follower import LogFollower
from ptm_p2p.client.session import Session
from ptm_p2p.errors import ConfigError, ProtocolError
from ptm_p2p.home import Home, resolve_home
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.network import protocol
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.rpc import PeerClient

INVITATION_FILE = "invitation.json"


def find_invitation(home: Path, invitation: str | Path | None) -> Invitation:
    """The invitation: the given file, else ``HOME/invitation.json``, else ``PTM_INVITATION``."""
    candidates = [invitation, home / INVITATION_FILE, os.environ.get("PTM_INVITATION")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Invitation.load(Path(candidate))
    if invitation:
        raise ConfigError(f"invitation file {invitation} does not exist")
    raise ConfigError(
        f"no invitation: pass --invitation FILE (the file the hub operator gave you), copy it "
        f"to {home / INVITATION_FILE}, or set PTM_INVITATION"
    )


class Connection:
    """A researcher's home, verified copy of the log and session to the hub."""

    def __init__(self, home: str | Path | None, invitation: str | Path | None) -> None:
        self.home = Home.load(resolve_home(home))
        self.invitation = find_invitation(self.home.path, invitation)
        self.follower = LogFollower(self.home, self.invitation)
        try:
            self.session = Session(self.home.signer.seed, self.invitation.hub_addr)
        except BaseException:
            self.follower.close()
            raise

    def close(self) -> None:
        self.session.close()
        self.follower.close()

    @property
    def state(self) -> Any:
        """The replayed state of the verified copy."""
        return self.follower.state

    def sync(self) -> int:
        """Catch the verified copy up with the hub; returns its size."""
        return self.session.call(self._sync)

    def head(self) -> protocol.HeadReply:
        """The head of our own chain as the hub has it (the last seq and hash we signed)."""
        return self.session.call(self._head)

    def submit(self, entry: Entry) -> int:
        """Submit one signed entry; the log index the hub gave it (the same index again for
        a resubmission of the same bytes)."""
        return self.session.call(self._submit, entry)

    def long_poll(self, size: int, seconds: float) -> None:
        """Return when the hub signs a checkpoint beyond ``size``, or after ``seconds``."""
        self.session.call(self._long_poll, size, seconds)

    def fetch_blob(self, blob: bytes, size: int) -> bytes:
        """The blob ``blob`` of ``size`` bytes from the hub's blob store, checked on arrival."""
        return self.session.call(self._fetch_blob, blob, size)

    def _hub(self) -> PeerClient:
        hub = self.session.hub
        assert hub is not None  # set before the session's constructor returns
        return hub

    async def _sync(self) -> int:
        return await self.follower.sync(self._hub())

    async def _head(self) -> protocol.HeadReply:
        request = protocol.HeadRequest(author=self.home.public_key)
        return await self._hub().ask(request, timeout=15)

    async def _submit(self, entry: Entry) -> int:
        answer = await self._hub().ask(protocol.SubmitRequest(entries=[entry.raw]), timeout=30)
        if len(answer.indexes) != 1:
            raise ProtocolError(f"the hub answered one submitted entry with {answer.indexes}")
        return answer.indexes[0]

    async def _long_poll(self, size: int, seconds: float) -> None:
        await self._hub().ask(
            protocol.WaitRequest(after=size, timeout_ms=int(seconds * 1000)),
            channel="wait",
            timeout=seconds + 10,
        )

    async def _fetch_blob(self, blob: bytes, size: int) -> bytes:
        from ptm_p2p.network import blobs  # libp2p streams: only for outputs held as blobs

        return await blobs.get(self._hub(), blob, size)
