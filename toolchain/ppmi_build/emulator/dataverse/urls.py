"""URL patterns of the Dataverse Web API: ``/api/data/v9.0/…``, ``/api/data/v9.2/…`` (any ``v9.x``;
domain-spec §4)."""

from __future__ import annotations

import re

from ..core.routing import Route
from . import responses

ROOT = r"(?P<root>/api/data/v9\.\d+)"
#: every path under a Web API version segment
CLAIMS = re.compile(r"^/api/data/v9\.\d+(/.*)?$")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NAV = rf"(?:/(?P<nav>{_NAME})(?P<ref>/\$ref)?)?/?$"

URLS: tuple[Route, ...] = (
    Route(re.compile(rf"^{ROOT}/?$"), responses.service_document),
    Route(re.compile(rf"^{ROOT}/WhoAmI{_NAV}"), responses.who_am_i, methods=frozenset({"GET"})),
    # {set}, {set}({id}), {set}({pk}={id}), {set}({id})/{nav}/$ref
    Route(re.compile(rf"^{ROOT}/(?P<set>{_NAME})(?:\((?P<key>[^)]*)\))?{_NAV}"), responses.entity),
)
