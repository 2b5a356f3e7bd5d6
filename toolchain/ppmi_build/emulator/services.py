"""The services the emulator serves, in routing order: the one list a new service is added to.

A service is a package with ``models.py`` (state and rules), ``responses.py`` (request -> response handlers) and
``urls.py`` (URL patterns -> handlers), exposing ``SERVICE`` (:class:`~.core.routing.Service`) from its
``__init__``. :func:`handle` answers a request without the HTTP server (no faults, no request log), for in-process
transports in tests.

Growing the emulator:

* a new service (e.g. Key Vault ``/certificates/…``, ``/keys/…``; Trusted Signing ``/codesigningaccounts/…``) is a
  new package with its ``SERVICE`` and one line in :data:`SERVICES`; its seed data (certificates, signing
  profiles) reaches it as ``state.options`` (``make_server(options=…)``), and a control endpoint of its own
  (``/_emulator/…``) is a route in ``Service.control``;
* a new Dataverse table (``sdkmessageprocessingstep``, ``customapi``, ``plugintracelog``, …) is an ``Entity`` in
  :data:`.dataverse.models.ENTITIES` plus, when Dataverse applies rules to it, a ``TableRules`` in
  :data:`.dataverse.rules.RULES`; a Web API function or action (``GetComponentManagedIdentityFIC(…)``) is a
  route in :mod:`.dataverse.urls` ahead of the table route;
* state several services read (the FICs Dataverse checks when it plays the token exchange) lives in a shared
  model such as :mod:`.entra.models`, never in another service's handlers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from . import arm, dataverse, graph, keyvault, trustedsigning
from .core.responses import Response
from .core.routing import Request, Service, dispatch

SERVICES: tuple[Service, ...] = (
    dataverse.SERVICE,  # /api/data/v9.x/…   domain-spec §2, §4
    graph.SERVICE,      # /v1.0/…            domain-spec §1.7
    arm.SERVICE,        # /subscriptions/…   domain-spec §1.7
    keyvault.SERVICE,   # /certificates/…, /keys/…   production-keys §2(a)
    trustedsigning.SERVICE,  # /codesigningaccounts/…  production-keys §2(b)
)


def init_db(db: sqlite3.Connection) -> None:
    """Create every service's tables in ``db`` (idempotent)."""
    for service in SERVICES:
        if service.init_db is not None:
            service.init_db(db)


def handle(state: Any, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
           body: bytes) -> Response | None:
    """Answer one request in-process.

    Args:
        state: an object with ``db`` (sqlite3 connection with the services' tables), ``lock`` (RLock), ``token``
            (empty = no check by the services' own token checks) and, for Dataverse, ``base_url``.
        method: HTTP method (any case).
        path: URL path without the query.
        query: decoded query parameters.
        headers: request headers.
        body: raw request body.
    Returns:
        ``(status, headers, body)``, or None when no service claims ``path``.
    """
    return dispatch(SERVICES, Request(state, method.upper(), path, query, headers, body))
