"""URL patterns of the emulated Key Vault surface (Key Vault REST 7.4: Certificates "Get Certificate", Keys
"Sign")."""

from __future__ import annotations

import re

from ..core.routing import Route
from . import responses

CLAIMS = re.compile(r"^/(certificates|keys)(/|$)")

_NAME = r"[0-9A-Za-z-]+"

URLS: tuple[Route, ...] = (
    Route(re.compile(rf"^/certificates/(?P<name>{_NAME})(?:/(?P<version>{_NAME}))?/?$"), responses.get_certificate,
          frozenset({"GET"})),
    Route(re.compile(rf"^/keys/(?P<name>{_NAME})/(?P<version>{_NAME})/sign/?$"), responses.sign,
          frozenset({"POST"})),
)
