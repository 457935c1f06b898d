"""The seam between the coordinators and the network: one round = one request per site.

A ``RoundRunner`` takes an algorithm's short name (``"coxph-pooled"``,
``"coxph-stratified"``, ``"km"``) and a JSON-able request per site, and returns each site's
decoded JSON output. Over the network that is one task per round (published to the named
sites, their sealed results opened); ``LocalRunner`` does it in process by calling the very
function the images run (``survival_site.compute``, wrapped like the image's ``main``), with
every request and answer passed through ``json.dumps``/``json.loads`` so local mode sees
exactly the bytes the network path would. ``SandboxRunner`` runs the real images in the
site sandbox on local files (no ledger, no network).

Every runner reports a site that refused or failed the same way: ``check_outputs`` raises
one ``StudyError`` naming each such site and its reason.

Secure aggregation (``ledger/secagg.py``): a runner with a ``secure_sum(image, requests)``
method runs a round whose answers only open summed (``SecureSum``). ``LocalRunner`` does
what the site daemons do, in process: each site's answer is masked with the site's own key
(a fresh one per runner) and the pairwise masks of a fresh task hash, then summed by the
researcher's code; a site that refuses is dropped and the round runs again without it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ptm_p2p import algorithm
from ptm_p2p.algorithms import survival_site
from ptm_p2p.errors import StudyError
from ptm_p2p.ledger.secagg import SecureSum


@dataclass(frozen=True)
class RoundInfo:
    """One round: what was asked, how long it took, JSON bytes per site each way."""

    label: str
    seconds: float
    request_bytes: dict[str, int]
    answer_bytes: dict[str, int]
    # Read back from the log by a resumed study (its task was published by an earlier run).
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "seconds": self.seconds,
            "request_bytes": self.request_bytes,
            "answer_bytes": self.answer_bytes,
        }


class RoundRunner(Protocol):
    """Run one round of ``image`` at the sites named in ``requests``."""

    def __call__(
        self, image: str, requests: Mapping[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]: ...


def check_outputs(image: str, outputs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The outputs, if every site computed; else a ``StudyError`` naming each site and why."""
    problems: dict[str, str] = {}
    for site, output in outputs.items():
        if not isinstance(output, dict):
            problems[site] = "failed: its output is not a JSON object"
        elif "refused" in output:
            problems[site] = f"refused: {output['refused']}"
        elif "error" in output:
            problems[site] = f"failed: {output['error']}"
    if problems:
        lines = "\n".join(f"  {site}: {why}" for site, why in sorted(problems.items()))
        raise StudyError(
            f"{image}: {len(problems)} of {len(outputs)} site(s) did not compute:\n{lines}",
            problems,
        )
    return dict(outputs)


