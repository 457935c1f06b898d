"""Where the development infrastructure keeps its state, and how it is reached.

Read from the environment at call time (never at import time):

* ``PTM_DEV_STATE``  state folder: daemon logs, pid files, registry storage
                     (default ``~/.local/state/ptm_p2p``);
* ``PTM_CACHE_DIR``  cache folder for the base-image tarball (default ``~/.cache/ptm_p2p``);
* ``PTM_REGISTRY``   registry address, ``host:port`` on loopback (default ``127.0.0.1:5000``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ptm_p2p.errors import ExecutorError

BASE_IMAGE = "ptm-base-python:bookworm"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class DevSettings:
    """Paths and addresses of the development infrastructure."""

    state_dir: Path
    cache_dir: Path
    registry: str
    base_image: str = BASE_IMAGE

    @classmethod
    def from_env(cls) -> DevSettings:
        home = Path.home()
        state = Path(os.environ.get("PTM_DEV_STATE") or home / ".local/state/ptm_p2p")
        cache = Path(os.environ.get("PTM_CACHE_DIR") or home / ".cache/ptm_p2p")
        registry = os.environ.get("PTM_REGISTRY") or "127.0.0.1:5000"
        host, _, port = registry.rpartition(":")
        # a port is required: registry_port reads it, and "127.0.0.1" alone has none
        port_ok = port.isascii() and port.isdigit() and 0 < int(port) < 65536
        if host not in LOOPBACK_HOSTS or not port_ok:
            # Docker trusts plain-HTTP registries on loopback only; and the test machines
            # must never send traffic anywhere else.
            raise ExecutorError(
                f"PTM_REGISTRY={registry!r}: the development registry must listen on "
                "127.0.0.1 with a port (e.g. 127.0.0.1:5000)"
            )
        return cls(state_dir=state, cache_dir=cache, registry=registry)

    @property
    def registry_port(self) -> int:
        return int(self.registry.rsplit(":", 1)[1])


def run(cmd: Sequence[str], what: str, timeout: float = 600, **kwargs: object) -> str:
    """Run a command; on failure raise ExecutorError naming it and quoting its stderr."""
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise ExecutorError(f"{what}: {cmd[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise ExecutorError(f"{what}: `{' '.join(cmd)}` took more than {timeout} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise ExecutorError(f"{what}: `{' '.join(cmd)}` failed ({proc.returncode}): {tail}")
    return str(proc.stdout)
