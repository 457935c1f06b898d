"""``ptm demo``: the main job — a small federated study on this machine, then its audit.

What it does, for real (no mocks, no canned numbers):

1. Three "hospitals" each get a share of a real breast-cancer survival study (GBSG2, shipped
   with lifelines) as a CSV that stays in the hospital's own folder.
2. An admin creates the collaboration (``ptm collab create``: genesis naming the hub); a hub
   and three site daemons start as separate processes on 127.0.0.1 (``ptm hub``,
   ``ptm node``: libp2p with Noise); the admin admits the sites and a researcher.
3. The researcher publishes a signed task through the hub with the Python client
   (``ptm_p2p.client``): the ``summary`` image **by digest** from the local registry, its
   input sealed to each site.
4. Each site daemon finds the task in its *own verified replica* (under a checkpoint it
   cosigned), opens its sealed input, checks its deny-by-default policy, pulls the image by
   digest, runs it in the locked-down sandbox next to its data, and submits a signed result
   whose output is sealed to the researcher; the researcher's client shows the progress.
5. The hub sequences and checkpoints; every site replicates, verifies and cosigns.
6. The researcher opens the sealed outputs from its own verified copy and pools them: the
   federated means and counts are compared with the same figures computed centrally.
   Then the flagship analysis, through the same live daemons, under secure aggregation
   (each site's answer masked, only the sum over the sites opens): a Cox regression
   (pooled model, Efron ties; one secure-sum task per round, the sites' risk-set sums on
   their shared 30-day grid) printed beside lifelines' fit of the data *as the sites
   coarsen it*, and the pooled Kaplan–Meier curve, drawn to ``km.png``. Each site then
   says what it has revealed (its disclosure record).

Every site runs as a real site would by default: ``disclosure_control = true`` (k = 5, a
30-day lattice: docs/privacy.md), so the summary withholds min/max and rounds its row
count up to a multiple of k, the Cox fit is exact on the coarsened data rather than the
raw one, and each site keeps a disclosure record that refuses what would single patients
out across queries.
7. ``ptm audit`` replays the hub's and every site's copy (one root for all), and a
   20,000-entry simulated ledger; then one byte of one stored entry is flipped and the audit
   names the forged entry.

Nothing in the demo plays a site's part: the site daemons find the task in their own
verified replicas, check it against their policies and run it themselves. The last line
names a copy of the study's ledger that ``ptm audit`` checks.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptm_p2p.algorithms.summary import combine
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.errors import PtmError
from ptm_p2p.home import LEDGER_FILE
from ptm_p2p.ledger.audit import AuditReport, audit, default_workers
from ptm_p2p.ledger.simulate import simulate
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.ledger_copy import read_only_copy

SITES = ("hospital-a", "hospital-b", "hospital-c")
RESEARCHER = "researcher-1"
RESEARCHER_ORG = "uni-research"
SITE_ALGORITHMS = ("summary", "coxph-pooled", "coxph-stratified", "km")
LEDGER_COPY = "study-ledger.db"
NUMERIC = ("age", "tsize", "pnodes", "time")
CATEGORICAL = ("horTh", "menostat", "tgrade")
DATA_LABEL = "gbsg2"
# The hospitals' extract codes hormone therapy as 0/1 beside the original yes/no column,
# as a researcher would before a Cox fit (covariates must be numbers).
HORMONE = "horTh_yes"
COX_COVARIATES = (HORMONE, "age", "tsize", "pnodes", "progrec")
COX_COEF_TOL = 1e-6  # federated vs central: the agreement targets
COX_SE_TOL = 1e-5
KM_PLOT = "km.png"
KM_AT_DAYS = 1825  # survival at five years, federated vs central
ORIGIN = "ptm.example/demo-study"
SIMULATED_ENTRIES = 20_000
# The sites' policy (docs/privacy.md): the defaults a real site gets, written out.
MIN_GROUP_SIZE = 5
TIME_RESOLUTION = 30
# The secure-sum grid (Cox and Kaplan–Meier): every point of the sites' 30-day lattice up
# to past the longest follow-up (GBSG2: 2659 days), so it holds every event time the sites
# publish and binning merges nothing (`ptm study --secure --grid-step 30 --horizon 2700`).
GRID = tuple(float(TIME_RESOLUTION * i) for i in range(1, 91))

Say = Callable[[str], None]


@dataclass
class DemoOutcome:
    ok: bool
    workdir: Path
    federated: dict[str, float]
    central: dict[str, float]
    ledger: Path  # a copy of the study's ledger, for `ptm audit`
    cox_matches: bool = False
    km_plot: Path | None = None
    revealed: dict[str, list[str]] | None = None  # site → its disclosure-record lines


def split_study(workdir: Path) -> tuple[dict[str, Path], Any]:
    """Write each hospital's share of GBSG2 to its own folder; return paths and the pool."""
    from lifelines.datasets import load_gbsg2  # the demo's one heavy import, only here

    pooled = load_gbsg2()
    pooled[HORMONE] = (pooled["horTh"] == "yes").astype(int)
    paths: dict[str, Path] = {}
    for i, site in enumerate(SITES):
        share = pooled.iloc[i :: len(SITES)]  # deterministic, interleaved shares
        folder = workdir / site
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{DATA_LABEL}.csv"
        share.to_csv(path, index=False)
        paths[site] = path
    return paths, pooled


