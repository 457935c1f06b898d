"""Run task images safely in a real Docker engine, pinned by digest, under a site policy.

Public API::

    policy = SitePolicy.from_config(home.config)       # the [policy] table, deny by default
    executor = Executor(docker.from_env(), policy)
    result = executor.run(ContainerTask(image="127.0.0.1:5000/ptm/summary@sha256:…",
                               input=b'{"data": "registry"}', data=["registry"],
                               publisher_key=key_hex, task_id=task_hex))
    result.status, result.reason, result.output, result.logs_digest

``run_local`` is the same sandbox without policy or registry (``ptm run-local``). The
sandbox and the algorithm contract are described in docs/executor.md.
"""

from ptm_p2p.executor.imageref import ImageRef
from ptm_p2p.executor.limits import Limits, parse_size
from ptm_p2p.executor.local import run_local
from ptm_p2p.executor.policy import SitePolicy
from ptm_p2p.executor.result import OUTPUT_FILE, RunResult, Timings
from ptm_p2p.executor.sandbox import CONTAINER_LABEL, SandboxRun, run_in_sandbox
from ptm_p2p.executor.task import ContainerTask, Executor

__all__ = [
    "CONTAINER_LABEL",
    "OUTPUT_FILE",
    "Executor",
    "ImageRef",
    "Limits",
    "RunResult",
    "SandboxRun",
    "SitePolicy",
    "ContainerTask",
    "Timings",
    "parse_size",
    "run_in_sandbox",
    "run_local",
]
