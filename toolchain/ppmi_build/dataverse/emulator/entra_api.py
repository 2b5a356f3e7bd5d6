"""Entra part of the emulator: Microsoft Graph and ARM federated identity credential (FIC) endpoints.

The emulator server (``ppmi_build.dataverse.emulator``) routes every request whose path starts with
``/v1.0/`` (Graph) or ``/subscriptions/`` (ARM) to :func:`handle` and calls :func:`init_db` once at
start-up. State lives in the server's SQLite connection (``state.db``) guarded by ``state.lock``.

Emulated surface (shapes from the Graph v1.0 ``federatedIdentityCredential`` reference and the ARM
``Microsoft.ManagedIdentity`` 2023-01-31 REST reference; rules from the Entra "federated identity credential
considerations", domain-spec §1.7):

Graph (``/v1.0/applications/{objectId}/federatedIdentityCredentials``)
    ``GET`` list -> 200 ``{"@odata.context", "value": [...]}``; ``POST`` -> 201 with the FIC
    (``id``, ``name``, ``issuer``, ``subject``, ``description``, ``audiences``); ``GET/PATCH/DELETE …/{id}``
    or ``…/(name='{name}')`` (alternate key) -> 200 / 204 / 204; unknown -> 404 ``Request_ResourceNotFound``.
ARM (``/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/
{uami}/federatedIdentityCredentials[/{name}]?api-version=…``)
    ``GET`` list -> 200 ``{"value": [...]}``; ``PUT`` -> 201 created / 200 updated with
    ``{"id", "name", "type", "properties": {"issuer", "subject", "audiences"}}``; ``DELETE`` -> 200 / 204.

Rules: at most 20 FICs per application/UAMI (400 on the 21st); (issuer, subject) unique per identity,
compared exactly (400 otherwise); name 3–120 chars ``^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$`` and immutable;
issuer/subject/audience/description at most 600 chars, exactly one audience, no ``*`` wildcards, no
leading/trailing whitespace in the issuer; values stored and matched case-sensitively; concurrent writes to
one UAMI get 409 ``ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`` (each ARM write
takes :data:`ARM_WRITE_SECONDS`, and a second write to the same UAMI in that window is refused).
Error texts quoted from public reports where known (ARM concurrency and duplicate messages, Graph
``InvalidFederatedIdentityCredentialValue``); the cap and name messages are the emulator's own wording.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sqlite3
import threading
import time
import uuid
from typing import Any
from urllib.parse import unquote

#: Entra cap per application / UAMI.
FIC_CAP = 20
MAX_CHARS = 600
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")
#: Simulated duration of one ARM FIC write; a second write to the same UAMI inside it gets 409.
ARM_WRITE_SECONDS = 0.05
ARM_API_VERSIONS = {"2018-11-30", "2021-09-30-preview", "2022-01-31-preview", "2023-01-31",
                    "2023-07-31-preview", "2024-11-30", "2025-01-31-preview"}
ARM_FIC_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"

_GRAPH_RE = re.compile(
    r"^/v1\.0/applications(?:/(?P<app>[^/()]+)|\(appId='(?P<appid>[^']+)'\))/federatedIdentityCredentials"
    r"(?:\(name='(?P<key>[^']*)'\)|/(?P<item>[^/]+))?/?$",
    re.IGNORECASE)
_ARM_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ManagedIdentity/"
    r"userAssignedIdentities/(?P<uami>[^/]+)/federatedIdentityCredentials(?:/(?P<name>[^/]+))?/?$",
    re.IGNORECASE)

_busy: dict[tuple[int, str], bool] = {}
_busy_guard = threading.Lock()

Response = tuple[int, dict[str, str], bytes]


def init_db(conn: sqlite3.Connection) -> None:
    """Create the FIC table (idempotent). One row per FIC; ``owner`` is ``app:{objectId}`` or
    ``uami:{lower-case resource id}``; ``seq`` keeps creation order."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS entra_fic (
               seq INTEGER PRIMARY KEY AUTOINCREMENT,
               owner TEXT NOT NULL,
               id TEXT NOT NULL,
               name TEXT NOT NULL,
               issuer TEXT NOT NULL,
               subject TEXT NOT NULL,
               audiences TEXT NOT NULL,
               description TEXT,
               created TEXT NOT NULL
           )""")
    conn.execute("CREATE INDEX IF NOT EXISTS entra_fic_owner ON entra_fic(owner)")
    conn.commit()


# --- helpers ----------------------------------------------------------------------------------


def _json(status: int, body: Any, extra: dict[str, str] | None = None) -> Response:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    headers.update(extra or {})
    return status, headers, json.dumps(body).encode("utf-8")


def _empty(status: int) -> Response:
    return status, {}, b""


def _graph_error(status: int, code: str, message: str) -> Response:
    rid = str(uuid.uuid4())
    return _json(status, {"error": {"code": code, "message": message, "innerError": {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": rid, "client-request-id": rid}}}, {"request-id": rid})


def _arm_error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})


def _rows(conn: sqlite3.Connection, owner: str) -> list[sqlite3.Row | tuple]:
    return conn.execute(
        "SELECT id, name, issuer, subject, audiences, description FROM entra_fic WHERE owner = ? ORDER BY seq",
        (owner,)).fetchall()


def _row_dict(row: Any) -> dict[str, Any]:
    return {"id": row[0], "name": row[1], "issuer": row[2], "subject": row[3],
            "audiences": json.loads(row[4]), "description": row[5]}


def _validate(body: Any, *, need_name: bool) -> str | None:
    """Return an error message, or None when the values follow the Entra rules."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if need_name:
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            return (f"Invalid federated identity credential name {name!r}: it must be 3-120 characters, "
                    "alphanumeric, '-' or '_', and start with an alphanumeric character.")
    for key in ("issuer", "subject"):
        value = body.get(key)
        if not isinstance(value, str) or not value:
            return f"Federated Identity Credential must specify 'issuer', 'subject' and 'audience'. Missing {key}."
        if len(value) > MAX_CHARS:
            return f"The {key} is longer than {MAX_CHARS} characters."
        if "*" in value:
            return f"Wildcard characters are not supported in {key}."
    if body["issuer"] != body["issuer"].strip():
        return "The issuer must not have leading or trailing whitespace."
    audiences = body.get("audiences")
    if not isinstance(audiences, list) or len(audiences) != 1 or not isinstance(audiences[0], str) \
            or not audiences[0]:
        return "Federated Identity Credential must specify exactly one audience."
    if len(audiences[0]) > MAX_CHARS or "*" in audiences[0]:
        return f"The audience must be at most {MAX_CHARS} characters without wildcards."
    desc = body.get("description")
    if desc is not None and (not isinstance(desc, str) or len(desc) > MAX_CHARS):
        return f"The description must be a string of at most {MAX_CHARS} characters."
    return None


