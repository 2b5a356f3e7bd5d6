"""The Dataverse Web API part of the emulator: ``pluginassemblies``, ``pluginpackages``, ``managedidentities``,
``plugintypes`` and ``WhoAmI``, with the behaviours ppmi-build relies on, as the documentation describes them.

Behaviours and their sources:

* Create: ``POST {set}`` answers ``204 No Content`` + ``OData-EntityId``; with ``Prefer: return=representation``
  ``201 Created`` and the row (``$select`` honoured) ([WEBAPI-CREATE], domain-spec §4.3). A client-chosen primary
  key is accepted; a second create with the same key fails ``412`` ``0x80040237`` "A record with matching key
  values already exists." (bengribaudo.com "Identity Insert", 2021). ``MSCRM.SolutionUniqueName`` adds the new
  component to that solution (domain-spec §4.3).
* Update: ``PATCH {set}({id})`` answers ``204`` (``200`` + row with ``return=representation``). Without
  ``If-Match: *`` a PATCH to a missing id creates the row (upsert); with it, ``404`` ``0x80040217``.
* Reads: ``GET {set}?$select=…&$filter=…&$top=…&$orderby=…`` and ``GET {set}({id})?$select=…``. Lookups read as
  ``_<column>_value``. An unknown ``$select`` property is ``400`` "Could not find a property named …".
  String comparisons are case-insensitive, as Dataverse's SQL collation.
* Writes of unknown columns: ``400`` ``0x80060888`` "The property 'x' does not exist on type …".
* ``<nav>@odata.bind`` sets a lookup (``/managedidentities(<id>)``), ``null`` clears it; so does
  ``DELETE {set}({id})/<nav>/$ref`` (OData). Binding ``managedidentityid`` to a ``pluginassembly`` whose content
  has no Authenticode signature, or to a ``pluginpackage`` whose .nupkg has no ``.signature.p7s``, fails ``400``
  ``0x80040216`` "Plugin assembly must be signed with valid certificate to associate to Managed Identity"
  (domain-spec §4.7).
* ``pluginassembly``: content at most 16 MB ([BUILD], domain-spec §4.6); a standalone assembly must be
  strong-named, else "Public assembly must have public key token." (domain-spec §4.6); full names (name,
  culture, public key token, major.minor) are unique (domain-spec §4.1); an assembly that belongs to a package
  cannot be deleted ("Unable to delete plug-in assembly as it is part of plugin package", §4.2) and its content
  cannot be patched (update the package instead).
* ``pluginpackage``: creating or updating the content parses the .nupkg and keeps one ``pluginassembly`` row
  (``packageid`` set) per assembly that contains ``IPlugin`` classes and one ``plugintype`` row per such class,
  with stable ids across updates ([BUILD]; field spike in domain-spec §4.2). ``uniquename``, ``name`` and
  ``version`` cannot change after creation ([BUILD] 2025: "The name and version of the plug-in package cannot
  be changed"); content at most 16 MB.
* ``managedidentity``: ``credentialsource``/``subjectscope`` default 0, ``version`` null unless sent (domain-spec
  §2.2). Deleting one clears the lookups that point at it.

All writes of one request run in one SQLite transaction: a refused request changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import json
import re
import time
import uuid
from typing import Any

from ...assembly.metadata import AssemblyIdentity, read_assembly_identity
from ...assembly.package import PackageInfo, read_package
from . import store
from .artifacts import nupkg_is_signed, pe_is_signed
from .server import EmulatorState, odata_error
from .store import ENTITIES, GUID, INT, MEMO, STR, Entity

MAX_CONTENT = 16 * 1024 * 1024  # 16 MB ([BUILD], domain-spec §4.6)
UNSIGNED_CODE = "0x80040216"
UNSIGNED_MESSAGE = "Plugin assembly must be signed with valid certificate to associate to Managed Identity"
NOT_FOUND_CODE = "0x80040217"
DUPLICATE_CODE = "0x80040237"
BAD_PROPERTY_CODE = "0x80060888"
BAD_SEGMENT_CODE = "0x8006088a"

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PATH_RE = re.compile(r"^/(?P<set>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<key>[^)]*)\))?"
                     r"(?:/(?P<nav>[A-Za-z_][A-Za-z0-9_]*)(?P<ref>/\$ref)?)?/?$")
BIND_RE = re.compile(r"(?:^|/)(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<id>[0-9a-fA-F-]{36})\)$")

_version_counter = itertools.count(int(time.time() * 1000))

Response = tuple[int, dict[str, str], bytes]


class ApiError(Exception):
    """Raised inside a handler; becomes an OData error response and rolls the transaction back."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _guid(value: Any, what: str) -> str:
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise ApiError(400, "0x80040203", f"Invalid GUID for {what}: {value!r}")
    return value.lower()


