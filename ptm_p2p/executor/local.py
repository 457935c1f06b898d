"""``ptm run-local``: run an algorithm image from the local engine in the site sandbox.

For algorithm authors: no policy and no registry (a tag or image id is fine), but exactly
the container a site would use, so an image that works here works at a site.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from ptm_p2p.errors import ExecutorError, PolicyError
from ptm_p2p.executor.imageref import ImageRef
from ptm_p2p.executor.limits import Limits
from ptm_p2p.executor.policy import DEFAULT_MIN_GROUP_SIZE, check_data_path, check_label
from ptm_p2p.executor.result import RunResult
from ptm_p2p.executor.sandbox import SandboxRun, run_in_sandbox


def run_local(
    client: docker.DockerClient,
    image: str,
    data: Mapping[str, Path],
    input_bytes: bytes = b"",
    limits: Limits | None = None,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    labels: Mapping[str, str] | None = None,
    time_resolution: float | None = None,
) -> RunResult:
    """Run a local image (tag or id) with the given data; ExecutorError if it is missing."""
    t0 = time.monotonic()
    if not image.strip():
        raise ExecutorError(
            "no image given: name a local image by tag (REPOSITORY:TAG) or id, "
            "e.g. 127.0.0.1:5000/ptm/summary:latest (`docker images` lists them)"
        )
    mounts = {
        check_label(label, "--data label"): check_data_path(Path(path), f"--data {label}")
        for label, path in data.items()
    }
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound as exc:
        raise ExecutorError(
            f"image {image!r} is not in the local engine; build it (`docker build`) or pull it"
        ) from exc
    except docker.errors.APIError as exc:  # e.g. "invalid reference format"
        raise ExecutorError(
            f"image {image!r} cannot be looked up: {exc.explanation or exc}; "
            "give a local tag (REPOSITORY:TAG) or an image id"
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise ExecutorError(f"the Docker engine did not answer ({exc}); run `ptm dev up`") from exc
    digests = list(found.attrs.get("RepoDigests") or [])
    # An image can be known under several repositories: report the one that was asked for.
    with contextlib.suppress(PolicyError):  # an image id is not a reference: keep the order
        asked = ImageRef.parse(image).repository
        digests.sort(key=lambda d: not d.startswith(asked + "@"))
    result = run_in_sandbox(
        client,
        SandboxRun(
            image=str(found.id),
            input=input_bytes,
            data=mounts,
            limits=limits or Limits(),
            task_id="local",
            min_group_size=min_group_size,
            time_resolution=time_resolution,
            labels={"ptm_p2p.task": "local", **(labels or {})},
        ),
    )
    t = result.timings
    return replace(
        result,
        image=image,
        digest=digests[0] if digests else None,
        image_id=str(found.id),
        timings=replace(t, total_s=time.monotonic() - t0),
    )