def _load_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ValueError


def _authorized(state: Any, headers: dict[str, str]) -> bool:
    token = getattr(state, "token", None)
    if not token:
        return True
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return auth == f"Bearer {token}"


# --- entry point --------------------------------------------------------------------------------


def handle(state: Any, method: str, path: str, query: dict[str, str], headers: dict[str, str],
           body: bytes) -> Response | None:
    """Serve one Graph or ARM FIC request.

    Args:
        state: the emulator state (``db``: sqlite3 connection, ``lock``: RLock, optional ``token``).
        method: HTTP method, upper case.
        path: the URL path without the query, percent-encoded as received.
        query: decoded query parameters.
        headers: request headers.
        body: raw request body.
    Returns:
        ``(status, headers, body)``, or None when the path is not a Graph/ARM FIC route (the server
        then answers 404 itself).
    """
    method = method.upper()
    if not _authorized(state, headers):
        if path.startswith("/v1.0/"):
            return _graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        return _arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
    m = _GRAPH_RE.match(unquote(path))
    if m:
        return _graph(state, method, m, body)
    m = _ARM_RE.match(path)
    if m:
        return _arm(state, method, m, query, body)
    if path.startswith("/v1.0/"):
        return _graph_error(400, "BadRequest", f"Resource not found for the segment in '{path}'.")
    if path.startswith("/subscriptions/"):
        return _arm_error(404, "InvalidResourceType", f"The resource type could not be found for '{path}'.")
    return None


# --- Graph --------------------------------------------------------------------------------------


