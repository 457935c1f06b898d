"""Benchmark the task workflow end to end against bare ``docker run --rm`` of the same image.

A live collaboration on this machine (hub and site daemons as separate processes, the real
Docker engine and registry), a trivial task (the probe image's ``echo``), and baselines
measured in the same run:

* publish → every result back in the researcher's verified copy, at 1, 3 and 10 sites ÷ the
  same number of bare ``docker run --rm`` of that image started at once (goal <= 1.3);
* sustained throughput with 3 sites: containers completed per second ÷ bare
  ``docker run --rm`` per second at the same concurrency, 3 (goal >= 0.8);
* in-process ``client.publish`` until the hub's durable acknowledgement (median; goal
  <= 5 ms), and a whole ``ptm publish`` command (median), both for a task the target
  refuses at once (so no container runs behind the measurement).

Usage::

    python bench/bench_workflow.py [--sizes 1,3,10] [--reps 5] [--tasks 20] [--publishes 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import bare_docker_runs  # noqa: E402  (one module for every baseline)

from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import ensure_stack

ECHO = b'{"action": "echo"}'
PUBLISHER_ORG = "bench"
PUBLISH_PAUSE = 0.3  # seconds between timed publishes


def bare_runs(image: str, input_file: Path, count: int, each: int = 1) -> float:
    """Seconds until ``count`` lanes have each run ``each`` bare containers of ``image``."""
    return bare_docker_runs(image, [f"{input_file}:/ptm/input:ro"], count, each)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,3,10", help="site counts for the latency runs")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per latency size")
    parser.add_argument("--tasks", type=int, default=20, help="tasks in the throughput run")
    parser.add_argument("--publishes", type=int, default=50, help="publish calls to time")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    n_sites = max([*sizes, 3])

    stack = ensure_stack()
    image = stack.images["testing/probe"]
    with tempfile.TemporaryDirectory(prefix="ptm-bench-workflow-") as tmp:
        root = Path(tmp)
        input_file = root / "input"
        input_file.write_bytes(ECHO)
        input_file.chmod(0o644)
        bare_runs(image, input_file, 1)  # warm-up: page cache, engine, image lookup
        with LocalCluster(root / "cluster") as cluster:
            cluster.create("ptm.example/bench-workflow", "consortium")
            cluster.start_hub()
            sites = [f"site-{i:02d}" for i in range(n_sites)]
            for site in sites:
                cluster.home(site)
                cluster.configure_site(
                    site, images=[image.split("@")[0]], publishers=[PUBLISHER_ORG]
                )
                cluster.start_site(site)
            cluster.home("refuser")  # allows nothing: a task to it is refused at once
            cluster.start_site("refuser")
            for site in [*sites, "refuser"]:
                cluster.admit(site, "site")
            cluster.admit("researcher", "researcher", org=PUBLISHER_ORG)
            print(f"cluster: hub + {n_sites + 1} site daemons on 127.0.0.1; image {image}")

            with Client(cluster.root / "researcher", cluster.invitation_path) as client:
                client.sync()
                client.wait(
                    client.publish(image, to=sites, input=ECHO, timeout_s=60).id, timeout=120
                )  # warm-up: every site has pulled the image and run it once

                def round_trip(targets: list[str]) -> None:
                    task = client.publish(image, to=targets, input=ECHO, timeout_s=60)
                    view = client.wait(task.id, timeout=120)
                    assert view.done and set(view.progress.values()) == {"ok"}, view.progress

                for size in sizes:
                    ours, bare = [], []
                    for _ in range(args.reps):  # interleaved, so drift hits both alike
                        ours.append(timed(lambda size=size: round_trip(sites[:size])))
                        bare.append(bare_runs(image, input_file, size))
                    a, b = statistics.median(ours), statistics.median(bare)
                    print(
                        f"latency   {size:>2} site(s): publish→all results {a:.3f} s ÷ "
                        f"{size} bare docker run at once {b:.3f} s = {a / b:.2f}x "
                        f"(median of {args.reps}; goal <= 1.3)"
                    )

                def many_tasks() -> None:
                    tasks = [
                        client.publish(image, to=sites[:3], input=ECHO, timeout_s=60)
                        for _ in range(args.tasks)
                    ]
                    for task in tasks:
                        assert client.wait(task.id, timeout=600).done

                ours_s = timed(many_tasks)
                bare_s = bare_runs(image, input_file, 3, args.tasks)
                ours_rate = 3 * args.tasks / ours_s
                bare_rate = 3 * args.tasks / bare_s
                print(
                    f"throughput 3 sites: {ours_rate:.2f} containers/s ({args.tasks} tasks) ÷ "
                    f"bare docker run at concurrency 3 {bare_rate:.2f}/s = "
                    f"{ours_rate / bare_rate:.2f}x (goal >= 0.8)"
                )

                publish_ms = []
                for _ in range(args.publishes):
                    # Each publish on a collaboration at rest: the pause lets every site
                    # replicate the last task and its refusal first, so what is timed is
                    # the publish, not a queue behind the previous one's replication.
                    time.sleep(PUBLISH_PAUSE)
                    started = time.perf_counter()
                    client.publish(image, to=["refuser"], input=ECHO, timeout_s=60)
                    publish_ms.append((time.perf_counter() - started) * 1000)
                print(
                    f"publish   client.publish until the hub's durable ack: median "
                    f"{statistics.median(publish_ms):.2f} ms, p90 "
                    f"{sorted(publish_ms)[int(0.9 * (len(publish_ms) - 1))]:.2f} ms "
                    f"({args.publishes} calls; goal <= 5 ms)"
                )

            command = [
                sys.executable, "-m", "ptm_p2p.cli", "publish", image, "--to", "refuser",
                "--param", "action=echo", "--home", str(cluster.root / "researcher"),
                "--invitation", str(cluster.invitation_path),
            ]  # fmt: skip
            whole = [
                timed(lambda: subprocess.run(command, check=True, capture_output=True))
                for _ in range(max(3, min(9, args.publishes // 5)))
            ]
            print(f"publish   whole `ptm publish` command: median {statistics.median(whole):.3f} s")


if __name__ == "__main__":
    main()