def _json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    h = {"Content-Type": "application/json; odata.metadata=minimal", "OData-Version": "4.0"}
    h.update(headers or {})
    return status, h, json.dumps(data).encode()


# ---------------------------------------------------------------------------------------------------------------
# entry point


def handle(state: EmulatorState, method: str, path: str, query: dict[str, str], headers, body: bytes,
           *, api_root: str = "") -> Response:
    """Serve one Web API request. ``path`` is the part after ``/api/data/v9.x`` (``/pluginassemblies(…)``);
    ``api_root`` is the absolute URL up to and including the version segment."""
    api = _Api(state, query, headers, api_root or state.base_url + "/api/data/v9.2")
    try:
        return api.dispatch(method, path, body)
    except ApiError as e:
        return odata_error(e.status, e.code, e.message)


class _Api:
    def __init__(self, state: EmulatorState, query: dict[str, str], headers, api_root: str):
        self.state = state
        self.db = state.db
        self.query = query
        self.headers = headers
        self.api_root = api_root

    # --- routing ---------------------------------------------------------------------------------------------
    def dispatch(self, method: str, path: str, body: bytes) -> Response:
        if path in ("/", ""):
            return _json_response(200, {"@odata.context": f"{self.api_root}/$metadata",
                                        "value": [{"name": s, "kind": "EntitySet", "url": s} for s in ENTITIES]})
        m = PATH_RE.match(path)
        if not m:
            raise ApiError(404, BAD_SEGMENT_CODE, f"Resource not found for the segment '{path.strip('/')}'.")
        name, key, nav, ref = m.group("set"), m.group("key"), m.group("nav"), m.group("ref")
        if name == "WhoAmI" and method == "GET" and key is None:
            return self.who_am_i()
        ent = ENTITIES.get(name)
        if ent is None:
            raise ApiError(404, BAD_SEGMENT_CODE, f"Resource not found for the segment '{name}'.")
        if key is None:
            if nav:
                raise ApiError(404, BAD_SEGMENT_CODE, f"Resource not found for the segment '{nav}'.")
            if method == "GET":
                return self.list(ent)
            if method == "POST":
                return self.create(ent, self._body(body))
            raise ApiError(405, "0x80060888", f"The requested resource does not support http method '{method}'.")
        key = key.strip()
        if key.startswith(f"{ent.pk}="):
            key = key[len(ent.pk) + 1:]
        rid = _guid(key, ent.pk)
        if nav:
            lk = ent.lookups.get(nav)
            if lk is None:
                raise ApiError(400, "0x0", f"Could not find a property named '{nav}' on type "
                                           f"'Microsoft.Dynamics.CRM.{ent.logical}'.")
            if ref and method == "DELETE":
                return self.update(ent, rid, {f"{nav}@odata.bind": None}, ref_delete=True)
            if ref and method == "PUT":
                data = self._body(body)
                return self.update(ent, rid, {f"{nav}@odata.bind": data.get("@odata.id")}, ref_delete=True)
            raise ApiError(405, "0x80060888", f"The requested resource does not support http method '{method}'.")
        if method == "GET":
            return self.retrieve(ent, rid)
        if method == "PATCH":
            return self.update(ent, rid, self._body(body))
        if method == "DELETE":
            return self.delete(ent, rid)
        raise ApiError(405, "0x80060888", f"The requested resource does not support http method '{method}'.")

    @staticmethod
    def _body(body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "0x80040203", "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(400, "0x80040203", "The request body must be a JSON object.")
        return data

    def _prefer(self) -> bool:
        return "return=representation" in (self.headers.get("Prefer") or "").replace(" ", "").lower()

    # --- rows <-> JSON ---------------------------------------------------------------------------------------
    def _select(self, ent: Entity) -> list[str]:
        raw = self.query.get("$select")
        if not raw:
            return ent.readable()
        names = [n.strip() for n in raw.split(",") if n.strip()]
        readable = set(ent.readable())
        for n in names:
            if n not in readable:
                raise ApiError(400, "0x0", f"Could not find a property named '{n}' on type "
                                           f"'Microsoft.Dynamics.CRM.{ent.logical}'.")
        return names

    def _row_json(self, ent: Entity, row: dict[str, Any], select: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": f'W/"{row.get("versionnumber") or 0}"'}
        for n in select:
            if n.startswith("_") and n.endswith("_value"):
                out[n] = row.get(n[1:-6])
            else:
                out[n] = row.get(n)
        out[ent.pk] = row[ent.pk]
        return out

    def _context(self, ent: Entity, select: list[str] | None, single: bool) -> str:
        sel = f"({','.join(select)})" if select and self.query.get("$select") else ""
        return f"{self.api_root}/$metadata#{ent.entity_set}{sel}" + ("/$entity" if single else "")

    def _get_row(self, ent: Entity, rid: str) -> dict[str, Any] | None:
        cur = self.db.execute(f"SELECT * FROM {ent.logical} WHERE {ent.pk} = ?", (rid,))
        r = cur.fetchone()
        return dict(r) if r else None

    def _entity_id(self, ent: Entity, rid: str) -> str:
        return f"{self.api_root}/{ent.entity_set}({rid})"

    # --- reads -----------------------------------------------------------------------------------------------
    def who_am_i(self) -> Response:
        with self.state.lock:
            ids = {}
            for k in ("BusinessUnitId", "UserId", "OrganizationId"):
                r = self.db.execute("SELECT value FROM emulator_meta WHERE key = ?", (k,)).fetchone()
                if r is None:
                    v = str(uuid.uuid4())
                    self.db.execute("INSERT INTO emulator_meta (key, value) VALUES (?, ?)", (k, v))
                else:
                    v = r[0]
                ids[k] = v
        return _json_response(200, {"@odata.context": f"{self.api_root}/$metadata#Microsoft.Dynamics.CRM."
                                                      "WhoAmIResponse", **ids})

    def retrieve(self, ent: Entity, rid: str) -> Response:
        select = self._select(ent)
        with self.state.lock:
            row = self._get_row(ent, rid)
        if row is None:
            raise ApiError(404, NOT_FOUND_CODE, f"{ent.logical} With Id = {rid} Does Not Exist")
        data = {"@odata.context": self._context(ent, select, True), **self._row_json(ent, row, select)}
        return _json_response(200, data)

    def list(self, ent: Entity) -> Response:
        select = self._select(ent)
        where: str = ""
        params: list[Any] = []
        if self.query.get("$filter"):
            sql, params = _FilterParser(ent, self.query["$filter"]).parse()
            where = f" WHERE {sql}"
        order = ""
        if self.query.get("$orderby"):
            parts = []
            for item in self.query["$orderby"].split(","):
                bits = item.split()
                col = _column_of(ent, bits[0]) if bits else None
                direction = bits[1].upper() if len(bits) > 1 else "ASC"
                if col is None or direction not in ("ASC", "DESC"):
                    raise ApiError(400, "0x0", f"Invalid $orderby: {item!r}")
                parts.append(f"{col} {direction}")
            order = " ORDER BY " + ", ".join(parts)
        limit = ""
        if self.query.get("$top"):
            try:
                limit = f" LIMIT {int(self.query['$top'])}"
            except ValueError:
                raise ApiError(400, "0x0", f"Invalid $top: {self.query['$top']!r}") from None
        with self.state.lock:
            rows = [dict(r) for r in self.db.execute(f"SELECT * FROM {ent.logical}{where}{order}{limit}", params)]
        out: dict[str, Any] = {"@odata.context": self._context(ent, select, False)}
        if self.query.get("$count") == "true":
            out["@odata.count"] = len(rows)
        out["value"] = [self._row_json(ent, r, select) for r in rows]
        return _json_response(200, out)

    # --- writes ----------------------------------------------------------------------------------------------
    def _parse_write(self, ent: Entity, data: dict[str, Any], rid: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
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
                    raise ApiError(400, "0x80040203", f"Invalid value for {key}: expected /{lk.target}(<id>), "
                                                      f"got {val!r}")
                binds[lk.column] = m.group("id").lower()
                continue
            if key == ent.pk:
                gid = _guid(val, ent.pk)
                if rid is not None and gid != rid:
                    raise ApiError(400, "0x80040203", f"{ent.pk} in the body does not match the URL")
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
                if typ == INT and (not isinstance(val, int) or isinstance(val, bool)):
                    raise ApiError(400, "0x80040203", f"Cannot convert the literal '{val}' to the expected type "
                                                      f"'Edm.Int32' for {key}.")
                if typ in (STR, MEMO) and not isinstance(val, str):
                    raise ApiError(400, "0x80040203", f"Cannot convert the literal '{val}' to the expected type "
                                                      f"'Edm.String' for {key}.")
                if typ == GUID:
                    val = _guid(val, key)
                limit = ent.max_length.get(key)
                if limit and isinstance(val, str) and len(val) > limit:
                    raise ApiError(400, "0x80044331", f"A validation error occurred. The length of the '{key}' "
                                                      f"attribute of the '{ent.logical}' entity exceeded the "
                                                      f"maximum allowed length of '{limit}'.")
            values[key] = val
        return values, binds

    def create(self, ent: Entity, data: dict[str, Any], *, rid: str | None = None) -> Response:
        values, binds = self._parse_write(ent, data, rid)
        rid = rid or values.get(ent.pk) or str(uuid.uuid4())
        values[ent.pk] = rid
        solution = self.headers.get("MSCRM.SolutionUniqueName")
        try:
            with store.transaction(self.db, self.state.lock):
                if self._get_row(ent, rid) is not None:
                    raise ApiError(412, DUPLICATE_CODE, "A record with matching key values already exists.")
                row: dict[str, Any] = {c: None for c in ent.all_columns()}
                row.update(values)
                row.update(binds)
                hook = getattr(self, f"_create_{ent.logical}", None)
                if hook:
                    hook(ent, row)
                self._check_binds(ent, row, binds)
                now = _now()
                row.update(createdon=now, modifiedon=now, versionnumber=next(_version_counter))
                self._insert(ent, row)
                after = getattr(self, f"_after_create_{ent.logical}", None)
                if after:
                    after(ent, row)
                if solution:
                    self.db.execute("INSERT OR IGNORE INTO solutioncomponent VALUES (?, ?, ?)",
                                    (solution, ent.logical, rid))
                saved = self._get_row(ent, rid)
        except ApiError:
            raise
        assert saved is not None
        if self._prefer():
            select = self._select(ent)
            data_out = {"@odata.context": self._context(ent, select, True), **self._row_json(ent, saved, select)}
            return _json_response(201, data_out, {"Preference-Applied": "return=representation",
                                                  "Location": self._entity_id(ent, rid)})
        return 204, {"OData-EntityId": self._entity_id(ent, rid), "OData-Version": "4.0"}, b""

    def update(self, ent: Entity, rid: str, data: dict[str, Any], *, ref_delete: bool = False) -> Response:
        if_match = (self.headers.get("If-Match") or "").strip()
        if_none = (self.headers.get("If-None-Match") or "").strip()
        with self.state.lock:
            existing = self._get_row(ent, rid)
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
                        raise ApiError(400, "0x80040203", f"The '{col}' attribute of '{ent.logical}' cannot be "
                                                          "updated after creation.")
                row = dict(existing)
                row.update(values)
                row.update(binds)
                hook = getattr(self, f"_update_{ent.logical}", None)
                if hook:
                    hook(ent, existing, row, values)
                self._check_binds(ent, row, binds)
                row.update(modifiedon=_now(), versionnumber=next(_version_counter))
                changed = {c: row[c] for c in row
                           if not c.startswith("_") and (row[c] != existing.get(c) or c == "versionnumber")}
                sets = ", ".join(f"{c} = ?" for c in changed)
                self.db.execute(f"UPDATE {ent.logical} SET {sets} WHERE {ent.pk} = ?", [*changed.values(), rid])
                after = getattr(self, f"_after_update_{ent.logical}", None)
                if after:
                    after(ent, existing, row, values)
                saved = self._get_row(ent, rid)
        assert saved is not None
        if self._prefer() and not ref_delete:
            select = self._select(ent)
            out = {"@odata.context": self._context(ent, select, True), **self._row_json(ent, saved, select)}
            return _json_response(200, out, {"Preference-Applied": "return=representation"})
        return 204, {"OData-EntityId": self._entity_id(ent, rid), "OData-Version": "4.0"}, b""

    def delete(self, ent: Entity, rid: str) -> Response:
        with store.transaction(self.db, self.state.lock):
            row = self._get_row(ent, rid)
            if row is None:
                raise ApiError(404, NOT_FOUND_CODE, f"{ent.logical} With Id = {rid} Does Not Exist")
            hook = getattr(self, f"_delete_{ent.logical}", None)
            if hook:
                hook(ent, row)
            self.db.execute(f"DELETE FROM {ent.logical} WHERE {ent.pk} = ?", (rid,))
            self.db.execute("DELETE FROM solutioncomponent WHERE objectid = ?", (rid,))
        return 204, {"OData-Version": "4.0"}, b""

    def _check_binds(self, ent: Entity, row: dict[str, Any], binds: dict[str, Any]) -> None:
        for column, target_id in binds.items():
            if target_id is None:
                continue
            lk = next(lk for lk in ent.lookups.values() if lk.column == column)
            target = ENTITIES[lk.target]
            if self._get_row(target, target_id) is None:
                raise ApiError(400, NOT_FOUND_CODE, f"{target.logical} With Id = {target_id} Does Not Exist")
            if column == "managedidentityid":
                self._require_signed(ent, row)

    def _require_signed(self, ent: Entity, row: dict[str, Any]) -> None:
        """Bind precondition (domain-spec §4.7)."""
        content = _b64(row.get("content") or "", "content") if row.get("content") else b""
        ok = pe_is_signed(content) if ent.logical == "pluginassembly" else nupkg_is_signed(content)
        if not ok:
            raise ApiError(400, UNSIGNED_CODE, UNSIGNED_MESSAGE)

    # --- pluginassembly --------------------------------------------------------------------------------------
    def _assembly_checks(self, row: dict[str, Any], ident: AssemblyIdentity) -> None:
        if row.get("name") and row["name"] != ident.name:
            raise ApiError(400, "0x80040203", f"The name column ({row['name']}) does not match the assembly in "
                                              f"the content ({ident.name}).")
        if not ident.public_key_token or not row.get("publickeytoken"):
            raise ApiError(400, "0x80040203", "Public assembly must have public key token.")
        if row["publickeytoken"].lower() != ident.public_key_token:
            raise ApiError(400, "0x80040203", f"The publickeytoken column ({row['publickeytoken']}) does not "
                                              f"match the assembly's public key token ({ident.public_key_token}).")

    def _fill_from_identity(self, row: dict[str, Any], ident: AssemblyIdentity) -> None:
        row["name"] = row.get("name") or ident.name
        row["version"] = row.get("version") or ident.version
        row["culture"] = row.get("culture") or ident.culture
        major, minor = (int(x) for x in row["version"].split(".")[:2])
        row["major"], row["minor"] = major, minor

    def _unique_fullname(self, row: dict[str, Any]) -> None:
        clash = self.db.execute(
            "SELECT pluginassemblyid FROM pluginassembly WHERE name = ? COLLATE NOCASE AND culture = ? COLLATE NOCASE "
            "AND IFNULL(publickeytoken, '') = ? COLLATE NOCASE AND major = ? AND minor = ? AND pluginassemblyid != ?",
            (row["name"], row["culture"], row.get("publickeytoken") or "", row["major"], row["minor"],
             row["pluginassemblyid"])).fetchone()
        if clash:
            raise ApiError(400, "0x80040203", "Plug-in assembly fullnames must be unique (ignoring the version "
                                              "build and revision number).")

    def _create_pluginassembly(self, ent: Entity, row: dict[str, Any]) -> None:
        row["isolationmode"] = 2 if row.get("isolationmode") is None else row["isolationmode"]
        row["sourcetype"] = 0 if row.get("sourcetype") is None else row["sourcetype"]
        row["ismanaged"] = 0
        if row["isolationmode"] != 2:
            raise ApiError(400, "0x80040203", "Only plug-in assemblies in sandbox isolation mode (2) can be "
                                              "registered in Dataverse online.")
        if not row.get("name"):
            raise ApiError(400, "0x80040203", "The 'name' attribute of 'pluginassembly' is required.")
        if row["sourcetype"] != 0 or not row.get("content"):
            raise ApiError(400, "0x80040203", "Assemblies stored in the database (sourcetype 0) need 'content'.")
        ident = _read_dll(_b64(row["content"], "content"))
        if row.get("packageid") is None:
            self._assembly_checks(row, ident)
        self._fill_from_identity(row, ident)
        self._unique_fullname(row)

    def _update_pluginassembly(self, ent: Entity, old: dict[str, Any], row: dict[str, Any],
                               values: dict[str, Any]) -> None:
        if old.get("packageid") and ("content" in values or "version" in values):
            raise ApiError(400, "0x80040203", f"Plug-in assembly {old['name']} is part of plugin package "
                                              f"{old['packageid']}; update the package content instead.")
        if "content" in values:
            if not row.get("content"):
                raise ApiError(400, "0x80040203", "'content' cannot be emptied.")
            ident = _read_dll(_b64(row["content"], "content"))
            if "version" not in values:
                row["version"] = ident.version
            self._assembly_checks(row, ident)
            self._fill_from_identity(row, ident)
        elif "version" in values:
            major, minor = (int(x) for x in str(row["version"]).split(".")[:2])
            row["major"], row["minor"] = major, minor
        self._unique_fullname(row)

    def _delete_pluginassembly(self, ent: Entity, row: dict[str, Any]) -> None:
        if row.get("packageid"):
            raise ApiError(400, "0x80040203", "Unable to delete plug-in assembly as it is part of plugin package")
        self.db.execute("DELETE FROM plugintype WHERE pluginassemblyid = ?", (row["pluginassemblyid"],))

    # --- pluginpackage ---------------------------------------------------------------------------------------
    def _create_pluginpackage(self, ent: Entity, row: dict[str, Any]) -> None:
        if not row.get("uniquename"):
            raise ApiError(400, "0x80040203", "The 'uniquename' attribute of 'pluginpackage' is required.")
        row["name"] = row.get("name") or row["uniquename"]
        if not row.get("version"):
            raise ApiError(400, "0x80040203", "The 'version' attribute of 'pluginpackage' is required.")
        if not row.get("content"):
            raise ApiError(400, "0x80040203", "The 'content' attribute of 'pluginpackage' is required.")
        row["statecode"] = row.get("statecode") or 0
        row["statuscode"] = row.get("statuscode") or 1
        row["ismanaged"] = 0
        clash = self.db.execute("SELECT 1 FROM pluginpackage WHERE uniquename = ? COLLATE NOCASE",
                                (row["uniquename"],)).fetchone()
        if clash:
            raise ApiError(412, DUPLICATE_CODE, "A record with matching key values already exists.")
        row["_package"] = _read_nupkg(_b64(row["content"], "content"))

    def _after_create_pluginpackage(self, ent: Entity, row: dict[str, Any]) -> None:
        self._sync_package(row["pluginpackageid"], row.pop("_package"), row["content"])

    def _insert(self, ent: Entity, row: dict[str, Any]) -> None:
        """INSERT ``row`` (keys starting with ``_`` are hook scratch values, not columns)."""
        cols = [c for c in row if not c.startswith("_")]
        self.db.execute(f"INSERT INTO {ent.logical} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [row[c] for c in cols])

    def _update_pluginpackage(self, ent: Entity, old: dict[str, Any], row: dict[str, Any],
                              values: dict[str, Any]) -> None:
        for col in ("name", "version"):
            if col in values and values[col] != old[col]:
                raise ApiError(400, "0x80040203", f"The name and version of the plug-in package cannot be changed "
                                                  f"once created ({col}: {old[col]!r} -> {values[col]!r}).")
        if "content" in values:
            if not row.get("content"):
                raise ApiError(400, "0x80040203", "'content' cannot be emptied.")
            row["_package"] = _read_nupkg(_b64(row["content"], "content"))

    def _after_update_pluginpackage(self, ent: Entity, old: dict[str, Any], row: dict[str, Any],
                                    values: dict[str, Any]) -> None:
        pkg = row.pop("_package", None)
        if pkg is not None:
            self._sync_package(row["pluginpackageid"], pkg, row["content"])

    def _delete_pluginpackage(self, ent: Entity, row: dict[str, Any]) -> None:
        pid = row["pluginpackageid"]
        ids = [r[0] for r in self.db.execute("SELECT pluginassemblyid FROM pluginassembly WHERE packageid = ?",
                                             (pid,))]
        for aid in ids:
            self.db.execute("DELETE FROM plugintype WHERE pluginassemblyid = ?", (aid,))
            self.db.execute("DELETE FROM solutioncomponent WHERE objectid = ?", (aid,))
        self.db.execute("DELETE FROM pluginassembly WHERE packageid = ?", (pid,))

    def _sync_package(self, package_id: str, pkg: tuple[PackageInfo, dict[str, bytes]], _content: str) -> None:
        """Keep one pluginassembly row per plug-in assembly of the package and one plugintype per IPlugin class
        (stable ids for rows that stay)."""
        info, blobs = pkg
        now = _now()
        existing = {r["name"].lower(): dict(r) for r in
                    self.db.execute("SELECT * FROM pluginassembly WHERE packageid = ?", (package_id,))}
        keep: set[str] = set()
        for entry, ident in info.assemblies.items():
            if not ident.plugin_types:
                continue  # only assemblies with IPlugin classes are registered ([BUILD])
            content = base64.b64encode(blobs[entry]).decode("ascii")
            major, minor = (int(x) for x in ident.version.split(".")[:2])
            old = existing.get(ident.name.lower())
            if old is None:
                aid = str(uuid.uuid4())
                row: dict[str, Any] = {c: None for c in ENTITIES["pluginassemblies"].all_columns()}
                row.update(pluginassemblyid=aid, name=ident.name, content=content, isolationmode=2, sourcetype=0,
                           version=ident.version, culture=ident.culture, publickeytoken=ident.public_key_token,
                           packageid=package_id, major=major, minor=minor, ismanaged=0, createdon=now,
                           modifiedon=now, versionnumber=next(_version_counter))
                self._unique_fullname(row)
                self._insert(ENTITIES["pluginassemblies"], row)
            else:
                aid = old["pluginassemblyid"]
                self.db.execute("UPDATE pluginassembly SET content = ?, version = ?, culture = ?, publickeytoken = ?, "
                                "major = ?, minor = ?, modifiedon = ?, versionnumber = ? WHERE pluginassemblyid = ?",
                                (content, ident.version, ident.culture, ident.public_key_token, major, minor, now,
                                 next(_version_counter), aid))
            keep.add(aid)
            types = {r["typename"]: r["plugintypeid"] for r in
                     self.db.execute("SELECT typename, plugintypeid FROM plugintype WHERE pluginassemblyid = ?",
                                     (aid,))}
            for tn in ident.plugin_types:
                if tn not in types:
                    trow: dict[str, Any] = {c: None for c in ENTITIES["plugintypes"].all_columns()}
                    trow.update(plugintypeid=str(uuid.uuid4()), name=tn, typename=tn, friendlyname=tn,
                                isworkflowactivity=0, pluginassemblyid=aid, assemblyname=ident.name,
                                version=ident.version, culture=ident.culture, publickeytoken=ident.public_key_token,
                                createdon=now, modifiedon=now, versionnumber=next(_version_counter))
                    self._insert(ENTITIES["plugintypes"], trow)
            for tn, tid in types.items():
                if tn not in ident.plugin_types:
                    self.db.execute("DELETE FROM plugintype WHERE plugintypeid = ?", (tid,))
        for old in existing.values():
            if old["pluginassemblyid"] not in keep:
                self.db.execute("DELETE FROM plugintype WHERE pluginassemblyid = ?", (old["pluginassemblyid"],))
                self.db.execute("DELETE FROM pluginassembly WHERE pluginassemblyid = ?", (old["pluginassemblyid"],))

    # --- managedidentity -------------------------------------------------------------------------------------
    def _create_managedidentity(self, ent: Entity, row: dict[str, Any]) -> None:
        for col, default in (("credentialsource", 0), ("subjectscope", 0), ("statecode", 0), ("statuscode", 1)):
            if row.get(col) is None:
                row[col] = default
        row["ismanaged"] = 0

    def _delete_managedidentity(self, ent: Entity, row: dict[str, Any]) -> None:
        mid = row["managedidentityid"]
        for table in ("pluginassembly", "pluginpackage"):
            self.db.execute(f"UPDATE {table} SET managedidentityid = NULL WHERE managedidentityid = ?", (mid,))


# ---------------------------------------------------------------------------------------------------------------
# content helpers


def _b64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "0x80040203", f"The '{what}' attribute is not valid base64.") from None
    if len(data) > MAX_CONTENT:
        raise ApiError(400, "0x80040203", f"The '{what}' is {len(data)} bytes; the maximum size is 16 MB "
                                          f"({MAX_CONTENT} bytes).")
    return data


def _read_dll(data: bytes) -> AssemblyIdentity:
    try:
        return read_assembly_identity(data, label="content")
    except Exception as e:
        raise ApiError(400, "0x80040203", f"The content is not a valid .NET assembly: {e}") from None


def _read_nupkg(data: bytes) -> tuple[PackageInfo, dict[str, bytes]]:
    import io
    import zipfile

    try:
        info = read_package(data, label="content")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            blobs = {n: zf.read(n) for n in info.assemblies}
    except Exception as e:
        raise ApiError(400, "0x80040203", f"The content is not a valid NuGet package: {e}") from None
    return info, blobs


# ---------------------------------------------------------------------------------------------------------------
# $filter


def _column_of(ent: Entity, prop: str) -> str | None:
    cols = ent.all_columns()
    if prop.startswith("_") and prop.endswith("_value"):
        inner = prop[1:-6]
        return inner if any(lk.column == inner for lk in ent.lookups.values()) else None
    if prop in cols and prop not in {lk.column for lk in ent.lookups.values()}:
        return prop
    return None


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12})|(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>[(),])|"
                    r"(?P<word>[A-Za-z_][A-Za-z0-9_]*))")
