"""A ``ptm study`` command run as a process, with something done to the world mid-study.

The resume tests kill a process at a known point of a study: the researcher's own (the
study resumes with ``--resume``) or the hub (the client reconnects). Both wait for the
study's progress line for round 2 on stderr, act once, and let the command run to its end.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path


def run_acting_at_round_2(
    argv: Sequence[str],
    act: Callable[[subprocess.Popen[str]], None],
    then: Callable[[], None] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
) -> tuple[int, str, str]:
    """Run ``argv``; when its stderr reports round 2, call ``act(process)`` once (from the
    thread reading stderr); ``then``, if given, runs here once ``act`` has. Returns the exit code,
    stdout and stderr; fails the test if round 2 never came."""
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    lines: list[str] = []
    acted = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("round 2 (") and not acted.is_set():
                act(proc)
                acted.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    if then is not None:
        assert acted.wait(180), "".join(lines)[-3000:]
        then()
    assert proc.stdout is not None
    out = proc.stdout.read()
    code = proc.wait(timeout=timeout)
    reader.join(10)
    assert acted.is_set(), "".join(lines)[-3000:]
    return code, out, "".join(lines)