def summary_matches(federated: dict[str, float], central: dict[str, float]) -> bool:
    """Under disclosure control each site rounds its row count up to a multiple of k
    (``patients`` is then between the truth and k − 1 more per site); every other figure
    (means, SDs from exact sums and counts; category counts ≥ k) must equal the central one.
    """
    if federated.keys() != central.keys():
        return False
    slack = len(SITES) * (MIN_GROUP_SIZE - 1)
    exact = all(
        math.isclose(federated[k], central[k], rel_tol=1e-9) for k in central if k != "patients"
    )
    return exact and central["patients"] <= federated["patients"] <= central["patients"] + slack


def central_figures(pooled: Any) -> dict[str, float]:
    """The same figures computed on the pooled data, as a reference (never done in reality)."""
    figures: dict[str, float] = {"patients": float(len(pooled))}
    for column in NUMERIC:
        figures[f"mean {column}"] = float(pooled[column].mean())
        figures[f"sd {column}"] = float(pooled[column].std(ddof=1))
    for column in CATEGORICAL:
        for category, count in sorted(pooled[column].value_counts().items()):
            figures[f"{column}={category}"] = float(count)
    return figures


def run_study(workdir: Path, images: dict[str, str], say: Say) -> DemoOutcome:
    """Steps 1-6: a real study over a live hub and site daemons; returns both figure sets."""
    from ptm_p2p.client import Client  # libp2p: only when the study runs

    data_paths, pooled = split_study(workdir)
    say(f"  data: GBSG2 ({len(pooled)} patients) split over {', '.join(SITES)} in {workdir}")
    peers = workdir / "peers"
    if (peers / "admin" / "identity.key").exists():
        shutil.rmtree(peers)  # an earlier demo's collaboration: a rerun starts a new one
    ledger_copy = workdir / LEDGER_COPY
    ledger_copy.unlink(missing_ok=True)
    with LocalCluster(peers) as cluster:
        _start_network(cluster, images, data_paths, say)
        with Client(cluster.root / RESEARCHER, cluster.invitation_path) as client:
            federated = _run_summary(client, images, say)
            cox, curves = _survival(client, images, say)
            size = client.sync()

        cluster.wait_replicated(["hub", *SITES], size, cosigners=len(SITES))
        say(
            f"  replicated: every site holds {size} entries under a hub checkpoint cosigned "
            f"by {len(SITES)} witnesses"
        )
        audits = {name: _audit_home(cluster.root / name) for name in ["hub", *SITES]}
        exits = {name: cluster.stop(name) for name in ["hub", *SITES]}
        # what each site has revealed, as its `ptm status` shows it (read after the stop:
        # the record is settled once each result is signed)
        revealed = {name: _revealed(cluster.root / name) for name in SITES}
        roots = {report.checkpoints[-1].root for report in audits.values() if report.checkpoints}
        _copy_ledger(cluster.root / "hub" / LEDGER_FILE, ledger_copy)
    replicas_ok = all(r.ok for r in audits.values()) and len(roots) == 1
    clean_stop = all(code == 0 for code in exits.values())
    central = central_figures(pooled)
    matches = _summary_report(federated, central, replicas_ok, clean_stop, say)
    cox_matches = _compare_cox(cox, data_paths, pooled, say)
    km_ok, km_plot = _km_report(curves, data_paths, pooled, workdir / KM_PLOT, say)
    revealed_ok = _revealed_report(revealed, say)
    return DemoOutcome(
        matches and replicas_ok and clean_stop and cox_matches and km_ok and revealed_ok,
        workdir,
        federated,
        central,
        ledger_copy,
        cox_matches,
        km_plot,
        revealed,
    )


