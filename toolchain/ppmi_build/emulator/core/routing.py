"""What a service package declares, and how a request finds its handler (the shape of moto's ``urls.py``).

Every emulated service lives under the emulator's one base URL and is told apart by its path: a
:class:`Service` *claims* the paths matching :attr:`Service.claims` (Dataverse ``/api/data/v9.x``, Graph
``/v1.0/``, ARM ``/subscriptions/``). Inside a claimed path the first :class:`Route` whose pattern matches (and
whose methods include the request's) answers; when none does, :attr:`Service.not_found` answers in that
service's own error format. A path no service claims is the server's 404.

A handler is ``handler(request, match) -> Response | None`` where ``match`` is the route pattern's ``re.Match``;
None means the handler does not answer this path, and :attr:`Service.not_found` answers instead.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .responses import Response


@dataclass(frozen=True)
class Request:
    """One request as a service sees it.

    Attributes:
        state: the emulator state (``db``, ``lock``, ``token``, ``base_url``; see :mod:`.state`).
        method: HTTP method, upper case.
        path: URL path without the query (percent-decoded when it comes from the server).
        query: decoded query parameters (last value wins).
        headers: request headers (case-insensitive when they come from the server).
        body: raw request body.
    """

    state: Any
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


Handler = Callable[[Request, "re.Match[str]"], Response | None]


@dataclass(frozen=True)
class Route:
    """A URL pattern and its handler.

    Attributes:
        pattern: matched (``re.match``) against the whole path.
        handler: ``handler(request, match) -> Response | None`` (None: answered by ``Service.not_found``).
        methods: the methods it answers; None = every method (the handler then refuses the others itself).
        decoded: match against the percent-decoded path (OData key segments such as ``(name='x')``).
    """

    pattern: re.Pattern[str]
    handler: Handler
    methods: frozenset[str] | None = None
    decoded: bool = False


@dataclass(frozen=True)
class Service:
    """One emulated service.

    Attributes:
        name: short name (``dataverse``, ``graph``, ``arm``).
        claims: paths this service answers.
        routes: tried in order inside a claimed path.
        not_found: the answer for a claimed path no route matches.
        authorize: the service's own token check, run before its routes; returns an error response or None.
        init_db: creates the service's tables (idempotent), called once when a server is made.
        control: extra ``/_emulator/…`` routes (no token), e.g. to read a service's generated root certificate.
    """

    name: str
    claims: re.Pattern[str]
    routes: tuple[Route, ...]
    not_found: Callable[[Request], Response]
    authorize: Callable[[Request], Response | None] | None = None
    init_db: Callable[[sqlite3.Connection], None] | None = None
    control: tuple[Route, ...] = ()


def match_route(routes: Sequence[Route], method: str, path: str) -> tuple[Route, re.Match[str]] | None:
    """The first route answering ``method`` whose pattern matches ``path``, with its match, or None."""
    decoded = None
    for route in routes:
        if route.methods is not None and method not in route.methods:
            continue
        if route.decoded:
            decoded = unquote(path) if decoded is None else decoded
            m = route.pattern.match(decoded)
        else:
            m = route.pattern.match(path)
        if m:
            return route, m
    return None


def dispatch(services: Sequence[Service], request: Request) -> Response | None:
    """Answer ``request`` with the first service claiming its path; None when no service claims it."""
    for service in services:
        if not service.claims.match(request.path):
            continue
        if service.authorize is not None:
            refused = service.authorize(request)
            if refused is not None:
                return refused
        found = match_route(service.routes, request.method, request.path)
        if found is None:
            return service.not_found(request)
        route, m = found
        return route.handler(request, m) or service.not_found(request)
    return None
