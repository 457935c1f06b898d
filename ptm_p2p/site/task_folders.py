"""The site's in-memory task folders (``executor/workdir.py``): whose they are, and the sweep
that removes what runs of this site left there (decrypted inputs and outputs)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def task_folder_owner(key_hex: str) -> str:
    """Whose in-memory task folders (``executor/workdir.py``) are this site's."""
    return f"site-{key_hex[:16]}"


def sweep_task_folders(key_hex: str, stopping: bool = False) -> None:
    """Unmount and remove what runs of this site left in memory.

    Called by ``site/daemon.py`` before the daemon starts anything else (what a crash left):
    a folder that cannot be removed then stops the daemon (``ExecutorError``, naming it), as
    it may hold a decrypted input. Called again as the daemon stops (``stopping``): a run
    still going is abandoned with its thread, so its folder is removed here, not left to the
    next start.
    """
    from ptm_p2p.executor import workdir

    removed = workdir.sweep(task_folder_owner(key_hex), remove_root=stopping)
    if removed:
        log.warning(
            "removed %d task folder(s) %s in memory (decrypted inputs and outputs of "
            "interrupted tasks): %s",
            len(removed),
            "of runs cut short by this stop" if stopping else "an earlier run of this site left",
            ", ".join(removed),
        )
