"""The bearer-token check every service request passes (DESIGN.md §3: ``Authorization: Bearer T``).

The server checks each non-control request with :func:`bearer_matches` and answers a failure as Dataverse does
([WEBAPI-AUTH]): ``401`` with a ``WWW-Authenticate: Bearer`` challenge and an empty body
(:func:`unauthorized`). Graph and ARM additionally compare the header exactly (:func:`exact_bearer`) and answer
with their own JSON error bodies, which is what a caller without the server (an in-process transport) sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .responses import Response, empty


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when the ``Authorization`` header value is ``Bearer <token>`` (scheme case-insensitive, token
    compared after stripping surrounding whitespace)."""
    scheme, _, value = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and value.strip() == token


def exact_bearer(state: Any, headers: Mapping[str, str]) -> bool:
    """True when ``state.token`` is empty/absent or the ``Authorization`` header (any case of the header name)
    is exactly ``Bearer <state.token>``."""
    token = getattr(state, "token", None)
    if not token:
        return True
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return auth == f"Bearer {token}"


def unauthorized(base_url: str) -> Response:
    """``401`` with the ``WWW-Authenticate`` challenge naming the emulator's authorization URI, empty body."""
    challenge = f'Bearer error="invalid_token", authorization_uri="{base_url}/oauth2/authorize"'
    return empty(401, {"WWW-Authenticate": challenge})
