"""Trusted Signing (Artifact Signing) requests -> responses (production-keys §2(b)).

* ``POST /codesigningaccounts/{account}/certificateprofiles/{profile}/sign?api-version=…`` with
  ``{"signatureAlgorithm": "RS256"|"RS384"|"RS512", "digest": "<base64>"}`` -> ``202 {"operationId", "status":
  "InProgress"}`` (plus ``Operation-Location``);
* ``GET …/sign/{operationId}?api-version=…`` -> ``200 {"operationId", "status"}``; once ``Succeeded`` also
  ``signature`` (base64) and ``signingCertificate`` (base64 of base64 PKCS#7, :func:`.models.signing_certificate`).
  Unknown operation -> 404.

Error bodies use Azure's common shape ``{"error": {"code", "message"}}``; the service's own error codes are not
published (production-keys §2(b) gives none), so the codes here are the emulator's wording. A missing
``api-version`` is 400 as on every Azure data plane.

Control (no token): ``GET /_emulator/trusted-signing/root`` -> the emulator's root (PEM);
``GET /_emulator/trusted-signing/operations`` -> ``[{operationId, account, profile, status, issuer,
certificate (leaf PEM), signature (base64)}]``; ``POST /_emulator/trusted-signing/next`` with
``{"status": "Failed"|"TimedOut"|
"NotFound"|"InProgress", "times": N}`` -> the next N operations end so (``InProgress``: never finish).
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from ..core.auth import exact_bearer
from ..core.responses import Response, json_response
from ..core.routing import Request
from . import models


def ts_error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})


def authorize(req: Request) -> Response | None:
    if exact_bearer(req.state, req.headers):
        return None
    return ts_error(401, "Unauthorized", "The access token is missing or invalid.")


def not_found(req: Request) -> Response:
    return ts_error(404, "NotFound", f"No resource at '{req.path}'.")


def _refuse(req: Request, m: re.Match[str]) -> Response | None:
    """400 without ``api-version``, 404 for a profile the emulator was not seeded with, else None."""
    if not req.query.get("api-version"):
        return ts_error(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
    if (m.group("account").lower(), m.group("profile").lower()) not in models.state_of(req.state).profiles:
        return ts_error(404, "NotFound", f"Certificate profile '{m.group('profile')}' of account "
                                         f"'{m.group('account')}' was not found.")
    return None


def sign(req: Request, m: re.Match[str]) -> Response:
    """``POST …/sign``: start an operation."""
    refused = _refuse(req, m)
    if refused is not None:
        return refused
    ts = models.state_of(req.state)
    account, profile = m.group("account").lower(), m.group("profile").lower()
    try:
        body = json.loads(req.body or b"{}")
        algorithm = str(body["signatureAlgorithm"])
        digest = base64.b64decode(str(body["digest"]), validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return ts_error(400, "BadRequest", "The body must be {\"signatureAlgorithm\", \"digest\" (base64)}.")
    if algorithm not in models.ALGORITHMS:
        return ts_error(400, "BadRequest", f"signatureAlgorithm '{algorithm}' is not supported; use "
                                           f"{', '.join(models.ALGORITHMS)}.")
    if len(digest) != models.ALGORITHMS[algorithm]().digest_size:
        return ts_error(400, "BadRequest", f"The digest is {len(digest)} bytes; {algorithm} needs "
                                           f"{models.ALGORITHMS[algorithm]().digest_size}.")
    op = ts.start(account, profile, algorithm, digest)
    location = f"{req.state.base_url}{req.path.rstrip('/')}/{op.id}?api-version={req.query['api-version']}"
    return json_response(202, {"operationId": op.id, "status": op.status}, {"Operation-Location": location})


def operation(req: Request, m: re.Match[str]) -> Response:
    """``GET …/sign/{operationId}``: the operation's state, and its result once ``Succeeded``."""
    refused = _refuse(req, m)
    if refused is not None:
        return refused
    ts = models.state_of(req.state)
    op = ts.operations.get(m.group("operation"))
    if op is None:
        return ts_error(404, "NotFound", f"Operation '{m.group('operation')}' was not found.")
    ts.poll(op)
    doc: dict[str, object] = {"operationId": op.id, "status": op.status}
    if op.status == "Succeeded":
        doc["signature"] = base64.b64encode(op.signature).decode("ascii")
        doc["signingCertificate"] = models.signing_certificate(op.chain)
    elif op.status != "InProgress":
        doc["error"] = {"code": op.status, "message": f"The signing operation {op.status.lower()} (emulated)."}
    return json_response(200, doc)


# --- control ---------------------------------------------------------------------------------------------------

def root(req: Request, m: re.Match[str]) -> Response:
    return 200, {"Content-Type": "application/x-pem-file"}, models.pem(models.state_of(req.state).root())


def operations(req: Request, m: re.Match[str]) -> Response:
    ts = models.state_of(req.state)
    with ts.lock:
        ops = list(ts.operations.values())
    return json_response(200, [{"operationId": op.id, "account": op.account, "profile": op.profile,
                                "status": op.status,
                                "issuer": op.chain[0].issuer.rfc4514_string() if op.chain else None,
                                "certificate": models.pem(op.chain[0]).decode() if op.chain else None,
                                "signature": base64.b64encode(op.signature).decode("ascii")}
                               for op in ops])


def next_outcome(req: Request, m: re.Match[str]) -> Response:
    try:
        spec = json.loads(req.body or b"{}")
        status, times = str(spec["status"]), int(spec.get("times", 1))
    except (ValueError, KeyError, TypeError):
        return ts_error(400, "BadRequest", "body: {\"status\": \"Failed\", \"times\": 1}")
    if status not in models.OUTCOMES or times < 1:
        return ts_error(400, "BadRequest", f"status must be one of {sorted(models.OUTCOMES)}, times >= 1")
    ts = models.state_of(req.state)
    with ts.lock:
        ts.next_outcomes.extend([status] * times)
    return json_response(201, {"pending": len(ts.next_outcomes)})
