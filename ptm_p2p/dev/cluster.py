"""A collaboration on one machine: real homes, a real hub and real site daemons on 127.0.0.1.

The one cluster harness: used by ``ptm demo``, the network and workflow tests and the
benchmarks. Every peer is its own OS process started through the ``ptm`` command
line (``ptm collab create``, ``ptm hub``, ``ptm node``, ``ptm collab admit``) with its own
home folder, exactly as operators would start them; the cluster waits on what they write
(``status.json``, the ledger) and always stops what it started, by pid, on exit.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ptm_p2p.errors import NetworkError
from ptm_p2p.home import Home
from ptm_p2p.home_files import STATUS_FILE
from ptm_p2p.network.home_status import collect
from ptm_p2p.network.host import free_port
from ptm_p2p.network.invitation import Invitation

PTM = [sys.executable, "-m", "ptm_p2p.cli"]
STOP_TIMEOUT = 15.0


def wait_for(
    what: str, predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something true; NetworkError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a status file may be half-written; retry
            last = exc
        time.sleep(interval)
    raise NetworkError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


class LocalCluster:
    """Homes under ``root``; processes started on demand and stopped on ``close``."""

    def __init__(self, root: Path) -> None:
        # Absolute: every peer runs with ROOT as its working directory.
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.homes: dict[str, Home] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.invitation_path = self.root / "invite.json"
        # One port for the hub's whole life: a restarted hub keeps the invitation valid.
        self.hub_port = free_port()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def path(self, name: str) -> Path:
        return self.root / name

    def home(self, name: str) -> Home:
        if name not in self.homes:
            path = self.root / name
            self.homes[name] = (
                Home.load(path) if (path / "identity.key").exists() else Home.init(path, name)
            )
        return self.homes[name]

    def _ptm(self, *args: str) -> str:
        proc = subprocess.run([*PTM, *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise NetworkError(f"`ptm {' '.join(args[:2])}` failed: {proc.stderr.strip()}")
        return proc.stdout

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` as peer ``name``, its output appended to ``ROOT/NAME.log``."""
        if name in self.procs and self.procs[name].poll() is None:
            raise NetworkError(f"{name} is already running (pid {self.procs[name].pid})")
        with open(self.root / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.root)
        self.procs[name] = proc
        return proc

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    # --- set-up -----------------------------------------------------------------------------

    def create(self, origin: str, admin_org: str) -> None:
        """``ptm collab create``: the admin's genesis entry, naming the hub."""
        self.home("admin")
        self.home("hub")
        self._ptm(
            "collab",
            "create",
            "--home",
            str(self.root / "admin"),
            "--hub-home",
            str(self.root / "hub"),
            "--origin",
            origin,
            "--org",
            admin_org,
        )

    def start_hub(self, timeout: float = 30.0, extra: Sequence[str] = ()) -> None:
        """``ptm hub`` (plus ``extra`` options); waits ``timeout`` seconds for its
        invitation, then as long to run."""
        self.invitation_path.unlink(missing_ok=True)
        hub = str(self.root / "hub")
        port = str(self.hub_port)
        self.spawn(
            "hub",
            [
                *PTM, "hub", "--home", hub, "--port", port,
                "--invitation", str(self.invitation_path), *extra,
            ],
        )  # fmt: skip
        wait_for("the hub's invitation file", self.invitation_path.exists, timeout)
        wait_for("the hub to run", lambda: self.status("hub")["running"], timeout)

    @property
    def invitation(self) -> Invitation:
        return Invitation.load(self.invitation_path)

    def start_site(self, name: str, peers: Sequence[str] = (), wait: bool = True) -> None:
        """``ptm node``; ``peers`` are other sites' addresses to sync from (``--peer``)."""
        self.home(name)
        argv = [
            *PTM,
            "node",
            "--home",
            str(self.root / name),
            "--invitation",
            str(self.invitation_path),
        ]
        for peer in peers:
            argv += ["--peer", peer]
        self.spawn(name, argv)
        if wait:
            wait_for(f"{name} to run", lambda: self.status(name)["running"])

    def configure_site(
        self,
        name: str,
        images: Sequence[str] = (),
        publishers: Sequence[str] = (),
        data: dict[str, Path] | None = None,
        extra: str = "",
        disclosure_control: bool = False,
        require_secure_aggregation: bool = False,
        policy: Mapping[str, Any] | None = None,
    ) -> None:
        """Append a ``[policy]`` to a site's config.toml (before ``start_site``).

        Data files are made readable by the task's unprivileged user, as an operator would.
        Disclosure control is written out explicitly and is *off* unless asked for: the
        tests, benchmarks and demo built on this cluster compare the federated answers with
        R and lifelines on the raw data (a real site's policy has it on by default).
        """
        lines = [
            "",
            "[policy]",
            f"images = {json.dumps(list(images))}",
            f"publishers = {json.dumps(list(publishers))}",
            f"disclosure_control = {'true' if disclosure_control else 'false'}",
        ]
        if require_secure_aggregation:
            lines.append("require_secure_aggregation = true")
        # more [policy] keys (e.g. max_beta_probes); JSON numbers and strings are TOML too
        lines += [f"{key} = {json.dumps(value)}" for key, value in (policy or {}).items()]
        if data:
            lines.append("[policy.data]")
            for label, path in data.items():
                lines.append(f"{label} = {json.dumps(str(path))}")
                path.chmod(0o644)
        with open(self.home(name).config_path, "a") as config:
            config.write("\n".join(lines) + "\n" + extra)

    def admit(
        self, name: str, role: str = "site", org: str | None = None, same_org: bool = False
    ) -> None:
        """``ptm collab admit``: the admin signs a membership entry; the hub sequences it.
        ``same_org``: a second key under an organisation name already admitted."""
        key = self.home(name).public_key.hex()
        self._ptm(
            "collab",
            "admit",
            "--home",
            str(self.root / "admin"),
            "--invitation",
            str(self.invitation_path),
            "--role",
            role,
            "--org",
            org or name,
            *(["--same-org"] if same_org else []),
            key,
        )

    # --- observation ------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        return collect(self.root / name)

    def wait_replicated(self, names: list[str], size: int, cosigners: int = 0) -> None:
        """Every named peer holds ``size`` entries under a checkpoint with enough cosigners."""

        def done(name: str) -> bool:
            status = self.status(name)
            checkpoint = status.get("checkpoint") or {}
            return (
                status["size"] >= size
                and checkpoint.get("size", 0) >= size
                and len(status.get("cosigners") or []) >= cosigners
            )

        for name in names:
            wait_for(f"{name} to hold {size} entries", functools.partial(done, name))

    def logs(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    # --- shutdown ---------------------------------------------------------------------------

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` (default SIGTERM) and wait; a daemon that stops cleanly exits 0.

        A peer that does not stop within STOP_TIMEOUT is killed and reported as -9.
        """
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
        finally:
            # A restarted daemon must not look "running" from its predecessor's status file.
            (self.root / name / STATUS_FILE).unlink(missing_ok=True)

    def close(self) -> None:
        """Stop every peer still running; never raises, so nothing is left behind."""
        for name in list(self.procs):
            LocalCluster.stop(self, name)
