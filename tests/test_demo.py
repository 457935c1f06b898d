"""The main job, `ptm demo`, run as a user runs it: a subprocess, real Docker and registry."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker


def test_demo_study_matches_central_figures_and_audits(tmp_path: Path) -> None:
    proc = subprocess.run(
        # A relative --workdir, as in the README's `bin/setup-and-demo`.
        [sys.executable, "-m", "ptm_p2p.cli", "demo", "--workdir", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "federated == central: yes" in out
    assert "audit of the hub's and every site's copy: ok, one root" in out
    assert "daemons stopped cleanly: yes" in out
    assert "audit caught it" in out
    # The site daemons ran the task themselves; the researcher saw it go through.
    assert "progress: hospital-a ok, hospital-b ok, hospital-c ok" in out
    # Every site runs with disclosure control and its disclosure record (docs/privacy.md).
    assert "every site: disclosure control on (min_group_size 5, 30-day lattice)" in out
    # The summary under control: min/max withheld, rows rounded up; the rest still exact.
    assert "(sites' controls: min/max withheld" in out
    assert re.search(r"^  patients +69\d\.000 +686\.000$", out, re.M), out[-3000:]
    # The flagship analysis through the same daemons, under the sites' controls and secure
    # aggregation: a Cox fit round by round, each round a secure sum, printed beside
    # lifelines' fit of the data as the sites coarsen it and equal to it; the pooled KM
    # curve drawn to a PNG.
    assert "round 1 (coxph-pooled describe (secure sum)): 3 site(s) answered" in out
    assert "round 2 (coxph-pooled evaluate (secure sum)): 3 site(s) answered" in out
    assert "Federated Cox proportional hazards (pooled: global risk sets)" in out
    assert "secure aggregation (only sums over the sites opened)" in out
    assert "ties = Efron, sites = 3" in out and "n = 686, number of events = 299" in out
    rounds = re.search(r"Newton–Raphson iterations = \d+, rounds = (\d+), converged", out)
    assert rounds and int(rounds.group(1)) <= 6, out[-3000:]
    assert re.search(r"^  pnodes +0\.05086\d+ +0\.05086\d+", out, re.M), out[-3000:]
    assert "cox federated == central (on the data as the sites coarsen it): yes" in out
    assert re.search(r"round \d+ \(km \(secure sum\)\): 3 site\(s\) answered", out)
    assert "km (secure sum): pooled curve from 3 sites in 1 round, no curve per site" in out
    assert "km secure sum == the sites' code replayed on their files: yes" in out
    # What each site revealed, from its disclosure record (the `ptm status` line): the Cox
    # fit's β probes (one per evaluate round) and its categorical covariate as a grouping.
    for site in ("hospital-a", "hospital-b", "hospital-c"):
        line = re.search(rf"^    {site}: disclosure  gbsg2: (\d+) answer\(s\).*$", out, re.M)
        assert line, out[-3000:]
        assert int(line.group(1)) == int(rounds.group(1)) + 2  # + summary and KM
        assert f"β probes {int(rounds.group(1)) - 1} of 50 used" in line.group(0)
        assert "groupings horTh_yes" in line.group(0)
    plot = re.search(r"km plot: (\S+\.png)$", out, re.M)
    assert plot, out[-3000:]
    assert Path(plot.group(1)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("demo: ok")
    ledger = Path(last.split()[-1])
    assert ledger.suffix == ".db" and ledger.is_absolute()
    audited = subprocess.run(
        [sys.executable, "-m", "ptm_p2p.cli", "audit", str(ledger)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert audited.returncode == 0, audited.stdout[-2000:] + audited.stderr[-2000:]
    for site in ("hospital-a", "hospital-b", "hospital-c"):
        # the report's per-site line (its format since ledger/report.py, the explorer merge)
        assert re.search(rf"\({site}\) +targeted by 7 tasks, answered 7: ok 7", audited.stdout)
    assert (tmp_path / "demo" / "study" / "hospital-a" / "gbsg2.csv").exists()
