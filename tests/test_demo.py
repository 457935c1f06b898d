"""The main job, `ptm demo`, run as a user runs it: a subprocess, real Docker and registry."""

from __future__ import annotations

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
        assert f"({site})=ok" in audited.stdout
    assert (tmp_path / "demo" / "study" / "hospital-a" / "gbsg2.csv").exists()