def _start_network(
    cluster: LocalCluster, images: dict[str, str], data_paths: dict[str, Path], say: Say
) -> None:
    """The collaboration: its hub, a site daemon per hospital (each with a deny-by-default
    policy under disclosure control), the sites and the researcher admitted."""
    cluster.create(ORIGIN, "consortium")
    cluster.start_hub()
    for name in SITES:
        cluster.home(name)
        # Deny by default: each hospital allows only these algorithm repositories, only
        # this researcher's organisation, and only its own GBSG2 file.
        cluster.configure_site(
            name,
            images=[images[a].split("@", 1)[0] for a in SITE_ALGORITHMS if a in images],
            publishers=[RESEARCHER_ORG],
            data={DATA_LABEL: data_paths[name]},
            # as a real site runs by default: answers from its own coarse intervals, a
            # disclosure record across queries and researchers (docs/privacy.md)
            disclosure_control=True,
            policy={"min_group_size": MIN_GROUP_SIZE, "time_resolution": TIME_RESOLUTION},
        )
        cluster.start_site(name)
    for name in SITES:
        cluster.admit(name, "site")
    cluster.admit(RESEARCHER, "researcher", org=RESEARCHER_ORG)
    say(
        f"  network: hub + {len(SITES)} site daemons on 127.0.0.1 (libp2p, Noise), each "
        f"with a deny-by-default policy; {len(SITES)} sites and a researcher admitted"
    )
    say(
        f"  every site: disclosure control on (min_group_size {MIN_GROUP_SIZE}, "
        f"{TIME_RESOLUTION}-day lattice) and a disclosure record across queries"
    )


def _run_summary(client: Any, images: dict[str, str], say: Say) -> dict[str, float]:
    """Publish the summary task to every site, wait for the answers and pool them."""
    params = {
        "data": DATA_LABEL,
        "columns": [*NUMERIC, *CATEGORICAL],
        "categorical": list(CATEGORICAL),
    }
    started = time.perf_counter()
    task = client.publish(
        images["summary"],
        to="all",
        input=json.dumps(params).encode(),
        data=[DATA_LABEL],
        timeout_s=120,
        memory_mb=256,
        algorithm="summary",
    )
    say(f"  researcher published task {task.id[:16]}… (entry {task.index}): summary")
    view = client.wait(task.id, timeout=180, on_progress=_progress_printer(say))
    answers = client.results(task.id)
    for site, answer in sorted(answers.items()):
        say(
            f"  {site}: {answer.status}, ran {answer.image_digest[:19]}… in "
            f"{answer.timings.get('run_ms', 0) / 1000:.2f} s; result signed by the "
            "site, output sealed to the researcher"
        )
    if not view.done or any(a.status != "ok" for a in answers.values()):
        raise PtmError(f"the summary task did not complete at every site: {view.progress}")
    say(f"  all {len(SITES)} sites answered in {time.perf_counter() - started:.2f} s")
    return combine([a.json() for a in answers.values()])


