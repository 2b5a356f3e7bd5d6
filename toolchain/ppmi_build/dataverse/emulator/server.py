"""The emulator's HTTP server: routing, bearer-token check, fault injection, request log (DESIGN.md §3).

Routing:

* ``/_emulator/...`` — the control surface (no token): ``POST /_emulator/faults``, ``DELETE /_emulator/faults``,
  ``GET /_emulator/faults``, ``GET /_emulator/requests``, ``POST /_emulator/reset``, ``GET /_emulator/health``;
* ``/api/data/v9.0/…`` and ``/api/data/v9.2/…`` (any ``v9.x``) — the Dataverse Web API
  (:mod:`.dataverse_api`);
* ``/v1.0/…`` (Microsoft Graph) and ``/subscriptions/…`` (ARM) —
  ``ppmi_build.dataverse.emulator.entra_api.handle(state, method, path, query, headers, body)`` when that module
  is importable (it returns ``(status, headers, body)`` or None for 404); at start-up
  ``entra_api.init_db(state.db)`` is called if present.

Every non-control request needs ``Authorization: Bearer <token>``; otherwise 401 with a ``WWW-Authenticate``
header and an empty body, as Dataverse answers.

A fault (``POST /_emulator/faults``) is a JSON object (or a list of them) with the keys
``method`` (``"*"`` or an HTTP method), ``path_contains`` (substring of the URL path, without the query),
``status`` (answer with this status and an OData error body), ``retry_after`` (seconds, sent as
``Retry-After``), ``times`` (how many matching requests it applies to, default 1), ``drop`` (read part of the
request body, then close the connection without an answer: nothing is processed), ``delay_s`` (sleep before
answering or processing) and the additive key ``drop_after_commit`` (process the request, commit, then close the
connection without an answer: the client cannot know whether its write happened).

:class:`EmulatorState` is what API modules receive: ``state.db`` (sqlite3 connection, ``check_same_thread=False``,
autocommit mode: group multi-statement writes with ``BEGIN``/``COMMIT`` or :func:`.store.transaction`),
``state.lock`` (``threading.RLock``, hold it around any database access), ``state.token``, ``state.base_url``.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from . import store

log = logging.getLogger("ppmi_build.dataverse.emulator")

FAULT_KEYS = {"method", "path_contains", "status", "retry_after", "times", "drop", "delay_s", "drop_after_commit",
              "code", "message"}
API_PATH = re.compile(r"^/api/data/v9\.\d+(/.*)?$")
MAX_BODY = 256 * 1024 * 1024  # refuse absurd uploads before reading them

#: status -> (Dataverse error code, message) used for injected faults ([API-LIMITS], [WEBAPI-ERR])
FAULT_ERRORS = {
    429: ("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds."),
    500: ("", "An unexpected error occurred."),
    502: ("", "Bad Gateway"),
    503: ("", "The service is temporarily unavailable. Please retry."),
    504: ("", "Gateway Timeout"),
}


class EmulatorState:
    """Shared state of one emulator instance (see the module docstring)."""

    def __init__(self, db: sqlite3.Connection, token: str):
        self.db = db
        self.lock = threading.RLock()
        self.token = token
        self.base_url = ""
        self.faults: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self._entra = _load_entra()

    # --- faults ------------------------------------------------------------------------------------------
    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        unknown = set(spec) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        fault: dict[str, Any] = {"method": "*", "path_contains": "", "status": None, "retry_after": None, "times": 1,
                 "drop": False, "delay_s": 0, "drop_after_commit": False, "code": None, "message": None}
        fault.update(spec)
        fault["method"] = str(fault["method"] or "*").upper()
        fault["times"] = int(fault["times"])
        if fault["times"] < 1:
            raise ValueError("times must be >= 1")
        if fault["status"] is not None:
            fault["status"] = int(fault["status"])
        if not (fault["status"] or fault["drop"] or fault["delay_s"] or fault["drop_after_commit"]):
            raise ValueError("a fault needs status, drop, drop_after_commit or delay_s")
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        """The first pending fault matching this request (its ``times`` is decremented), or None."""
        with self.lock:
            for f in self.faults:
                if f["method"] in ("*", method) and f["path_contains"] in path:
                    f["times"] -= 1
                    if f["times"] <= 0:
                        self.faults.remove(f)
                    return dict(f)
        return None

    # --- log / reset -------------------------------------------------------------------------------------
    def record(self, method: str, path: str, status: int, query: str = "", fault: str | None = None) -> None:
        """Log one request: ``{method, path, status, query (decoded), time (epoch s), fault}``; status 0 =
        dropped."""
        with self.lock:
            self.log.append({"method": method, "path": path, "status": status, "query": unquote_plus(query),
                             "time": time.time(), "fault": fault})

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.log]

    def reset(self) -> None:
        """Delete every row (all modules' tables), pending faults and the request log."""
        with self.lock:
            store.clear(self.db, self.lock)
            self.faults.clear()
            self.log.clear()

    @property
    def entra(self):
        return self._entra


def _load_entra():
    try:
        return importlib.import_module("ppmi_build.dataverse.emulator.entra_api")
    except ModuleNotFoundError as e:
        if e.name and e.name.endswith("entra_api"):
            return None
        raise


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps(data).encode()
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return status, h, body


def odata_error(status: int, code: str, message: str,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """An OData error response ``{"error": {"code", "message"}}`` ([WEBAPI-ERR], domain-spec §4.4)."""
    h = {"OData-Version": "4.0"}
    h.update(headers or {})
    return _json(status, {"error": {"code": code, "message": message}}, h)


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], state: EmulatorState):
        self.state = state
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

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
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
            status, headers, out = self._control(method, path, body)
            self._send(status, headers, out)
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
            status, headers, out = odata_error(413, "", "Request Entity Too Large")
            state.record(method, path, status, split.query)
            self._send(status, headers, out)
            return
        body = self._read_body()
        if fault and fault["status"]:
            st = fault["status"]
            code, msg = FAULT_ERRORS.get(st, ("", f"Injected fault {st}"))
            extra = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] is not None else {}
            status, headers, out = odata_error(st, fault["code"] or code, fault["message"] or msg, extra)
            state.record(method, path, status, split.query, fault="status")
            self._send(status, headers, out)
            return

        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != state.token:
            state.record(method, path, 401, split.query)
            self._send(401, {"WWW-Authenticate": 'Bearer error="invalid_token", '
                                                 f'authorization_uri="{state.base_url}/oauth2/authorize"'}, b"")
            return

        query = dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            status, headers, out = self._route(method, path, query, body)
        except Exception:  # a bug in an API module must not kill the connection silently
            log.exception("emulator handler failed for %s %s", method, path)
            status, headers, out = odata_error(500, "", "An unexpected error occurred.")
        state.record(method, path, status, split.query, fault="drop_after_commit" if fault and
                     fault["drop_after_commit"] else None)
        if fault and fault["drop_after_commit"]:
            self._drop(read_part=False)
            return
        self._send(status, headers, out)

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        state = self.server.state
        m = API_PATH.match(path)
        if m:
            from . import dataverse_api

            api_root = state.base_url + path[: len(path) - len(m.group(1) or "")]
            return dataverse_api.handle(state, method, m.group(1) or "/", query, self.headers, body, api_root=api_root)
        if path.startswith("/v1.0/") or path.startswith("/subscriptions/"):
            entra = state.entra
            if entra is not None:
                res = entra.handle(state, method, path, query, self.headers, body)
                if res is not None:
                    return res
            return odata_error(404, "Request_ResourceNotFound", f"Resource '{path}' does not exist.")
        return odata_error(404, "0x8006088a", f"Resource not found for the segment '{path.strip('/')}'.")

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        state = self.server.state
        if path == "/_emulator/faults" and method == "POST":
            try:
                spec = json.loads(body or b"{}")
                specs = spec if isinstance(spec, list) else [spec]
                added = [state.add_fault(s) for s in specs]
            except (ValueError, TypeError, AttributeError) as e:
                return _json(400, {"error": {"code": "", "message": f"bad fault: {e}"}})
            return _json(201, {"added": len(added), "pending": len(state.faults)})
        if path == "/_emulator/faults" and method == "DELETE":
            state.clear_faults()
            return 204, {}, b""
        if path == "/_emulator/faults" and method == "GET":
            with state.lock:
                return _json(200, list(state.faults))
        if path == "/_emulator/requests" and method == "GET":
            return _json(200, state.requests())
        if path == "/_emulator/reset" and method == "POST":
            state.reset()
            return 204, {}, b""
        if path == "/_emulator/health" and method == "GET":
            return _json(200, {"ok": True, "url": state.base_url})
        return _json(404, {"error": {"code": "", "message": f"unknown control endpoint {method} {path}"}})


def make_server(*, host: str = "127.0.0.1", port: int = 0, db: str | None = None,
                token: str = "emulator-token") -> EmulatorHTTPServer:
    """Create (not start) a server bound to ``host:port`` with a fresh or file-backed SQLite state."""
    conn = store.connect(db)
    state = EmulatorState(conn, token)
    with state.lock:
        store.init_db(conn)
        if state.entra is not None and hasattr(state.entra, "init_db"):
            state.entra.init_db(conn)
    server = EmulatorHTTPServer((host, port), state)
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
