"""The disclosure record end to end: a hub, one site daemon under disclosure control, two
researchers of two organisations, real Docker images from the loopback registry.

hospital-a (360 GBSG2 patients) offers ``gbsg2`` and ``gbsg2-minus-one`` (the same patients
but one) with ``max_beta_probes = 2``. Two researchers who collude spend the β budget
together: the third distinct β is refused, by whoever asks. The refusal holds after the
daemon restarts, and after its ``disclosure.db`` is deleted (the daemon rebuilds it from its
own ``ok`` results in the ledger, opening their inputs again). The second data label is
refused once the first is answered. ``ptm status`` shows what was revealed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ptm_p2p.algorithms import datasets
from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import Stack
from ptm_p2p.errors import StudyError
from ptm_p2p.network.home_status import collect, render

pytestmark = [pytest.mark.docker, pytest.mark.network]

ORIGIN = "ptm.example/disclosure-record-test"
SITE = "hospital-a"
RESEARCHERS = {"researcher": "uni", "analyst": "lab"}  # two organisations, colluding


@dataclass
class Record:
    cluster: LocalCluster
    clients: dict[str, Client]
    images: dict[str, str]

    def ask(self, who: str, image: str, request: dict[str, Any]) -> dict[str, Any]:
        return self.clients[who].run_round(
            self.images[image], {SITE: request}, data=[request["data"]], timeout=120
        )[SITE]

    def refusal(self, who: str, image: str, request: dict[str, Any]) -> str:
        with pytest.raises(StudyError) as caught:
            self.ask(who, image, request)
        reason = caught.value.sites[SITE]
        assert reason.startswith("refused: refused by this site's disclosure record: "), reason
        return reason


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Record]:
    root: Path = tmp_path_factory.mktemp("record")
    frame = datasets.split(datasets.load_gbsg2(), datasets.SIZES)[0]
    with LocalCluster(root / "cluster") as cluster:
        cluster.create(ORIGIN, "consortium")
        cluster.start_hub()
        cluster.home(SITE)
        full, minus_one = cluster.path(SITE) / "gbsg2.csv", cluster.path(SITE) / "minus.csv"
        frame.to_csv(full, index=False)
        frame.iloc[1:].to_csv(minus_one, index=False)
        cluster.configure_site(
            SITE,
            images=[stack.images[n].split("@", 1)[0] for n in ("coxph-pooled", "km")],
            publishers=list(RESEARCHERS.values()),
            data={"gbsg2": full, "gbsg2-minus-one": minus_one},
            disclosure_control=True,
            policy={"max_beta_probes": 2},
        )
        cluster.start_site(SITE)
        cluster.admit(SITE, "site")
        for name, org in RESEARCHERS.items():
            cluster.admit(name, "researcher", org=org)
        clients = {n: Client(cluster.root / n, cluster.invitation_path) for n in RESEARCHERS}
        try:
            yield Record(cluster, clients, stack.images)
        finally:
            for client in clients.values():
                client.close()


def evaluate(beta: list[float], label: str = "gbsg2") -> dict[str, Any]:
    return {
        "step": "evaluate",
        "data": label,
        "duration": "time",
        "event": "cens",
        "covariates": ["horTh", "age"],
        "times": [365.0, 730.0, 1095.0],
        "tied": [],
        "betas": [beta],
    }


def restart(record: Record, forget: bool = False) -> None:
    record.cluster.stop(SITE)
    if forget:  # the record is derived: lose it, the daemon rebuilds it at start
        for suffix in ("", "-wal", "-shm"):
            (record.cluster.path(SITE) / f"disclosure.db{suffix}").unlink(missing_ok=True)
    record.cluster.start_site(SITE)


def test_beta_budget_spent_by_two_researchers_holds_across_restarts(record: Record) -> None:
    assert "points" in record.ask("researcher", "coxph-pooled", evaluate([0.1, 0.0]))
    assert "points" in record.ask("analyst", "coxph-pooled", evaluate([0.0, 0.01]))
    # the same β again, by the other researcher: nothing new, still answered
    assert "points" in record.ask("researcher", "coxph-pooled", evaluate([0.0, 0.01]))
    reason = record.refusal("analyst", "coxph-pooled", evaluate([0.2, 0.0]))
    assert "β-probe budget of data source 'gbsg2' is spent (2 of 2" in reason
    restart(record)
    record.refusal("researcher", "coxph-pooled", evaluate([0.3, 0.0]))
    restart(record, forget=True)
    reason = record.refusal("researcher", "coxph-pooled", evaluate([0.4, 0.0]))
    assert "(2 of 2" in reason
    shown = render(collect(record.cluster.path(SITE)))
    assert "disclosure  gbsg2: " in shown
    assert "β probes 2 of 2 used, 0 left (by lab 1, uni 1)" in shown, shown


def test_second_data_label_one_patient_apart_is_refused(record: Record) -> None:
    km = {"data": "gbsg2", "duration": "time", "event": "cens"}
    assert "overall" in record.ask("analyst", "km", km)
    reason = record.refusal("researcher", "km", {**km, "data": "gbsg2-minus-one"})
    assert "'gbsg2-minus-one' and data source 'gbsg2'" in reason
    assert "fewer than 5 patients" in reason
