"""Test helper: serve the Entra part of the emulator (``entra_api.handle``) to an httpx client in-process,
with a request log, without the HTTP server. The loopback-HTTP tests use the real emulator server."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field

import httpx

from ppmi_build.emulator import services as entra_api

TOKEN = "entra-test-token"


@dataclass
class EntraState:
    db: sqlite3.Connection
    lock: threading.RLock = field(default_factory=threading.RLock)
    token: str = TOKEN
    log: list[tuple[str, str, int]] = field(default_factory=list)


def new_state() -> EntraState:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    entra_api.init_db(db)
    return EntraState(db=db)


def call(state: EntraState, method: str, path: str, body: bytes = b"", query: dict | None = None,
         token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return entra_api.handle(state, method, path, query or {}, headers, body)


def transport(state: EntraState, faults: list | None = None) -> httpx.MockTransport:
    """httpx transport that answers through ``entra_api.handle``. ``faults`` is a list of
    ``(method, status, headers, body)`` answered (and removed) before the emulator sees the request."""
    faults = faults if faults is not None else []

    def handler(request: httpx.Request) -> httpx.Response:
        if faults and faults[0][0] in (request.method, "*"):
            _, status, headers, body = faults.pop(0)
            state.log.append((request.method, request.url.path, status))
            return httpx.Response(status, headers=headers, content=body)
        query = {k: v for k, v in request.url.params.items()}
        res = entra_api.handle(state, request.method, request.url.raw_path.decode().split("?")[0], query,
                               dict(request.headers), request.content)
        status, headers, body = res if res is not None else (404, {}, b"")
        state.log.append((request.method, request.url.path, status))
        return httpx.Response(status, headers=headers, content=body)

    return httpx.MockTransport(handler)
