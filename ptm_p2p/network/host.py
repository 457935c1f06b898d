"""libp2p hosts for ptm: Noise only, Yamux, identity = the home's Ed25519 seed.

py-libp2p 0.8.1's default security table also offers TLS, secio and *plaintext*; a peer that
proposes plaintext first would get an unauthenticated, unencrypted connection. We pass our
own table with Noise alone, so a downgrade is impossible: the handshake fails instead.

Because the libp2p key pair is built from the same 32-byte seed as the ledger Signer, a
peer id names exactly one ledger key: ``peer_id_of(public_key)`` lets a site check that the
peer it talks to is the hub (or site) the ledger says it is.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

import multiaddr
from libp2p import new_host
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from ptm_p2p.errors import ConfigError, NetworkError

log = logging.getLogger(__name__)


def make_host(seed: bytes) -> Any:
    """A libp2p host whose peer id is derived from ``seed`` and which speaks Noise only."""
    key_pair = ed25519_key_pair(seed)
    # The Noise static key is a fresh X25519 key per process (as libp2p does by default);
    # the handshake payload binds it to our Ed25519 identity key.
    noise = NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_preference="YAMUX",
    )


def peer_id_of(public_key: bytes) -> ID:
    """The libp2p peer id of a 32-byte Ed25519 ledger public key."""
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key))


def public_key_of(peer_id: ID) -> bytes | None:
    """The Ed25519 key inlined in an identity-multihash peer id, or None."""
    try:
        key = peer_id.extract_public_key()
    except Exception:  # malformed ids come from the wire; never let them crash us
        return None
    if key is None or not isinstance(key, Ed25519PublicKey):
        return None
    return bytes(key.to_bytes())


def listen_addr(host: str = "127.0.0.1", port: int = 0) -> multiaddr.Multiaddr:
    return multiaddr.Multiaddr(f"/ip4/{host}/tcp/{port}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (py-libp2p does not report port 0's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int, role: str = "daemon") -> None:
    """Refuse to listen on a TCP port another socket already holds (``ConfigError``).

    py-libp2p's TCP listener sets ``SO_REUSEPORT`` (for hole punching), so the kernel lets it
    bind a port another process listens on and then splits incoming connections between the
    two: the daemon would seem to start and half of its peers would reach someone else. A
    probe bind *without* ``SO_REUSEPORT`` fails exactly when the port is taken. It sets
    ``SO_REUSEADDR``, like every listener, so that connections of a stopped daemon still in
    TIME_WAIT do not stop it from starting again on its port.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"TCP port {port} on {host} is already in use by another program (another "
                    f"ptm hub or node?); stop that program, or start this {role} with another "
                    f"--port (`ss -ltnp 'sport = :{port}'` shows who holds it)"
                ) from None
            raise ConfigError(
                f"cannot listen on {host} port {port}: {exc.strerror}; check --host and --port"
            ) from None


def full_addr(host: Any, listen: multiaddr.Multiaddr) -> str:
    """``/ip4/…/tcp/…/p2p/PEERID``: what an invitation or ``--peer`` carries."""
    return f"{listen}/p2p/{host.get_id()}"


def parse_peer_addr(addr: str) -> PeerInfo:
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:
        raise NetworkError(
            f"{addr!r} is not a peer address; expected /ip4/HOST/tcp/PORT/p2p/PEERID"
        ) from exc


MAX_ADDR_CHARS = 200


def is_listen_addr(peer_id: str, addr: object) -> bool:
    """Whether ``addr`` is a usable address that others gave for where ``peer_id`` listens.

    The one check for addresses learnt from the network or a file (a peer's ``hello``, the
    hub's ``peers`` answer, ``HOME/peers.json``): text of at most ``MAX_ADDR_CHARS`` with a
    TCP port and no ``/p2p/`` part of its own, which with ``/p2p/PEER_ID`` appended is a peer
    address ``parse_peer_addr`` accepts. A bad address is dropped when it is learnt, never
    found when we dial.
    """
    if not isinstance(addr, str) or len(addr) > MAX_ADDR_CHARS or "/p2p/" in addr:
        return False
    try:
        if multiaddr.Multiaddr(addr).value_for_protocol("tcp") is None:
            return False
        parse_peer_addr(f"{addr}/p2p/{peer_id}")
    except Exception:  # multiaddr raises assorted errors on junk; NetworkError from the parse
        return False
    return True
