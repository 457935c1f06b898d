"""Obtain an image by digest and prove that what the engine holds is what was signed.

The engine verifies content against the digest it pulls by; we check again afterwards that
the image's ``RepoDigests`` contain exactly ``repository@digest`` (defence in depth against
a confused engine, a local re-tag, or a reference rewritten on its way), and then run it by
its image id so that nothing can swap it between the check and the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import docker
import docker.errors
import requests.exceptions

from ptm_p2p.errors import ExecutorError, PolicyError
from ptm_p2p.executor.imageref import ImageRef


@dataclass
class Puller:
    """Pulls by digest; counts the pulls it actually sent to the registry."""

    client: docker.DockerClient
    pulls: int = 0

    def obtain(self, ref: ImageRef, may_pull: bool = True) -> str:
        """The local image id of ``ref`` (pulled if missing and ``may_pull``), verified
        against its digest; PolicyError if it is missing and may not be pulled."""
        wanted = ref.by_digest
        try:
            image = self.client.images.get(wanted)
        except docker.errors.ImageNotFound:
            if not may_pull:
                raise PolicyError(
                    f"image {wanted} is allowed by its digest only and is not in the engine; "
                    f"this site pulls only from the registries its policy names, not from "
                    f'{ref.registry}: pull it by hand or allow "{ref.repository}" in '
                    "[policy] images"
                ) from None
            image = self._pull(ref)
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise ExecutorError(f"the engine cannot look up {wanted}: {exc}") from exc
        verify_repo_digest(image, ref)
        return str(image.id)

    def _pull(self, ref: ImageRef) -> docker.models.images.Image:
        self.pulls += 1
        try:
            self.client.api.pull(ref.repository, tag=ref.digest)
            return self.client.images.get(ref.by_digest)
        except docker.errors.NotFound as exc:
            raise PolicyError(
                f"image {ref.by_digest} cannot be pulled: the registry does not hold this "
                "digest (the tag may have been moved to other content, or the image "
                f"deleted); nothing ran. Registry said: {exc.explanation or exc}"
            ) from exc
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if "manifest unknown" in text or "not found" in text.lower():
                raise PolicyError(
                    f"image {ref.by_digest} cannot be pulled: the registry does not hold this "
                    f"digest; nothing ran. Registry said: {text}"
                ) from exc
            raise ExecutorError(
                f"pulling {ref.by_digest} failed: {text}; check that the registry is up "
                "and reachable from the engine"
            ) from exc
        except requests.exceptions.RequestException as exc:
            # After APIError on purpose: docker's APIError is itself a RequestException.
            raise ExecutorError(
                f"pulling {ref.by_digest} failed: the engine did not answer "
                f"({exc}); check that dockerd is running"
            ) from exc


def verify_repo_digest(image: docker.models.images.Image, ref: ImageRef) -> None:
    """PolicyError unless ``image`` is known to the engine as ``ref.by_digest``."""
    repo_digests = list(image.attrs.get("RepoDigests") or [])
    if ref.by_digest not in repo_digests:
        held = ", ".join(repo_digests) or "no registry digest at all"
        raise PolicyError(
            f"image {image.short_id} is not {ref.by_digest}: the engine knows it as {held}; "
            "the signed digest and the content differ, so the task is refused"
        )
