"""`ptm explore` in real headless Chromium (Debian's ``chromium``, driven by Playwright with
the system browser; ``bin/system-packages`` installs it): the pages render, search finds a
task by id prefix and by organisation, a tampered copy shows the forged entry in red, and
the inclusion proof checked in the browser (WebCrypto) passes for a good entry and fails for
a forged one, as does the consistency check between two checkpoints.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ptm_p2p.explorer.index import Explorer
from ptm_p2p.explorer.server import serve_in_thread

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auditstory import REFUSAL, Story, forge, write_story  # noqa: E402
from chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

RED = "rgb(176, 0, 32)"  # --bad in app.css


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    return write_story(tmp_path_factory.mktemp("story") / "ledger.db")


def _serve(path: Path) -> Iterator[tuple[Explorer, str]]:
    explorer = Explorer.open(path)
    server, url = serve_in_thread(explorer)
    yield explorer, url
    server.shutdown()
    server.server_close()
    explorer.close()


@pytest.fixture(scope="module")
def good(story: Story) -> Iterator[tuple[Explorer, str]]:
    yield from _serve(story.path)


@pytest.fixture(scope="module")
def forged(
    story: Story, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Explorer, str]]:
    path = tmp_path_factory.mktemp("forged") / "ledger.db"
    forge(story, "summary-hospital-b", path)
    yield from _serve(path)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run bin/system-packages (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors  # no script error on any page


def open_page(page: Any, url: str, route: str, ready: str) -> None:
    page.goto(f"{url}/#{route}")
    page.wait_for_selector(ready, timeout=15_000)


def test_pages_render(page: Any, good: tuple[Explorer, str], story: Story) -> None:
    _, url = good
    open_page(page, url, "/", "#verdict")
    assert "verified" in page.inner_text("#verdict")
    assert "uni-research" in page.inner_text("main")
    open_page(page, url, "/tasks", "main[data-page=tasks] table")
    assert page.locator("main tbody tr").count() == 6
    open_page(page, url, "/task/" + story.hash("summary"), "main[data-page=task] table")
    text = page.inner_text("main")
    assert REFUSAL in text and "the algorithm exited with code 2" in text
    assert "127.0.0.1:5000/ptm/summary" in text and "survival" in text
    open_page(page, url, "/study/" + story.hash("cox-1"), "main[data-page=study] table")
    assert (
        "3" in page.inner_text("main dl") and page.locator("main h2 + table tbody tr").count() >= 3
    )
    open_page(page, url, "/members", "main[data-page=members] table")
    assert "left the project" in page.inner_text("main")
    open_page(page, url, "/sites", "main[data-page=sites] table")
    page.click("text=hospital-b")
    page.wait_for_selector("main[data-page=site] table")
    assert REFUSAL in page.inner_text("main")
    open_page(page, url, "/checkpoints", "#verify-consistency")
    assert page.inner_text("main").count("hospital-c at 2026-01-01T") == 2
    open_page(page, url, "/entries", "main[data-page=entries] table")
    assert page.locator("main tbody tr").count() == 27
    assert page.locator("main tbody tr.bad").count() == 0


def search(page: Any, url: str, query: str) -> str:
    page.goto(f"{url}/#/")
    page.wait_for_selector("#verdict")
    page.fill("#q", query)
    page.press("#q", "Enter")
    page.wait_for_selector("main[data-page=search] h1")
    return page.inner_text("main")


def test_search_finds_a_task_by_id_prefix_and_by_organisation(
    page: Any, good: tuple[Explorer, str], story: Story
) -> None:
    _, url = good
    task = story.hash("summary")
    text = search(page, url, task[:7])
    assert f"tasks whose id starts with {task[:7]} (1)" in text
    page.click(f"a[href='#/task/{task}']")
    page.wait_for_selector("main[data-page=task] table")
    assert REFUSAL in page.inner_text("main")
    text = search(page, url, "pharma-lab")
    assert "members of organisation pharma-lab (1)" in text
    assert "127.0.0.1:5000/ptm/km" in text
    assert "nothing found" in search(page, url, "no-such-organisation")


def verify_proof(page: Any, url: str, index: int) -> tuple[str, str]:
    open_page(page, url, f"/entry/{index}", "#verify-proof")
    page.click("#verify-proof")
    page.wait_for_selector("#proof-result.ok, #proof-result.bad", timeout=15_000)
    return page.get_attribute("#proof-result", "class") or "", page.inner_text("#proof-result")


def test_a_tampered_copy_shows_the_forged_entry_in_red(
    page: Any, forged: tuple[Explorer, str], story: Story
) -> None:
    _, url = forged
    index = story.index["summary-hospital-b"]
    open_page(page, url, "/", "#verdict")
    assert "FAILED" in page.inner_text("#verdict")
    assert page.locator("#causes li.bad").count() == 1
    assert f"entry {index}" in page.inner_text("#causes")
    open_page(page, url, "/entries", "main[data-page=entries] table")
    bad = page.locator("main tbody tr.bad")
    # The forged entry, and the same site's next entry refused as its consequence.
    assert bad.count() == 2
    assert bad.first.locator("td").first.inner_text() == f"#{index}"
    assert "forged" in bad.first.inner_text() and "refused" in bad.nth(1).inner_text()
    assert bad.first.locator("td").first.evaluate("e => getComputedStyle(e).color") == RED
    open_page(page, url, f"/entry/{index}", "#entry-verdict")
    assert page.inner_text("#entry-verdict").startswith("FORGED")
    assert page.eval_on_selector("#entry-title", "e => getComputedStyle(e).color") == RED


def test_the_in_browser_proof_passes_for_a_good_entry_and_fails_for_a_forged_one(
    page: Any, forged: tuple[Explorer, str], good: tuple[Explorer, str], story: Story
) -> None:
    index = story.index["summary-hospital-b"]
    cls, text = verify_proof(page, good[1], index)
    assert "ok" in cls.split() and text.startswith("verified"), text
    assert "Ed25519 signature checked in this browser" in text
    cls, text = verify_proof(page, forged[1], index - 1)  # an untouched entry of the forgery
    assert "ok" in cls.split(), text
    cls, text = verify_proof(page, forged[1], index)
    assert "bad" in cls.split() and text.startswith("FAILED"), text
    assert "is not in the hub-signed tree of size 27" in text
    assert page.eval_on_selector("#proof-result", "e => getComputedStyle(e).color") == RED


def test_consistency_between_two_checkpoints_in_the_browser(
    page: Any, good: tuple[Explorer, str]
) -> None:
    _, url = good
    open_page(page, url, "/checkpoints", "#verify-consistency")
    page.select_option("#cons-old", "16")
    page.select_option("#cons-new", "27")
    page.click("#verify-consistency")
    page.wait_for_selector("#consistency-result.ok, #consistency-result.bad", timeout=15_000)
    assert page.inner_text("#consistency-result").startswith("verified")


def test_a_proof_of_a_rewritten_tree_fails_in_the_browser(
    page: Any, story: Story, tmp_path: Path
) -> None:
    """The page takes neither the entry nor the proof on trust: a copy whose stored tree
    node was rewritten hands it a proof that leads to another root, and it says so."""
    import sqlite3

    path = tmp_path / "nodes.db"
    shutil.copy(story.path, path)
    index = story.index["summary-hospital-b"]
    with sqlite3.connect(path) as db:  # the leaf next to it, used by its inclusion proof
        db.execute("UPDATE nodes SET hash = zeroblob(32) WHERE level = 0 AND idx = ?", (index ^ 1,))
    for _explorer, url in _serve(path):
        cls, text = verify_proof(page, url, index)
        assert "bad" in cls.split() and "not the signed root" in text, text
