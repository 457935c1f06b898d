"""Background processes started by the dev infrastructure, tracked by pid files.

Only processes whose pid we recorded are ever signalled, and only after checking that the
pid still belongs to the program we started (pids are reused).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def pid_alive(pid_path: Path, program: str) -> int | None:
    """The pid in ``pid_path`` if that process is alive and runs ``program``."""
    try:
        pid = int(pid_path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if program.encode() in cmdline else None


def stop_pidfile(pid_path: Path, program: str, wait_s: float = 20.0) -> bool:
    """SIGTERM the recorded process, wait for it, SIGKILL if it lingers."""
    pid = pid_alive(pid_path, program)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_path.unlink(missing_ok=True)
    return True
