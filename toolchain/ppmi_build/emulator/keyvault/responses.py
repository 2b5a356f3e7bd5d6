"""Key Vault requests -> responses (Key Vault REST 7.4: Certificates "Get Certificate", Keys "Sign").

Every request needs a known ``api-version`` (400 ``BadParameter``). ``GET /certificates/{name}[/{version}]`` ->
200 ``CertificateBundle`` (:func:`.models.bundle`) or 404 ``CertificateNotFound``; ``POST
/keys/{name}/{version}/sign`` with ``{"alg", "value": base64url(digest)}`` -> 200 ``{"kid", "value":
base64url(signature)}``, 404 ``KeyNotFound``, 400 ``BadParameter`` for a body, algorithm or digest it cannot use.
Errors have Key Vault's shape ``{"error": {"code", "message"}}``; the not-found messages are quoted from the
service, the others are the emulator's own wording.
"""

from __future__ import annotations

import base64
import json
import re

from ..core.auth import exact_bearer
from ..core.responses import Response, json_response
from ..core.routing import Request
from . import models

_NOT_FOUND_HELP = ("If you recently deleted this {what} you may be able to recover it using the correct recovery "
                   "command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182")


def vault_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """A Key Vault error body ``{"error": {"code", "message"}}``."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def authorize(req: Request) -> Response | None:
    """401 ``Unauthorized`` with a ``WWW-Authenticate`` challenge unless the request carries exactly
    ``Bearer <token>`` (what an in-process caller sees; the server answers a wrong token before this)."""
    if exact_bearer(req.state, req.headers):
        return None
    challenge = 'Bearer authorization="https://login.microsoftonline.com/common", resource="https://vault.azure.net"'
    return vault_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.",
                       {"WWW-Authenticate": challenge})


def not_found(req: Request) -> Response:
    return vault_error(404, "NotFound", f"The requested resource '{req.path}' was not found in this key vault.")


def _api_version(req: Request) -> Response | None:
    api = req.query.get("api-version")
    if not api:
        return vault_error(400, "BadParameter", "The request URI must contain the api-version query parameter.")
    if api not in models.API_VERSIONS:
        return vault_error(400, "BadParameter", f"The specified version ({api}) is not recognized. Consider using "
                                                "the latest supported version (7.4).")
    return None


def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*=*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text.rstrip("=")) % 4))


def get_certificate(req: Request, m: re.Match[str]) -> Response:
    """``GET /certificates/{name}[/{version}]``."""
    refused = _api_version(req)
    if refused:
        return refused
    name, version = m.group("name"), m.group("version")
    vc = models.find(req.state, name, version)
    if vc is None:
        shown = f"{name}/{version}" if version else name
        return vault_error(404, "CertificateNotFound", f"A certificate with (name/id) {shown} was not found in this "
                                                       "key vault. " + _NOT_FOUND_HELP.format(what="certificate"))
    return json_response(200, models.bundle(req.state.base_url, vc))


def sign(req: Request, m: re.Match[str]) -> Response:
    """``POST /keys/{name}/{version}/sign``: the key never leaves the emulator."""
    refused = _api_version(req)
    if refused:
        return refused
    name, version = m.group("name"), m.group("version")
    vc = models.find(req.state, name, version)
    if vc is None:
        return vault_error(404, "KeyNotFound", f"A key with (name/id) {name}/{version} was not found in this key "
                                               "vault. " + _NOT_FOUND_HELP.format(what="key"))
    try:
        body = json.loads(req.body or b"null")
        alg, value = body["alg"], body["value"]
        digest = _b64url_decode(str(value))
    except (ValueError, KeyError, TypeError):
        return vault_error(400, "BadParameter", "The request body must be JSON {\"alg\": ..., \"value\": "
                                                "base64url(digest)}.")
    try:
        signature = models.sign(vc, str(alg), digest)
    except ValueError as e:
        return vault_error(400, "BadParameter", str(e))
    value = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return json_response(200, {"kid": f"{req.state.base_url}/keys/{vc.name}/{vc.version}", "value": value})
