"""Benchmark the executor against a bare ``docker run --rm`` of the same image.

Prints, from one run on this machine:

* the executor's end-to-end time for a trivial task (policy check, local digest lookup,
  sandbox set-up, run, output and log collection, removal) ÷ a bare
  ``docker run --rm`` of the same image with the same input mounted — median of several
  interleaved repetitions (target <= 1.3);
* the base-image build time: cached (image present), from the cached tarball (import only),
  and with ``--cold`` a full debootstrap into an empty cache (about a minute).

Usage::

    python bench/bench_executor.py [--reps 9] [--cold]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ptm_p2p.dev.baseimage import ensure_base_image
from ptm_p2p.dev.stack import ensure_stack
from ptm_p2p.executor import ContainerTask, Executor, SitePolicy


def bare_docker_run(image: str, input_file: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{input_file}:/ptm/input:ro",
            "--tmpfs",
            "/ptm/output:uid=65534",
            image,
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def executor_run(executor: Executor, image: str) -> float:
    started = time.perf_counter()
    result = executor.run(
        ContainerTask(image=image, input=b'{"action": "echo"}', publisher_name="b")
    )
    elapsed = time.perf_counter() - started
    assert result.status == "ok", result.reason
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--cold", action="store_true", help="also time a cold debootstrap")
    args = parser.parse_args()

    stack = ensure_stack()
    image = stack.images["testing/probe"]
    repo = image.split("@")[0]
    executor = Executor(
        stack.client, SitePolicy.from_table({"images": [repo], "publishers": ["*"]})
    )
    with tempfile.TemporaryDirectory() as tmp:
        input_file = Path(tmp) / "input"
        input_file.write_text('{"action": "echo"}')
        input_file.chmod(0o644)
        executor_run(executor, image)  # warm-up: page cache, engine, image lookup
        bare_docker_run(image, input_file)
        ours, bare = [], []
        for _ in range(args.reps):  # interleaved, so drift hits both sides alike
            ours.append(executor_run(executor, image))
            bare.append(bare_docker_run(image, input_file))
    ratio = statistics.median(ours) / statistics.median(bare)

    settings = stack.settings
    started = time.perf_counter()
    ensure_base_image(settings, stack.client, log=lambda _: None)
    cached_s = time.perf_counter() - started
    bench_settings = dataclasses.replace(settings, base_image="ptm-base-python:bench")
    started = time.perf_counter()
    ensure_base_image(bench_settings, stack.client, log=lambda _: None)
    import_s = time.perf_counter() - started
    stack.client.images.remove("ptm-base-python:bench")
    report = {
        "executor_median_s": round(statistics.median(ours), 3),
        "bare_docker_run_median_s": round(statistics.median(bare), 3),
        "ratio_executor_over_bare": round(ratio, 2),
        "reps": args.reps,
        "base_image_cached_s": round(cached_s, 3),
        "base_image_from_cached_tarball_s": round(import_s, 2),
    }
    if args.cold:
        with tempfile.TemporaryDirectory(dir=settings.cache_dir.parent) as cache:
            cold = dataclasses.replace(
                settings, cache_dir=Path(cache), base_image="ptm-base-python:bench-cold"
            )
            started = time.perf_counter()
            ensure_base_image(cold, stack.client, log=lambda _: None)
            report["base_image_cold_s"] = round(time.perf_counter() - started, 1)
            stack.client.images.remove("ptm-base-python:bench-cold")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
