"""The ``summary`` image's secure-sum answer: every site answers in the shape the request
names, its daemon masks it, and the researcher sees only the sums over the sites. Runs the
image's own ``compute`` in process with each site's environment (``PTM_DATA_DIR``,
``PTM_MIN_GROUP_SIZE``, ``PTM_TIME_RESOLUTION``), the real masking and the real sum."""

from __future__ import annotations

import json
import math

import pytest

from ptm_p2p.algorithm import AlgorithmError
from ptm_p2p.algorithms import datasets
from ptm_p2p.ledger import secagg

from .attacks import read_as_unmasked
from .masking import masked

NAMES = ("hospital-a", "hospital-b", "hospital-c")
REQUEST = {
    "secure_sum": {
        "numeric": ["age", "tsize", "progrec"],
        "categorical": {"horTh": ["1", "0"], "menostat": ["1"]},
    }
}


@pytest.fixture
def sites(tmp_path, summary_main):
    """The summary module and one data folder per site (hospital-c: 2 missing progrec)."""
    frames = dict(zip(NAMES, datasets.split(datasets.load_gbsg2(), datasets.SIZES), strict=True))
    frames["hospital-c"] = frames["hospital-c"].copy()
    frames["hospital-c"].loc[[3, 8], "progrec"] = None  # fewer than k missing: withheld
    folders = {}
    for name, frame in frames.items():
        folders[name] = tmp_path / name
        folders[name].mkdir()
        frame.to_csv(folders[name] / "gbsg2", index=False)
    return summary_main, frames, folders


def _answers(sites, monkeypatch, request, resolution: str) -> dict[str, dict]:
    module, _, folders = sites
    monkeypatch.setenv("PTM_TIME_RESOLUTION", resolution)
    out = {}
    for name in NAMES:
        monkeypatch.setenv("PTM_DATA_DIR", str(folders[name]))
        out[name] = json.loads(json.dumps(module.compute(request)))
    return out


def test_secure_summary_sums_equal_the_plain_answers_summed(sites, monkeypatch) -> None:
    """Without control (exact): the secure totals equal the plain per-site answers added."""
    outputs = _answers(sites, monkeypatch, REQUEST, "0")
    plain = _answers(sites, monkeypatch, {"categorical": ["horTh", "menostat"]}, "0")
    total, public = secagg.unmask_by_sum(masked(outputs, b"\x33" * 32))
    assert total["rows"] == [686.0]
    for i, column in enumerate(REQUEST["secure_sum"]["numeric"]):
        count, missing, added, squares, withheld = total[f"numeric.{i}"]
        stats = [plain[s]["numeric"][column] for s in NAMES]
        assert (count, missing, withheld) == (sum(x["count"] for x in stats),
                                              sum(x["missing"] for x in stats), 0)  # fmt: skip
        assert math.isclose(added, math.fsum(x["sum"] for x in stats), rel_tol=1e-12)
        assert math.isclose(squares, math.fsum(x["sum_sq"] for x in stats), rel_tol=1e-12)
    yes, no, other, hidden = total["categorical.0"]
    assert (yes, no, other, hidden) == (
        sum(plain[s]["categorical"]["horTh"]["1"] for s in NAMES),
        sum(plain[s]["categorical"]["horTh"]["0"] for s in NAMES), 0, 0,
    )  # fmt: skip
    post, pre, hidden = total["categorical.1"]  # "0" is not listed: counted as other
    assert (post, pre, hidden) == (
        sum(plain[s]["categorical"]["menostat"]["1"] for s in NAMES),
        sum(plain[s]["categorical"]["menostat"]["0"] for s in NAMES), 0,
    )  # fmt: skip
    assert all(p["numeric"] == REQUEST["secure_sum"]["numeric"] for p in public.values())


def test_secure_summary_under_control_withholds_and_rounds(sites, monkeypatch) -> None:
    outputs = _answers(sites, monkeypatch, REQUEST, "30")
    c = outputs["hospital-c"]["secure_sum"]
    assert c["numeric.2"] == [0, 0, 0.0, 0.0, 1]  # progrec: 2 missing < k, withheld
    assert all(o["secure_sum"]["rows"][0] % 5 == 0 for o in outputs.values())
    for o in outputs.values():
        for name, values in o["secure_sum"].items():
            if name.startswith("categorical."):
                assert all(v == 0 or v >= 5 for v in values)


def test_the_researcher_reads_no_site_summary(sites, monkeypatch) -> None:
    outputs = _answers(sites, monkeypatch, REQUEST, "30")
    truth = {s: o["secure_sum"] for s, o in outputs.items()}
    received = masked(outputs, b"\x33" * 32)
    assert read_as_unmasked(received, truth) == 0


def test_a_bad_secure_request_or_an_unknown_column_is_an_error(sites, monkeypatch) -> None:
    with pytest.raises(AlgorithmError, match="naming at least one column"):
        _answers(sites, monkeypatch, {"secure_sum": {}}, "30")
    with pytest.raises(AlgorithmError, match="columns not in gbsg2"):
        _answers(sites, monkeypatch, {"secure_sum": {"numeric": ["age", "nope"]}}, "30")