class LocalRunner:
    """In-process sites: ``site_tables`` maps a site name to its data (``Table``: column
    name → array, as ``survival_site.column`` makes them)."""

    def __init__(
        self,
        site_tables: Mapping[str, Mapping[str, np.ndarray]],
        min_group_size: int | Mapping[str, int] = algorithm.DEFAULT_MIN_GROUP_SIZE,
        time_resolution: float | Mapping[str, float | None] | None = None,
    ) -> None:
        self.site_tables = dict(site_tables)
        self.min_group_size = min_group_size
        # disclosure control as a site's policy sets it (docs/privacy.md): None = off
        self.time_resolution = time_resolution
        self.calls: list[tuple[str, dict[str, int]]] = []  # (image, site -> answer bytes)
        self._keys: dict[str, Any] = {}  # site -> its Signer, for secure aggregation

    def _k(self, site: str) -> int:
        if isinstance(self.min_group_size, int):
            return max(1, self.min_group_size)
        return max(1, int(self.min_group_size.get(site, algorithm.DEFAULT_MIN_GROUP_SIZE)))

    def resolution(self, site: str) -> float | None:
        if isinstance(self.time_resolution, Mapping):
            return self.time_resolution.get(site)
        return self.time_resolution

    def __call__(
        self, image: str, requests: Mapping[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        outputs, sizes = self._answers(image, requests)
        self.calls.append((image, sizes))
        return check_outputs(image, outputs)

    def secure_sum(self, image: str, requests: Mapping[str, dict[str, Any]]) -> SecureSum:
        """A secure-sum round in process: mask as a site daemon does, sum as the client."""
        import secrets

        from ptm_p2p.ledger import secagg
        from ptm_p2p.ledger.crypto import Signer

        remaining = dict(requests)
        dropped: dict[str, str] = {}
        tasks: list[str] = []
        while True:
            if len(remaining) < 2:
                raise StudyError(
                    f"{image}: secure aggregation needs at least two sites; dropped: {dropped}",
                    dropped,
                )
            task_hash = secrets.token_bytes(32)  # a new task: fresh masks
            tasks.append(task_hash.hex())
            keys = {site: self._keys.setdefault(site, Signer.generate()) for site in remaining}
            targets = [keys[site].public_key for site in remaining]
            outputs, _ = self._answers(image, remaining)
            failed = {
                site: str(o.get("refused") or o.get("error"))
                for site, o in outputs.items()
                if "refused" in o or "error" in o
            }
            if failed:
                dropped.update(failed)
                for site in failed:
                    remaining.pop(site)
                continue
            masked = {}
            for site, output in outputs.items():
                raw = json.dumps(output, sort_keys=True, separators=(",", ":")).encode()
                try:
                    masked[site] = secagg.mask_output(keys[site], targets, task_hash, raw)
                except secagg.SecAggError as exc:
                    raise StudyError(f"{image}: {site}: secure aggregation: {exc}") from exc
            self.calls.append((image, {site: len(m) for site, m in masked.items()}))
            total, public = secagg.unmask_by_sum({s: json.loads(m) for s, m in masked.items()})
            return SecureSum(
                total,
                public,
                tuple(remaining),
                dropped,
                tuple(tasks),
                {site: len(m) for site, m in masked.items()},
            )

    def _answers(
        self, image: str, requests: Mapping[str, dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, int]]:
        unknown = sorted(set(requests) - set(self.site_tables))
        if unknown:
            raise StudyError(f"{image}: no such site(s) in local mode: {', '.join(unknown)}")
        outputs: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        for site, request in requests.items():
            params = json.loads(json.dumps(request))
            table = self.site_tables[site]
            k, res = self._k(site), self.resolution(site)
            output, _ = algorithm.evaluate(
                lambda p, t=table, k=k, r=res: survival_site.compute(image, t, p, k, r), params
            )
            # the image writes sorted, compact JSON (algorithm.write_output): the same here
            text = json.dumps(output, sort_keys=True, separators=(",", ":"))
            sizes[site] = len(text)
            outputs[site] = json.loads(text)
        return outputs, sizes


def tables_from_frames(frames: Any) -> dict[str, dict[str, np.ndarray]]:
    """Site tables from pandas DataFrames: a list (sites named ``site-1``, ``site-2``, …) or
    a mapping site name → DataFrame. Columns are converted exactly as the CSV loader would."""
    named = (
        dict(frames.items())
        if isinstance(frames, Mapping)
        else {f"site-{i}": frame for i, frame in enumerate(frames, start=1)}
    )
    if not named:
        raise StudyError("no sites: give at least one DataFrame")
    return {
        site: {str(name): survival_site.column(frame[name].tolist()) for name in frame.columns}
        for site, frame in named.items()
    }


class SandboxRunner:
    """Sites as local sandbox runs of the real images: each request runs the algorithm's
    image (``images[name]``: a tag, id or digest reference the engine has) in exactly the
    container a site uses (``ptm run-local``), on that site's data files, in parallel.

    No ledger and no network: for algorithm authors checking an image end to end, and for
    measuring the container floor under a study's rounds (``bench/``).
    """

    def __init__(
        self,
        client: Any,
        images: Mapping[str, str],
        site_data: Mapping[str, Mapping[str, Any]],
        min_group_size: int = algorithm.DEFAULT_MIN_GROUP_SIZE,
        labels: Mapping[str, str] | None = None,
        time_resolution: float | None = None,
    ) -> None:
        self.client = client
        self.time_resolution = time_resolution
        self.images = dict(images)
        self.site_data = {site: dict(data) for site, data in site_data.items()}
        self.min_group_size = min_group_size
        self.labels = dict(labels or {})

    def _run_one(self, image: str, site: str, request: dict[str, Any]) -> Any:
        from pathlib import Path

        from ptm_p2p.executor import Limits, run_local

        result = run_local(
            self.client,
            self.images[image],
            {label: Path(path) for label, path in self.site_data[site].items()},
            json.dumps(request).encode(),
            Limits(timeout_s=300),
            min_group_size=self.min_group_size,
            labels=self.labels,
            time_resolution=self.time_resolution,
        )
        if result.status in ("ok", "refused") or result.exit_code == algorithm.EXIT_ERROR:
            try:
                return json.loads(result.output)
            except ValueError:
                pass
        return {"error": f"{result.status}: {result.reason}"}

    def __call__(
        self, image: str, requests: Mapping[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        from concurrent.futures import ThreadPoolExecutor

        if image not in self.images:
            raise StudyError(f"no image for {image!r} (have: {', '.join(sorted(self.images))})")
        unknown = sorted(set(requests) - set(self.site_data))
        if unknown:
            raise StudyError(f"{image}: no data for site(s) {', '.join(unknown)}")
        with ThreadPoolExecutor(max_workers=max(1, len(requests))) as pool:
            futures = {s: pool.submit(self._run_one, image, s, r) for s, r in requests.items()}
            outputs = {s: f.result() for s, f in futures.items()}
        return check_outputs(image, outputs)
