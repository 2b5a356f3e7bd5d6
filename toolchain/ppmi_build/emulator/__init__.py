"""A local emulator of the cloud services ppmi-build talks to, for tests, demos and offline rehearsal
(DESIGN.md §3 "The emulator"): the Dataverse Web API (domain-spec §2, §4), the federated identity credentials
of Entra ID through Microsoft Graph and Azure Resource Manager (domain-spec §1.7) and Azure Key Vault's certificate
and sign operations (production-keys §2(a)), on one loopback HTTP server with one bearer token, one SQLite store and
one fault-injection control surface.

Layout (after moto): :mod:`.core` holds the server, routing, store, faults, token check and OData query options;
each service is a package (:mod:`.dataverse`, :mod:`.graph`, :mod:`.arm`) with ``models.py``, ``responses.py`` and
``urls.py``; :mod:`.services` lists them. Graph and ARM share the FIC store of :mod:`.entra`.

In-process use::

    from ppmi_build.emulator import start
    with start() as emu:                      # port 0 = any free loopback port, in-memory SQLite
        emu.url                               # "http://127.0.0.1:PORT" -> [environments.NAME] url
        emu.token                             # bearer token the server accepts ("emulator-token")
        emu.add_fault(method="POST", path_contains="pluginpackages", status=429, retry_after=2)
        emu.requests()                        # [{"method", "path", "status", ...}, ...]
        emu.rows("pluginassembly")            # what the emulator's database holds
        emu.reset()

Key Vault seed: ``start(options={"vault_certificates": {"signer": "signer.pfx"}, "vault_pfx_password": "…"})``
(:mod:`.keyvault.models`), then ``--key keyvault:{emu.url}/certificates/signer``.

Command line: ``ppmi-build emulator --port N [--db FILE] [--token T] [--vault-certificate NAME=PFX]`` or
``python -m ppmi_build.emulator --port N``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .core.server import EmulatorHTTPServer, build_server, serve_until_interrupted
from .core.state import EmulatorState
from .services import SERVICES

__all__ = ["Emulator", "EmulatorHTTPServer", "EmulatorState", "make_server", "serve_until_interrupted", "start"]


def make_server(*, host: str = "127.0.0.1", port: int = 0, db: str | None = None, token: str = "emulator-token",
                options: Mapping[str, Any] | None = None) -> EmulatorHTTPServer:
    """Create (not start) a server for every service of :data:`.services.SERVICES` bound to ``host:port``.

    Args:
        host: loopback address to bind (the emulator is for this machine only).
        port: TCP port; 0 picks a free one (read it from ``server.state.base_url``).
        db: SQLite file for the state; None = in memory (lost on stop).
        token: the bearer token every non-control request must carry.
        options: service settings (seed data), kept as ``server.state.options``.
    Raises:
        OSError: the address cannot be bound.
        sqlite3.DatabaseError: ``db`` is not a usable SQLite file.
    """
    return build_server(SERVICES, host=host, port=port, db=db, token=token, options=options)


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
          host: str = "127.0.0.1", options: Mapping[str, Any] | None = None) -> Emulator:
    """Start an emulator on ``host:port`` (port 0 = a free port) in a daemon thread and return it.

    Args:
        port: TCP port; 0 picks a free one (read it from ``Emulator.url``).
        db: SQLite file for the state; None = in memory (lost on stop).
        token: the bearer token every non-control request must carry.
        host: loopback address to bind (the emulator is for this machine only).
        options: service settings (seed data), kept as ``Emulator.state.options``.
    """
    server = make_server(host=host, port=port, db=db, token=token, options=options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name=f"ppmi-emulator-{server.server_address[1]}", daemon=True)
    thread.start()
    return Emulator(server, thread)
