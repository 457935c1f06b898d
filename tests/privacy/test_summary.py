"""The ``summary`` image's code under disclosure control: no single patient's value, no count
under k. Runs the image's own ``compute`` in process, with the environment a site's sandbox
gives it (``PTM_DATA_DIR``, ``PTM_MIN_GROUP_SIZE``, ``PTM_TIME_RESOLUTION``)."""

from __future__ import annotations

import pytest

from ptm_p2p.algorithms import datasets


@pytest.fixture
def summary(tmp_path, monkeypatch, summary_main):
    frame = datasets.split(datasets.load_gbsg2(), datasets.SIZES)[2].copy()  # 112 patients
    frame.loc[[3, 8], "progrec"] = None  # two missing values: fewer than k
    frame.loc[list(range(10, 20)), "estrec"] = None  # ten: at least k
    folder = tmp_path / "data"
    folder.mkdir()
    frame.to_csv(folder / "gbsg2", index=False)
    monkeypatch.setenv("PTM_DATA_DIR", str(folder))
    return summary_main, frame


def test_summary_without_control_is_exact(summary, monkeypatch):
    module, frame = summary
    monkeypatch.setenv("PTM_TIME_RESOLUTION", "0")
    out = module.compute({})
    assert out["rows"] == 112 and out["disclosure_control"] is False
    assert out["numeric"]["progrec"]["missing"] == 2  # a count under k, exact
    assert out["numeric"]["age"]["max"] == frame["age"].max()  # one patient's exact age


def test_summary_under_control_reveals_no_patient_and_no_small_count(summary, monkeypatch):
    module, frame = summary
    monkeypatch.setenv("PTM_TIME_RESOLUTION", "30")
    out = module.compute({})
    assert out["disclosure_control"] is True
    assert out["rows"] % 5 == 0 and out["rows"] >= 112
    assert "progrec" not in out["numeric"] and "progrec" in out["suppressed"]
    assert out["numeric"]["estrec"]["missing"] == 10
    for stats in out["numeric"].values():
        assert "min" not in stats and "max" not in stats
        assert stats["missing"] == 0 or stats["missing"] >= 5
    for counts in out["categorical"].values():
        assert all(n >= 5 for n in counts.values())
