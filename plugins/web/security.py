"""What keeps ``mnistp4 serve`` safe on a LAN: Host allowlist (DNS rebinding), same-origin check and
CSRF token on every state-changing request, an optional access token (required when the server
listens beyond loopback), a JSON nesting limit, and security headers (CSP without inline script).

Requests are checked in this order: Host (400), access token (401), then for POST/PUT/PATCH/DELETE
the Origin (403) and the CSRF token (403). The access token comes as ``?token=`` once (it is moved
into an HttpOnly cookie and the URL is cleaned), as the cookie, or as ``Authorization: Bearer``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from flask import Flask

#: Host names every server accepts (the port is not part of the check)
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
CSRF_HEADER = "X-CSRF-Token"
TOKEN_PARAM = "token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: deeper JSON is refused before parsing (a decision is one flat object)
MAX_JSON_DEPTH = 32

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass
class Guard:
    """The server's secrets and allowed names, fixed when it starts."""

    allowed_hosts: frozenset[str] = LOOPBACK_NAMES
    access_token: str | None = None  # None: no login (loopback only, or --no-token)
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def cookie_name(self) -> str:
        # cookies ignore ports: each server's token gets its own cookie
        return "mnistp4_" + hashlib.sha256((self.access_token or "").encode()).hexdigest()[:12]


def new_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hostname_of(host_header: str) -> str:
    """``Host`` header -> lower-case name without port (``[::1]:80`` -> ``::1``)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def json_depth(data: bytes) -> int:
    """Deepest nesting of ``[``/``{`` in a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for b in data:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:  # quote
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


def install(app: Flask, guard: Guard) -> None:
    """Check every request and add the security headers to every answer."""
    # Flask is imported by the server only: every other command loads this plugin without it
    from flask import jsonify, redirect, request

    def refuse(status: int, message: str):
        if request.path.startswith("/api/"):
            return jsonify({"error": message}), status
        return app.response_class(message + "\n", status=status, mimetype="text/plain")

    @app.before_request
    def check_request():
        host = hostname_of(request.host or "")
        if host not in guard.allowed_hosts:
            return refuse(
                400, f"unknown Host {host!r}: this server answers to {', '.join(sorted(guard.allowed_hosts))}"
            )
        if guard.access_token is not None:
            given = request.args.get(TOKEN_PARAM)
            if given is not None and request.method == "GET" and _same(given, guard.access_token):
                # the token moves into a cookie and out of the address bar (and the history)
                args = [(k, v) for k, v in request.args.items(multi=True) if k != TOKEN_PARAM]
                resp = redirect(request.path + ("?" + urlencode(args) if args else ""))
                resp.set_cookie(guard.cookie_name, guard.access_token, httponly=True, samesite="Strict", path="/")
                return resp
            cookie = request.cookies.get(guard.cookie_name, "")
            bearer = request.headers.get("Authorization", "")
            bearer = bearer[7:] if bearer.startswith("Bearer ") else ""
            if not (_same(cookie, guard.access_token) or _same(bearer, guard.access_token)):
                return refuse(
                    401,
                    "this server needs its access token: open the address with ?token=... that `mnistp4 serve` printed",
                )
        if request.method in UNSAFE_METHODS:
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return refuse(403, f"cross-origin request from {origin!r} refused")
            if not _same(request.headers.get(CSRF_HEADER, ""), guard.csrf_token):
                return refuse(
                    403,
                    f"missing or wrong {CSRF_HEADER} header: reload the page (scripts: GET /api/session for the token)",
                )
            if request.is_json and json_depth(request.get_data(cache=True)) > MAX_JSON_DEPTH:
                return refuse(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        return None

    @app.after_request
    def add_headers(resp):
        for k, v in HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    @app.context_processor
    def csrf_for_pages():
        return {"csrf_token": guard.csrf_token}

    @app.get("/api/session")
    def session():
        """The CSRF token for scripts (other origins cannot read it: no CORS, Host checked)."""
        resp = jsonify({"csrf_token": guard.csrf_token, "csrf_header": CSRF_HEADER})
        resp.headers["Cache-Control"] = "no-store"
        return resp


def _same(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())
