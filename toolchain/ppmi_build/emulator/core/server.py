"""The emulator's HTTP server: one loopback HTTP/1.1 listener for every emulated service (DESIGN.md §3).

Each request goes through, in order:

1. ``/_emulator/…`` — the control surface (:mod:`.control`), no token;
2. a pending fault matching method and path (:mod:`.faults`): delay, dropped connection or an error status;
3. the bearer token (:mod:`.auth`): ``401`` with ``WWW-Authenticate`` and an empty body, as Dataverse answers;
4. the service claiming the path (:func:`.routing.dispatch` over the services the server was built with);
   a path no service claims is ``404`` ``0x8006088a`` "Resource not found for the segment …";
5. the request log (``GET /_emulator/requests``).

Bodies larger than :data:`MAX_BODY` are refused (413) before they are read; chunked uploads are accepted.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from . import store
from .auth import bearer_matches, unauthorized
from .control import control
from .faults import fault_error
from .responses import Response, odata_error
from .routing import Request, Service, dispatch
from .state import EmulatorState

log = logging.getLogger("ppmi_build.emulator")

MAX_BODY = 256 * 1024 * 1024  # refuse absurd uploads before reading them


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server holding one :class:`EmulatorState` and the services it serves."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], state: EmulatorState, services: Sequence[Service]):
        self.state = state
        self.services = tuple(services)
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:  # quiet: dropped connections are expected
        log.debug("connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer
    server_version = "ppmi-build-emulator"
    # TCP_NODELAY: headers and body go out as two writes; with Nagle + delayed ACK every keep-alive
    # response waited ~40 ms on loopback (socketserver.StreamRequestHandler option).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # never log headers (tokens)
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    # --- plumbing ----------------------------------------------------------------------------------------
    def _body_length(self) -> int:
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return 0

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = self._body_length()
        return self.rfile.read(n) if n else b""

    def _send(self, response: Response) -> None:
        status, headers, body = response
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _drop(self, read_part: bool) -> None:
        """Close the connection without an answer; with ``read_part`` only half the body is read first, so the
        client sees the connection reset while it is still uploading."""
        if read_part:
            n = self._body_length()
            if n:
                self.rfile.read(max(1, min(n // 2, 1 << 20)))
        self.close_connection = True
        try:
            # SO_LINGER 0: close() sends RST instead of FIN, like a gateway that gives up
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass

    # --- dispatch ----------------------------------------------------------------------------------------
    def _handle(self) -> None:
        state = self.server.state
        method = self.command
        split = urlsplit(self.path)
        path = unquote(split.path)
        if path.startswith("/_emulator"):
            body = self._read_body()
            self._send(control(state, self.server.services, method, path, body))
            return

        fault = state.take_fault(method, path)
        if fault and fault["delay_s"]:
            time.sleep(float(fault["delay_s"]))
        if fault and fault["drop"]:
            state.record(method, path, 0, split.query, fault="drop")
            self._drop(read_part=True)
            return
        if self._body_length() > MAX_BODY:
            self.close_connection = True
            response = odata_error(413, "", "Request Entity Too Large")
            state.record(method, path, response[0], split.query)
            self._send(response)
            return
        body = self._read_body()
        if fault and fault["status"]:
            st, code, msg, extra = fault_error(fault)
            state.record(method, path, st, split.query, fault="status")
            self._send(odata_error(st, code, msg, extra))
            return

        if not bearer_matches(self.headers.get("Authorization"), state.token):
            state.record(method, path, 401, split.query)
            self._send(unauthorized(state.base_url))
            return

        query = dict(parse_qsl(split.query, keep_blank_values=True))
        request = Request(state, method, path, query, cast("Mapping[str, str]", self.headers), body)
        try:
            response = dispatch(self.server.services, request) or odata_error(
                404, "0x8006088a", f"Resource not found for the segment '{path.strip('/')}'.")
        except Exception:  # a bug in a service must not kill the connection silently
            log.exception("emulator handler failed for %s %s", method, path)
            response = odata_error(500, "", "An unexpected error occurred.")
        dropped = bool(fault and fault["drop_after_commit"])
        state.record(method, path, response[0], split.query, fault="drop_after_commit" if dropped else None)
        if dropped:
            self._drop(read_part=False)
            return
        self._send(response)


def build_server(services: Sequence[Service], *, host: str = "127.0.0.1", port: int = 0, db: str | None = None,
                 token: str = "emulator-token", options: Mapping[str, Any] | None = None) -> EmulatorHTTPServer:
    """Create (not start) a server for ``services`` bound to ``host:port`` with a fresh or file-backed SQLite
    state; each service's ``init_db`` creates its tables.

    Args:
        services: the services to serve, tried in this order.
        host: loopback address to bind.
        port: TCP port; 0 picks a free one (read it from ``server.state.base_url``).
        db: SQLite file for the state; None = in memory.
        token: the bearer token every non-control request must carry.
        options: service settings, kept as ``state.options``.
    Raises:
        OSError: the address cannot be bound.
        sqlite3.DatabaseError: ``db`` is not a usable SQLite file.
    """
    conn = store.connect(db)
    state = EmulatorState(conn, token, options)
    with state.lock:
        for service in services:
            if service.init_db is not None:
                service.init_db(conn)
                state.init_hooks.append(service.init_db)
    server = EmulatorHTTPServer((host, port), state, services)
    h, p = cast("tuple[str, int]", server.server_address[:2])  # AF_INET(6) address
    state.base_url = f"http://{h}:{p}"
    return server


def serve_until_interrupted(server: EmulatorHTTPServer) -> None:
    """Serve ``server`` in this thread until Ctrl-C (``KeyboardInterrupt``), then close its socket."""
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
