"""Graph v1.0 ``federatedIdentityCredential`` requests -> responses (domain-spec §1.7).

``GET`` collection -> 200 ``{"@odata.context", "value": [...]}``; ``POST`` -> 201 with the FIC (``id``, ``name``,
``issuer``, ``subject``, ``description``, ``audiences``) and ``Location``; ``GET/PATCH/DELETE …/{id}`` or
``…(name='{name}')`` -> 200 / 204 / 204, ``PATCH`` by name creates a missing FIC (201); an unknown FIC is 404
``Request_ResourceNotFound``; an unknown path under ``/v1.0/`` is 400. Error bodies carry Graph's ``innerError``
(``date``, ``request-id``, ``client-request-id``). A second FIC with the same (issuer, subject) is 400
``InvalidFederatedIdentityCredentialValue`` (the wording quoted from public reports); the cap and name messages are
the emulator's own wording.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from typing import Any

from ..core.auth import exact_bearer
from ..core.responses import Response, empty, json_response
from ..core.routing import Request
from ..entra import models as fic
from .models import context as graph_context
from .models import owner as app_owner


def graph_error(status: int, code: str, message: str) -> Response:
    """A Graph error body with ``innerError`` and a fresh ``request-id``."""
    rid = str(uuid.uuid4())
    return json_response(status, {"error": {"code": code, "message": message, "innerError": {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": rid, "client-request-id": rid}}}, {"request-id": rid})


def authorize(req: Request) -> Response | None:
    """401 ``InvalidAuthenticationToken`` unless the request carries exactly ``Bearer <token>``."""
    if exact_bearer(req.state, req.headers):
        return None
    return graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")


def not_found(req: Request) -> Response:
    return graph_error(400, "BadRequest", f"Resource not found for the segment in '{req.path}'.")


def _cap_error() -> Response:
    """Graph's answer when the application already holds FIC_CAP credentials (the wording is ours)."""
    return graph_error(400, "Request_BadRequest",
                       f"The application already has the maximum of {fic.FIC_CAP} federated identity "
                       "credentials. Delete one before adding another.")


def federated_identity_credentials(req: Request, m: re.Match[str]) -> Response:
    """``/v1.0/applications/{app}/federatedIdentityCredentials[/{id}|(name='{name}')]``, every method."""
    key = m.group("appid") or m.group("app")
    try:
        app_id = str(uuid.UUID(key))
    except ValueError:
        return graph_error(400, "Request_BadRequest", f"Invalid object identifier '{key}'.")
    owner = app_owner(app_id, by_app_id=bool(m.group("appid")))
    context = graph_context(app_id)
    name_key, item = m.group("key"), m.group("item")
    with req.state.lock:
        if item is None and name_key is None:
            return _collection(req, owner, context)
        return _item(req, owner, context, name_key, item)


def _collection(req: Request, owner: str, context: str) -> Response:
    db, method = req.state.db, req.method
    rows = fic.rows(db, owner)
    if method == "GET":
        return json_response(200, {"@odata.context": context, "value": [fic.row_dict(r) for r in rows]})
    if method != "POST":
        return graph_error(405, "Request_BadRequest", f"Method {method} is not allowed on the collection.")
    body = fic.load_body(req.body)
    if body is ValueError:
        return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
    err = fic.validate(body, need_name=True)
    if err:
        return graph_error(400, "Request_BadRequest", err)
    if any(r[1].casefold() == body["name"].casefold() for r in rows):
        return graph_error(409, "Request_MultipleObjectsWithSameKeyValue",
                           f"FederatedIdentityCredential with name {body['name']} already exists.")
    if any(r[2] == body["issuer"] and r[3] == body["subject"] for r in rows):
        return graph_error(400, "InvalidFederatedIdentityCredentialValue",
                           "The combination of issuer and subject must be unique for the application. "
                           f"Issuer {body['issuer']} and Subject: {body['subject']} already exist.")
    if len(rows) >= fic.FIC_CAP:
        return _cap_error()
    fid = str(uuid.uuid4())
    fic.insert(db, owner, fid, body)
    rec = {"@odata.context": context + "/$entity", "id": fid, "name": body["name"], "issuer": body["issuer"],
           "subject": body["subject"], "description": body.get("description"), "audiences": body["audiences"]}
    return json_response(201, rec, {"Location": f"{context}/{fid}"})


def _item(req: Request, owner: str, context: str, name_key: str | None, item: str | None) -> Response:
    db, method = req.state.db, req.method
    rows = fic.rows(db, owner)
    if name_key is not None:
        match = [r for r in rows if r[1].casefold() == name_key.casefold()]
    else:
        match = [r for r in rows if r[0].casefold() == str(item).casefold()]
    if not match:
        if method == "PATCH" and name_key is not None:  # upsert by name
            return _create_by_name(req, owner, rows, name_key)
        return graph_error(404, "Request_ResourceNotFound",
                           f"Resource '{item or name_key}' does not exist or one of its queried reference-property "
                           "objects are not present.")
    row = match[0]
    if method == "GET":
        return json_response(200, dict(fic.row_dict(row), **{"@odata.context": context + "/$entity"}))
    if method == "DELETE":
        fic.delete(db, owner, row[0])
        return empty(204)
    if method == "PATCH":
        return _patch(req, owner, rows, row)
    return graph_error(405, "Request_BadRequest", f"Method {method} is not allowed.")


def _create_by_name(req: Request, owner: str, rows: list[Any], name_key: str) -> Response:
    body = fic.load_body(req.body)
    if body is ValueError or not isinstance(body, dict):
        return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
    body = dict(body, name=name_key)
    err = fic.validate(body, need_name=True)
    if err:
        return graph_error(400, "Request_BadRequest", err)
    if len(rows) >= fic.FIC_CAP:
        return _cap_error()
    fid = str(uuid.uuid4())
    fic.insert(req.state.db, owner, fid, body)
    return json_response(201, {"id": fid, "name": body["name"], "issuer": body["issuer"],
                               "subject": body["subject"], "audiences": body["audiences"],
                               "description": body.get("description")})


def _patch(req: Request, owner: str, rows: list[Any], row: Any) -> Response:
    body = fic.load_body(req.body)
    if body is ValueError or not isinstance(body, dict):
        return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
    if "name" in body and body["name"] != row[1]:
        return graph_error(400, "Request_BadRequest", "The name of a federated identity credential is immutable.")
    merged = dict(fic.row_dict(row))
    merged.update({k: v for k, v in body.items() if k in ("issuer", "subject", "audiences", "description")})
    err = fic.validate(merged, need_name=False)
    if err:
        return graph_error(400, "Request_BadRequest", err)
    if any(r[0] != row[0] and r[2] == merged["issuer"] and r[3] == merged["subject"] for r in rows):
        return graph_error(400, "InvalidFederatedIdentityCredentialValue",
                           "The combination of issuer and subject must be unique for the application.")
    fic.update(req.state.db, owner, row[0], merged)
    return empty(204)
