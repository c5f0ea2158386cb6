"""`mnistp4 serve` on a LAN: a real server on 127.0.0.1 (never another address), raw HTTP requests
with forged Host and Origin headers, the access token as `mnistp4 serve` prints it, and Chromium
on a page of another origin trying to submit a sheet and relabel a digit (CSRF). Cases of
docs/reliability.md (W1-W10)."""

from __future__ import annotations

import http.client
import http.server
import json
import re
import threading
import time
from pathlib import Path

import pytest
from reliability_kit import mnistp4
from test_web_browser import browser  # noqa: F401 - the Chromium fixture

from mnistp4.stages.data import manifest as _manifest
from mnistp4.stages.web.security import CSRF_HEADER, MAX_JSON_DEPTH, Guard, new_token
from mnistp4.stages.web.serve import build_web_app, make_guard

EVIL = "http://evil.example"


def make_data(data: Path) -> None:
    (data / "images").mkdir(parents=True)
    rows = [
        {
            "path": f"images/d{k}.png",
            "label": k,
            "source": "w1",
            "sheet": "s1.png",
            "sheet_hash": "abc123",
            "row": k,
            "col": 0,
            "flags": "",
            "decision": "",
        }
        for k in range(10)
    ]
    _manifest.write_manifest(data, rows)


