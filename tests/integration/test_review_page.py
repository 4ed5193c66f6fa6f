"""The review page: loopback only, a per-launch token on every request, Host and Origin checked, payloads
escaped; and the page itself in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from stepgraph.review.answer import NotWaiting
from stepgraph.review.page import ReviewServer

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class FakeReviews:
    """The Reviews interface the page uses, without AWS (the real one is tested in test_review_cli)."""

    def __init__(self) -> None:
        self.rows = [
            {
                "item_id": "0",
                "round": 1,
                "status": "waiting",
                "nodes": ["review"],
                "payloads": [{"label": "bug", "text": HOSTILE}],
                "waiting_since": "2026-12-01T10:00:00+00:00",
                "deadline": "2026-12-08T10:00:00+00:00",
                "answer": None,
            },
            {
                "item_id": "1",
                "round": 1,
                "status": "waiting",
                "nodes": ["review"],
                "payloads": [{"label": "billing", "text": "charged twice"}],
                "waiting_since": "2026-12-01T10:00:01+00:00",
                "deadline": "2026-12-08T10:00:01+00:00",
                "answer": None,
            },
            {
                "item_id": "2",
                "round": 1,
                "status": "waiting",
                "nodes": ["review"],
                "payloads": [{"label": "other", "text": "late"}],
                "waiting_since": "2026-12-01T10:00:02+00:00",
                "deadline": "2026-12-08T10:00:02+00:00",
                "answer": None,
            },
        ]
        self.answers: dict[str, Any] = {}

    def pending(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["item_id"] not in self.answers]

    def answer(self, item_id: str, value: Any) -> dict[str, Any]:
        if item_id == "2":
            raise NotWaiting("item 2 of run: its review timed out")
        if item_id in self.answers:
            raise NotWaiting(f"item {item_id} of run was already answered")
        self.answers[item_id] = value
        return {"item_id": item_id, "answer": value}


@pytest.fixture
def server() -> Iterator[ReviewServer]:
    srv = ReviewServer(FakeReviews())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(
    srv: ReviewServer, method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    hdrs = {"Host": f"127.0.0.1:{srv.port}", **(headers or {})}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=hdrs)
    res = conn.getresponse()
    return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()


def test_binds_loopback_only_with_a_token_per_launch(server: ReviewServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    other = ReviewServer(FakeReviews())
    try:
        assert other.token != server.token and len(server.token) >= 32
    finally:
        other.server_close()
    assert server.url == f"http://127.0.0.1:{server.port}/?token={server.token}"


def test_every_request_needs_the_token(server: ReviewServer) -> None:
    for path in ("/", "/api/reviews", "/?token=wrong", f"/?token={server.token[:-1]}"):
        status, _, body = request(server, "GET", path)
        assert status == 403 and b"token" in body, path
    status, _, _ = request(server, "GET", "/api/reviews", headers={"X-Review-Token": "nope"})
    assert status == 403
    origin = {"Origin": f"http://127.0.0.1:{server.port}"}
    status, _, _ = request(server, "POST", "/api/answer", headers=origin, body={"item_id": "1", "value": 1})
    assert status == 403 and not server.reviews.answers
    status, _, body = request(server, "GET", "/api/reviews", headers={"X-Review-Token": server.token})
    assert status == 200 and [r["item_id"] for r in json.loads(body)] == ["0", "1", "2"]


def test_foreign_host_and_cross_origin_requests_are_refused(server: ReviewServer) -> None:
    token = {"X-Review-Token": server.token}
    # DNS rebinding: a hostile name resolving to 127.0.0.1 still sends its own name as Host.
    for host in ("evil.example", f"evil.example:{server.port}", f"127.0.0.1:{server.port + 1}"):
        status, _, body = request(server, "GET", f"/?token={server.token}", headers={"Host": host})
        assert status == 403 and b"Host" in body, host
    status, _, body = request(
        server, "GET", "/api/reviews", headers={**token, "Origin": "http://evil.example"}
    )
    assert status == 403 and b"cross-origin" in body
    answer = {"item_id": "1", "value": {"action": "approve"}}
    status, _, _ = request(
        server, "POST", "/api/answer", headers={**token, "Origin": "http://evil.example"}, body=answer
    )
    assert status == 403
    status, _, body = request(server, "POST", "/api/answer", headers=token, body=answer)  # no Origin
    assert status == 403 and b"Origin" in body
    assert not server.reviews.answers
    good = {**token, "Origin": f"http://127.0.0.1:{server.port}"}
    status, _, _ = request(server, "POST", "/api/answer", headers=good, body=answer)
    assert status == 200 and server.reviews.answers == {"1": {"action": "approve"}}
    status, _, body = request(server, "POST", "/api/answer", headers=good, body=answer)
    assert status == 409 and b"already answered" in body


def test_the_page_carries_no_payload_and_a_strict_policy(server: ReviewServer) -> None:
    status, headers, body = request(server, "GET", f"/?token={server.token}")
    assert status == 200
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'nonce-" in csp and "unsafe-inline" not in csp
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert b"onerror" not in body and b"innerHTML" not in body  # payloads arrive as JSON, shown as text
    status, headers, body = request(server, "GET", "/api/reviews", headers={"X-Review-Token": server.token})
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"


def _browser_or_skip() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright's Python package is not installed (make setup installs it)")
    path = os.environ.get("STEPGRAPH_CHROMIUM", CHROMIUM)
    if not (os.path.exists(path) or shutil.which(path)):
        pytest.skip(
            f"no Chromium at {path}: make setup installs Debian's chromium when run as root with apt-get"
        )
    return path


def test_the_review_page_in_a_real_browser(server: ReviewServer) -> None:
    executable = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            page.wait_for_selector(".item[data-item='2']")
            assert page.locator(".item").count() == 3
            # The hostile payload is shown as text: no element made from it, no script of it ran.
            hostile = page.locator(".item[data-item='0'] .payload").inner_text()
            assert HOSTILE in json.loads(hostile)["text"]
            assert page.locator("#items img").count() == 0 and page.locator("#items script").count() == 0
            assert page.evaluate("window.__pwned") is None
            # Approve one, edit another, and see a refusal said plainly.
            page.click(".item[data-item='0'] .approve")
            page.wait_for_selector(".item[data-item='0'][data-state='answered']")
            page.fill(".item[data-item='1'] .edit", '{"action": "edit", "label": "account"}')
            page.click(".item[data-item='1'] .send-edit")
            page.wait_for_selector(".item[data-item='1'][data-state='answered']")
            page.click(".item[data-item='2'] .reject")
            page.wait_for_selector(".item[data-item='2'][data-state='refused']")
            assert "timed out" in page.locator(".item[data-item='2'] .result").inner_text()
            assert server.reviews.answers == {
                "0": {"action": "approve"},
                "1": {"action": "edit", "label": "account"},
            }
            assert errors == []
            # A page from another origin cannot read the reviews or answer (no CORS grant, Origin refused).
            cross = browser.new_page()
            cross.goto("about:blank")
            verdict = cross.evaluate(
                """async ([url, token]) => { try {
                    const r = await fetch(url + '/api/answer', {method: 'POST', headers: {'X-Review-Token': token,
                      'Content-Type': 'application/json'}, body: JSON.stringify({item_id: '2', value: 1})});
                    return 'status ' + r.status; } catch (e) { return 'blocked'; } }""",
                [f"http://127.0.0.1:{server.port}", server.token],
            )
            assert verdict in ("blocked", "status 403")
            assert "2" not in server.reviews.answers
        finally:
            browser.close()
