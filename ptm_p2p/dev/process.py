"""Background processes started by the dev infrastructure, tracked by pid files.

Only processes whose pid we recorded are ever signalled, and only after checking that the
pid still belongs to the program we started (pids are reused). psutil reads the process
table portably and checks, before each signal, that the pid still names the same process.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil


def _process(pid_path: Path, program: str) -> psutil.Process | None:
    """The live process recorded in ``pid_path`` if its command line names ``program``."""
    try:
        process = psutil.Process(int(pid_path.read_text().strip()))
        cmdline = " ".join(process.cmdline())
    except (OSError, ValueError, psutil.Error):
        return None
    return process if program in cmdline else None


def pid_alive(pid_path: Path, program: str) -> int | None:
    """The pid in ``pid_path`` if that process is alive and runs ``program``."""
    process = _process(pid_path, program)
    return None if process is None else process.pid


def stop_pidfile(pid_path: Path, program: str, wait_s: float = 20.0) -> bool:
    """SIGTERM the recorded process, wait for it, SIGKILL if it lingers."""
    process = _process(pid_path, program)
    if process is None:
        return False
    try:
        process.terminate()
        process.wait(timeout=wait_s)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):  # it may end just now
            process.kill()
    except psutil.NoSuchProcess:
        pass  # it ended on its own meanwhile
    pid_path.unlink(missing_ok=True)
    return True
