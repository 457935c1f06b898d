"""The site's disclosure record (``ptm_p2p/site/disclosure.py``), against real SQLite files
and real CSV data sources (hospital-a: 360 GBSG2 patients): the rules that need memory of
earlier answers, by anyone.

* a β-probe budget per data source, spent by two colluding researchers together;
* two data labels (or two versions of one file) whose patients differ by 1 … k − 1;
* a grouping whose cells, crossed with an earlier grouping's, hold 1 … k − 1 patients;
* the record outlives the daemon (a new ``DisclosureRecord`` on the same file).

Requests are parsed from the very bytes a task carries (``parse_request``), as the daemon
does. The end-to-end version over real daemons is ``test_record_network.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from ptm_p2p.algorithms import datasets, survival_site
from ptm_p2p.network.home_status import DISCLOSURE_FILE as STATUS_DISCLOSURE_FILE
from ptm_p2p.network.home_status import disclosure, render_disclosure
from ptm_p2p.site.disclosure import DISCLOSURE_FILE, REFUSED, DisclosureRecord, parse_request

K = 5
POOLED = "127.0.0.1:5000/ptm/coxph-pooled@sha256:" + "0" * 64
KM = "127.0.0.1:5000/ptm/km@sha256:" + "1" * 64
UNI, LAB = ("a" * 64, "uni"), ("b" * 64, "lab")  # two researchers of two organisations
COVARIATES = ["horTh", "age", "tsize"]


@pytest.fixture(scope="module")
def hospital_a() -> pd.DataFrame:
    frame = datasets.split(datasets.load_gbsg2(), datasets.SIZES)[0].reset_index(drop=True)
    # a derived column the site offers: under 44 years old. Only 2 of its postmenopausal
    # patients are that young: a grouping by it crossed with one by menostat isolates them.
    frame["young"] = (frame["age"] < 44).astype(int)
    return frame


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _task(n: int) -> bytes:
    return hashlib.sha256(f"task {n}".encode()).digest()


class Site:
    """A record on a site home with data sources; ``ask`` = check, then settle ``ok``."""

    def __init__(self, home: Path, data: dict[str, Path], max_beta_probes: int = 50) -> None:
        self.home, self.data, self.max = home, data, max_beta_probes
        self.record = DisclosureRecord(home / DISCLOSURE_FILE, data, K, max_beta_probes)
        self.n = 0

    def restart(self) -> None:
        self.record.close()
        self.record = DisclosureRecord(self.home / DISCLOSURE_FILE, self.data, K, self.max)

    def ask(self, image: str, params: dict, who: tuple[str, str] = UNI) -> str | None:
        self.n += 1
        raw = json.dumps(params).encode()
        request = parse_request(image, [params.get("data", "gbsg2")], raw)
        refusal = self.record.check(_task(self.n), self.n, request, *who)
        if refusal is None:
            self.record.settle(_task(self.n), ok=True)
        return refusal


def _evaluate(beta: list[float], label: str = "gbsg2") -> dict:
    return {
        "step": "evaluate",
        "data": label,
        "duration": "time",
        "event": "cens",
        "covariates": COVARIATES,
        "times": [365.0, 730.0],
        "betas": [beta],
    }


def _km(group: str | None, label: str = "gbsg2") -> dict:
    params = {"data": label, "duration": "time", "event": "cens"}
    return {**params, "group": group} if group else params


def test_beta_budget_is_spent_by_colluding_researchers_together(tmp_path, hospital_a):
    site = Site(tmp_path, {"gbsg2": _write(hospital_a, tmp_path / "a.csv")}, max_beta_probes=4)
    # the real site code answers each of these probes (control on): only the record stops them
    table = survival_site.load_csv(tmp_path / "a.csv")
    answer = survival_site.compute("coxph-pooled", table, _evaluate([0.1, 0.0, 0.0]), K, 30.0)
    assert "points" in answer
    assert site.ask(POOLED, _evaluate([0.1, 0.0, 0.0]), UNI) is None
    assert site.ask(POOLED, _evaluate([0.2, 0.0, 0.0]), UNI) is None
    assert site.ask(POOLED, _evaluate([0.0, 0.01, 0.0]), LAB) is None
    # the same β asked again, by the other researcher: nothing new, not counted
    assert site.ask(POOLED, _evaluate([0.1, 0.0, 0.0]), LAB) is None
    assert site.ask(POOLED, _evaluate([0.0, 0.0, 0.01]), LAB) is None  # the 4th probe
    assert site.record.probes_used("gbsg2") == 4
    refusal = site.ask(POOLED, _evaluate([0.0, 0.02, 0.0]), LAB)
    assert refusal is not None and refusal.startswith(REFUSED)
    assert "β-probe budget" in refusal and "4 of 4" in refusal and "nothing was run" in refusal
    assert site.ask(POOLED, _evaluate([0.3, 0.0, 0.0]), UNI) is not None  # and for everyone
    # an already answered β is still answered; the stratified model's β is a probe too
    assert site.ask(POOLED, _evaluate([0.2, 0.0, 0.0]), LAB) is None
    stratified = POOLED.replace("coxph-pooled", "coxph-stratified")
    assert site.ask(stratified, _evaluate([0.1, 0.0, 0.0]), UNI) is not None
    # a request that is not a Cox probe is not affected
    assert site.ask(KM, _km(None), LAB) is None


def test_budget_survives_a_restart_and_counts_tasks_in_flight(tmp_path, hospital_a):
    site = Site(tmp_path, {"gbsg2": _write(hospital_a, tmp_path / "a.csv")}, max_beta_probes=2)
    assert site.ask(POOLED, _evaluate([0.1, 0.0, 0.0])) is None
    site.restart()  # a new daemon on the same home
    assert site.record.probes_used("gbsg2") == 1
    # two tasks checked before either is answered (parallel runs): the second one waits
    # for no one, it is refused, since the first one's probe is reserved
    first = parse_request(POOLED, ["gbsg2"], json.dumps(_evaluate([0.2, 0.0, 0.0])).encode())
    second = parse_request(POOLED, ["gbsg2"], json.dumps(_evaluate([0.3, 0.0, 0.0])).encode())
    assert site.record.check(_task(100), 100, first, *UNI) is None
    assert site.record.check(_task(101), 101, second, *LAB) is not None
    site.record.release(_task(100))  # the first run failed: its reservation goes
    assert site.record.check(_task(101), 101, second, *LAB) is None
    site.record.settle(_task(101), ok=True)
    site.restart()
    assert site.ask(POOLED, _evaluate([0.4, 0.0, 0.0])) is not None
    assert site.record.probes_used("gbsg2") == 2


def test_two_data_labels_differing_by_one_patient(tmp_path, hospital_a):
    data = {
        "gbsg2": _write(hospital_a, tmp_path / "a.csv"),
        "gbsg2-minus-one": _write(hospital_a.drop(index=17), tmp_path / "b.csv"),
        "gbsg2-swapped": _write(  # one patient replaced by another: a difference of 2
            pd.concat([hospital_a.drop(index=17), hospital_a.iloc[[3]]]), tmp_path / "s.csv"
        ),
        "gbsg2-copy": _write(hospital_a, tmp_path / "copy.csv"),
        "gbsg2-first-300": _write(hospital_a.iloc[:300], tmp_path / "c.csv"),
        "gbsg2-narrow": _write(  # other columns, one patient fewer
            hospital_a.drop(index=17)[["time", "cens", "age"]], tmp_path / "n.csv"
        ),
    }
    site = Site(tmp_path, data)
    assert site.ask(KM, _km(None, "gbsg2")) is None
    refusal = site.ask(KM, _km(None, "gbsg2-minus-one"))
    assert refusal is not None and refusal.startswith(REFUSED)
    assert "'gbsg2-minus-one' and data source 'gbsg2'" in refusal
    assert "fewer than 5 patients" in refusal and "17" not in refusal
    assert site.ask(KM, _km(None, "gbsg2-swapped")) is not None
    assert site.ask(KM, _km(None, "gbsg2-narrow")) is not None  # compared on common columns
    assert site.ask(KM, _km(None, "gbsg2-copy")) is None  # the same patients: nothing new
    assert site.ask(KM, _km(None, "gbsg2-first-300")) is None  # 60 apart: allowed
    # the refusal holds for every researcher and every image (Cox as well as KM)
    assert site.ask(POOLED, _evaluate([0.0, 0.0, 0.0], "gbsg2-minus-one"), LAB) is not None


def test_a_new_version_of_a_data_file_one_patient_apart(tmp_path, hospital_a):
    path = _write(hospital_a.iloc[:359], tmp_path / "a.csv")
    site = Site(tmp_path, {"gbsg2": path})
    assert site.ask(KM, _km(None)) is None
    _write(hospital_a, path)  # the site adds one patient to its file
    refusal = site.ask(KM, _km(None))
    assert refusal is not None and "this version of data source 'gbsg2'" in refusal
    _write(hospital_a.iloc[:359], path)  # back to the answered version: fine again
    assert site.ask(KM, _km(None)) is None


def test_overlapping_groupings(tmp_path, hospital_a):
    counts = hospital_a.groupby(["young", "menostat"]).size()
    assert 0 < counts.min() < K  # 2 young postmenopausal patients
    site = Site(tmp_path, {"gbsg2": _write(hospital_a, tmp_path / "a.csv")})
    assert site.ask(KM, _km("menostat")) is None
    assert site.ask(KM, _km("horTh")) is None  # horTh × menostat: every cell ≥ 5
    refusal = site.ask(KM, _km("young"), LAB)
    assert refusal is not None and refusal.startswith(REFUSED)
    assert "by young crossed with the grouping by menostat" in refusal
    # a categorical Cox covariate splits the patients too: refused the same way
    params = {**_evaluate([0.0, 0.0]), "covariates": ["young", "age"]}
    assert site.ask(POOLED, params, LAB) is not None
    # one grouping asked again is nothing new
    assert site.ask(KM, _km("menostat"), LAB) is None


def test_ptm_status_shows_what_was_revealed(tmp_path, hospital_a):
    assert DISCLOSURE_FILE == STATUS_DISCLOSURE_FILE
    (tmp_path / "config.toml").write_text('name = "hospital-a"\n[policy]\nmax_beta_probes = 7\n')
    site = Site(tmp_path, {"gbsg2": _write(hospital_a, tmp_path / "a.csv")}, max_beta_probes=7)
    site.ask(POOLED, _evaluate([0.1, 0.0, 0.0]), UNI)
    site.ask(POOLED, _evaluate([0.2, 0.0, 0.0]), LAB)
    site.ask(KM, _km("horTh"), LAB)
    info = disclosure(tmp_path)
    assert info is not None and info["max_beta_probes"] == 7
    assert info["sources"]["gbsg2"]["probes_by"] == {"uni": 1, "lab": 1}
    (line,) = render_disclosure(info)
    assert line.startswith("disclosure  gbsg2: 3 answer(s) over 1 version(s)")
    assert "β probes 2 of 7 used, 5 left (by lab 1, uni 1)" in line
    assert "groupings horTh" in line
