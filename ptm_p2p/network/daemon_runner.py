"""What every daemon shares: logging to stderr, a libp2p host, signals, a status file.

``run_daemon`` starts the host on the listen address, installs the sync protocol handler,
runs the role's tasks, writes ``HOME/status.json`` about once a second (so ``ptm status``
can show connected peers and lag without talking to the daemon), and on SIGTERM or Ctrl-C
cancels everything and returns; the store is closed by the caller's ``finally``. Both
daemons call it through ``serve_home`` with their ``DaemonParts`` (the protocol handler,
their tasks, their status and their role's name).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ptm_p2p.errors import ConfigError, PtmError
from ptm_p2p.home import Home
from ptm_p2p.home_files import STATUS_FILE, mark_stopped, write_status
from ptm_p2p.network.host import check_port_free, full_addr, listen_addr, make_host
from ptm_p2p.network.rpc import Handler, RpcServer

log = logging.getLogger(__name__)

ADDR_FILE = "listen.addr"


def setup_logging(verbose: bool = False) -> None:
    """Readable one-line logs on stderr; libp2p's own chatter only at WARNING."""
    level = logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("ptm_p2p").setLevel(level)
    # py-libp2p logs every failed dial of a restarting peer at ERROR; our own reconnect
    # logic reports what matters, so keep libp2p quiet unless debugging.
    logging.getLogger("libp2p").setLevel(logging.WARNING if verbose else logging.CRITICAL)


LOCK_FILE = "daemon.lock"


@contextlib.contextmanager
def home_lock(home: Path, role: str) -> Iterator[None]:
    """Hold an exclusive lock on ``HOME/daemon.lock`` for a daemon's whole life.

    Two daemons on one home would race on the ledger and, as witnesses, on the record of the
    last cosigned checkpoint; the second one stops here with a clear error instead. The
    kernel drops the lock when the process dies, so a crash never leaves it stuck.
    """
    path = home / LOCK_FILE
    handle = open(path, "a+")  # noqa: SIM115 - held open for the daemon's lifetime
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigError(
                f"another daemon already runs on {home} (pid {holder}); stop it first, "
                f"or give this {role} its own --home"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


Task = Callable[[Any, str], Awaitable[None]]


@dataclass(frozen=True)
class DaemonParts:
    """What a role brings to the daemon: the handler of its requests, its tasks (each
    called as ``task(host, my_full_address)``), what its status file says beyond the
    common fields, and its name in logs and errors ("hub", "node")."""

    handler: Handler
    tasks: list[Task]
    status: Callable[[Any], dict[str, Any]]
    role: str


def serve_home(home: Home, host_ip: str, port: int, parts: DaemonParts) -> None:
    """``run_daemon`` for a role's home (its key and folder), in a trio event loop of its
    own: what ``ptm hub`` and ``ptm node`` call once their parts are assembled."""
    trio.run(run_daemon, home.path, home.signer.seed, host_ip, port, parts)


async def run_daemon(home: Path, seed: bytes, host_ip: str, port: int, parts: DaemonParts) -> None:
    """Run until SIGTERM/SIGINT. Each task is called as ``task(host, my_full_address)``."""
    role = parts.role
    check_port_free(host_ip, port, role)
    host = make_host(seed)
    addr = listen_addr(host_ip, port)
    try:
        async with host.run([addr]):
            RpcServer(host, parts.handler).install()
            me = full_addr(host, addr)
            (home / ADDR_FILE).write_text(me + "\n")
            log.info("%s listening on %s", role, me)
            async with trio.open_nursery() as nursery:
                for task in parts.tasks:
                    nursery.start_soon(task, host, me)
                nursery.start_soon(_status_writer, home, host, me, parts.status, role)
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info("%s: got %s, stopping", role, signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        break
    except BaseExceptionGroup as group:
        # A task stops the daemon by raising a PtmError (our own ledger is damaged, the
        # invitation names another log): the operator gets that one line, not a traceback.
        fatal = _first_ptm_error(group)
        if fatal is None:
            raise
        log.error("%s stopping: %s", role, fatal)
        raise fatal from None
    finally:
        with contextlib.suppress(OSError):
            (home / ADDR_FILE).unlink()
        mark_stopped(home)
    log.info("%s stopped cleanly", role)


def _first_ptm_error(group: BaseExceptionGroup[BaseException]) -> PtmError | None:
    for exc in group.exceptions:
        if isinstance(exc, PtmError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_ptm_error(exc)
            if found is not None:
                return found
    return None


async def _status_writer(
    home: Path, host: Any, me: str, status: Callable[[Any], dict[str, Any]], role: str
) -> None:
    path = home / STATUS_FILE
    failing: str | None = None  # the last failure reported, so a full disk logs once
    while True:
        try:
            data = status(host)
            data.update(
                role=role,
                address=me,
                pid=os.getpid(),
                updated=time.time(),
                connected=[str(p) for p in host.get_connected_peers()],
            )
            write_status(home, data)
            if failing is not None:
                log.info("%s is written again", path)
                failing = None
        except OSError as exc:  # a full or read-only disk: say so once, keep trying
            if failing != exc.strerror:
                failing = exc.strerror
                log.warning("could not write %s: %s; `ptm status` shows stale data", path, exc)
        except Exception:  # status is advisory; never let it take the daemon down
            if failing != "bug":
                failing = "bug"
                log.exception("could not write %s", path)
        await trio.sleep(1.0)