def _summary_report(
    federated: dict[str, float],
    central: dict[str, float],
    replicas_ok: bool,
    clean_stop: bool,
    say: Say,
) -> bool:
    """Print the federated figures beside the central ones; True if they match."""
    matches = summary_matches(federated, central)
    say("")
    say(f"  {'figure':<22}{'federated':>14}{'central':>14}")
    for key in central:
        say(f"  {key:<22}{federated.get(key, float('nan')):>14.3f}{central[key]:>14.3f}")
    say(
        f"  (sites' controls: min/max withheld; each site's row count rounded up to a "
        f"multiple of {MIN_GROUP_SIZE}, so 'patients' may exceed the truth by up to "
        f"{len(SITES) * (MIN_GROUP_SIZE - 1)}; means, SDs and category counts are exact)"
    )
    say(
        f"  federated == central: {'yes' if matches else 'NO'}; "
        f"audit of the hub's and every site's copy: {'ok, one root' if replicas_ok else 'FAILED'}; "
        f"daemons stopped cleanly: {'yes' if clean_stop else 'NO'}"
    )
    return matches


def _revealed_report(revealed: dict[str, list[str]], say: Say) -> bool:
    """Print what each site has revealed; True if every site kept a disclosure record."""
    say("")
    say(
        "  what each site has revealed about its data (its disclosure record, as "
        "`ptm status` shows it):"
    )
    revealed_ok = True
    for name, lines in revealed.items():
        revealed_ok = revealed_ok and bool(lines)
        for line in lines or ["(no disclosure record: control off?)"]:
            say(f"    {name}: {line}")
    return revealed_ok


def _survival(client: Any, images: dict[str, str], say: Say) -> tuple[Any, Any]:
    """The flagship analysis over the live daemons, under the sites' disclosure control and
    secure aggregation: a Cox fit (pooled, Efron) and the pooled Kaplan–Meier curve.

    Every round is a signed task through the hub (``NetworkRunner``); the sites answer with
    aggregates of their coarsened data only (docs/survival.md lists what each round
    reveals, and to whom).
    """
    from ptm_p2p.algorithms import coxph, km
    from ptm_p2p.algorithms.runner import NetworkRunner, describe_round

    def on_round(number: int, info: Any) -> None:
        say(f"    {describe_round(number, info)}")

    runner = NetworkRunner(client, images, DATA_LABEL, on_round=on_round, timeout=120)
    say(
        f"  researcher fits a Cox model (pooled, Efron ties) on {', '.join(COX_COVARIATES)} "
        f"under secure aggregation ({len(GRID)}-point grid): one signed task per round, each "
        "site's risk-set sums from its own coarse intervals masked, only their sum opens"
    )
    cox = coxph.fit(
        runner, SITES, "time", "cens", COX_COVARIATES, ties="efron", data=DATA_LABEL,
        secure=True, grid=GRID,
    )  # fmt: skip
    say(f"  Cox fit: {cox.rounds} rounds, {runner.seconds:.1f} s through the live daemons")
    say(
        f"  researcher asks for the pooled Kaplan–Meier curve under secure aggregation "
        f"({len(GRID)}-point grid): each site's counts masked, only their sum opens"
    )
    curves = km.fit(runner, SITES, "time", "cens", data=DATA_LABEL, secure=True, grid=GRID)
    return cox, curves


def _site_frames(data_paths: dict[str, Path]) -> dict[str, Any]:
    """Each hospital's CSV as it holds it (for the central references only)."""
    import pandas as pd

    return {site: pd.read_csv(path) for site, path in data_paths.items()}


