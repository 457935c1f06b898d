"""Make sure a Docker engine answers, starting Debian's ``dockerd`` when none does.

Started here with ``--bridge=none --iptables=false``: task containers need no network, and
nothing on the test machines may send traffic to a private-range address (the default
bridge is 172.17.0.0/16). ``docker build`` still works that way. The daemon is started in
its own session so that it outlives the command (or pytest session) that started it; its
pid and log live in the state folder, and ``ptm dev down`` stops it by that pid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

import docker
import docker.errors

from ptm_p2p.dev.settings import DevSettings, run
from ptm_p2p.errors import ExecutorError

READY_TIMEOUT_S = 60.0


def engine_client(timeout: float = 120) -> docker.DockerClient | None:
    """A client for the running engine, or None when no engine answers."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except docker.errors.DockerException:
        return None


def ensure_engine(settings: DevSettings, log: Callable[[str], None] = print) -> docker.DockerClient:
    """Return a client for a working engine, installing and starting dockerd if needed."""
    client = engine_client()
    if client is not None:
        return client
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise ExecutorError(
                "no Docker engine answers and dockerd is not installed; install Docker "
                "(Debian: `apt-get install -y docker.io`) or start your engine"
            )
        log("installing docker.io with apt-get")
        run(
            ["apt-get", "install", "-y", "docker.io"],
            "installing docker.io",
            timeout=900,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if os.geteuid() != 0:
        raise ExecutorError("no Docker engine answers; start dockerd as root (ptm dev up as root)")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.state_dir / "dockerd.log"
    pid_path = settings.state_dir / "dockerd.pid"
    log(f"starting dockerd (log: {log_path})")
    with open(log_path, "ab") as out:
        subprocess.Popen(
            [
                dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                f"--pidfile={pid_path}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        client = engine_client()
        if client is not None:
            return client
        time.sleep(0.3)
    raise ExecutorError(
        f"dockerd did not become ready within {READY_TIMEOUT_S:.0f} s; see {log_path}"
    )


def stop_engine(settings: DevSettings) -> bool:
    """Stop the dockerd that ``ensure_engine`` started (by its pid file); False if none."""
    from ptm_p2p.dev.process import stop_pidfile

    return stop_pidfile(settings.state_dir / "dockerd.pid", "dockerd")