@pytest.fixture
def serve(make_app, tmp_path):
    """The server `mnistp4 serve` runs, on 127.0.0.1, for ``serve(guard, **limits)``; answers are
    recorded per path."""
    from mnistp4.stages.web.lan_server import make_lan_server

    servers = []

    def start(guard: Guard | None = None, **limits) -> dict:
        app = make_app()
        raw, data = tmp_path / "raw", tmp_path / "data"
        make_data(data)
        web = build_web_app(app, raw_dir=raw, data_dir=data, no_model=True, guard=guard or Guard())
        statuses: list[tuple[str, str, int]] = []

        @web.after_request
        def record(resp):
            from flask import request

            statuses.append((request.method, request.path, resp.status_code))
            return resp

        srv = make_lan_server("127.0.0.1", 0, web, **limits)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(srv)
        return {
            "port": srv.server_port,
            "url": f"http://127.0.0.1:{srv.server_port}",
            "raw": raw,
            "data": data,
            "guard": web.extensions["mnistp4"]["settings"].guard,
            "web": web,
            "statuses": statuses,
        }

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def request(server, method, path, body=b"", headers=None):
    """One raw HTTP request to 127.0.0.1 (any Host/Origin header): (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30)
    hdrs = {"Host": f"127.0.0.1:{server['port']}", **(headers or {})}
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


def sheet_form(layout="grid-10x10") -> tuple[bytes, str]:
    """A multipart body the collection page would send (a tiny PNG is enough to be refused or taken)."""
    import cv2
    import numpy as np

    png = cv2.imencode(".png", np.full((300, 300), 255, np.uint8))[1].tobytes()
    b = "mnistp4boundary"
    body = (
        (
            f'--{b}\r\nContent-Disposition: form-data; name="layout"\r\n\r\n{layout}\r\n'
            f'--{b}\r\nContent-Disposition: form-data; name="writer"\r\n\r\nw\r\n'
            f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="s.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{b}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={b}"


def decision_body(label=3) -> tuple[bytes, dict]:
    return json.dumps({"label": label}).encode(), {"Content-Type": "application/json"}


# ---- W1-W3: Origin and CSRF token on every state-changing request -----------------------------------


def test_cross_origin_and_tokenless_posts_are_refused(serve):
    s = serve()
    manifest = (s["data"] / "manifest.csv").read_bytes()
    body, ctype = sheet_form()
    token = {CSRF_HEADER: s["guard"].csrf_token}
    for headers in ({"Origin": EVIL}, {"Origin": EVIL, **token}, {"Origin": "null", **token}, {}):
        for path in ("/api/sheets", "/api/photos"):  # a drawn sheet, a phone photo
            status, _, out = request(s, "POST", path, body, {"Content-Type": ctype, **headers})
            assert status == 403, (path, headers, out)
        jbody, jh = decision_body()
        status, _, out = request(s, "POST", "/api/digits/abc123/3/0", jbody, {**jh, **headers})
        assert status == 403, (headers, out)
    assert not s["raw"].exists() or list(s["raw"].iterdir()) == []
    assert (s["data"] / "manifest.csv").read_bytes() == manifest
    # the same request from the page itself (same origin, with the page's token) is taken
    jbody, jh = decision_body(8)
    status, _, out = request(s, "POST", "/api/digits/abc123/3/0", jbody, {**jh, **token, "Origin": s["url"]})
    assert status == 200, out
    assert _manifest.read_manifest(s["data"])[3]["label"] == 8
    status, _, out = request(s, "GET", "/api/session")
    assert status == 200 and json.loads(out)["csrf_token"] == s["guard"].csrf_token


# ---- W4: Host allowlist (DNS rebinding) --------------------------------------------------------------------


def test_unknown_host_header_is_refused(serve):
    s = serve()
    for path in ("/", "/review", "/api/digits", "/api/session", "/static/review.js"):
        status, _, out = request(s, "GET", path, headers={"Host": "evil.example"})
        assert status == 400, path
        assert b"abc123" not in out and s["guard"].csrf_token.encode() not in out
    for host in (f"127.0.0.1:{s['port']}", f"localhost:{s['port']}", "localhost", f"[::1]:{s['port']}"):
        assert request(s, "GET", "/api/digits", headers={"Host": host})[0] == 200, host


def test_lan_guard_allows_the_printed_addresses_and_needs_a_token():
    g = make_guard("0.0.0.0")
    assert g.access_token and {"127.0.0.1", "localhost"} <= g.allowed_hosts and "evil.example" not in g.allowed_hosts
    assert make_guard("0.0.0.0", no_token=True).access_token is None
    assert make_guard("127.0.0.1").access_token is None
    assert make_guard("192.168.1.20").allowed_hosts >= {"192.168.1.20", "127.0.0.1"}


# ---- W5-W6: the access token --------------------------------------------------------------------------------


def test_access_token_url_cookie_and_bearer(serve):
    token = new_token()
    s = serve(Guard(access_token=token))
    for path in ("/", "/review", "/collect", "/api/digits", "/api/session"):
        assert request(s, "GET", path)[0] == 401, path
    assert request(s, "GET", "/review?token=wrong")[0] == 401
    status, headers, _ = request(s, "GET", f"/review?token={token}&x=1")
    assert status == 302 and headers["Location"].endswith("/review?x=1")
    cookie = headers["Set-Cookie"]
    assert token in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    assert request(s, "GET", "/review", headers=jar)[0] == 200
    assert request(s, "GET", "/api/digits", headers={"Authorization": f"Bearer {token}"})[0] == 200
    jbody, jh = decision_body(5)
    csrf = {CSRF_HEADER: s["guard"].csrf_token}
    assert request(s, "POST", "/api/digits/abc123/5/0", jbody, {**jh, **csrf})[0] == 401
    assert request(s, "POST", "/api/digits/abc123/5/0", jbody, {**jh, **csrf, **jar})[0] == 200


@pytest.mark.slow
def test_serve_prints_the_token_url_and_enforces_it(tmp_path):
    """`mnistp4 serve --token` as a real process on 127.0.0.1: the printed URL is the way in."""
    make_data(tmp_path / "data")
    proc = mnistp4(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token",
        "--no-model",
        "--data-dir",
        tmp_path / "data",
        "--raw-dir",
        tmp_path / "raw",
        cwd=tmp_path,
        COLUMNS="200",
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            m = re.search(r"http://127\.0\.0\.1:(\d+)/review\?token=([\w-]+)", line)
            if m:
                url = m
        port, token = int(url.group(1)), url.group(2)
        s = {"port": port}
        assert request(s, "GET", "/review")[0] == 401
        status, headers, _ = request(s, "GET", f"/review?token={token}")
        assert status == 302 and "HttpOnly" in headers["Set-Cookie"]
        assert request(s, "GET", "/review", headers={"Cookie": headers["Set-Cookie"].split(";")[0]})[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# ---- W7: nesting limit ----------------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_400(serve):
    s = serve()
    csrf = {CSRF_HEADER: s["guard"].csrf_token, "Content-Type": "application/json"}
    for depth in (100_000, MAX_JSON_DEPTH + 1):
        status, _, out = request(s, "POST", "/api/digits/abc123/3/0", b"[" * depth + b"]" * depth, csrf)
        assert status == 400 and b"nested deeper" in out
    status, _, out = request(s, "POST", "/api/digits/abc123/3/0", b'{"label": "[[[[" }', csrf)
    assert status == 400 and b"label must be" in out  # brackets inside strings do not count


# ---- W10: idle connections and a flood of them ----------------------------------------------------------------


def test_silent_and_dribbling_clients_are_cut_off_and_past_the_cap_a_503_comes_at_once(serve):
    import socket

    server = serve(idle_timeout=0.5, head_timeout=2.0, max_connections=2)
    addr = ("127.0.0.1", server["port"])
    opened = time.monotonic()
    idle = [socket.create_connection(addr, timeout=10) for _ in range(2)]  # connect, never speak
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and request_status(addr) != 503:  # both taken once accepted
        time.sleep(0.02)
    assert request_status(addr) == 503  # answered at once, no thread started for it
    for sock in idle:
        assert sock.recv(100) == b""  # the server closed the silent connection...
        sock.close()
    assert 0.45 < time.monotonic() - opened < 10  # ...once its idle timeout ran out
    assert request(server, "GET", "/api/layouts")[0] == 200  # the slots are free again

    # a client that keeps sending, however slowly, is not cut: headers in pieces 0.3 s apart
    with socket.create_connection(addr, timeout=10) as sock:
        head = f"GET /api/layouts HTTP/1.1\r\nHost: 127.0.0.1:{server['port']}\r\nConnection: close\r\n\r\n"
        for k in range(0, len(head), 20):
            sock.sendall(head[k : k + 20].encode())
            time.sleep(0.3 if k < 80 else 0)
        assert sock.recv(100).startswith(b"HTTP/1.1 200")

    # one that sends its headers a byte at a time, each well within the idle limit, forever: cut off
    # once the request head has taken longer than its deadline
    with socket.create_connection(addr, timeout=0.2) as sock:
        sock.sendall(b"GET /api/layouts HTTP/1.1\r\nX-Slow: ")
        started, closed = time.monotonic(), False
        while not closed and time.monotonic() - started < 10:
            try:
                sock.sendall(b"x")
                closed = sock.recv(100) == b""
            except TimeoutError:
                continue  # nothing from the server yet: another byte
            except OSError:
                closed = True
        assert closed and 1.8 < time.monotonic() - started < 6


def test_one_address_past_its_share_gets_a_503_and_the_others_are_still_served(serve):
    import socket

    server = serve(idle_timeout=30, max_connections=6, max_per_client=3)
    port = server["port"]
    # one host (127.0.0.2: another address on the loopback) opens connections and never speaks
    greedy = []
    for _ in range(5):
        sock = socket.socket()
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        greedy.append(sock)
    try:
        # past its three, each of its connections is answered 503 at once and closed
        refused = [sock.recv(200) for sock in greedy[3:]]
        assert all(r.startswith(b"HTTP/1.1 503") and b"Retry-After" in r for r in refused), refused
        # while its three stay open, another address is served, up to the cap in all
        assert request_status(("127.0.0.1", port)) == 200
        assert request(server, "GET", "/api/layouts")[0] == 200
    finally:
        for sock in greedy:
            sock.close()
    # once it has closed them, it is served again (each slot comes back when its connection's
    # thread ends, a moment after the close: asked again until then)
    deadline, status = time.monotonic() + 10, 0
    while time.monotonic() < deadline and (status := status_from("127.0.0.2", port)) != 200:
        time.sleep(0.02)
    assert status == 200


def status_from(source: str, port: int) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /api/layouts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        return int(sock.recv(100).split()[1])


def request_status(addr) -> int:
    import socket

    with socket.create_connection(addr, timeout=10) as sock:
        sock.sendall(f"GET /api/layouts HTTP/1.1\r\nHost: {addr[0]}:{addr[1]}\r\nConnection: close\r\n\r\n".encode())
        return int(sock.recv(100).split()[1])


# ---- W8: security headers, no inline script -------------------------------------------------------------------


def test_security_headers_and_no_inline_script(serve):
    s = serve()
    for path in ("/", "/collect", "/review", "/api/digits", "/static/review.js", "/nope", "/api/nope"):
        _, headers, body = request(s, "GET", path)
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        if path in ("/", "/collect", "/review"):
            html = body.decode()
            assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), path  # every script is a file
            assert not re.search(r"\son[a-z]+\s*=", html), path  # no inline handlers
            assert s["guard"].csrf_token in html


# ---- W9: Chromium on another origin (CSRF) ---------------------------------------------------------------------

ATTACK = """<!doctype html><html><body><form id="f" method="POST" enctype="multipart/form-data"
 action="{victim}/api/sheets"><input name="layout" value="grid-10x10"><input name="writer" value="mallory"></form>
