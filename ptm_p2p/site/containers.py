"""The site's Docker side: run one task's container in the sandbox, and kill or remove the
containers this site started for a task.

Docker is imported only here and only when a task runs, so deciding (``decide.py``) and the
worker's tests need no engine. Containers carry two labels, the site's key and the task's
hash, so a site sharing an engine with others stops only its own.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    from ptm_p2p.executor.policy import SitePolicy
    from ptm_p2p.executor.result import RunResult

log = logging.getLogger(__name__)

SITE_LABEL = "ptm_p2p.site"  # container label: which site started it (engines may be shared)
TASK_LABEL = "ptm_p2p.task"


class ContainerRunner(Protocol):
    """What the worker needs of containers (``Containers``; a fake in tests)."""

    def run(self, run_task: Any) -> RunResult:
        """Run an ``executor.task.ContainerTask`` to its end (blocking: called in a thread)."""
        ...

    async def kill(self, task_hash: bytes) -> None:
        """Kill this site's running containers of a task."""
        ...

    async def remove(self, task_hash: bytes) -> int:
        """Remove this site's containers of a task, running or not; how many there were."""
        ...


class Containers:
    """This site's containers on the local Docker engine, reached lazily."""

    def __init__(self, policy: SitePolicy, me_hex: str) -> None:
        self.policy = policy
        self.me_hex = me_hex
        self._docker: Any = None
        self._executor: Any = None

    def run(self, run_task: Any) -> RunResult:
        from ptm_p2p.errors import ExecutorError
        from ptm_p2p.executor.task import Executor

        if self._executor is None:
            import docker

            try:
                self._docker = docker.from_env(timeout=120)
                self._docker.ping()
            except docker.errors.DockerException as exc:
                self._docker = None
                raise ExecutorError(
                    f"the site's Docker engine is not reachable ({exc}); start it "
                    "(`ptm dev up` on a test machine) and publish the task again"
                ) from exc
            self._executor = Executor(self._docker, self.policy)
        result: RunResult = self._executor.run(run_task)
        return result

    async def kill(self, task_hash: bytes) -> None:
        await trio.to_thread.run_sync(self._stop, task_hash.hex(), False)

    async def remove(self, task_hash: bytes) -> int:
        return await trio.to_thread.run_sync(self._stop, task_hash.hex(), True)

    def _stop(self, task_id: str, remove: bool) -> int:
        """Kill (and optionally remove) this site's containers for a task; how many."""
        import docker

        try:
            client = self._docker or docker.from_env(timeout=60)
            found = client.containers.list(
                all=True,
                filters={"label": [f"{TASK_LABEL}={task_id}", f"{SITE_LABEL}={self.me_hex}"]},
            )
            for container in found:
                with contextlib.suppress(docker.errors.APIError):
                    if remove:
                        container.remove(force=True)
                    else:
                        container.kill()
            return len(found)
        except docker.errors.DockerException as exc:
            log.warning("could not reach the Docker engine to stop task %s…: %s", task_id[:16], exc)
            return 0
