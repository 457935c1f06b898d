"""Site daemons that each hold one table of data, for the workflow tests on a live cluster.

``start_data_sites`` does what an operator does for every site of these tests: a home, the
site's rows as a CSV file in it, a policy (the images it runs, by repository; the one
organisation it takes tasks from; the data label), the daemon started; then the admin
admits them all as sites.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ptm_p2p.algorithms import datasets
from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster


def start_data_sites(
    cluster: LocalCluster,
    frames: Mapping[str, pd.DataFrame],
    label: str,
    publisher_org: str,
    images: Callable[[str], Sequence[str]],
    **policy: Callable[[str], Any],
) -> None:
    """Start a site daemon per ``frames`` entry and admit it. ``images(site)`` names the
    images (``repo@sha256:…``) a site allows; each ``policy`` keyword is a further
    ``configure_site`` option, computed per site."""
    for site, frame in frames.items():
        cluster.home(site)
        path = cluster.path(site) / f"{label}.csv"
        frame.to_csv(path, index=False)
        cluster.configure_site(
            site,
            images=[image.split("@", 1)[0] for image in images(site)],
            publishers=[publisher_org],
            data={label: path},
            **{option: value(site) for option, value in policy.items()},
        )
        cluster.start_site(site)
    for site in frames:
        cluster.admit(site, "site")


LABEL = "gbsg2"
RESEARCHER_ORG = "uni"
FULL = ("hospital-a", "hospital-b", "hospital-c")
OTHER = "hospital-d"
SMALL = "clinic-e"


def five_gbsg2_sites() -> dict[str, pd.DataFrame]:
    """hospital-a/b/c: GBSG2 split 360/214/112; hospital-d (``OTHER``): 150 other GBSG2
    rows; clinic-e (``SMALL``): 4 patients, under the minimum group size of 5."""
    gbsg2 = datasets.load_gbsg2()
    a, b, c = datasets.split(gbsg2, datasets.SIZES)
    (d,) = datasets.split(gbsg2, (150,), seed=7)
    return {"hospital-a": a, "hospital-b": b, "hospital-c": c, OTHER: d, SMALL: c.iloc[:4]}


@dataclass
class LiveSites:
    """A live cluster of data sites and the researcher's client on it."""

    cluster: LocalCluster
    client: Client
    images: dict[str, str]  # algorithm name -> repo@sha256:…
    frames: dict[str, pd.DataFrame]  # site -> its rows
