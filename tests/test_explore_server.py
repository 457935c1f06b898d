"""`ptm explore`'s server over real ledgers (``tests/auditstory.py``): what each page's JSON
holds, the search, the proofs it hands the browser, and that it is read-only and local.

The browser side (rendering, the proof checks in WebCrypto) is tested in real Chromium in
``tests/test_explore_browser.py``; this file checks the server through real HTTP.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptm_p2p.explorer.index import Explorer
from ptm_p2p.explorer.server import serve_in_thread
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.checkpoint import parse_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auditstory import REFUSAL, Story, forge, write_story  # noqa: E402


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    return write_story(tmp_path_factory.mktemp("story") / "ledger.db")


@pytest.fixture(scope="module")
def served(story: Story) -> Iterator[tuple[Explorer, str]]:
    explorer = Explorer.open(story.path)
    server, url = serve_in_thread(explorer)
    yield explorer, url
    server.shutdown()
    server.server_close()
    explorer.close()


def get(url: str, path: str, method: str = "GET", host: str | None = None) -> tuple[int, dict]:
    port = int(url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers={"Host": host} if host else {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    ctype = response.getheader("Content-Type", "")
    return response.status, json.loads(body) if "json" in ctype else {"text": body.decode()}


def test_overview_task_and_site_pages(served: tuple[Explorer, str], story: Story) -> None:
    _, url = served
    status, overview = get(url, "/api/overview")
    assert status == 200 and overview["ok"] is True
    assert overview["counts"]["studies"] == 4 and overview["counts"]["tasks"] == 6
    status, task = get(url, "/api/task/" + story.hash("summary"))
    reasons = {a["site"]["org"]: a["reason"] for a in task["answers"]}
    assert reasons["hospital-b"] == REFUSAL
    site_b = next(a["site"]["key"] for a in task["answers"] if a["site"]["org"] == "hospital-b")
    status, site = get(url, "/api/site/" + site_b)
    assert status == 200
    assert [n["status"] for n in site["not_ok"]] == ["refused", "refused"]
    assert site["ran"] == ["cox/round-1", "cox/round-2", "cox/round-3"]
    status, study = get(url, "/api/study/" + story.hash("cox-1"))
    assert study["rounds"] == 3 and len(study["tasks"]["items"]) == 3
    status, members = get(url, "/api/members")
    pharma = next(m for m in members if m["org"] == "pharma-lab")
    assert [e["event"] for e in pharma["timeline"]] == ["admitted", "revoked"]


def test_checkpoints_once_each_with_their_witnesses(served: tuple[Explorer, str]) -> None:
    _, url = served
    _, cps = get(url, "/api/checkpoints")
    assert [c["size"] for c in cps] == [16, 27]
    assert all(
        {w["name"] for w in c["cosignatures"]} == {"hospital-a", "hospital-b", "hospital-c"}
        for c in cps
    )
    assert all(w["time"].endswith("Z") for c in cps for w in c["cosignatures"])


def test_search_by_task_id_entry_hash_key_org_image_and_label(
    served: tuple[Explorer, str], story: Story
) -> None:
    explorer, url = served

    def kinds(q: str) -> dict[str, int]:
        status, found = get(url, "/api/search?q=" + q)
        assert status == 200
        return {g["title"]: g["total"] for g in found["groups"]}

    task = story.hash("summary")
    assert kinds(task[:6])[f"tasks whose id starts with {task[:6]}"] == 1
    result = story.hash("summary-hospital-b")
    assert kinds(result[:8])[f"entries whose hash starts with {result[:8]}"] == 1
    pharma = next(k for k, m in explorer.members.items() if m["org"] == "pharma-lab")
    assert any("members whose key" in t for t in kinds(pharma[:10]))
    by_org = kinds("uni-research")
    assert by_org["members of organisation uni-research"] == 1
    assert next(v for t, v in by_org.items() if t.startswith("tasks published by")) == 5
    assert (
        kinds("coxph")[
            "tasks running image 127.0.0.1:5000/ptm/coxph-pooled@sha256:"
            + next(t["image_digest"][7:] for t in explorer.tasks if "cox" in t["image"])
        ]
        == 3
    )
    assert kinds("registry")["tasks reading data label registry"] == 1
    assert kinds("no-such-thing") == {}


def test_the_proofs_handed_to_the_browser_hold(served: tuple[Explorer, str], story: Story) -> None:
    """What the page checks in WebCrypto, checked here with the project's own verifier."""
    _, url = served
    index = story.index["summary-hospital-b"]
    _, proof = get(url, f"/api/proof/{index}")
    signed = parse_checkpoint(proof["note"])
    assert proof["size"] == signed.checkpoint.size == 27
    merkle.verify_inclusion(
        merkle.leaf_hash(bytes.fromhex(proof["raw"])),
        index,
        proof["size"],
        [bytes.fromhex(p) for p in proof["proof"]],
        signed.checkpoint.root,
    )
    _, cons = get(url, "/api/consistency?old=16&new=27")
    merkle.verify_consistency(
        16,
        27,
        [bytes.fromhex(p) for p in cons["proof"]],
        parse_checkpoint(cons["old_note"]).checkpoint.root,
        parse_checkpoint(cons["new_note"]).checkpoint.root,
    )


def test_read_only_and_local(served: tuple[Explorer, str]) -> None:
    _, url = served
    for method in ("POST", "PUT", "DELETE"):
        assert get(url, "/api/overview", method)[0] == 405
    # DNS rebinding: a page elsewhere that resolves its own name to 127.0.0.1 gets nothing.
    assert get(url, "/api/overview", host="attacker.example")[0] == 403
    assert get(url, "/api/task/00")[0] == 404
    assert get(url, "/", "GET")[1]["text"].startswith("<!doctype html>")


def test_a_forged_copy_marks_the_forged_entry(story: Story, tmp_path: Path) -> None:
    forged = tmp_path / "forged.db"
    index = forge(story, "summary-hospital-b", forged)
    explorer = Explorer.open(forged)
    try:
        assert explorer.entry(index)["status"] == "forged"
        assert explorer.entry(index - 1)["status"] == "accepted"
        # The site's next entry is refused too (its chain is broken), as a consequence.
        later = story.index["descriptives-hospital-b"]
        assert explorer.entry(later)["status"] == "refused"
        assert explorer.overview()["counts"]["refused_entries"] == 2
        bad = explorer.entry_list(0, 50, bad_only=True)
        assert [e["index"] for e in bad["items"]] == [index, later]
    finally:
        explorer.close()


def test_the_command_serves_and_stops_cleanly(story: Story, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptm_p2p.cli", "explore", str(story.path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]
        assert "verified" in lines[0], lines
        url = lines[1].split()[1].rstrip("/")
        assert url.startswith("http://127.0.0.1:")
        assert get(url, "/api/overview")[1]["size"] == 27
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr.read()  # type: ignore[union-attr]


def test_a_home_that_never_synced_says_so(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ptm_p2p.cli import main

    home = tmp_path / "admin"
    assert CliRunner().invoke(main, ["init", "--home", str(home), "--name", "a"]).exit_code == 0
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["explore", str(home), "--port", "0"])
    assert result.exit_code == 1 and time.perf_counter() - start < 10
    assert "never replicated the log" in result.output