def _graph(state: Any, method: str, m: re.Match[str], raw: bytes) -> Response:
    # The emulator has no application directory: an app addressed by appId is kept apart from one
    # addressed by object id (in Entra they are two keys of one object).
    key = m.group("appid") or m.group("app")
    try:
        app_id = str(uuid.UUID(key))
    except ValueError:
        return _graph_error(400, "Request_BadRequest", f"Invalid object identifier '{key}'.")
    owner = f"app:{'appid:' if m.group('appid') else ''}{app_id}"
    name_key, item = m.group("key"), m.group("item")
    context = f"https://graph.microsoft.com/v1.0/$metadata#applications('{app_id}')/federatedIdentityCredentials"
    db, lock = state.db, state.lock
    with lock:
        rows = _rows(db, owner)
        if item is None and name_key is None:
            if method == "GET":
                return _json(200, {"@odata.context": context, "value": [_row_dict(r) for r in rows]})
            if method != "POST":
                return _graph_error(405, "Request_BadRequest", f"Method {method} is not allowed on the collection.")
            body = _load_body(raw)
            if body is ValueError:
                return _graph_error(400, "BadRequest", "Unable to read JSON request payload.")
            err = _validate(body, need_name=True)
            if err:
                return _graph_error(400, "Request_BadRequest", err)
            if any(r[1].casefold() == body["name"].casefold() for r in rows):
                return _graph_error(409, "Request_MultipleObjectsWithSameKeyValue",
                                    f"FederatedIdentityCredential with name {body['name']} already exists.")
            dup = [r for r in rows if r[2] == body["issuer"] and r[3] == body["subject"]]
            if dup:
                return _graph_error(400, "InvalidFederatedIdentityCredentialValue",
                                    "The combination of issuer and subject must be unique for the application. "
                                    f"Issuer {body['issuer']} and Subject: {body['subject']} already exist.")
            if len(rows) >= FIC_CAP:
                return _graph_cap_error()
            fid = str(uuid.uuid4())
            _insert(db, owner, fid, body)
            rec = {"@odata.context": context + "/$entity", "id": fid, "name": body["name"],
                   "issuer": body["issuer"], "subject": body["subject"],
                   "description": body.get("description"), "audiences": body["audiences"]}
            return _json(201, rec, {"Location": f"{context}/{fid}"})
        # single item: by id or by alternate key (name='...')
        if name_key is not None:
            match = [r for r in rows if r[1].casefold() == name_key.casefold()]
        else:
            match = [r for r in rows if r[0].casefold() == str(item).casefold()]
        if not match:
            if method == "PATCH" and name_key is not None:  # upsert by name
                body = _load_body(raw)
                if body is ValueError or not isinstance(body, dict):
                    return _graph_error(400, "BadRequest", "Unable to read JSON request payload.")
                body = dict(body, name=name_key)
                err = _validate(body, need_name=True)
                if err:
                    return _graph_error(400, "Request_BadRequest", err)
                if len(rows) >= FIC_CAP:
                    return _graph_cap_error()
                fid = str(uuid.uuid4())
                _insert(db, owner, fid, body)
                return _json(201, dict(_row_dict((fid, body["name"], body["issuer"], body["subject"],
                                                  json.dumps(body["audiences"]), body.get("description")))))
            return _graph_error(404, "Request_ResourceNotFound",
                                f"Resource '{item or name_key}' does not exist or one of its queried "
                                "reference-property "
                                "objects are not present.")
        row = match[0]
        if method == "GET":
            return _json(200, dict(_row_dict(row), **{"@odata.context": context + "/$entity"}))
        if method == "DELETE":
            db.execute("DELETE FROM entra_fic WHERE owner = ? AND id = ?", (owner, row[0]))
            db.commit()
            return _empty(204)
        if method == "PATCH":
            body = _load_body(raw)
            if body is ValueError or not isinstance(body, dict):
                return _graph_error(400, "BadRequest", "Unable to read JSON request payload.")
            if "name" in body and body["name"] != row[1]:
                return _graph_error(400, "Request_BadRequest", "The name of a federated identity credential "
                                                               "is immutable.")
            merged = dict(_row_dict(row))
            merged.update({k: v for k, v in body.items() if k in ("issuer", "subject", "audiences", "description")})
            err = _validate(merged, need_name=False)
            if err:
                return _graph_error(400, "Request_BadRequest", err)
            if any(r[0] != row[0] and r[2] == merged["issuer"] and r[3] == merged["subject"] for r in rows):
                return _graph_error(400, "InvalidFederatedIdentityCredentialValue",
                                    "The combination of issuer and subject must be unique for the application.")
            db.execute("UPDATE entra_fic SET issuer = ?, subject = ?, audiences = ?, description = ? "
                       "WHERE owner = ? AND id = ?",
                       (merged["issuer"], merged["subject"], json.dumps(merged["audiences"]),
                        merged.get("description"), owner, row[0]))
            db.commit()
            return _empty(204)
        return _graph_error(405, "Request_BadRequest", f"Method {method} is not allowed.")


def _graph_cap_error() -> Response:
    """Graph's answer when the application already holds FIC_CAP credentials (the wording is ours)."""
    return _graph_error(400, "Request_BadRequest",
                        f"The application already has the maximum of {FIC_CAP} federated identity "
                        "credentials. Delete one before adding another.")