_OPS = {"eq": "=", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class _FilterParser:
    """A small OData ``$filter`` subset: ``prop op literal`` with ``eq ne gt ge lt le``, ``and``/``or``/``not``,
    parentheses, ``contains``/``startswith``/``endswith``; literals: 'string', GUID, number, null, true/false."""

    def __init__(self, ent: Entity, text: str):
        self.ent = ent
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                raise ApiError(400, "0x0", f"Syntax error at position {pos} in '{text}'.")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0
        self.params: list[Any] = []

    def parse(self) -> tuple[str, list[Any]]:
        sql = self._or()
        if self.i != len(self.tokens):
            raise ApiError(400, "0x0", f"Syntax error in $filter '{self.text}'.")
        return sql, self.params

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise ApiError(400, "0x0", f"Unexpected end of $filter '{self.text}'.")
        self.i += 1
        return tok

    def _or(self) -> str:
        left = self._and()
        while self._peek() == ("word", "or"):
            self.i += 1
            left = f"({left} OR {self._and()})"
        return left

    def _and(self) -> str:
        left = self._unary()
        while self._peek() == ("word", "and"):
            self.i += 1
            left = f"({left} AND {self._unary()})"
        return left

    def _unary(self) -> str:
        if self._peek() == ("word", "not"):
            self.i += 1
            return f"(NOT {self._unary()})"
        if self._peek() == ("punct", "("):
            self.i += 1
            inner = self._or()
            if self._next() != ("punct", ")"):
                raise ApiError(400, "0x0", f"Missing ')' in $filter '{self.text}'.")
            return inner
        return self._comparison()

    def _prop(self, name: str) -> tuple[str, str]:
        col = _column_of(self.ent, name)
        if col is None:
            raise ApiError(400, "0x0", f"Could not find a property named '{name}' on type "
                                       f"'Microsoft.Dynamics.CRM.{self.ent.logical}'.")
        return col, self.ent.all_columns()[col]

    def _literal(self) -> Any:
        kind, val = self._next()
        if kind == "str":
            return val[1:-1].replace("''", "'")
        if kind == "guid":
            return val.lower()
        if kind == "num":
            return float(val) if "." in val else int(val)
        if kind == "word" and val in ("null", "true", "false"):
            return {"null": None, "true": 1, "false": 0}[val]
        raise ApiError(400, "0x0", f"Expected a literal in $filter '{self.text}', got {val!r}.")

    def _comparison(self) -> str:
        kind, word = self._next()
        if kind != "word":
            raise ApiError(400, "0x0", f"Syntax error in $filter '{self.text}'.")
        if word in ("contains", "startswith", "endswith") and self._peek() == ("punct", "("):
            self.i += 1
            pk, pname = self._next()
            col, _t = self._prop(pname)
            if self._next() != ("punct", ","):
                raise ApiError(400, "0x0", f"Syntax error in $filter '{self.text}'.")
            value = self._literal()
            if self._next() != ("punct", ")"):
                raise ApiError(400, "0x0", f"Missing ')' in $filter '{self.text}'.")
            esc = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = {"contains": f"%{esc}%", "startswith": f"{esc}%", "endswith": f"%{esc}"}[word]
            self.params.append(pattern)
            return f"({col} LIKE ? ESCAPE '\\')"
        col, typ = self._prop(word)
        okind, op = self._next()
        if okind != "word" or op not in _OPS:
            raise ApiError(400, "0x0", f"Unknown operator {op!r} in $filter '{self.text}'.")
        value = self._literal()
        if value is None:
            if op not in ("eq", "ne"):
                raise ApiError(400, "0x0", "null can only be compared with eq or ne.")
            return f"({col} IS {'NOT ' if op == 'ne' else ''}NULL)"
        if typ == GUID and isinstance(value, str):
            value = value.lower()
        self.params.append(value)
        collate = " COLLATE NOCASE" if typ in (STR, MEMO) else ""
        return f"({col} {_OPS[op]} ?{collate})"