def _compare_cox(cox: Any, data_paths: dict[str, Path], pooled: Any, say: Say) -> bool:
    """Print the federated fit beside lifelines' fit of the data *as the sites coarsen it*
    (``coxph.coarsened_data``: the very function the sites answer from); True if equal."""
    from lifelines import CoxPHFitter

    from ptm_p2p.algorithms import coxph

    coarse = coxph.coarsened_data(
        _site_frames(data_paths),
        "time",
        "cens",
        COX_COVARIATES,
        min_group_size=MIN_GROUP_SIZE,
        time_resolution=TIME_RESOLUTION,
    )
    # Fit the references tightly: with its default precision lifelines stops ~4e-6 short.
    tight = {"precision": 1e-12}
    central = CoxPHFitter().fit(coarse.drop(columns="site"), "time", "cens", fit_options=tight)
    raw = CoxPHFitter().fit(
        pooled[[*COX_COVARIATES, "time", "cens"]], "time", "cens", fit_options=tight
    )
    say("")
    say(cox.summary())
    say("")
    head = ("coef federated", "central", "se federated", "central")
    say(f"  {'covariate':<12}" + "".join(f"{h:>16}" for h in head))
    worst_coef = worst_se = shift = 0.0
    for name in COX_COVARIATES:
        coef, se = cox.params[name], cox.standard_errors[name]
        ref_coef = float(central.params_[name])
        ref_se = float(central.standard_errors_[name])
        worst_coef = max(worst_coef, abs(coef - ref_coef))
        worst_se = max(worst_se, abs(se - ref_se))
        shift = max(shift, abs(coef - float(raw.params_[name])) / float(raw.standard_errors_[name]))
        say(f"  {name:<12}" + "".join(f"{v:>16.8f}" for v in (coef, ref_coef, se, ref_se)))
    ll_diff = abs(cox.log_likelihood - float(central.log_likelihood_))
    matches = worst_coef < COX_COEF_TOL and worst_se < COX_SE_TOL
    say(
        f"  cox federated == central (on the data as the sites coarsen it): "
        f"{'yes' if matches else 'NO'} (largest difference: coef {worst_coef:.1e}, se "
        f"{worst_se:.1e}, log-likelihood {ll_diff:.1e}; lifelines on coxph.coarsened_data: "
        f"{coarse['time'].nunique()} distinct times instead of {pooled['time'].nunique()})"
    )
    say(
        f"  the price of the sites' controls: the coefficients move by at most {shift:.2f} "
        "standard errors from lifelines' fit of the raw pooled patients (which never happens "
        "in reality)"
    )
    return matches


def _km_report(
    curves: Any, data_paths: dict[str, Path], pooled: Any, path: Path, say: Say
) -> tuple[bool, Path]:
    """Plot the pooled curve to ``path``; check it against the sites' own code run locally
    on their files (what the masked sum must open to) and print five-year survival beside
    the central estimate on the raw data."""
    from lifelines import KaplanMeierFitter

    from ptm_p2p.algorithms import km

    km.plot(curves, path)
    replay = km.fit_local(
        _site_frames(data_paths),
        "time",
        "cens",
        min_group_size=MIN_GROUP_SIZE,
        time_resolution=TIME_RESOLUTION,
        secure=True,
        grid=GRID,
    )
    ours = curves.curve("pooled")
    same = (
        curves.secure
        and not curves.dropped
        and list(ours.index) == list(replay.curve("pooled").index)
        and float((ours - replay.curve("pooled")).abs().max().max()) == 0.0
    )
    survival = ours["survival"]
    federated = float(survival[survival.index <= KM_AT_DAYS].iloc[-1])
    reference = float(KaplanMeierFitter().fit(pooled["time"], pooled["cens"]).predict(KM_AT_DAYS))
    say(
        f"  km (secure sum): pooled curve from {len(curves.sites)} sites in {curves.rounds} "
        f"round, no curve per site; survival at {KM_AT_DAYS} days: federated {federated:.3f}, "
        f"central on the raw data {reference:.3f} (the sites' {TIME_RESOLUTION}-day intervals "
        f"of ≥ {MIN_GROUP_SIZE} exits and counts rounded to multiples of {MIN_GROUP_SIZE})"
    )
    say(
        f"  km secure sum == the sites' code replayed on their files: "
        f"{'yes' if same else 'NO'} (every column, difference 0.0)"
    )
    say(f"  km plot: {path}")
    return same, path


