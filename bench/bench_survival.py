"""Benchmark the federated Cox fit through the real network against bare ``docker run``.

A live collaboration on this machine (hub and site daemons as separate processes, the real
Docker engine and registry), GBSG2 split unevenly over the sites, and the pooled Cox model
(Efron ties, the nine GBSG2 covariates) fitted through ``NetworkRunner``: every round is a
signed task the site daemons find in their verified replicas and run in the sandbox.
Reported per site count (3 and 10 by default):

* rounds, the JSON bytes sent to and received from each site per round, and the wall time
  of the whole fit (goal at 3 sites: <= 6 rounds and < 10 s);
* the same fit's wall time ÷ (rounds × one bare ``docker run --rm`` of the same image with a
  real evaluate request, measured in the same run), and ÷ (rounds × that many bare runs
  started at once, the container floor of a round on this machine);
* Kaplan–Meier with secure aggregation on ÷ off in the same run (``km.fit(secure=True)`` on
  a 30-day grid against the plain round with ``time_unit = 30``, alternating): rounds, wall
  time ratio (goal ≤ 1.2) and the extra bytes each site sends per round;
* the site-stratified and the pooled Cox fit (Efron) with secure aggregation on ÷ off in
  the same run (``coxph.fit(stratify_sites=…, secure=True)``, alternating; the pooled one on
  a grid of every day): rounds, wall time ratio and the bytes each site sends per round;
* where a round's time goes, from the verified log (entry timestamps and the timings each
  site signs): publish (sign + hub's durable ack), task → site starts its container
  (replication, checkpoint, cosign, scan), the container (prepare, run), and the last
  result signed → the researcher holds every result (hub sequencing, checkpoint, the
  client's wait, opening).

Usage::

    python bench/bench_survival.py [--sizes 3,10] [--reps 3] [--bare-reps 5] [--covariates 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from baseline import bare_docker_runs  # noqa: E402  (one module for every baseline)

from ptm_p2p.algorithms import coxph, datasets, km
from ptm_p2p.algorithms.runner import SURVIVAL_IMAGES, NetworkRunner
from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import ensure_stack
from ptm_p2p.ledger.entry import Entry

LABEL = "gbsg2"
PUBLISHER_ORG = "bench"
IMAGE = coxph.POOLED


class Recorder:
    """A ``RoundRunner`` around ``NetworkRunner`` that keeps each round's requests and its
    wall-clock start and end (for the profile against the log's timestamps)."""

    def __init__(self, runner: NetworkRunner) -> None:
        self.runner = runner
        runner.on_progress = self._progress
        self.requests: list[dict[str, dict[str, Any]]] = []
        self.spans: list[tuple[float, float]] = []
        self.all_seen: list[float] = []  # when the client's wait first saw every answer
        self._seen: float | None = None

    def _progress(self, view: Any) -> None:
        if view.done and self._seen is None:
            self._seen = time.time()

    def __call__(
        self, image: str, requests: Mapping[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        started, self._seen = time.time(), None
        try:
            return self.runner(image, requests)
        finally:
            ended = time.time()
            self.requests.append(dict(requests))
            self.spans.append((started, ended))
            self.all_seen.append(self._seen or ended)


def bare_runs(image: str, input_file: Path, data_file: Path, count: int) -> float:
    """Seconds until ``count`` bare ``docker run --rm`` of ``image``, started at once, end."""
    volumes = [f"{input_file}:/ptm/input:ro", f"{data_file}:/ptm/data/{LABEL}:ro"]
    return bare_docker_runs(image, volumes, count, env=[f"PTM_DATA_LABELS={LABEL}"])


def shares(n_sites: int) -> list[Any]:
    gbsg2 = datasets.load_gbsg2()
    sizes = datasets.SIZES if n_sites == 3 else datasets.uneven_sizes(n_sites, len(gbsg2))
    return datasets.split(gbsg2, sizes)


def profile(client: Client, recorder: Recorder, first_round: int) -> list[dict[str, float]]:
    """Per round of the last fit: where the time went, from the verified log (seconds)."""
    tasks = client.tasks(mine=True)
    spans = recorder.spans[first_round:]
    seen = recorder.all_seen[first_round:]
    rows = []
    for task, (start, end), all_seen in zip(tasks[-len(spans) :], spans, seen, strict=True):
        store = client.follower.store
        (task_raw,) = store.raw_range(task.index, task.index + 1)
        published = Entry.from_bytes(task_raw).timestamp_ms / 1000
        site_start, container, run, signed = [], [], [], []
        for answer in client.results(task.id).values():
            (raw,) = store.raw_range(answer.index, answer.index + 1)
            result_at = Entry.from_bytes(raw).timestamp_ms / 1000
            total = answer.timings.get("total_ms", 0) / 1000
            site_start.append(result_at - total - published)
            container.append(total)
            run.append(answer.timings.get("run_ms", 0) / 1000)
            signed.append(result_at)
        rows.append(
            {
                "publish": published - start,
                "to_site_start": statistics.median(site_start),
                "to_site_start_max": max(site_start),
                "container": statistics.median(container),
                "container_max": max(container),
                "run": statistics.median(run),
                "return": end - max(signed),
                "to_wait_done": all_seen - max(signed),
                "open": end - all_seen,
                "round": end - start,
            }
        )
    return rows


def bench_size(
    stack: Any, root: Path, n_sites: int, covariates: list[str], reps: int, bare_reps: int
) -> None:
    images = {name: stack.images[name] for name in SURVIVAL_IMAGES}
    frames = shares(n_sites)
    sites = [f"site-{i:02d}" for i in range(n_sites)]
    with LocalCluster(root / f"cluster-{n_sites}") as cluster:
        cluster.create(f"ptm.example/bench-survival-{n_sites}", "consortium")
        cluster.start_hub()
        for site, frame in zip(sites, frames, strict=True):
            cluster.home(site)
            path = cluster.path(site) / "gbsg2.csv"
            frame.to_csv(path, index=False)
            cluster.configure_site(
                site,
                images=[images[name].split("@", 1)[0] for name in (IMAGE, "km", coxph.STRATIFIED)],
                publishers=[PUBLISHER_ORG],
                data={LABEL: path},
            )
            cluster.start_site(site)
        for site in sites:
            cluster.admit(site, "site")
        cluster.admit("researcher", "researcher", org=PUBLISHER_ORG)
        print(
            f"cluster: hub + {n_sites} site daemons on 127.0.0.1, GBSG2 split "
            f"{'/'.join(str(len(f)) for f in frames)}; image {images[IMAGE]}"
        )

        with Client(cluster.root / "researcher", cluster.invitation_path) as client:
            client.sync()
            recorder = Recorder(NetworkRunner(client, images, LABEL, timeout=300))

            def fit() -> tuple[coxph.CoxResult, float]:
                started = time.perf_counter()
                result = coxph.fit(
                    recorder, sites, "time", "cens", covariates, ties="efron", data=LABEL
                )
                return result, time.perf_counter() - started

            fit()  # warm-up: every site has run the image once, page cache warm
            walls, first_round = [], 0
            result = None
            for _ in range(reps):
                first_round = len(recorder.spans)
                result, wall = fit()
                walls.append(wall)
            assert result is not None
            rounds = profile(client, recorder, first_round)
            secure_line = bench_secure_km(client, images, sites, reps)
            secure_cox_line = bench_secure_cox(client, images, sites, covariates, reps)
            secure_pooled_line = bench_secure_cox(
                client, images, sites, covariates, reps, stratified=False
            )

        # the baseline, same run, same image, a real evaluate request of the largest site
        request = recorder.requests[-1][sites[0]]
        work = root / f"bare-{n_sites}"
        work.mkdir()
        input_file = work / "input.json"
        input_file.write_text(json.dumps(request, sort_keys=True, separators=(",", ":")))
        data_file = cluster.path(sites[0]) / "gbsg2.csv"
        input_file.chmod(0o644)
        bare_runs(images[IMAGE], input_file, data_file, 1)  # warm-up
        one = statistics.median(
            bare_runs(images[IMAGE], input_file, data_file, 1) for _ in range(bare_reps)
        )
        together = statistics.median(
            bare_runs(images[IMAGE], input_file, data_file, n_sites) for _ in range(bare_reps)
        )

    wall = statistics.median(walls)
    n = result.rounds
    print(
        f"fit {n_sites:>2} sites: pooled Efron, {len(covariates)} covariates, {result.n} "
        f"patients, {result.n_events} events: {n} rounds ({result.iterations} Newton "
        f"iterations), wall {wall:.2f} s (median of {reps}; min {min(walls):.2f} s, "
        f"max {max(walls):.2f} s; goal <= 6 rounds, < 10 s at 3 sites)"
    )
    for number, info in enumerate(result.round_log, start=1):
        sent = sorted(info.request_bytes.values())
        got = sorted(info.answer_bytes.values())
        print(
            f"  round {number} ({info.label}): per site sent {_kb(sent[-1])}, received "
            f"{_kb(got[0])}–{_kb(got[-1])}; {info.seconds:.2f} s"
        )
    print(
        f"  bare docker run --rm of {IMAGE} (evaluate input): one {one:.3f} s, "
        f"{n_sites} at once {together:.3f} s (median of {bare_reps})"
    )
    print(
        f"ratio {n_sites:>2} sites: wall ÷ (rounds × one bare docker run) = {wall:.2f} ÷ "
        f"({n} × {one:.3f}) = {wall / (n * one):.2f}x; ÷ (rounds × {n_sites} bare runs at once) "
        f"= {wall / (n * together):.2f}x"
    )
    print(secure_line)
    print(secure_cox_line)
    print(secure_pooled_line)
    keys = (
        "publish",
        "to_site_start",
        "container",
        "run",
        "return",
        "to_wait_done",
        "open",
        "round",
    )
    med = {k: statistics.median(r[k] for r in rounds) for k in keys}
    print(
        f"profile {n_sites:>2} sites, median per round of the last fit: publish "
        f"{med['publish'] * 1000:.0f} ms; task → site starts its container "
        f"{med['to_site_start'] * 1000:.0f} ms (slowest site: "
        f"{statistics.median(r['to_site_start_max'] for r in rounds) * 1000:.0f} ms); "
        f"container {med['container'] * 1000:.0f} ms (of which running "
        f"{med['run'] * 1000:.0f} ms; slowest site "
        f"{statistics.median(r['container_max'] for r in rounds) * 1000:.0f} ms); last "
        f"result signed → researcher holds all {med['return'] * 1000:.0f} ms (until its wait "
        f"sees every answer {med['to_wait_done'] * 1000:.0f} ms, then opening and decoding "
        f"{med['open'] * 1000:.0f} ms); round "
        f"{med['round'] * 1000:.0f} ms"
    )


@dataclass
class OnOff:
    """A fit with secure aggregation off and on, alternating (the first pair warms both up):
    each side's wall times and answer sizes per site per round, its rounds, and every pair
    of results (the warm-up's too)."""

    timings: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})
    sizes: dict[bool, list[int]] = field(default_factory=lambda: {False: [], True: []})
    rounds: dict[bool, int] = field(default_factory=dict)
    pairs: list[dict[bool, Any]] = field(default_factory=list)

    def line(self, reps: int, goal: str = "") -> str:
        """Rounds, wall time on ÷ off (median of ``reps``) and the bytes per site per round."""
        off, on = statistics.median(self.timings[False]), statistics.median(self.timings[True])
        size_on, size_off = statistics.mean(self.sizes[True]), statistics.mean(self.sizes[False])
        return (
            f"rounds {self.rounds[True]} on, {self.rounds[False]} off; wall {on:.2f} s on ÷ "
            f"{off:.2f} s off = {on / off:.2f}x (median of {reps}{goal}); per site per round "
            f"{_kb(round(size_on))} on vs {_kb(round(size_off))} off "
            f"(+{_kb(round(size_on - size_off))})"
        )


def on_and_off(
    client: Client,
    images: dict[str, str],
    reps: int,
    fit: Callable[[NetworkRunner, bool], Any],
    every_round: bool,
) -> OnOff:
    """Run ``fit(runner, secure)`` off and on, ``reps`` measured times after a warm-up pair;
    the answer sizes of every round (``every_round``) or of the last one."""
    measured = OnOff()
    for rep in range(reps + 1):  # the first pair warms both up
        results = {}
        for on in (False, True):
            runner = NetworkRunner(client, images, LABEL, timeout=300)
            started = time.perf_counter()
            results[on] = fit(runner, on)
            if rep:
                measured.timings[on].append(time.perf_counter() - started)
                answered = runner.rounds if every_round else runner.rounds[-1:]
                measured.sizes[on] = [b for r in answered for b in r.answer_bytes.values()]
                measured.rounds[on] = results[on].rounds
        measured.pairs.append(results)
    return measured


def bench_secure_km(client: Client, images: dict[str, str], sites: list[str], reps: int) -> str:
    """KM through the daemons with secure aggregation on and off, alternating: one line."""
    grid = [float(t) for t in np.arange(30, 3000 + 30, 30)]

    def fit(runner: NetworkRunner, on: bool) -> Any:
        if on:
            return km.fit(runner, sites, "time", "cens", data=LABEL, secure=True, grid=grid)
        return km.fit(runner, sites, "time", "cens", data=LABEL, time_unit=30.0)

    measured = on_and_off(client, images, reps, fit, every_round=False)
    return (
        f"secure aggregation {len(sites):>2} sites, Kaplan–Meier (100-point grid): "
        + measured.line(reps, "; goal <= 1.2")
    )


def bench_secure_cox(
    client: Client,
    images: dict[str, str],
    sites: list[str],
    covariates: list[str],
    reps: int,
    stratified: bool = True,
) -> str:
    """A Cox fit with secure aggregation on and off, alternating: the site-stratified
    model, or the pooled one (its secure describe round counts events on a grid of every
    day, GBSG2's time unit: the bench's sites run without disclosure control)."""
    grid = [float(t) for t in range(1, 3001)] if not stratified else None

    def fit(runner: NetworkRunner, on: bool) -> Any:
        return coxph.fit(
            runner, sites, "time", "cens", covariates, ties="efron",
            stratify_sites=stratified, data=LABEL, secure=on, grid=grid if on else None,
        )  # fmt: skip

    measured = on_and_off(client, images, reps, fit, every_round=True)
    worst = max(
        abs(fits[True].params[c] - fits[False].params[c]) / abs(fits[False].params[c])
        for fits in measured.pairs
        for c in covariates
    )
    return (
        f"secure aggregation {len(sites):>2} sites, "
        f"{'stratified' if stratified else 'pooled'} Cox (Efron, {len(covariates)} "
        f"covariates): " + measured.line(reps) + f"; largest relative coefficient difference "
        f"{worst:.1e}"
    )


def _kb(n: int) -> str:
    return f"{n} B" if n < 1000 else f"{n / 1000:.1f} kB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3,10", help="site counts, comma-separated")
    parser.add_argument("--reps", type=int, default=3, help="timed fits per site count")
    parser.add_argument("--bare-reps", type=int, default=5, help="bare docker runs to time")
    parser.add_argument(
        "--covariates",
        type=int,
        default=len(datasets.COVARIATES),
        help="how many of GBSG2's nine coded covariates to fit",
    )
    args = parser.parse_args()
    covariates = list(datasets.COVARIATES[: args.covariates])
    stack = ensure_stack()
    with tempfile.TemporaryDirectory(prefix="ptm-bench-survival-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            bench_size(stack, Path(tmp), size, covariates, args.reps, args.bare_reps)


if __name__ == "__main__":
    main()
