"""`ptm audit` answers the auditor's questions (issue 17): who asked what, where, on which
data, when, for whom, and what each site answered and why — per study, researcher, site and
data label — in text that fits a screen, complete JSON and CSV; a forged entry is one cause
with its consequences under it; a home that never synced says so.

All over real signed ledgers (``tests/auditstory.py``, ``ptm ledger simulate``) through the
real CLI.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptm_p2p.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auditstory import FAILURE, REFUSAL, UNBOUND, Story, forge, write_story  # noqa: E402
from simulated import flip_byte, simulate_ledger  # noqa: E402


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    return write_story(tmp_path_factory.mktemp("story") / "ledger.db")


def audit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", *args])
    return result.exit_code, result.output


def audit_json(path: Path) -> tuple[int, dict]:
    code, out = audit(str(path), "--json")
    return code, json.loads(out)


def test_json_names_what_ran_where_when_on_which_data_and_why(story: Story) -> None:
    code, report = audit_json(story.path)
    assert code == 0
    tasks = {t["task"]: t for t in report["tasks"]}
    summary = tasks[story.hash("summary")]
    assert summary["algorithm"] == "summary"
    assert summary["image_repository"] == "127.0.0.1:5000/ptm/summary"
    assert summary["data"] == ["survival"]
    assert summary["publisher_org"] == "uni-research"
    assert summary["time"] == "2026-01-01T03:16:00.000Z"
    assert summary["timestamp_ms"] == 1_767_225_600_000 + 196 * 60_000
    answers = {a["site"]["org"]: a for a in summary["answers"]}
    assert answers["hospital-a"]["status"] == "ok"
    assert answers["hospital-b"]["status"] == "refused"
    assert answers["hospital-b"]["reason"] == REFUSAL
    assert answers["hospital-c"]["reason"] == FAILURE
    assert answers["hospital-c"]["time"].endswith("Z")
    # The old per-site map keeps its keys and now carries the reason too.
    assert any(r.get("reason") == REFUSAL for r in summary["results"].values())
    km = tasks[story.hash("km")]
    assert km["cancelled"]["reason"] == "wrong cohort"
    assert km["answers"][0]["reason"] == "cancelled by its publisher: wrong cohort"
    # A format-2 task and its answers carry the same public facts.
    v2 = tasks[story.hash("descriptives")]
    assert v2["format"] == 2 and v2["data"] == ["survival"]
    assert [(a["site"]["org"], a["status"], a["format"]) for a in v2["answers"]] == [
        ("hospital-a", "ok", 2),
        ("hospital-b", "refused", 2),
    ]
    assert v2["answers"][1]["reason"] == UNBOUND


def test_the_rounds_of_one_fit_are_one_study(story: Story) -> None:
    _, report = audit_json(story.path)
    studies = {s["family"]: s for s in report["studies"]}
    assert set(studies) == {"cox", "summary", "km", "descriptives"}
    cox = studies["cox"]
    assert cox["rounds"] == 3
    assert cox["task_ids"] == [story.hash(f"cox-{r}") for r in (1, 2, 3)]
    assert cox["publisher_org"] == "uni-research" and cox["data"] == ["survival"]
    assert cox["statuses"] == {"ok": 6}
    summary = studies["summary"]
    assert {(n["site"].split("(")[1][:-1], n["status"]) for n in summary["not_ok"]} == {
        ("hospital-b", "refused"),
        ("hospital-c", "failed"),
    }
    rounds = [t["round"] for t in report["tasks"] if t["study"] == cox["study"]]
    assert rounds == [1, 2, 3]
    assert "round marker" in report["study_rule"]


def test_per_researcher_site_and_data_source(story: Story) -> None:
    _, report = audit_json(story.path)
    researchers = {r["org"]: r for r in report["researchers"]}
    assert researchers["uni-research"]["tasks"] == 5
    assert researchers["uni-research"]["studies"] == 3
    assert researchers["pharma-lab"]["data"] == ["registry"]
    sites = {s["org"]: s for s in report["sites"]}
    assert sites["hospital-b"]["statuses"] == {"ok": 3, "refused": 2}
    assert [n["reason"] for n in sites["hospital-b"]["not_ok"]] == [REFUSAL, UNBOUND]
    assert sites["hospital-c"]["ran"] == []
    data = {d["label"]: d for d in report["data_sources"]}
    assert data["survival"]["tasks"] == 5 and data["registry"]["tasks"] == 1


def test_member_timeline_and_a_shared_organisation_name(story: Story) -> None:
    _, report = audit_json(story.path)
    pharma = next(m for m in report["members"] if m["org"] == "pharma-lab")
    events = [(e["event"], e["reason"]) for e in pharma["timeline"]]
    assert events == [("admitted", None), ("revoked", "left the project")]
    assert pharma["revoked_time"] == pharma["timeline"][1]["time"]
    assert any("'consortium' is held by 2 keys" in w for w in report["warnings"])
    code, text = audit(str(story.path), "--section", "members")
    assert "revoked at entry" in text and "left the project" in text and "warning:" in text


def test_a_forged_entry_is_one_cause_and_each_checkpoint_is_listed_once(
    story: Story, tmp_path: Path
) -> None:
    forged = tmp_path / "forged.db"
    index = forge(story, "summary-hospital-b", forged)
    code, report = audit_json(forged)
    assert code == 1
    # The copy holds each checkpoint twice (the hub's note, then the cosigned one): one
    # checkpoint each in the report, with every witness.
    assert [c["size"] for c in report["checkpoints"]] == [16, 27]
    assert all(len(c["cosigners"]) == 3 for c in report["checkpoints"])
    assert [c["ok"] for c in report["checkpoints"]] == [True, False]
    [cause] = report["causes"]
    assert cause["index"] == index
    # Its consequences, counted under it: the checkpoint signed after it no longer matches,
    # and the site's next entry (its format-2 answer) no longer follows its chain.
    assert cause["consequence_count"] == 2
    assert "checkpoint at size 27" in cause["consequences"][0]
    assert "1 later entries by" in cause["consequences"][1]
    # A forged answer is no fact: the site's answer is missing, not "refused".
    summary = next(t for t in report["tasks"] if t["task"] == story.hash("summary"))
    assert {a["site"]["org"] for a in summary["answers"]} == {"hospital-a", "hospital-c"}
    code, text = audit(str(forged))
    assert text.count("BAD size 27") == 1
    assert "2 consequences of it" in text


def test_a_flipped_byte_in_a_result_is_one_cause(tmp_path: Path) -> None:
    """An entry that no longer decodes is attributed to the author it claims, so that
    author's next entries are its consequences, not new causes."""

    path = tmp_path / "sim.db"
    simulate_ledger(path, "-n", "1200", "-k", "3", "--checkpoint-every", "250")
    flip_byte(path, 700)
    code, report = audit_json(path)
    assert code == 1
    assert [c["index"] for c in report["causes"]] == [700]
    assert report["causes"][0]["consequence_count"] > 3
    code, text = audit(str(path))
    assert len(text.splitlines()) < 100, text
    assert "use --json for all" not in text


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "ledger.db"
    simulate_ledger(path, "-n", "1500", "-k", "4")
    return path


