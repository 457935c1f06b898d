"""Take the README's screenshots of ``ptm explore`` in headless Chromium (docs/img/).

    PYTHONPATH=$PWD python3 scripts/explorer_screenshots.py

Uses the audit story of the tests (``tests/auditstory.py``: a three-round Cox study, a
refusal, a failure, a cancel, a revocation) and a copy of it with one forged entry.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from auditstory import forge, write_story  # noqa: E402
from chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from ptm_p2p.explorer.index import Explorer  # noqa: E402
from ptm_p2p.explorer.server import serve_in_thread  # noqa: E402

OUT = ROOT / "docs" / "img"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        story = write_story(Path(tmp) / "ledger.db")
        forge(story, "summary-hospital-b", Path(tmp) / "forged.db")
        good = Explorer.open(story.path)
        bad = Explorer.open(Path(tmp) / "forged.db")
        good_server, good_url = serve_in_thread(good)
        bad_server, bad_url = serve_in_thread(bad)
        index = story.index["summary-hospital-b"]
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})

                def shot(url: str, route: str, ready: str, name: str, click: str = "") -> None:
                    page.goto(f"{url}/#{route}")
                    page.wait_for_selector(ready)
                    if click:
                        page.click(click)
                        page.wait_for_selector(".proof-result.ok, .proof-result.bad")
                    page.screenshot(path=str(OUT / name), full_page=True)

                shot(good_url, "/", "#verdict", "explorer-overview.png")
                shot(
                    good_url,
                    "/task/" + story.hash("summary"),
                    "main[data-page=task] table",
                    "explorer-task.png",
                )
                shot(
                    good_url,
                    f"/entry/{index}",
                    "#verify-proof",
                    "explorer-proof-ok.png",
                    "#verify-proof",
                )
                shot(
                    bad_url,
                    f"/entry/{index}",
                    "#verify-proof",
                    "explorer-forged.png",
                    "#verify-proof",
                )
                shot(
                    good_url,
                    "/checkpoints",
                    "#verify-consistency",
                    "explorer-checkpoints.png",
                    "#verify-consistency",
                )
                browser.close()
        finally:
            for server in (good_server, bad_server):
                server.shutdown()
                server.server_close()
            good.close()
            bad.close()
    print(f"wrote screenshots to {OUT}")


if __name__ == "__main__":
    main()