<script>
const png = Uint8Array.from(atob("{png}"), c => c.charCodeAt(0));
const form = new FormData();
form.append("layout", "grid-10x10"); form.append("writer", "mallory");
form.append("image", new Blob([png], {{type: "image/png"}}), "s.png");
Promise.allSettled([
  fetch("{victim}/api/sheets", {{method: "POST", mode: "no-cors", body: form}}),
  fetch("{victim}/api/digits/abc123/3/0", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
        body: JSON.stringify({{label: 9}})}}),
  fetch("{victim}/api/digits/abc123/4/0", {{method: "POST", credentials: "include",
        headers: {{"Content-Type": "application/json", "X-CSRF-Token": "guess"}}, body: JSON.stringify({{label: 9}})}}),
]).then(() => {{ document.title = "sent"; document.getElementById("f").submit(); }});
</script></body></html>"""


def test_a_page_of_another_origin_cannot_submit_or_relabel_in_chromium(browser, serve, tmp_path):  # noqa: F811
    import base64

    import cv2
    import numpy as np
    from selenium.webdriver.support.ui import WebDriverWait

    s = serve()
    manifest = (s["data"] / "manifest.csv").read_bytes()
    png = base64.b64encode(cv2.imencode(".png", np.full((300, 300), 255, np.uint8))[1].tobytes()).decode()
    page = ATTACK.format(victim=s["url"], png=png).encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)  # another port: another origin
    threading.Thread(target=evil.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{evil.server_port}/")
        WebDriverWait(browser, 30).until(lambda d: len([x for x in s["statuses"] if x[0] == "POST"]) >= 3)
    finally:
        evil.shutdown()
        evil.server_close()
    posts = [x for x in s["statuses"] if x[0] == "POST"]
    assert posts and all(code == 403 for _, _, code in posts), posts
    assert not s["raw"].exists() or list(s["raw"].iterdir()) == []
    assert (s["data"] / "manifest.csv").read_bytes() == manifest
