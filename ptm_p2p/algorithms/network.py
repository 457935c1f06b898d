"""Federated rounds over the real network: one round = one signed task through the hub.

``NetworkRunner`` is the ``RoundRunner`` of a live collaboration. Each call publishes one
task (the algorithm's image pinned by digest, each site's JSON request sealed to that site)
with the researcher's ``Client``, waits until every target has answered, opens the sealed
results from the researcher's own verified copy of the log and returns the decoded outputs.
Keep one ``Client`` open for all rounds of a study: it holds the connection to the hub and
the verified copy, so a round costs no reconnect and no catch-up.

    from ptm_p2p.client import Client
    from ptm_p2p.algorithms import coxph, network

    images = network.images_from_registry()          # short name -> repo@sha256:…
    with Client("researcher/", "invite.json") as client:
        runner = network.NetworkRunner(client, images, "gbsg2")
        fit = coxph.fit(runner, ["hospital-a", "hospital-b"], "time", "cens",
                        ["age", "tsize"], data="gbsg2")
    runner.rounds                                     # RoundInfo per round: bytes, seconds

The requests and answers are exactly what local mode passes (``rounds.LocalRunner``): the
site containers run ``survival_site.compute`` on the same numbers, so a network fit equals
``fit_local`` on the same frames bit for bit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from ptm_p2p.algorithms.rounds import RoundInfo, check_outputs
from ptm_p2p.errors import StudyError

# The three survival algorithms, as ``ptm dev up`` pushes them (``<registry>/ptm/<name>``).
SURVIVAL_IMAGES = ("coxph-pooled", "coxph-stratified", "km")
DEFAULT_REGISTRY = "127.0.0.1:5000"
# A round's container work is well under a second; the default leaves room for a slow
# site pulling the image first. The task's own timeout (``timeout_s``) is the same.
DEFAULT_ROUND_TIMEOUT = 300.0


def _compact(value: Any) -> bytes:
    """JSON as the client seals it and the images write it: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def images_from_registry(
    registry: str = DEFAULT_REGISTRY,
    names: tuple[str, ...] = SURVIVAL_IMAGES,
    tag: str = "latest",
    prefix: str = "ptm",
) -> dict[str, str]:
    """Resolve ``<registry>/<prefix>/<name>:<tag>`` to ``repo@sha256:…`` for each name, now.

    A round publishes the digest, never the tag, so every round of one study runs the same
    image even if the tag moves meanwhile.
    """
    from ptm_p2p.client.images import resolve_image

    return {name: resolve_image(f"{registry}/{prefix}/{name}:{tag}") for name in names}


class NetworkRunner:
    """A ``RoundRunner`` over ``client.run_round``: one published task per round.

    ``images`` maps the algorithm's short name (``coxph-pooled``, …) to the reference to
    publish (``repo@sha256:…``; a tag is resolved at each publish, so prefer digests);
    ``data_label`` is the site data source every task reads. ``on_round(number, info)`` is
    called after each round (the CLI prints it); ``on_progress(view)`` sees each per-site
    progress view while a round waits. ``rounds`` keeps a ``RoundInfo`` per round: the JSON
    bytes sent to and received from each site, and the wall time from publish to the last
    opened result.
    """

    def __init__(
        self,
        client: Any,
        images: Mapping[str, str],
        data_label: str,
        on_round: Callable[[int, RoundInfo], None] | None = None,
        *,
        timeout: float = DEFAULT_ROUND_TIMEOUT,
        memory_mb: int = 512,
        on_progress: Callable[[Any], None] | None = None,
    ) -> None:
        self.client = client
        self.images = dict(images)
        self.data_label = data_label
        self.on_round = on_round
        self.on_progress = on_progress
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.rounds: list[RoundInfo] = []

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rounds)

    def __call__(
        self, image: str, requests: Mapping[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        if image not in self.images:
            raise StudyError(
                f"no image for {image!r} (have: {', '.join(sorted(self.images)) or 'none'}); "
                "run `ptm dev up` or pass its repo@sha256:… reference"
            )
        if not requests:
            raise StudyError(f"{image}: a round needs at least one site")
        sent = {site: len(_compact(request)) for site, request in requests.items()}
        number = len(self.rounds) + 1
        started = time.perf_counter()
        try:
            outputs = self.client.run_round(
                self.images[image],
                dict(requests),
                data=[self.data_label],
                timeout=self.timeout,
                algorithm=image,
                on_progress=self.on_progress,
                memory_mb=self.memory_mb,
            )
        except StudyError as exc:
            raise StudyError(f"{image}, round {number}: {exc}", exc.sites) from exc
        seconds = time.perf_counter() - started
        checked = check_outputs(image, outputs)
        step = next(iter(requests.values())).get("step")
        info = RoundInfo(
            f"{image} {step}" if isinstance(step, str) else image,
            seconds,
            sent,
            {site: len(_compact(output)) for site, output in checked.items()},
        )
        self.rounds.append(info)
        if self.on_round is not None:
            self.on_round(number, info)
        return checked


def describe_round(number: int, info: RoundInfo) -> str:
    """One progress line for a finished round (what ``ptm study`` prints on stderr)."""
    sent = sum(info.request_bytes.values())
    received = sum(info.answer_bytes.values())
    largest = max(info.answer_bytes.values(), default=0)
    return (
        f"round {number} ({info.label}): {len(info.answer_bytes)} site(s) answered in "
        f"{info.seconds:.2f} s; sent {_kb(sent)}, received {_kb(received)} "
        f"(largest answer {_kb(largest)})"
    )


def _kb(n: int) -> str:
    return f"{n} B" if n < 1000 else f"{n / 1000:.1f} kB"