def _insert(db: sqlite3.Connection, owner: str, fid: str, body: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO entra_fic (owner, id, name, issuer, subject, audiences, description, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (owner, fid, body["name"], body["issuer"], body["subject"], json.dumps(body["audiences"]),
         body.get("description"), _dt.datetime.now(_dt.UTC).isoformat()))
    db.commit()


# --- ARM ----------------------------------------------------------------------------------------


def _arm(state: Any, method: str, m: re.Match[str], query: dict[str, str], raw: bytes) -> Response:
    api = query.get("api-version")
    if not api:
        return _arm_error(400, "MissingApiVersionParameter",
                          "The api-version query parameter (?api-version=) is required for all requests.")
    if api not in ARM_API_VERSIONS:
        return _arm_error(400, "InvalidApiVersionParameter",
                          f"The api-version '{api}' is invalid. The supported versions are "
                          f"'{','.join(sorted(ARM_API_VERSIONS))}'.")
    sub, rg, uami = unquote(m.group("sub")), unquote(m.group("rg")), unquote(m.group("uami"))
    try:
        uuid.UUID(sub)
    except ValueError:
        return _arm_error(400, "InvalidSubscriptionId", f"The provided subscription identifier '{sub}' is malformed "
                                                        "or invalid.")
    identity = (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/"
                f"userAssignedIdentities/{uami}")
    owner = "uami:" + identity.casefold()
    name = unquote(m.group("name")) if m.group("name") else None
    db, lock = state.db, state.lock

    def resource(row: Any) -> dict[str, Any]:
        return {"id": f"{identity}/federatedIdentityCredentials/{row[1]}", "name": row[1], "type": ARM_FIC_TYPE,
                "properties": {"issuer": row[2], "subject": row[3], "audiences": json.loads(row[4])}}

    if method == "GET":
        with lock:
            rows = _rows(db, owner)
        if name is None:
            return _json(200, {"value": [resource(r) for r in rows]})
        match = [r for r in rows if r[1].casefold() == name.casefold()]
        if not match:
            return _arm_error(404, "NotFound", f"Federated Identity Credential '{name}' was not found.")
        return _json(200, resource(match[0]))
    if name is None:
        return _arm_error(405, "MethodNotAllowed", f"The method {method} is not allowed on the collection.")
    if method not in ("PUT", "DELETE"):
        return _arm_error(405, "MethodNotAllowed", f"The method {method} is not allowed.")
    if not NAME_RE.match(name):
        return _arm_error(400, "InvalidResourceName",
                          f"The federated identity credential name '{name}' is invalid: it must match "
                          "^[a-zA-Z0-9]{1}[a-zA-Z0-9-_]{2,119}$.")
    body = _load_body(raw) if method == "PUT" else None
    if body is ValueError:
        return _arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be "
                                                        "deserialized.")
    # One write at a time per UAMI: Entra answers 409 to concurrent writes (domain-spec §1.7).
    busy_key = (id(state), owner)
    with _busy_guard:
        if _busy.get(busy_key):
            return _arm_error(409, "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
                              "Too many Federated Identity Credentials are written concurrently for the managed "
                              f"identity '{identity.lower()}'. Concurrent Federated Identity Credentials writes "
                              "under the same managed identity are not supported.")
        _busy[busy_key] = True
    try:
        time.sleep(ARM_WRITE_SECONDS)
        with lock:
            rows = _rows(db, owner)
            match = [r for r in rows if r[1].casefold() == name.casefold()]
            if method == "DELETE":
                if not match:
                    return _empty(204)
                db.execute("DELETE FROM entra_fic WHERE owner = ? AND id = ?", (owner, match[0][0]))
                db.commit()
                return _empty(200)
            props = body.get("properties") if isinstance(body, dict) else None
            if not isinstance(props, dict):
                return _arm_error(400, "BadRequest", "The request format was unexpected. Federated Identity "
                                                     "Credential must specify 'issuer', 'subject' and 'audience'.")
            values = {"name": name, "issuer": props.get("issuer"), "subject": props.get("subject"),
                      "audiences": props.get("audiences")}
            err = _validate(values, need_name=True)
            if err:
                return _arm_error(400, "BadRequest", "The request format was unexpected. " + err)
            own_id = match[0][0] if match else None
            if any(r[0] != own_id and r[2] == values["issuer"] and r[3] == values["subject"] for r in rows):
                return _arm_error(400, "BadRequest",
                                  "Issuer and subject combination already exists for this Managed Identity.")
            if match:
                db.execute("UPDATE entra_fic SET issuer = ?, subject = ?, audiences = ? WHERE owner = ? AND id = ?",
                           (values["issuer"], values["subject"], json.dumps(values["audiences"]), owner, own_id))
                db.commit()
                row = (own_id, match[0][1], values["issuer"], values["subject"], json.dumps(values["audiences"]))
                return _json(200, resource(row))
            if len(rows) >= FIC_CAP:
                return _arm_error(400, "BadRequest",
                                  f"The managed identity already has the maximum of {FIC_CAP} federated identity "
                                  "credentials. Delete one before adding another.")
            fid = str(uuid.uuid4())
            _insert(db, owner, fid, values)
            return _json(201, resource((fid, name, values["issuer"], values["subject"],
                                        json.dumps(values["audiences"]))))
    finally:
        with _busy_guard:
            _busy.pop(busy_key, None)
