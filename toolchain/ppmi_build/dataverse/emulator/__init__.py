"""A local Dataverse Web API (+ Entra FIC endpoints) for tests, demos and offline rehearsal (DESIGN.md §3).

In-process use::

    from ppmi_build.dataverse.emulator import start
    with start() as emu:                      # port 0 = any free loopback port, in-memory SQLite
        emu.url                               # "http://127.0.0.1:PORT" -> [environments.NAME] url
        emu.token                             # bearer token the server accepts ("emulator-token")
        emu.add_fault(method="POST", path_contains="pluginpackages", status=429, retry_after=2)
        emu.requests()                        # [{"method", "path", "status", ...}, ...]
        emu.rows("pluginassembly")            # what the emulator's database holds
        emu.reset()

Command line: ``ppmi-build emulator --port N [--db FILE] [--token T]`` or
``python -m ppmi_build.dataverse.emulator --port N``.
"""

from __future__ import annotations

import threading
from typing import Any

from .server import EmulatorHTTPServer, EmulatorState, make_server

__all__ = ["Emulator", "EmulatorState", "start"]


class Emulator:
    """A running emulator (background thread). Use as a context manager or call :meth:`stop`."""

    def __init__(self, server: EmulatorHTTPServer, thread: threading.Thread | None):
        self.server = server
        self.thread = thread
        self.state: EmulatorState = server.state
        self.url: str = self.state.base_url
        self.token: str = self.state.token

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def api_url(self) -> str:
        """``{url}/api/data/v9.2``."""
        return f"{self.url}/api/data/v9.2"

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        """Queue a fault (keys as ``POST /_emulator/faults``: method, path_contains, status, retry_after, times,
        drop, delay_s, drop_after_commit). Raises ValueError on unknown keys."""
        return self.state.add_fault(spec)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def requests(self) -> list[dict[str, Any]]:
        """Every request served so far: ``{method, path, status, query, time, fault}`` (status 0 = dropped)."""
        return self.state.requests()

    def reset(self) -> None:
        """Delete every row, pending fault and logged request."""
        self.state.reset()

    def rows(self, table: str, where: str = "", params: tuple = ()) -> list[dict[str, Any]]:
        """Rows of a table (logical name, e.g. ``pluginassembly``) straight from SQLite, for assertions."""
        with self.state.lock:
            sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "")
            return [dict(r) for r in self.state.db.execute(sql, params)]

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving, close the socket and the database (idempotent)."""
        if self.thread is not None and self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(timeout=5)
        self.server.server_close()
        try:
            with self.state.lock:
                self.state.db.close()
        except Exception:  # pragma: no cover
            pass

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Emulator {self.url}>"


def start(*, port: int = 0, db: str | None = None, token: str = "emulator-token",
          host: str = "127.0.0.1") -> Emulator:
    """Start an emulator on ``host:port`` (port 0 = a free port) in a daemon thread and return it.

    Args:
        port: TCP port; 0 picks a free one (read it from ``Emulator.url``).
        db: SQLite file for the state; None = in memory (lost on stop).
        token: the bearer token every non-control request must carry.
        host: loopback address to bind (the emulator is for this machine only).
    """
    server = make_server(host=host, port=port, db=db, token=token)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name=f"ppmi-emulator-{server.server_address[1]}", daemon=True)
    thread.start()
    return Emulator(server, thread)
