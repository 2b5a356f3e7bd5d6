"""ARM ``userAssignedIdentities/…/federatedIdentityCredentials`` requests -> responses (domain-spec §1.7).

Every request needs a known ``api-version`` (400 ``MissingApiVersionParameter`` / ``InvalidApiVersionParameter``).
``GET`` collection -> 200 ``{"value": [...]}``; ``GET …/{name}`` -> 200 or 404 ``NotFound``; ``PUT …/{name}`` ->
201 created / 200 updated with ``{"id", "name", "type", "properties": {"issuer", "subject", "audiences"}}``;
``DELETE`` -> 200 / 204 when absent; concurrent writes to one identity -> 409 (:mod:`.models`). The concurrency
and duplicate messages are quoted from public reports; the cap and name messages are the emulator's own wording.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from urllib.parse import unquote

from ..core.auth import exact_bearer
from ..core.responses import Response, empty, json_response
from ..core.routing import Request
from ..entra import models as fic
from . import models


def arm_error(status: int, code: str, message: str) -> Response:
    """An ARM error body ``{"error": {"code", "message"}}``."""
    return json_response(status, {"error": {"code": code, "message": message}})


def authorize(req: Request) -> Response | None:
    """401 ``InvalidAuthenticationToken`` unless the request carries exactly ``Bearer <token>``."""
    if exact_bearer(req.state, req.headers):
        return None
    return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")


def not_found(req: Request) -> Response:
    return arm_error(404, "InvalidResourceType", f"The resource type could not be found for '{req.path}'.")


def federated_identity_credentials(req: Request, m: re.Match[str]) -> Response:
    """``…/userAssignedIdentities/{uami}/federatedIdentityCredentials[/{name}]``, every method."""
    api = req.query.get("api-version")
    if not api:
        return arm_error(400, "MissingApiVersionParameter",
                         "The api-version query parameter (?api-version=) is required for all requests.")
    if api not in models.ARM_API_VERSIONS:
        return arm_error(400, "InvalidApiVersionParameter",
                         f"The api-version '{api}' is invalid. The supported versions are "
                         f"'{','.join(sorted(models.ARM_API_VERSIONS))}'.")
    sub, rg, uami = unquote(m.group("sub")), unquote(m.group("rg")), unquote(m.group("uami"))
    try:
        uuid.UUID(sub)
    except ValueError:
        return arm_error(400, "InvalidSubscriptionId", f"The provided subscription identifier '{sub}' is malformed "
                                                       "or invalid.")
    identity = models.identity_id(sub, rg, uami)
    owner = models.owner(identity)
    name = unquote(m.group("name")) if m.group("name") else None
    method = req.method
    if method == "GET":
        with req.state.lock:
            rows = fic.rows(req.state.db, owner)
        if name is None:
            return json_response(200, {"value": [models.resource(identity, r) for r in rows]})
        match = [r for r in rows if r[1].casefold() == name.casefold()]
        if not match:
            return arm_error(404, "NotFound", f"Federated Identity Credential '{name}' was not found.")
        return json_response(200, models.resource(identity, match[0]))
    if name is None:
        return arm_error(405, "MethodNotAllowed", f"The method {method} is not allowed on the collection.")
    if method not in ("PUT", "DELETE"):
        return arm_error(405, "MethodNotAllowed", f"The method {method} is not allowed.")
    if not fic.NAME_RE.match(name):
        return arm_error(400, "InvalidResourceName",
                         f"The federated identity credential name '{name}' is invalid: it must match "
                         "^[a-zA-Z0-9]{1}[a-zA-Z0-9-_]{2,119}$.")
    body = fic.load_body(req.body) if method == "PUT" else None
    if body is ValueError:
        return arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be "
                                                       "deserialized.")
    with models.write_slot(req.state, owner) as free:
        if not free:
            return arm_error(409, "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
                             "Too many Federated Identity Credentials are written concurrently for the managed "
                             f"identity '{identity.lower()}'. Concurrent Federated Identity Credentials writes "
                             "under the same managed identity are not supported.")
        time.sleep(models.ARM_WRITE_SECONDS)
        with req.state.lock:
            if method == "DELETE":
                return _delete(req, owner, name)
            return _put(req, identity, owner, name, body)


def _delete(req: Request, owner: str, name: str) -> Response:
    match = [r for r in fic.rows(req.state.db, owner) if r[1].casefold() == name.casefold()]
    if not match:
        return empty(204)
    fic.delete(req.state.db, owner, match[0][0])
    return empty(200)


def _put(req: Request, identity: str, owner: str, name: str, body: object) -> Response:
    db = req.state.db
    rows = fic.rows(db, owner)
    match = [r for r in rows if r[1].casefold() == name.casefold()]
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        return arm_error(400, "BadRequest", "The request format was unexpected. Federated Identity "
                                            "Credential must specify 'issuer', 'subject' and 'audience'.")
    values = {"name": name, "issuer": props.get("issuer"), "subject": props.get("subject"),
              "audiences": props.get("audiences")}
    err = fic.validate(values, need_name=True)
    if err:
        return arm_error(400, "BadRequest", "The request format was unexpected. " + err)
    own_id = match[0][0] if match else None
    if any(r[0] != own_id and r[2] == values["issuer"] and r[3] == values["subject"] for r in rows):
        return arm_error(400, "BadRequest", "Issuer and subject combination already exists for this Managed Identity.")
    if own_id is not None:
        fic.update(db, owner, own_id, values)
        return json_response(200, models.resource(identity, (own_id, match[0][1], values["issuer"], values["subject"],
                                                             json.dumps(values["audiences"]))))
    if len(rows) >= fic.FIC_CAP:
        return arm_error(400, "BadRequest", f"The managed identity already has the maximum of {fic.FIC_CAP} "
                                            "federated identity credentials. Delete one before adding another.")
    fid = str(uuid.uuid4())
    fic.insert(db, owner, fid, values)
    return json_response(201, models.resource(identity, (fid, name, values["issuer"], values["subject"],
                                                         json.dumps(values["audiences"]))))
