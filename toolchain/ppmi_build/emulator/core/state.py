"""The state of one emulator instance, shared by the server's worker threads and every service handler.

* ``db`` — the SQLite connection (:mod:`.store`; ``check_same_thread=False``, autocommit mode: group
  multi-statement writes with :func:`.store.transaction`);
* ``lock`` — a ``threading.RLock``; hold it around any database access;
* ``token`` — the bearer token requests must carry (DESIGN.md §3);
* ``base_url`` — ``http://HOST:PORT`` once the server is bound;
* ``options`` — service settings given to :func:`ppmi_build.emulator.make_server` (e.g. seed data);
* ``faults`` — the pending faults (:class:`.faults.FaultQueue`); the request log.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from . import store
from .faults import FaultQueue


class EmulatorState:
    """Shared state of one emulator instance (see the module docstring)."""

    def __init__(self, db: sqlite3.Connection, token: str, options: Mapping[str, Any] | None = None):
        self.db = db
        self.lock = threading.RLock()
        self.token = token
        self.base_url = ""
        self.options: dict[str, Any] = dict(options or {})
        self.faults = FaultQueue(self.lock)
        self.log: list[dict[str, Any]] = []
        #: the services' ``init_db`` hooks: :meth:`reset` runs them again so platform rows (seeded messages) return
        self.init_hooks: list[Callable[[sqlite3.Connection], None]] = []

    # --- faults ------------------------------------------------------------------------------------------
    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Queue a fault (keys of :data:`.faults.FAULT_KEYS`). Raises ValueError on unknown or missing keys."""
        return self.faults.add(spec)

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        """The first pending fault matching this request (its ``times`` is decremented), or None."""
        return self.faults.take(method, path)

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
        """Delete every row (all services' tables), pending faults and the request log; then the services'
        ``init_db`` hooks seed their platform rows again."""
        with self.lock:
            store.clear(self.db, self.lock)
            for hook in self.init_hooks:
                hook(self.db)
            self.faults.clear()
            self.log.clear()
