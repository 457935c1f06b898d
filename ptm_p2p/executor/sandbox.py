"""Run one image in the locked-down container every task gets, and always clean up.

The container has: no network (``network_mode="none"``), a read-only root filesystem, all
capabilities dropped, ``no-new-privileges``, user 65534:65534, memory (= memory+swap), CPU
and pid limits, a small ``/tmp`` tmpfs, the site's data mounted read-only under
``/ptm/data/<label>``, the input as a read-only file ``/ptm/input`` and a size-capped output
folder ``/ptm/output``; nothing else (the algorithm contract is in docs/executor.md). Input
and output live in a task folder in memory (``workdir.py``), never on the host's disk.

Logs are read from an attach stream while the container runs (the log driver is ``none``,
so a log flood never reaches the host disk): the first ``log_bytes`` are kept, the rest is
counted and dropped. The container is killed at the wall-clock timeout and is removed in a
``finally`` on every path; every container carries the label ``ptm_p2p=1``.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount, Ulimit

from ptm_p2p.errors import ExecutorError
from ptm_p2p.executor.limits import Limits
from ptm_p2p.executor.outputdir import TASK_UID, OutputDir
from ptm_p2p.executor.policy import check_label
from ptm_p2p.executor.result import RunResult, Timings
from ptm_p2p.executor.workdir import make_task_folder, remove_task_folder

CONTAINER_LABEL = "ptm_p2p"
INPUT_PATH = "/ptm/input"
DATA_DIR = "/ptm/data"
OUTPUT_DIR = "/ptm/output"
KILL_GRACE_S = 10.0


@dataclass(frozen=True)
class SandboxRun:
    """Everything needed to run one image in the sandbox."""

    image: str  # an image id or local reference the engine already has
    input: bytes = b""
    data: Mapping[str, Path] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    task_id: str = ""
    min_group_size: int = 5
    time_resolution: float | None = None  # disclosure control's lattice; None: off
    labels: Mapping[str, str] = field(default_factory=dict)
    # Whose task folder (workdir.py): a site uses its key, so it sweeps only its own.
    owner: str = "local"


class _LogReader(threading.Thread):
    """Drains the attach stream: keeps the first ``cap`` bytes, counts everything."""

    def __init__(self, stream: Iterator[bytes], cap: int) -> None:
        super().__init__(daemon=True, name="ptm-task-logs")
        self.stream = stream
        self.cap = cap
        self.kept = bytearray()
        self.total = 0

    def run(self) -> None:
        try:
            for chunk in self.stream:
                self.total += len(chunk)
                room = self.cap - len(self.kept)
                if room > 0:
                    self.kept += chunk[:room]
        except (requests.exceptions.RequestException, OSError, docker.errors.DockerException):
            pass  # the stream ends when the container is killed or removed


def environment(run: SandboxRun) -> dict[str, str]:
    """The environment variables of the algorithm contract (docs/executor.md)."""
    threads = str(max(1, math.ceil(run.limits.cpus)))
    return {
        "PTM_INPUT": INPUT_PATH,
        "PTM_DATA_DIR": DATA_DIR,
        "PTM_DATA_LABELS": ",".join(sorted(run.data)),
        "PTM_OUTPUT": OUTPUT_DIR,
        "PTM_OUTPUT_FILE": f"{OUTPUT_DIR}/output.json",
        "PTM_TASK_ID": run.task_id,
        "PTM_MIN_GROUP_SIZE": str(run.min_group_size),
        "PTM_TIME_RESOLUTION": repr(run.time_resolution) if run.time_resolution else "0",
        "PTM_OUTPUT_MAX_BYTES": str(run.limits.output_bytes),
        "HOME": "/tmp",
        # numeric libraries start one thread per visible CPU; keep them within the CPU cap
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def container_options(run: SandboxRun, staging: Path, output: OutputDir) -> dict[str, Any]:
    """The keyword arguments for ``containers.create``: the whole sandbox in one place."""
    limits = run.limits
    mounts = [
        Mount(INPUT_PATH, str(staging / "input"), type="bind", read_only=True),
        Mount(OUTPUT_DIR, str(output.path), type="bind", read_only=False),
    ]
    for label, path in sorted(run.data.items()):
        check_label(label)
        mounts.append(Mount(f"{DATA_DIR}/{label}", str(path), type="bind", read_only=True))
    return {
        "user": f"{TASK_UID}:{TASK_UID}",
        "network_mode": "none",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,  # no swap beyond the memory limit
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.pids,
        "ulimits": [
            Ulimit(name="core", soft=0, hard=0),
            Ulimit(name="nofile", soft=1024, hard=1024),
        ],
        "tmpfs": {"/tmp": f"size={limits.tmp_bytes},mode=1777,nosuid,nodev,noexec"},
        "mounts": mounts,
        "environment": environment(run),
        # the generic label last: a caller's labels cannot hide a container from clean-up
        "labels": {**run.labels, CONTAINER_LABEL: "1"},
        "log_config": LogConfig(type="none"),
        "ipc_mode": "private",
        "hostname": "ptm-task",
        "detach": True,
    }


def run_in_sandbox(client: docker.DockerClient, run: SandboxRun) -> RunResult:
    """Run ``run.image`` to completion (or timeout) and return its result record.

    Engine failures (including a dockerd that stops answering) are ``ExecutorError``; the
    container, the output tmpfs and the staging folder are removed on every path.
    """
    for label in run.data:
        check_label(label)  # the mount target is built from it: no '/', no '..'
    try:
        return _run(client, run)
    except requests.exceptions.RequestException as exc:  # docker's APIError is one too
        raise ExecutorError(
            f"the Docker engine failed while running {run.image}: {exc}; check `ptm dev status`"
        ) from exc


def _run(client: docker.DockerClient, run: SandboxRun) -> RunResult:
    t0 = time.monotonic()
    container = None
    output: OutputDir | None = None
    # In memory (workdir.py): the decrypted input and the output never touch a disk, and
    # what a crash leaves behind is swept at the owner's next start.
    staging = make_task_folder(run.owner, run.task_id)
    try:
        input_file = staging / "input"
        input_file.write_bytes(run.input)
        input_file.chmod(0o644)  # readable by the task user; the folder stays 0700
        output = OutputDir.create(staging, run.limits.output_bytes)
        t_prepared = time.monotonic()
        try:
            container = client.containers.create(
                run.image, **container_options(run, staging, output)
            )
            # Attach before start, so not a byte of early output is missed.
            stream = container.attach(stdout=True, stderr=True, stream=True, logs=False)
        except docker.errors.ImageNotFound as exc:
            raise ExecutorError(
                f"image {run.image} is not in the engine; pull or build it first"
            ) from exc
        except docker.errors.APIError as exc:
            raise ExecutorError(
                f"the engine refused to create the task container for {run.image}: "
                f"{exc.explanation or exc}"
            ) from exc
        reader = _LogReader(stream, run.limits.log_bytes)
        reader.start()
        t_created = time.monotonic()
        exit_code, timed_out = _start_and_wait(container, run.limits.timeout_s)
        t_ran = time.monotonic()
        reader.join(timeout=KILL_GRACE_S)
        state = _state(container)
        files, out_total, out_problem = output.read()
        status, reason = _verdict(exit_code, timed_out, state, out_problem, run.limits)
        t_end = time.monotonic()
        return RunResult(
            status=status,
            reason=reason,
            image=run.image,
            exit_code=exit_code,
            files=files,
            output_bytes=out_total,
            logs=bytes(reader.kept),
            log_bytes=reader.total,
            logs_truncated=reader.total > len(reader.kept),
            limits=run.limits,
            timings=Timings(
                prepare_s=t_prepared - t0,
                create_s=t_created - t_prepared,
                run_s=t_ran - t_created,
                collect_s=t_end - t_ran,
                total_s=t_end - t0,
            ),
        )
    finally:
        # Nested, so that a container that cannot be removed still lets the output
        # tmpfs be unmounted (a leaked mount would outlive the process).
        try:
            if container is not None:
                _remove(container)
        finally:
            try:
                if output is not None:
                    output.remove()
            finally:
                # Never an OSError from clean-up: it must not hide a result or the error.
                remove_task_folder(staging)


def _start_and_wait(container: Any, timeout_s: float) -> tuple[int | None, bool]:
    """Start the container and wait for it; kill it at the timeout. (exit code, timed out)"""
    try:
        container.start()
    except docker.errors.APIError as exc:
        raise ExecutorError(
            f"the engine could not start the task container: {exc.explanation or exc}"
        ) from exc
    try:
        status = container.wait(timeout=timeout_s)
        return int(status.get("StatusCode", -1)), False
    except docker.errors.APIError as exc:  # an answer, not a timeout: it must not pass as one
        raise ExecutorError(
            f"the engine failed while waiting for task container {container.short_id}: "
            f"{exc.explanation or exc}"
        ) from exc
    except requests.exceptions.RequestException:
        pass  # the read timed out: the container is still running past its limit
    with contextlib.suppress(docker.errors.APIError):  # it may have exited meanwhile
        container.kill()
    try:
        status = container.wait(timeout=KILL_GRACE_S)
        return int(status.get("StatusCode", -1)), True
    except requests.exceptions.RequestException as exc:
        raise ExecutorError(
            f"task container {container.short_id} did not die after SIGKILL; check the engine"
        ) from exc


def _state(container: Any) -> dict[str, Any]:
    try:
        container.reload()
        return dict(container.attrs.get("State") or {})
    except docker.errors.APIError:
        return {}


def _verdict(
    exit_code: int | None,
    timed_out: bool,
    state: Mapping[str, Any],
    out_problem: str | None,
    limits: Limits,
) -> tuple[str, str]:
    """Status and reason, most telling cause first."""
    if timed_out:
        return "timeout", f"killed after the wall-clock limit of {limits.timeout_s:g} s"
    if state.get("OOMKilled"):
        return "failed", f"memory limit: killed at {limits.memory_bytes} bytes"
    if out_problem:
        return "failed", f"{out_problem}; the output was not kept"
    if exit_code == 3:
        # ptm_p2p.algorithm.EXIT_REFUSED: the algorithm declined to summarise this site's
        # data. Its reason (which may quote counts) stays in output.json, sealed to the
        # requester; this reason is public on the ledger, so it is a fixed text.
        return "refused", (
            "the algorithm refused to compute on this site's data (e.g. fewer patients or "
            "events than the site's minimum group size); its output says why"
        )
    if exit_code != 0:
        return "failed", f"the algorithm exited with code {exit_code}"
    return "ok", ""


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        raise ExecutorError(
            f"could not remove task container {container.short_id}: {exc}; remove it with "
            f"`docker rm -f {container.short_id}`"
        ) from exc