def test_text_fits_a_screen_and_sections_list_everything(simulated: Path) -> None:
    code, text = audit(str(simulated))
    assert code == 0
    assert len(text.splitlines()) <= 100, len(text.splitlines())
    assert "--section tasks" in text
    _, report = audit_json(simulated)
    code, tasks = audit(str(simulated), "--section", "tasks")
    assert code == 0
    assert sum(1 for line in tasks.splitlines() if line.startswith("  entry ")) == len(
        report["tasks"]
    )
    assert len(report["tasks"]) > 100  # --json is complete, never truncated


def test_csv_tables_for_a_spreadsheet(story: Story, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    code, _ = audit(str(story.path), "--csv", str(out))
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert {"tasks.csv", "answers.csv", "studies.csv", "members.csv", "sites.csv"} <= set(names)
    with open(out / "answers.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    refused = [r for r in rows if r["status"] == "refused"]
    assert [r["reason"] for r in refused] == [REFUSAL, UNBOUND]
    assert refused[0]["site_org"] == "hospital-b" and refused[0]["time"].endswith("Z")
    with open(out / "studies.csv", newline="") as handle:
        studies = list(csv.DictReader(handle))
    assert sorted(s["rounds"] for s in studies) == ["1", "1", "1", "3"]


def test_a_home_that_never_synced_says_so(tmp_path: Path) -> None:
    home = tmp_path / "admin"
    result = CliRunner().invoke(
        main, ["init", "--home", str(home), "--name", "admin", "--role", "admin"]
    )
    assert result.exit_code == 0, result.output
    code, out = audit(str(home))
    assert code == 1
    assert "never replicated the log" in out
    assert "An admin's home never does" in out
    assert "ptm ledger copy" in out


def test_a_hub_operators_pardon_is_in_the_members_timeline(story: Story, tmp_path: Path) -> None:
    """A pardon is a local record of the hub's home (pardoned.json), not a signed entry: the
    audit of a hub home shows it in the member's timeline and says where it comes from."""
    import shutil

    home = tmp_path / "hub"
    home.mkdir()
    shutil.copy(story.path, home / "ledger.db")
    uni = story.entries[story.index["cox-1"]].author.hex()
    (home / "pardoned.json").write_text(json.dumps({"keys": [uni]}))
    code, out = audit(str(home), "--json")
    assert code == 0
    member = next(m for m in json.loads(out)["members"] if m["key"] == uni)
    assert [e["event"] for e in member["timeline"]] == ["admitted", "pardoned"]
    assert "pardoned.json" in member["timeline"][1]["reason"]
    code, text = audit(str(home), "--section", "members")
    assert "uni-research" in text and "pardoned" in text
