"""What a researcher tripped over, shown where it happens (issue 17), on a live collaboration.

Every check runs the real ``ptm`` command in its own process against the module's cluster
(hub, three site daemons, real Docker): ``ptm results`` shows the algorithm's own reason and
no "nan"; ``ptm publish --wait`` and ``ptm wait`` do not exit 0 when no site answered ok;
``ptm wait --timeout`` says it timed out and which site's daemon seems down; ``ptm tasks``
names what ran; an unknown site name is a usage error (2); ``publish()`` and ``wait()`` name
the publisher alike. The test that stops a site daemon comes last.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

from ptm_p2p.client import Client
from ptm_p2p.errors import EXIT_DOMAIN, EXIT_NOT_DONE, EXIT_REFUSED, EXIT_USAGE

from .conftest import RESEARCHER, Study

PTM = [sys.executable, "-m", "ptm_p2p.cli"]


def ptm(study: Study, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    home = ["--home", str(study.cluster.path(RESEARCHER))]
    home += ["--invitation", str(study.cluster.invitation_path)]
    return subprocess.run(
        [*PTM, *args, *home], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_a_failed_task_shows_the_algorithms_reason_exits_1_and_no_nan(study: Study) -> None:
    # The task may read gbsg2; the input names another source: the algorithm says so.
    published = ptm(
        study, "publish", study.images["summary"], "--to", "hospital-a,hospital-b",
        "--data", "gbsg2", "--param", "data=other", "--algorithm", "summary/v1", "--wait",
    )  # fmt: skip
    assert published.returncode == EXIT_DOMAIN, published.stderr
    assert "error: no site answered ok (2 failed)" in published.stderr
    task = published.stderr.split("published task ", 1)[1].split()[0]
    shown = ptm(study, "results", task)
    assert shown.returncode == 0, shown.stderr
    assert "nan" not in shown.stdout
    rows = [line for line in shown.stdout.splitlines() if line.strip().startswith("hospital-")]
    assert len(rows) == 2
    for row in rows:
        assert "failed" in row and "no data source 'other'" in row, shown.stdout
    assert "summary/v1" in shown.stdout.splitlines()[0]
    waited = ptm(study, "wait", task, "--timeout", "60")
    assert waited.returncode == EXIT_DOMAIN, waited.stderr


def test_every_site_refusing_exits_3(study: Study) -> None:
    # hospital-c allows only the summary image (conftest): the probe is refused there.
    published = ptm(
        study, "publish", study.images["testing/probe"], "--to", "hospital-c",
        "--param", "action=echo", "--wait",
    )  # fmt: skip
    assert published.returncode == EXIT_REFUSED, published.stderr
    assert "every site refused the task (1 refused)" in published.stderr


def test_an_unknown_site_is_a_usage_error(study: Study) -> None:
    result = ptm(study, "publish", study.images["summary"], "--to", "hospital-z")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "no admitted site named 'hospital-z'" in result.stderr
    assert "hospital-a" in result.stderr  # the sites there are


def test_tasks_name_what_ran_and_publish_and_wait_name_the_publisher_alike(
    study: Study,
) -> None:
    # A client of its own: the module's one would hold a stale view of the home's copy
    # that the CLI runs above have extended.
    with Client(study.cluster.path(RESEARCHER), study.cluster.invitation_path) as client:
        published = client.publish(
            study.images["summary"], to=["hospital-a"], data=["gbsg2"], input=b'{"data": "gbsg2"}'
        )
        waited = client.wait(published.id, timeout=120)
        assert published.publisher == waited.publisher == client.task(published.id).publisher
        # SiteAnswer.output is the bytes; .json() reads them as the algorithm wrote them.
        answer = client.results(published.id)["hospital-a"]
        assert isinstance(answer.output, bytes)
        assert answer.json()["rows"] == len(study.shares["hospital-a"])
    assert "(uni)" in published.publisher
    listed = ptm(study, "tasks", "--mine")
    line = next(row for row in listed.stdout.splitlines() if row.startswith(published.id[:16]))
    digest = study.images["summary"].split("@sha256:")[1]
    assert f"ptm/summary@{digest[:12]}" in line, line
    assert not line.split("entry", 1)[1].split()[1].startswith(digest[-30:])


def test_wait_says_it_timed_out_and_which_daemon_seems_down(study: Study) -> None:
    study.cluster.stop("hospital-c", signal.SIGKILL)
    published = ptm(study, "publish", study.images["summary"], "--to", "hospital-a,hospital-c",
                    "--data", "gbsg2", "--param", "data=gbsg2")  # fmt: skip
    assert published.returncode == 0, published.stderr
    task = published.stdout.strip()
    began = time.monotonic()
    waited = ptm(study, "wait", task, "--timeout", "10", "--json")
    took = time.monotonic() - began
    assert waited.returncode == EXIT_NOT_DONE, waited.stderr
    assert json.loads(waited.stdout)["sites"]["hospital-c"] == "not seen"
    assert "timed out: --timeout 10 s passed before every site answered" in waited.stderr
    # what the log shows of hospital-c's node: an old cosignature, or none this client saw
    assert re.search(r"hospital-c: its node (last cosigned the log at size \d+|has cosigned no)",
                     waited.stderr), waited.stderr  # fmt: skip
    assert "daemon seems down or cut off from the hub" in waited.stderr
    assert "hospital-a: its node" not in waited.stderr  # it answered
    assert took < 10 + 3, took  # the timeout bounds the command (plus Python's start)
