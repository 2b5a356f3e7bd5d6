"""The Dataverse Web API (``/api/data/v9.x``) as the emulator answers it: create, read, update, delete and lookup
binding over the tables of :mod:`.models`, with the table rules of :mod:`.rules`.

Behaviours and their sources:

* Create: ``POST {set}`` answers ``204 No Content`` + ``OData-EntityId``; with ``Prefer: return=representation``
  ``201 Created`` and the row (``$select`` honoured) ([WEBAPI-CREATE], domain-spec §4.3). A client-chosen primary
  key is accepted; a second create with the same key fails ``412`` ``0x80040237`` "A record with matching key
  values already exists." (bengribaudo.com "Identity Insert", 2021). ``MSCRM.SolutionUniqueName`` adds the new
  component to that solution (domain-spec §4.3).
* Update: ``PATCH {set}({id})`` answers ``204`` (``200`` + row with ``return=representation``). Without
  ``If-Match: *`` a PATCH to a missing id creates the row (upsert); with it, ``404`` ``0x80040217``;
  ``If-None-Match: *`` on an existing row is ``412``.
* Reads: ``GET {set}?$select=…&$filter=…&$top=…&$orderby=…&$count=true`` and ``GET {set}({id})?$select=…``
  (:mod:`ppmi_build.emulator.core.odata`). Lookups read as ``_<column>_value``.
* Writes of unknown columns: ``400`` ``0x80060888`` "The property 'x' does not exist on type …"; values are
  type-checked (``Edm.Int32``, ``Edm.String``, GUID) and string lengths checked against MaxLength.
* ``<nav>@odata.bind`` sets a lookup (``/managedidentities(<id>)``), ``null`` clears it; so do
  ``DELETE {set}({id})/<nav>/$ref`` and ``PUT …/$ref`` with ``{"@odata.id": …}`` (OData 4.0). The target must
  exist (``0x80040217``); table rules may refuse the bind (domain-spec §4.7).
* ``WhoAmI`` answers stable ``BusinessUnitId``/``UserId``/``OrganizationId`` values.

All writes of one request run in one SQLite transaction: a refused request changes nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from ..core import odata, store
from ..core.responses import ApiError, Response, odata_error
from ..core.routing import Request
from ..core.store import GUID, INT, MEMO, STR, Entity
from .models import (
    BAD_PROPERTY_CODE,
    BAD_SEGMENT_CODE,
    BOOL,
    DUPLICATE_CODE,
    ENTITIES,
    INVALID_ARGUMENT_CODE,
    NOT_FOUND_CODE,
    get_row,
    guid,
    insert,
    next_version,
    now,
)
from .rules import DEFAULT_RULES, RULES

BIND_RE = re.compile(r"(?:^|/)(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<id>[0-9a-fA-F-]{36})\)$")


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    """An OData JSON response (``odata.metadata=minimal``, ``OData-Version: 4.0``)."""
    h = {"Content-Type": "application/json; odata.metadata=minimal", "OData-Version": "4.0"}
    h.update(headers or {})
    return status, h, json.dumps(data).encode()


def _not_supported(method: str) -> ApiError:
    return ApiError(405, BAD_PROPERTY_CODE, f"The requested resource does not support http method '{method}'.")


def _no_property(ent: Entity, name: str) -> ApiError:
    return ApiError(400, "0x0", f"Could not find a property named '{name}' on type "
                                f"'Microsoft.Dynamics.CRM.{ent.logical}'.")


# ---------------------------------------------------------------------------------------------------------------
# handlers (routed by .urls)


def service_document(req: Request, m: re.Match[str]) -> Response:
    """``GET /api/data/v9.x/``: the entity sets the emulator serves."""
    return json_response(200, {"@odata.context": f"{_api_root(req, m)}/$metadata",
                               "value": [{"name": s, "kind": "EntitySet", "url": s} for s in ENTITIES]})


def who_am_i(req: Request, m: re.Match[str]) -> Response:
    """``GET WhoAmI``: the caller's ids, made once per emulator database."""
    state, db = req.state, req.state.db
    with state.lock:
        ids = {}
        for k in ("BusinessUnitId", "UserId", "OrganizationId"):
            r = db.execute("SELECT value FROM emulator_meta WHERE key = ?", (k,)).fetchone()
            if r is None:
                v = str(uuid.uuid4())
                db.execute("INSERT INTO emulator_meta (key, value) VALUES (?, ?)", (k, v))
            else:
                v = r[0]
            ids[k] = v
    return json_response(200, {"@odata.context": f"{_api_root(req, m)}/$metadata#Microsoft.Dynamics.CRM."
                                                 "WhoAmIResponse", **ids})


