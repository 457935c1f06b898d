"""How the hostile test peers (``evil_hub.py``, ``evil_peer.py``) run: as a real daemon on
127.0.0.1 under their home's key, every request answered by a handler of their own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ptm_p2p.home import Home
from ptm_p2p.network.daemon_runner import DaemonParts, serve_home


def serve(
    home: Home,
    port: int,
    handler: Callable[..., Any],
    status: Callable[[Any], dict[str, Any]],
    role: str,
    tasks: Sequence[Callable[..., Any]] = (),
) -> None:
    """Run the daemon until the process is stopped; ``status`` feeds its status file."""
    serve_home(home, "127.0.0.1", port, DaemonParts(handler, list(tasks), status, role))
