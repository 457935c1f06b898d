"""The explorer's HTTP server: the standard library's ``ThreadingHTTPServer``, GET only.

Why the standard library rather than a web framework: the explorer serves a handful of JSON
routes and three static files, read-only, to one person on this machine. ``http.server``
needs no new dependency, and with no POST/PUT/DELETE handler at all there is no write path to
get wrong (anything but GET and HEAD is answered 405). It binds 127.0.0.1 only, answers only
requests whose Host is 127.0.0.1 or localhost (a web page elsewhere cannot reach it through
DNS rebinding), and sends a strict Content-Security-Policy: the page runs only its own script
and talks only to this server.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ptm_p2p.explorer.index import PAGE, Explorer

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
ALLOWED_HOSTS = ("127.0.0.1", "localhost")


def _static(name: str) -> bytes:
    return resources.files("ptm_p2p.explorer").joinpath("static", name).read_bytes()


class NotFound(Exception):
    pass


def _int(params: dict[str, list[str]], name: str, default: int) -> int:
    try:
        return int(params.get(name, [str(default)])[0])
    except ValueError:
        return default


def route(explorer: Explorer, path: str, params: dict[str, list[str]]) -> Any:
    """The JSON answer for an ``/api/…`` path; ``NotFound`` or ``LookupError`` otherwise."""
    parts = [p for p in path.split("/") if p][1:]  # drop "api"
    offset, limit = _int(params, "offset", 0), _int(params, "limit", PAGE)
    found: Any = None
    match parts:
        case ["overview"]:
            found = explorer.overview()
        case ["studies"]:
            found = explorer.study_list(offset, limit)
        case ["study", study_id]:
            found = explorer.study(study_id, offset, _int(params, "limit", 200))
        case ["tasks"]:
            found = explorer.task_list(offset, limit)
        case ["task", task_id]:
            found = explorer.task(task_id)
        case ["members"]:
            found = explorer.member_list()
        case ["sites"]:
            found = explorer.site_list()
        case ["site", key]:
            found = explorer.site(key, offset, limit)
        case ["checkpoints"]:
            found = explorer.checkpoint_list()
        case ["entries"]:
            found = explorer.entry_list(offset, limit, params.get("bad", ["0"])[0] == "1")
        case ["entry", ref]:
            index = explorer.resolve(ref)
            found = explorer.entry(index) if index is not None else None
        case ["proof", ref]:
            index = explorer.resolve(ref)
            if index is None:
                raise NotFound(ref)
            size = params.get("size", [None])[0]
            found = explorer.proof(index, int(size) if size else None)
        case ["consistency"]:
            found = explorer.consistency(_int(params, "old", -1), _int(params, "new", -1))
        case ["search"]:
            found = explorer.search(params.get("q", [""])[0])
    if found is None:
        raise NotFound(path)
    return found


class Handler(BaseHTTPRequestHandler):
    explorer: Explorer  # set on the subclass ``serve`` makes
    server_version = "ptm-explore"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: the terminal shows the address and errors only

    def _send(self, status: int, body: bytes, content_type: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, value: Any, head: bool = False) -> None:
        body = json.dumps(value, separators=(",", ":")).encode()
        self._send(status, body, "application/json", head)

    def _get(self, head: bool) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if host not in ALLOWED_HOSTS:
            self._json(HTTPStatus.FORBIDDEN, {"error": f"host {host!r} is not served"}, head)
            return
        url = urlsplit(self.path)
        if url.path in STATIC:
            name, content_type = STATIC[url.path]
            self._send(HTTPStatus.OK, _static(name), content_type, head)
            return
        if not url.path.startswith("/api/"):
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {url.path}"}, head)
            return
        try:
            value = route(self.explorer, url.path, parse_qs(url.query))
        except NotFound:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"nothing at {url.path}"}, head)
        except (LookupError, ValueError) as exc:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)}, head)
        else:
            self._json(HTTPStatus.OK, value, head)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._get(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._get(head=True)

    def _refuse(self) -> None:
        self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "the explorer is read-only"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815


def make_server(explorer: Explorer, port: int = 0) -> ThreadingHTTPServer:
    """A server for ``explorer`` on 127.0.0.1:``port`` (0: any free port), not started."""
    handler = type("BoundHandler", (Handler,), {"explorer": explorer})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(explorer: Explorer, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start a server in a background thread; returns it and its base URL (tests, benches)."""
    server = make_server(explorer, port)
    threading.Thread(target=server.serve_forever, daemon=True, name="ptm-explore").start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


__all__ = ["Handler", "make_server", "route", "serve_in_thread"]