def entity(req: Request, m: re.Match[str]) -> Response:
    """``{set}``, ``{set}({id})``, ``{set}({id})/{nav}/$ref`` for every table of :data:`.models.ENTITIES`."""
    try:
        return _Table(req, _api_root(req, m)).dispatch(m)
    except ApiError as e:
        return odata_error(e.status, e.code, e.message)


def not_found(req: Request) -> Response:
    """A path under ``/api/data/v9.x`` that names no resource."""
    rest = req.path.split("/", 4)[4] if req.path.count("/") >= 4 else ""
    return odata_error(404, BAD_SEGMENT_CODE, f"Resource not found for the segment '{rest.strip('/')}'.")


def _api_root(req: Request, m: re.Match[str]) -> str:
    return f"{getattr(req.state, 'base_url', '')}{m.group('root')}"


class _Table:
    """One request against one table."""

    def __init__(self, req: Request, api_root: str):
        self.state = req.state
        self.db = req.state.db
        self.query: Mapping[str, str] = req.query
        self.headers = req.headers
        self.method = req.method
        self.body = req.body
        self.api_root = api_root

    def dispatch(self, m: re.Match[str]) -> Response:
        name, key, nav, ref = m.group("set"), m.group("key"), m.group("nav"), m.group("ref")
        method = self.method
        ent = ENTITIES.get(name)
        if ent is None and key is None and not nav and method == "POST":
            from .probe import invoke_custom_api

            return invoke_custom_api(self.state, self.api_root, name, self._json_body() if self.body else {})
        if ent is not None and ent.logical == "organization":
            from .probe import ensure_organization

            ensure_organization(self.state)
        if ent is None:
            raise ApiError(404, BAD_SEGMENT_CODE, f"Resource not found for the segment '{name}'.")
        if key is None:
            if nav:
                raise ApiError(404, BAD_SEGMENT_CODE, f"Resource not found for the segment '{nav}'.")
            if method == "GET":
                return self.list(ent)
            if method == "POST":
                return self.create(ent, self._json_body())
            raise _not_supported(method)
        key = key.strip()
        if key.startswith(f"{ent.pk}="):
            key = key[len(ent.pk) + 1:]
        rid = guid(key, ent.pk)
        if nav:
            if ent.lookups.get(nav) is None:
                raise _no_property(ent, nav)
            if ref and method == "DELETE":
                return self.update(ent, rid, {f"{nav}@odata.bind": None}, ref_delete=True)
            if ref and method == "PUT":
                data = self._json_body()
                return self.update(ent, rid, {f"{nav}@odata.bind": data.get("@odata.id")}, ref_delete=True)
            raise _not_supported(method)
        if method == "GET":
            return self.retrieve(ent, rid)
        if method == "PATCH":
            return self.update(ent, rid, self._json_body())
        if method == "DELETE":
            return self.delete(ent, rid)
        raise _not_supported(method)

    def _json_body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, INVALID_ARGUMENT_CODE, "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(400, INVALID_ARGUMENT_CODE, "The request body must be a JSON object.")
        return data

    def _prefer(self) -> bool:
        return "return=representation" in (self.headers.get("Prefer") or "").replace(" ", "").lower()

    # --- rows <-> JSON ---------------------------------------------------------------------------------------
    def _row_json(self, ent: Entity, row: dict[str, Any], select: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": f'W/"{row.get("versionnumber") or 0}"'}
        for n in select:
            if n.startswith("_") and n.endswith("_value"):
                out[n] = row.get(n[1:-6])
            elif ent.columns.get(n) == BOOL:
                out[n] = None if row.get(n) is None else bool(int(row[n]))
            else:
                out[n] = row.get(n)
        out[ent.pk] = row[ent.pk]
        return out

    def _context(self, ent: Entity, select: list[str] | None, single: bool) -> str:
        sel = f"({','.join(select)})" if select and self.query.get("$select") else ""
        return f"{self.api_root}/$metadata#{ent.entity_set}{sel}" + ("/$entity" if single else "")

    def _entity_id(self, ent: Entity, rid: str) -> str:
        return f"{self.api_root}/{ent.entity_set}({rid})"

    def _representation(self, ent: Entity, row: dict[str, Any]) -> dict[str, Any]:
        select = odata.select(ent, self.query)
        return {"@odata.context": self._context(ent, select, True), **self._row_json(ent, row, select)}

    # --- reads -----------------------------------------------------------------------------------------------
    def retrieve(self, ent: Entity, rid: str) -> Response:
        odata.select(ent, self.query)
        with self.state.lock:
            row = get_row(self.db, ent, rid)
        if row is None:
            raise ApiError(404, NOT_FOUND_CODE, f"{ent.logical} With Id = {rid} Does Not Exist")
        return json_response(200, self._representation(ent, row))

    def list(self, ent: Entity) -> Response:
        select = odata.select(ent, self.query)
        where, params = odata.where(ent, self.query)
        order = odata.order_by(ent, self.query)
        limit = odata.top(self.query)
        with self.state.lock:
            rows = [dict(r) for r in self.db.execute(f"SELECT * FROM {ent.logical}{where}{order}{limit}", params)]
        out: dict[str, Any] = {"@odata.context": self._context(ent, select, False)}
        if self.query.get("$count") == "true":
            out["@odata.count"] = len(rows)
        out["value"] = [self._row_json(ent, r, select) for r in rows]
        return json_response(200, out)

    # --- writes ----------------------------------------------------------------------------------------------
    def _parse_write(self, ent: Entity, data: dict[str, Any], rid: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The column values and lookup binds (column -> id or None) of a request body."""
        values: dict[str, Any] = {}
        binds: dict[str, Any] = {}
        for key, val in data.items():
            if key.startswith("@odata.") or key.startswith("@"):
                continue
            if key.endswith("@odata.bind"):
                nav = key[: -len("@odata.bind")]
                lk = ent.lookups.get(nav)
                if lk is None:
                    raise ApiError(400, BAD_PROPERTY_CODE,
                                   f"An undeclared property '{nav}' which only has property annotations in the "
                                   "payload but no property value was found in the payload. In OData, only "
                                   "declared navigation properties and declared named streams can be represented "
                                   "as properties without values.")
                if val is None:
                    binds[lk.column] = None
                    continue
                m = BIND_RE.search(str(val)) if isinstance(val, str) else None
                if not m or m.group("set") != lk.target:
                    raise ApiError(400, INVALID_ARGUMENT_CODE, f"Invalid value for {key}: expected "
                                                               f"/{lk.target}(<id>), got {val!r}")
                binds[lk.column] = m.group("id").lower()
                continue
            if key == ent.pk:
                gid = guid(val, ent.pk)
                if rid is not None and gid != rid:
                    raise ApiError(400, INVALID_ARGUMENT_CODE, f"{ent.pk} in the body does not match the URL")
                values[key] = gid
                continue
            if key in ent.read_only:
                continue
            typ = ent.columns.get(key)
            if typ is None:
                raise ApiError(400, BAD_PROPERTY_CODE,
                               f"The property '{key}' does not exist on type 'Microsoft.Dynamics.CRM.{ent.logical}'. "
                               "Make sure to only use property names that are defined by the type or mark the type "
                               "as open type.")
            if val is not None:
                val = _checked_value(ent, key, typ, val)
            values[key] = val
        return values, binds

    def create(self, ent: Entity, data: dict[str, Any], *, rid: str | None = None) -> Response:
        values, binds = self._parse_write(ent, data, rid)
        rid = rid or values.get(ent.pk) or str(uuid.uuid4())
        values[ent.pk] = rid
        solution = self.headers.get("MSCRM.SolutionUniqueName")
        rules = RULES.get(ent.logical, DEFAULT_RULES)
        with store.transaction(self.db, self.state.lock):
            if get_row(self.db, ent, rid) is not None:
                raise ApiError(412, DUPLICATE_CODE, "A record with matching key values already exists.")
            row: dict[str, Any] = {c: None for c in ent.all_columns()}
            row.update(values)
            row.update(binds)
            rules.on_create(self.db, ent, row)
            self._check_binds(ent, row, binds)
            stamp = now()
            row.update(createdon=stamp, modifiedon=stamp, versionnumber=next_version())
            insert(self.db, ent, row)
            rules.after_create(self.db, ent, row)
            if solution:
                self.db.execute("INSERT OR IGNORE INTO solutioncomponent VALUES (?, ?, ?)",
                                (solution, ent.logical, rid))
            saved = get_row(self.db, ent, rid)
        assert saved is not None
        if self._prefer():
            return json_response(201, self._representation(ent, saved),
                                 {"Preference-Applied": "return=representation", "Location": self._entity_id(ent, rid)})
        return 204, {"OData-EntityId": self._entity_id(ent, rid), "OData-Version": "4.0"}, b""

    def update(self, ent: Entity, rid: str, data: dict[str, Any], *, ref_delete: bool = False) -> Response:
        if_match = (self.headers.get("If-Match") or "").strip()
        if_none = (self.headers.get("If-None-Match") or "").strip()
        rules = RULES.get(ent.logical, DEFAULT_RULES)
        with self.state.lock:
            existing = get_row(self.db, ent, rid)
            if existing is None:
                if if_match == "*" or ref_delete:
                    raise ApiError(404, NOT_FOUND_CODE, f"{ent.logical} With Id = {rid} Does Not Exist")
                return self.create(ent, data, rid=rid)  # upsert
            if if_none == "*":
                raise ApiError(412, DUPLICATE_CODE, "A record with matching key values already exists.")
            values, binds = self._parse_write(ent, data, rid)
            values.pop(ent.pk, None)
            with store.transaction(self.db, self.state.lock):
                for col in ent.not_updatable:
                    if col in values and values[col] != existing[col]:
                        raise ApiError(400, INVALID_ARGUMENT_CODE, f"The '{col}' attribute of '{ent.logical}' "
                                                                   "cannot be updated after creation.")
                row = dict(existing)
                row.update(values)
                row.update(binds)
                rules.on_update(self.db, ent, existing, row, values)
                self._check_binds(ent, row, binds)
                row.update(modifiedon=now(), versionnumber=next_version())
                changed = {c: row[c] for c in row
                           if not c.startswith("_") and (row[c] != existing.get(c) or c == "versionnumber")}
                sets = ", ".join(f"{c} = ?" for c in changed)
                self.db.execute(f"UPDATE {ent.logical} SET {sets} WHERE {ent.pk} = ?", [*changed.values(), rid])
                rules.after_update(self.db, ent, existing, row, values)
                saved = get_row(self.db, ent, rid)
        assert saved is not None
        if self._prefer() and not ref_delete:
            return json_response(200, self._representation(ent, saved), {"Preference-Applied": "return=representation"})
        return 204, {"OData-EntityId": self._entity_id(ent, rid), "OData-Version": "4.0"}, b""

    def delete(self, ent: Entity, rid: str) -> Response:
        with store.transaction(self.db, self.state.lock):
            row = get_row(self.db, ent, rid)
            if row is None:
                raise ApiError(404, NOT_FOUND_CODE, f"{ent.logical} With Id = {rid} Does Not Exist")
            RULES.get(ent.logical, DEFAULT_RULES).on_delete(self.db, ent, row)
            self.db.execute(f"DELETE FROM {ent.logical} WHERE {ent.pk} = ?", (rid,))
            self.db.execute("DELETE FROM solutioncomponent WHERE objectid = ?", (rid,))
        return 204, {"OData-Version": "4.0"}, b""

    def _check_binds(self, ent: Entity, row: dict[str, Any], binds: dict[str, Any]) -> None:
        rules = RULES.get(ent.logical, DEFAULT_RULES)
        for column, target_id in binds.items():
            if target_id is None:
                continue
            lk = next(lk for lk in ent.lookups.values() if lk.column == column)
            target = ENTITIES[lk.target]
            if get_row(self.db, target, target_id) is None:
                raise ApiError(400, NOT_FOUND_CODE, f"{target.logical} With Id = {target_id} Does Not Exist")
            rules.on_bind(self.db, ent, row, column)


def _checked_value(ent: Entity, key: str, typ: str, val: Any) -> Any:
    """``val`` checked against the column type and MaxLength (GUIDs lower-cased)."""
    if typ == INT and (not isinstance(val, int) or isinstance(val, bool)):
        raise ApiError(400, INVALID_ARGUMENT_CODE, f"Cannot convert the literal '{val}' to the expected type "
                                                   f"'Edm.Int32' for {key}.")
    if typ == BOOL:
        if not isinstance(val, bool):
            raise ApiError(400, INVALID_ARGUMENT_CODE, f"Cannot convert the literal '{val}' to the expected type "
                                                       f"'Edm.Boolean' for {key}.")
        return int(val)
    if typ in (STR, MEMO) and not isinstance(val, str):
        raise ApiError(400, INVALID_ARGUMENT_CODE, f"Cannot convert the literal '{val}' to the expected type "
                                                   f"'Edm.String' for {key}.")
    if typ == GUID:
        val = guid(val, key)
    limit = ent.max_length.get(key)
    if limit and isinstance(val, str) and len(val) > limit:
        raise ApiError(400, "0x80044331", f"A validation error occurred. The length of the '{key}' attribute of "
                                          f"the '{ent.logical}' entity exceeded the maximum allowed length of "
                                          f"'{limit}'.")
    return val
