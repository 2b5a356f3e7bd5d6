"""Responses as the emulator's services produce them: a ``(status, headers, body)`` triple.

The OData error body ``{"error": {"code", "message"}}`` follows domain-spec §4.4 ([WEBAPI-ERR]).
"""

from __future__ import annotations

import json
from typing import Any

#: ``(status, headers, body)``; ``Content-Length`` is added by the server.
Response = tuple[int, dict[str, str], bytes]


class ApiError(Exception):
    """Raised inside a service handler; the service turns it into an error response (and the enclosing
    store transaction rolls back, so a refused request changes nothing).

    Attributes:
        status: HTTP status code.
        code: the service's error code (Dataverse: ``0x8004…`` hexadecimal, domain-spec §4.4/§6).
        message: the error message as the service words it.
    """

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    """``data`` as ``application/json; charset=utf-8`` plus ``headers``."""
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return status, h, json.dumps(data).encode()


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    """A response without a body (``204 No Content`` and the like)."""
    return status, dict(headers or {}), b""


def odata_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """An OData error response ``{"error": {"code", "message"}}`` with ``OData-Version: 4.0`` (domain-spec §4.4)."""
    h = {"OData-Version": "4.0"}
    h.update(headers or {})
    return json_response(status, {"error": {"code": code, "message": message}}, h)