def _revealed(home: Path) -> list[str]:
    """A site's disclosure lines, as ``ptm status`` prints them."""
    from ptm_p2p.network.home_status import disclosure, render_disclosure

    return render_disclosure(disclosure(home))


def _progress_printer(say: Say) -> Callable[[Any], None]:
    """Print a task's per-site progress each time it changes."""
    last = [""]

    def show(view: Any) -> None:
        line = ", ".join(f"{site} {state}" for site, state in view.progress.items())
        if line != last[0]:
            say(f"    progress: {line}")
            last[0] = line

    return show


def _copy_ledger(source: Path, target: Path) -> None:
    with read_only_copy(source) as store:
        store.copy_to(target)


def _audit_home(home: Path) -> AuditReport:
    with read_only_copy(home) as store:
        return audit(store)


def audit_simulated(workdir: Path, say: Say) -> bool:
    """Step 7: audit a simulated ledger, then a copy with one flipped byte."""
    path = workdir / "simulated.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = SqliteStore(path)
    try:
        simulate(store, SIMULATED_ENTRIES, sites=5, seed=7)
        started = time.perf_counter()
        clean = audit(store, workers=default_workers(SIMULATED_ENTRIES, os.cpu_count()))
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    say(
        f"  simulated ledger: {SIMULATED_ENTRIES:,} entries, audit "
        f"{'ok' if clean.ok else 'FAILED'} in {elapsed:.2f} s "
        f"({SIMULATED_ENTRIES / elapsed:,.0f} entries/s), {len(clean.checkpoints)} checkpoints"
    )

    forged = workdir / "simulated-forged.db"
    forged.unlink(missing_ok=True)
    with sqlite3.connect(path) as source, sqlite3.connect(forged) as target:
        source.backup(target)
    target_index = SIMULATED_ENTRIES // 2 + 17
    with sqlite3.connect(forged) as db:
        raw = bytearray(
            db.execute("SELECT raw FROM entries WHERE idx = ?", (target_index,)).fetchone()[0]
        )
        raw[len(raw) // 2] ^= 0x01
        db.execute("UPDATE entries SET raw = ? WHERE idx = ?", (bytes(raw), target_index))
    store = SqliteStore(forged)
    try:
        tampered = audit(store)
    finally:
        store.close()
    first = tampered.problems[0] if tampered.problems else None
    caught = (not tampered.ok) and first is not None and first.index == target_index
    say(
        f"  flipped one byte of entry {target_index}: audit "
        f"{'caught it' if caught else 'MISSED IT'}: {first.message[:110] if first else '-'}…"
    )
    return clean.ok and caught


def run_demo(workdir: Path, say: Say) -> bool:
    from ptm_p2p.dev.stack import ensure_stack

    workdir = workdir.resolve()  # site policies name data by absolute path
    workdir.mkdir(parents=True, exist_ok=True)
    say("[1/3] local infrastructure: Docker engine, registry, base and algorithm images")
    stack = ensure_stack()
    say(f"  summary image: {stack.images['summary']}")
    say("[2/3] a federated study on real survival data over a live hub and site daemons")
    study = run_study(workdir / "study", stack.images, say)
    say("[3/3] the auditor's view")
    audited = audit_simulated(workdir, say)
    ok = study.ok and audited
    say("")
    # The last line names the study's ledger: an auditor's starting point.
    verdict = "demo: ok" if ok else "demo: FAILED (see above)"
    say(f"{verdict}; audit the study's ledger yourself: ptm audit {study.ledger}")
    return ok
