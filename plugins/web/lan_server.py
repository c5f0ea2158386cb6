"""The HTTP server behind ``mnistp4 serve``: werkzeug's threaded server, with the limits a shared
network needs.

* **Idle connections are closed.** A client that connects and sends nothing (a tablet that went
  to sleep with a connection open, a scanner probing ports) held a thread for as long as it
  liked; now a connection that sends nothing for :data:`IDLE_TIMEOUT_S` is closed. The limit is
  per read, so a slow upload that keeps sending is not cut.
* **A request's head has a deadline.** Its request line and headers must arrive within
  :data:`HEAD_TIMEOUT_S` of the server starting to wait for it; a client that sends them a byte
  at a time, each under the idle limit, is cut off then (a watcher thread shuts its socket down).
* **Connections at once are capped.** Each connection is a thread; past :data:`MAX_CONNECTIONS`
  a new one gets ``503 Service Unavailable`` at once instead of another thread, so a client that
  opens connections by the thousand cannot exhaust the process.
* **One client cannot take every slot.** Past :data:`MAX_PER_CLIENT` connections from one
  address, that address gets the same ``503``; the other tablets on the network are still served.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

log = logging.getLogger(__name__)

#: seconds a connection may stay silent (between requests, or in the middle of one) before it is closed
IDLE_TIMEOUT_S = 20.0
#: seconds from waiting for a request to having its request line and all its headers
HEAD_TIMEOUT_S = 30.0
#: connections served at once; the pages of a few tablets and a review browser need a handful each
MAX_CONNECTIONS = 64
#: connections at once from one address: a browser opens up to six per site, a few tabs a few times that
MAX_PER_CLIENT = 16

_BUSY_TEXT = b"mnistp4 serve: too many connections, try again\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)


def make_lan_server(
    host: str,
    port: int,
    web,
    *,
    idle_timeout: float = IDLE_TIMEOUT_S,
    head_timeout: float = HEAD_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    max_per_client: int = MAX_PER_CLIENT,
) -> ThreadedWSGIServer:
    """A threaded WSGI server for ``web`` on ``host:port`` with the idle timeout, the request-head
    deadline and the connection caps (in all, and per client address)."""
    heads = _HeadWatch(head_timeout)

    class Handler(WSGIRequestHandler):
        timeout = idle_timeout  # socketserver sets it on the connection; werkzeug closes on socket.timeout

        def handle_one_request(self):
            heads.start(self.connection)  # from waiting for the request line...
            try:
                super().handle_one_request()
            finally:
                heads.done(self.connection)

        def parse_request(self):
            try:
                return super().parse_request()
            finally:
                heads.done(self.connection)  # ...to the last header: the body and the answer are not timed

    class Server(ThreadedWSGIServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.slots = _Slots(max_connections, max_per_client)

        def process_request(self, request, client_address):
            refused = self.slots.take(client_address[0])
            if refused:
                log.warning("%s: refused a connection from %s", refused, client_address[0])
                _refuse(request)
                self.shutdown_request(request)
                return
            try:
                super().process_request(request, client_address)  # starts the connection's thread
            except BaseException:
                self.slots.give_back(client_address[0])
                raise

        def process_request_thread(self, request, client_address):
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.give_back(client_address[0])

    return Server(host, port, web, handler=Handler)


class _Slots:
    """Connections open, in all and per client address."""

    def __init__(self, total: int, per_client: int):
        self.total, self.per_client = total, per_client
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def take(self, client: str) -> str:
        """Count a new connection from ``client``; or, past a cap, count nothing and say which."""
        with self._lock:
            if sum(self._open.values()) >= self.total:
                return f"{self.total} connections open"
            if self._open.get(client, 0) >= self.per_client:
                return f"{self.per_client} connections open from this address"
            self._open[client] = self._open.get(client, 0) + 1
            return ""

    def give_back(self, client: str) -> None:
        with self._lock:
            left = self._open[client] - 1
            if left:
                self._open[client] = left
            else:
                del self._open[client]


class _HeadWatch:
    """Connections waiting for a request head, and their deadlines; one thread shuts down those past it."""

    def __init__(self, limit: float):
        self.limit = limit
        self._lock = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._thread: threading.Thread | None = None

    def start(self, conn: socket.socket) -> None:
        with self._lock:
            self._deadlines[conn] = time.monotonic() + self.limit
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="mnistp4-head-watch", daemon=True)
                self._thread.start()

    def done(self, conn: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(conn, None)

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.limit / 4))
            now = time.monotonic()
            with self._lock:
                if not self._deadlines:  # nothing waits: the next start() starts a new watcher
                    self._thread = None
                    return
                late = [c for c, deadline in self._deadlines.items() if deadline <= now]
                for c in late:
                    del self._deadlines[c]
            for c in late:
                log.info("a request head took longer than %.0f s: connection closed", self.limit)
                try:
                    c.shutdown(socket.SHUT_RDWR)  # its thread's read returns at once
                except OSError:
                    pass


def _refuse(request: socket.socket) -> None:
    try:
        request.settimeout(1.0)
        request.sendall(_BUSY)
    except OSError:
        pass  # the client is gone already
