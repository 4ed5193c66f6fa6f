"""`stepgraph reviews <execution> --serve`: a one-file local page to approve, edit or reject pending items.

The page acts with the user's AWS credentials, so the server trusts nothing it is sent:
- it binds 127.0.0.1 only;
- every request carries the random per-launch token (`?token=` for the page, `X-Review-Token` for the API),
  compared in constant time;
- `Host` must name this loopback address and port (a DNS-rebinding page's Host is its own name), and an
  `Origin`, when sent, must be this server's own; POSTs must send a matching `Origin` and the custom header,
  which a cross-origin page cannot send without a CORS preflight this server never grants;
- payloads (model output) reach the page only as JSON and are shown with `textContent`; the page's CSP
  allows only its own nonce'd script and fetches to itself.
"""

from __future__ import annotations

import hmac
import json
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stepgraph.errors import StepGraphError

MAX_BODY = 1_000_000


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, reviews: Any, *, port: int = 0, token: str | None = None) -> None:
        self.reviews = reviews
        self.token = token or secrets.token_urlsafe(32)
        super().__init__(("127.0.0.1", port), _Handler)
        self.port = int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    def origins(self) -> set[str]:
        return {f"http://{h}" for h in self.hosts()}


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer

    def log_message(self, format: str, *args: Any) -> None:  # the URL holds the token: log nothing
        pass

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in {
            "Content-Type": ctype,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            **(extra or {}),
        }.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data, default=str).encode(), "application/json")

    def _refused(self) -> str | None:
        """Why this request is refused, or None."""
        if self.headers.get("Host", "") not in self.server.hosts():
            return "wrong Host (only this loopback address is served)"
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.origins():
            return "cross-origin request refused"
        if self.command == "POST" and origin is None:
            return "a POST must carry this page's Origin"
        query = parse_qs(urlsplit(self.path).query)
        given = self.headers.get("X-Review-Token") or (query.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), self.server.token.encode()):
            return "missing or wrong token (use the URL `stepgraph reviews --serve` printed)"
        return None

    def do_GET(self) -> None:
        if (why := self._refused()) is not None:
            return self._json(403, {"error": why})
        path = urlsplit(self.path).path
        if path == "/":
            nonce = secrets.token_urlsafe(16)
            html = files("stepgraph.review").joinpath("page.html").read_text().replace("__NONCE__", nonce)
            csp = (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
            )
            return self._send(
                200, html.encode(), "text/html; charset=utf-8", {"Content-Security-Policy": csp}
            )
        if path == "/api/reviews":
            return self._json(200, self.server.reviews.pending())
        return self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if (why := self._refused()) is not None:
            return self._json(403, {"error": why})
        if urlsplit(self.path).path != "/api/answer":
            return self._json(404, {"error": "not found"})
        if "application/json" not in self.headers.get("Content-Type", ""):
            return self._json(415, {"error": "send JSON"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._json(413, {"error": "answer too large"})
        try:
            body = json.loads(self.rfile.read(length))
            item_id, value = str(body["item_id"]), body["value"]
        except (ValueError, KeyError, TypeError):
            return self._json(400, {"error": 'send {"item_id": ..., "value": ...}'})
        try:
            row = self.server.reviews.answer(item_id, value)
        except StepGraphError as exc:
            return self._json(409, {"error": str(exc)})
        return self._json(200, row)

    def do_PUT(self) -> None:
        self._json(405, {"error": "method not allowed"})

    do_DELETE = do_PATCH = do_PUT


def serve_forever(reviews: Any, *, port: int = 0) -> None:
    import typer

    server = ReviewServer(reviews, port=port)
    typer.echo(f"review page (this URL holds a one-time token; keep it private): {server.url}")
    typer.echo("Ctrl-C stops it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
