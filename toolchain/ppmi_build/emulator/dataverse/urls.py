"""URL patterns of the Dataverse Web API: ``/api/data/v9.0/…``, ``/api/data/v9.2/…`` (any ``v9.x``;
domain-spec §4)."""

from __future__ import annotations

import re

from ..core.routing import Route
from . import probe, responses

ROOT = r"(?P<root>/api/data/v9\.\d+)"
#: every path under a Web API version segment
CLAIMS = re.compile(r"^/api/data/v9\.\d+(/.*)?$")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NAV = rf"(?:/(?P<nav>{_NAME})(?P<ref>/\$ref)?)?/?$"

URLS: tuple[Route, ...] = (
    Route(re.compile(rf"^{ROOT}/?$"), responses.service_document),
    Route(re.compile(rf"^{ROOT}/WhoAmI{_NAV}"), responses.who_am_i, methods=frozenset({"GET"})),
    # validation.md §4: GetComponentManagedIdentityFIC(ComponentId=…,ComponentName='…') (or @alias parameters)
    Route(re.compile(rf"^{ROOT}/GetComponentManagedIdentityFIC\((?P<args>[^)]*)\)/?$"), probe.get_component_fic,
          methods=frozenset({"GET"}), decoded=True),
    # {set}, {set}({id}), {set}({pk}={id}), {set}({id})/{nav}/$ref
    Route(re.compile(rf"^{ROOT}/(?P<set>{_NAME})(?:\((?P<key>[^)]*)\))?{_NAV}"), responses.entity),
)

#: ``/_emulator/dataverse/platform``: the settings of :mod:`.probe` (environment ID, where FICs live, overrides)
CONTROL: tuple[Route, ...] = (
    Route(re.compile(r"^/_emulator/dataverse/platform/?$"), probe.platform_control,
          methods=frozenset({"GET", "POST"})),
)
