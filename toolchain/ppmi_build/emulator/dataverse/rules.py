"""Dataverse's rules for the tables the emulator keeps, applied inside the write's transaction.

A table's rules are a :class:`TableRules` in :data:`RULES` (by logical name); the Web API handler
(:mod:`.responses`) calls them around every create, update, delete and lookup bind, and an
:class:`~ppmi_build.emulator.core.responses.ApiError` they raise refuses the whole request.

* ``pluginassembly`` (domain-spec §4.1, §4.6): sandbox isolation (2) and database storage (``sourcetype`` 0)
  only; content at most 16 MB; a standalone assembly must be strong-named ("Public assembly must have public key
  token.") and its ``name``/``publickeytoken`` columns must match the content; full names (name, culture, public
  key token, major.minor) are unique; an assembly that belongs to a package cannot be deleted ("Unable to delete
  plug-in assembly as it is part of plugin package", §4.2) and its content cannot be patched.
* ``pluginpackage`` (domain-spec §4.2, [BUILD]): creating or updating the content keeps one ``pluginassembly``
  row (``packageid`` set) per assembly with ``IPlugin`` classes and one ``plugintype`` row per such class, with
  stable ids across updates; ``uniquename`` is unique; ``name`` and ``version`` cannot change after creation
  ("The name and version of the plug-in package cannot be changed").
* ``plugintype``: Dataverse never creates them for a standalone assembly (the registering tool does, domain-spec
  §4.1); a created one must name a public ``IPlugin`` class of its assembly's content ("Plug-in assembly does not
  contain the required types or assembly content cannot be updated.") once per assembly. New content for an
  assembly (or package, §4.2 "An update that removes assemblies or types used by step registrations is rejected")
  that no longer contains a type which still has steps or custom APIs is refused with that message; a type (or
  assembly) with steps or custom APIs cannot be deleted ("The object you tried to delete is associated with another
  object and cannot be deleted."). The wording of the first message is the one Dataverse gives; the error codes
  the emulator uses for both are its generic ``0x80040203``.
* ``sdkmessageprocessingstep`` (Microsoft Learn, sdkmessageprocessingstep table reference and "Event framework"):
  ``stage`` 10 (PreValidation), 20 (PreOperation) or 40 (PostOperation); ``mode`` 0 (synchronous) or 1
  (asynchronous), asynchronous only in stage 40; the event handler (``eventhandler_plugintype@odata.bind``) and
  ``sdkmessageid`` are required; an ``sdkmessagefilterid`` must belong to the same message and allow custom
  processing steps (``iscustomprocessingstepallowed``). Defaults: ``rank`` 1, ``supporteddeployment`` 0 (server),
  ``invocationsource`` 0, ``asyncautodelete`` 0, ``statecode`` 0 (enabled), ``statuscode`` 1.
* ``managedidentity`` (domain-spec §2.2): ``credentialsource``/``subjectscope`` default 0, ``version`` null
  unless sent; deleting one clears the lookups that point at it.
* Binding ``managedidentityid`` to a ``pluginassembly`` whose content has no Authenticode signature, or to a
  ``pluginpackage`` whose .nupkg has no ``.signature.p7s``, is ``400`` ``0x80040216`` (domain-spec §4.7).
"""

from __future__ import annotations

import base64
import sqlite3
import uuid
from typing import Any

from ...assembly.metadata import AssemblyIdentity, PluginAssembly
from ...assembly.package import PackageInfo
from ..core.responses import ApiError
from ..core.store import Entity
from .artifacts import nupkg_is_signed, pe_is_signed, read_dll, read_nupkg
from .models import (
    DUPLICATE_CODE,
    ENTITIES,
    INVALID_ARGUMENT_CODE,
    NOT_FOUND_CODE,
    UNSIGNED_CODE,
    UNSIGNED_MESSAGE,
    b64,
    insert,
    next_version,
    now,
)

Row = dict[str, Any]


def _refuse(message: str) -> ApiError:
    return ApiError(400, INVALID_ARGUMENT_CODE, message)


class TableRules:
    """Hooks around writes to one table; the defaults accept everything. ``row`` is the full row about to be
    written (hooks may fill columns and keep scratch values under keys starting with ``_``)."""

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        """Before the INSERT."""

    def after_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        """After the INSERT (rows of other tables that depend on this one)."""

    def on_update(self, db: sqlite3.Connection, ent: Entity, old: Row, row: Row, values: Row) -> None:
        """Before the UPDATE; ``values`` are the columns the request sent."""

    def after_update(self, db: sqlite3.Connection, ent: Entity, old: Row, row: Row, values: Row) -> None:
        """After the UPDATE."""

    def on_delete(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        """Before the DELETE."""

    def on_bind(self, db: sqlite3.Connection, ent: Entity, row: Row, column: str) -> None:
        """A lookup ``column`` of ``row`` is being set to an existing target row."""


def _require_signed(ent: Entity, row: Row) -> None:
    """Bind precondition (domain-spec §4.7)."""
    content = b64(row.get("content") or "", "content") if row.get("content") else b""
    ok = pe_is_signed(content) if ent.logical == "pluginassembly" else nupkg_is_signed(content)
    if not ok:
        raise ApiError(400, UNSIGNED_CODE, UNSIGNED_MESSAGE)


def _unique_fullname(db: sqlite3.Connection, row: Row) -> None:
    clash = db.execute(
        "SELECT pluginassemblyid FROM pluginassembly WHERE name = ? COLLATE NOCASE AND culture = ? COLLATE NOCASE "
        "AND IFNULL(publickeytoken, '') = ? COLLATE NOCASE AND major = ? AND minor = ? AND pluginassemblyid != ?",
        (row["name"], row["culture"], row.get("publickeytoken") or "", row["major"], row["minor"],
         row["pluginassemblyid"])).fetchone()
    if clash:
        raise _refuse("Plug-in assembly fullnames must be unique (ignoring the version build and revision number).")


MISSING_TYPES_MESSAGE = ("Plug-in assembly does not contain the required types or assembly content cannot be "
                         "updated.")
DEPENDENCY_MESSAGE = "The object you tried to delete is associated with another object and cannot be deleted."


def type_users(db: sqlite3.Connection, plugintype_id: str) -> list[str]:
    """What uses a plug-in type: ``step <name>`` for each ``sdkmessageprocessingstep`` whose event handler it is and
    ``customapi <uniquename>`` for each custom API bound to it (when the emulator keeps a ``customapi`` table)."""
    users = [f"step {r[0]}" for r in db.execute(
        "SELECT name FROM sdkmessageprocessingstep WHERE eventhandler = ? ORDER BY name", (plugintype_id,))]
    has_customapi = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'customapi'").fetchone()
    if has_customapi:
        cols = {r[1] for r in db.execute("PRAGMA table_info(customapi)")}
        if "plugintypeid" in cols:
            users += [f"customapi {r[0]}" for r in db.execute(
                "SELECT uniquename FROM customapi WHERE plugintypeid = ? ORDER BY uniquename", (plugintype_id,))]
    return users


def _refuse_removed_types(db: sqlite3.Connection, assembly_id: str, kept: tuple[str, ...] | list[str]) -> None:
    """Refuse new content for ``assembly_id`` that lacks a registered type which still has steps or custom APIs."""
    for tid, typename in db.execute("SELECT plugintypeid, typename FROM plugintype WHERE pluginassemblyid = ?",
                                    (assembly_id,)).fetchall():
        if typename not in kept and type_users(db, tid):
            raise _refuse(MISSING_TYPES_MESSAGE)


def _refuse_used_types(db: sqlite3.Connection, assembly_id: str) -> None:
    for (tid,) in db.execute("SELECT plugintypeid FROM plugintype WHERE pluginassemblyid = ?",
                             (assembly_id,)).fetchall():
        if type_users(db, tid):
            raise _refuse(DEPENDENCY_MESSAGE)


class PluginAssemblyRules(TableRules):
    """``pluginassembly`` (see the module docstring)."""

    @staticmethod
    def _check_identity(row: Row, ident: AssemblyIdentity) -> None:
        if row.get("name") and row["name"] != ident.name:
            raise _refuse(f"The name column ({row['name']}) does not match the assembly in the content "
                          f"({ident.name}).")
        if not ident.public_key_token or not row.get("publickeytoken"):
            raise _refuse("Public assembly must have public key token.")
        if row["publickeytoken"].lower() != ident.public_key_token:
            raise _refuse(f"The publickeytoken column ({row['publickeytoken']}) does not match the assembly's "
                          f"public key token ({ident.public_key_token}).")

    @staticmethod
    def _fill_from_identity(row: Row, ident: AssemblyIdentity) -> None:
        row["name"] = row.get("name") or ident.name
        row["version"] = row.get("version") or ident.version
        row["culture"] = row.get("culture") or ident.culture
        major, minor = (int(x) for x in row["version"].split(".")[:2])
        row["major"], row["minor"] = major, minor

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        row["isolationmode"] = 2 if row.get("isolationmode") is None else row["isolationmode"]
        row["sourcetype"] = 0 if row.get("sourcetype") is None else row["sourcetype"]
        row["ismanaged"] = 0
        if row["isolationmode"] != 2:
            raise _refuse("Only plug-in assemblies in sandbox isolation mode (2) can be registered in Dataverse "
                          "online.")
        if not row.get("name"):
            raise _refuse("The 'name' attribute of 'pluginassembly' is required.")
        if row["sourcetype"] != 0 or not row.get("content"):
            raise _refuse("Assemblies stored in the database (sourcetype 0) need 'content'.")
        ident = read_dll(b64(row["content"], "content"))
        if row.get("packageid") is None:
            self._check_identity(row, ident)
        self._fill_from_identity(row, ident)
        _unique_fullname(db, row)

    def on_update(self, db: sqlite3.Connection, ent: Entity, old: Row, row: Row, values: Row) -> None:
        if old.get("packageid") and ("content" in values or "version" in values):
            raise _refuse(f"Plug-in assembly {old['name']} is part of plugin package {old['packageid']}; update "
                          "the package content instead.")
        if "content" in values:
            if not row.get("content"):
                raise _refuse("'content' cannot be emptied.")
            ident = read_dll(b64(row["content"], "content"))
            if "version" not in values:
                row["version"] = ident.version
            self._check_identity(row, ident)
            self._fill_from_identity(row, ident)
            _refuse_removed_types(db, old["pluginassemblyid"], ident.plugin_types)
        elif "version" in values:
            major, minor = (int(x) for x in str(row["version"]).split(".")[:2])
            row["major"], row["minor"] = major, minor
        _unique_fullname(db, row)

    def on_delete(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        if row.get("packageid"):
            raise _refuse("Unable to delete plug-in assembly as it is part of plugin package")
        _refuse_used_types(db, row["pluginassemblyid"])
        db.execute("DELETE FROM plugintype WHERE pluginassemblyid = ?", (row["pluginassemblyid"],))

    def on_bind(self, db: sqlite3.Connection, ent: Entity, row: Row, column: str) -> None:
        if column == "managedidentityid":
            _require_signed(ent, row)


class PluginPackageRules(TableRules):
    """``pluginpackage`` (see the module docstring)."""

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        if not row.get("uniquename"):
            raise _refuse("The 'uniquename' attribute of 'pluginpackage' is required.")
        row["name"] = row.get("name") or row["uniquename"]
        if not row.get("version"):
            raise _refuse("The 'version' attribute of 'pluginpackage' is required.")
        if not row.get("content"):
            raise _refuse("The 'content' attribute of 'pluginpackage' is required.")
        row["statecode"] = row.get("statecode") or 0
        row["statuscode"] = row.get("statuscode") or 1
        row["ismanaged"] = 0
        clash = db.execute("SELECT 1 FROM pluginpackage WHERE uniquename = ? COLLATE NOCASE",
                           (row["uniquename"],)).fetchone()
        if clash:
            raise ApiError(412, DUPLICATE_CODE, "A record with matching key values already exists.")
        row["_package"] = read_nupkg(b64(row["content"], "content"))

    def after_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        sync_package(db, row["pluginpackageid"], row.pop("_package"))

    def on_update(self, db: sqlite3.Connection, ent: Entity, old: Row, row: Row, values: Row) -> None:
        for col in ("name", "version"):
            if col in values and values[col] != old[col]:
                raise _refuse(f"The name and version of the plug-in package cannot be changed once created "
                              f"({col}: {old[col]!r} -> {values[col]!r}).")
        if "content" in values:
            if not row.get("content"):
                raise _refuse("'content' cannot be emptied.")
            row["_package"] = read_nupkg(b64(row["content"], "content"))

    def after_update(self, db: sqlite3.Connection, ent: Entity, old: Row, row: Row, values: Row) -> None:
        pkg = row.pop("_package", None)
        if pkg is not None:
            sync_package(db, row["pluginpackageid"], pkg)

    def on_delete(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        pid = row["pluginpackageid"]
        ids = [r[0] for r in db.execute("SELECT pluginassemblyid FROM pluginassembly WHERE packageid = ?", (pid,))]
        for aid in ids:
            _refuse_used_types(db, aid)
        for aid in ids:
            db.execute("DELETE FROM plugintype WHERE pluginassemblyid = ?", (aid,))
            db.execute("DELETE FROM solutioncomponent WHERE objectid = ?", (aid,))
        db.execute("DELETE FROM pluginassembly WHERE packageid = ?", (pid,))

    def on_bind(self, db: sqlite3.Connection, ent: Entity, row: Row, column: str) -> None:
        if column == "managedidentityid":
            _require_signed(ent, row)


def sync_package(db: sqlite3.Connection, package_id: str, pkg: tuple[PackageInfo, dict[str, bytes]]) -> None:
    """Keep one pluginassembly row per plug-in assembly of the package and one plugintype per IPlugin class
    (stable ids for rows that stay; domain-spec §4.2)."""
    info, blobs = pkg
    stamp = now()
    existing = {r["name"].lower(): dict(r) for r in
                db.execute("SELECT * FROM pluginassembly WHERE packageid = ?", (package_id,))}
    keep: set[str] = set()
    for entry, ident in info.assemblies.items():
        if not ident.plugin_types:
            continue  # only assemblies with IPlugin classes are registered ([BUILD])
        content = base64.b64encode(blobs[entry]).decode("ascii")
        major, minor = (int(x) for x in ident.version.split(".")[:2])
        old = existing.get(ident.name.lower())
        if old is None:
            aid = str(uuid.uuid4())
            row: Row = {c: None for c in ENTITIES["pluginassemblies"].all_columns()}
            row.update(pluginassemblyid=aid, name=ident.name, content=content, isolationmode=2, sourcetype=0,
                       version=ident.version, culture=ident.culture, publickeytoken=ident.public_key_token,
                       packageid=package_id, major=major, minor=minor, ismanaged=0, createdon=stamp,
                       modifiedon=stamp, versionnumber=next_version())
            _unique_fullname(db, row)
            insert(db, ENTITIES["pluginassemblies"], row)
        else:
            aid = old["pluginassemblyid"]
            db.execute("UPDATE pluginassembly SET content = ?, version = ?, culture = ?, publickeytoken = ?, "
                       "major = ?, minor = ?, modifiedon = ?, versionnumber = ? WHERE pluginassemblyid = ?",
                       (content, ident.version, ident.culture, ident.public_key_token, major, minor, stamp,
                        next_version(), aid))
        keep.add(aid)
        types = {r["typename"]: r["plugintypeid"] for r in
                 db.execute("SELECT typename, plugintypeid FROM plugintype WHERE pluginassemblyid = ?", (aid,))}
        for tn in ident.plugin_types:
            if tn not in types:
                trow: Row = {c: None for c in ENTITIES["plugintypes"].all_columns()}
                trow.update(plugintypeid=str(uuid.uuid4()), name=tn, typename=tn, friendlyname=tn,
                            isworkflowactivity=0, pluginassemblyid=aid, assemblyname=ident.name,
                            version=ident.version, culture=ident.culture, publickeytoken=ident.public_key_token,
                            createdon=stamp, modifiedon=stamp, versionnumber=next_version())
                insert(db, ENTITIES["plugintypes"], trow)
        _refuse_removed_types(db, aid, ident.plugin_types)
        for tn, tid in types.items():
            if tn not in ident.plugin_types:
                db.execute("DELETE FROM plugintype WHERE plugintypeid = ?", (tid,))
    for old in existing.values():
        if old["pluginassemblyid"] not in keep:
            _refuse_removed_types(db, old["pluginassemblyid"], ())
            db.execute("DELETE FROM plugintype WHERE pluginassemblyid = ?", (old["pluginassemblyid"],))
            db.execute("DELETE FROM pluginassembly WHERE pluginassemblyid = ?", (old["pluginassemblyid"],))


class PluginTypeRules(TableRules):
    """``plugintype`` (see the module docstring)."""

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        aid = row.get("pluginassemblyid")
        if not aid or not row.get("typename"):
            raise _refuse("The 'typename' and 'pluginassemblyid' attributes of 'plugintype' are required.")
        asm = db.execute("SELECT * FROM pluginassembly WHERE pluginassemblyid = ?", (aid,)).fetchone()
        if asm is None:
            raise ApiError(400, NOT_FOUND_CODE, f"pluginassembly With Id = {aid} Does Not Exist")
        ident = read_dll(b64(asm["content"] or "", "content"))
        if not isinstance(ident, PluginAssembly) or row["typename"] not in ident.plugin_types:
            raise _refuse(MISSING_TYPES_MESSAGE)
        if db.execute("SELECT 1 FROM plugintype WHERE pluginassemblyid = ? AND typename = ?",
                      (aid, row["typename"])).fetchone():
            raise ApiError(412, DUPLICATE_CODE, "A record with matching key values already exists.")
        row["name"] = row.get("name") or row["typename"]
        row["friendlyname"] = row.get("friendlyname") or row["typename"]
        row["isworkflowactivity"] = row.get("isworkflowactivity") or 0
        row.update(assemblyname=asm["name"], version=asm["version"], culture=asm["culture"],
                   publickeytoken=asm["publickeytoken"])

    def on_update(self, db: sqlite3.Connection, ent: Entity, old: Row, row: Row, values: Row) -> None:
        if "typename" in values and values["typename"] != old["typename"]:
            raise _refuse(MISSING_TYPES_MESSAGE)

    def on_delete(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        if type_users(db, row["plugintypeid"]):
            raise _refuse(DEPENDENCY_MESSAGE)


STAGES = {10: "PreValidation", 20: "PreOperation", 40: "PostOperation"}  # 30 MainOperation is internal
MODES = {0: "Synchronous", 1: "Asynchronous"}


class StepRules(TableRules):
    """``sdkmessageprocessingstep`` (see the module docstring)."""

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        for col, default in (("mode", 0), ("rank", 1), ("supporteddeployment", 0), ("invocationsource", 0),
                             ("asyncautodelete", 0), ("statecode", 0), ("statuscode", 1)):
            if row.get(col) is None:
                row[col] = default
        row["ismanaged"] = 0
        self._check(db, row)

    def on_update(self, db: sqlite3.Connection, ent: Entity, old: Row, row: Row, values: Row) -> None:
        self._check(db, row)

    @staticmethod
    def _check(db: sqlite3.Connection, row: Row) -> None:
        if not row.get("eventhandler"):
            raise _refuse("The 'eventhandler' attribute of 'sdkmessageprocessingstep' is required.")
        if not row.get("sdkmessageid"):
            raise _refuse("The 'sdkmessageid' attribute of 'sdkmessageprocessingstep' is required.")
        if not row.get("name"):
            raise _refuse("The 'name' attribute of 'sdkmessageprocessingstep' is required.")
        if row.get("stage") not in STAGES:
            raise _refuse(f"Invalid stage {row.get('stage')!r}: plug-in steps can be registered in stage 10 "
                          "(PreValidation), 20 (PreOperation) or 40 (PostOperation).")
        if row["mode"] not in MODES:
            raise _refuse(f"Invalid mode {row['mode']!r}: 0 (Synchronous) or 1 (Asynchronous).")
        if row["mode"] == 1 and row["stage"] != 40:
            raise _refuse(f"Asynchronous steps can only be registered in stage 40 (PostOperation), not "
                          f"{row['stage']} ({STAGES[row['stage']]}).")
        if row.get("rank") is None or row["rank"] < 0:
            raise _refuse(f"Invalid rank {row.get('rank')!r}.")
        fid = row.get("sdkmessagefilterid")
        if fid:
            f = db.execute("SELECT sdkmessageid, iscustomprocessingstepallowed FROM sdkmessagefilter "
                           "WHERE sdkmessagefilterid = ?", (fid,)).fetchone()
            if f is None or f[0] != row["sdkmessageid"]:
                raise _refuse("The sdkmessagefilter does not belong to the step's sdkmessage.")
            if not f[1]:
                raise _refuse("Custom SdkMessageProcessingStep is not allowed on the specified message and entity.")


class ManagedIdentityRules(TableRules):
    """``managedidentity`` (see the module docstring)."""

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        for col, default in (("credentialsource", 0), ("subjectscope", 0), ("statecode", 0), ("statuscode", 1)):
            if row.get(col) is None:
                row[col] = default
        row["ismanaged"] = 0

    def on_delete(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        mid = row["managedidentityid"]
        for table in ("pluginassembly", "pluginpackage"):
            db.execute(f"UPDATE {table} SET managedidentityid = NULL WHERE managedidentityid = ?", (mid,))


class CustomApiRules(TableRules):
    """``customapi``: ``uniquename`` and ``name`` required, ``uniquename`` unique; ``bindingtype`` 0 (global), 1
    (entity) or 2 (entity collection); deleting one deletes its response properties (Learn "Create a custom API
    with code", validation.md §7)."""

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        if not row.get("uniquename"):
            raise _refuse("The 'uniquename' attribute of 'customapi' is required.")
        row["name"] = row.get("name") or row["uniquename"]
        row["displayname"] = row.get("displayname") or row["name"]
        row["bindingtype"] = 0 if row.get("bindingtype") is None else row["bindingtype"]
        if row["bindingtype"] not in (0, 1, 2):
            raise _refuse(f"bindingtype {row['bindingtype']} is not valid; use 0 (Global), 1 (Entity) or 2 "
                          "(EntityCollection).")
        for col in ("isfunction", "isprivate", "workflowsdkstepenabled"):
            row[col] = 0 if row.get(col) is None else int(row[col])
        row["allowedcustomprocessingsteptype"] = row.get("allowedcustomprocessingsteptype") or 0
        row["ismanaged"] = 0
        if db.execute("SELECT 1 FROM customapi WHERE uniquename = ? COLLATE NOCASE", (row["uniquename"],)).fetchone():
            raise ApiError(412, DUPLICATE_CODE, "A record with matching key values already exists.")

    def on_delete(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        db.execute("DELETE FROM customapiresponseproperty WHERE customapiid = ?", (row["customapiid"],))


class CustomApiResponsePropertyRules(TableRules):
    """``customapiresponseproperty``: ``uniquename``, ``type`` (0..12) and ``CustomAPIId`` required; unique name per
    custom API."""

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        if not row.get("uniquename") or row.get("type") is None or not row.get("customapiid"):
            raise _refuse("'uniquename', 'type' and 'CustomAPIId' are required for a customapiresponseproperty.")
        if not 0 <= row["type"] <= 12:
            raise _refuse(f"type {row['type']} is not a valid custom API parameter type (0-12).")
        row["name"] = row.get("name") or row["uniquename"]
        row["displayname"] = row.get("displayname") or row["name"]
        row["ismanaged"] = 0
        if db.execute("SELECT 1 FROM customapiresponseproperty WHERE customapiid = ? AND uniquename = ? "
                      "COLLATE NOCASE", (row["customapiid"], row["uniquename"])).fetchone():
            raise ApiError(412, DUPLICATE_CODE, "A record with matching key values already exists.")


class PluginTraceLogRules(TableRules):
    """``plugintracelog``: written by the platform only; the Web API offers GET and DELETE (Learn
    webapi/reference/plugintracelog)."""

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        raise ApiError(405, INVALID_ARGUMENT_CODE, "The 'Create' method does not support entities of type "
                                                   "'plugintracelog'.")

    def on_update(self, db: sqlite3.Connection, ent: Entity, old: Row, row: Row, values: Row) -> None:
        raise ApiError(405, INVALID_ARGUMENT_CODE, "The 'Update' method does not support entities of type "
                                                   "'plugintracelog'.")


class OrganizationRules(TableRules):
    """``organization``: the one row of the environment; ``plugintracelogsetting`` 0, 1 or 2."""

    def on_create(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        raise ApiError(405, INVALID_ARGUMENT_CODE, "The 'Create' method does not support entities of type "
                                                   "'organization'.")

    def on_update(self, db: sqlite3.Connection, ent: Entity, old: Row, row: Row, values: Row) -> None:
        if "plugintracelogsetting" in values and values["plugintracelogsetting"] not in (0, 1, 2):
            raise _refuse(f"plugintracelogsetting {values['plugintracelogsetting']} is not valid; use 0 (Off), "
                          "1 (Exception) or 2 (All).")

    def on_delete(self, db: sqlite3.Connection, ent: Entity, row: Row) -> None:
        raise ApiError(405, INVALID_ARGUMENT_CODE, "The 'Delete' method does not support entities of type "
                                                   "'organization'.")


#: logical name -> rules; tables not listed accept every valid write.
RULES: dict[str, TableRules] = {
    "pluginassembly": PluginAssemblyRules(),
    "pluginpackage": PluginPackageRules(),
    "managedidentity": ManagedIdentityRules(),
    "plugintype": PluginTypeRules(),
    "sdkmessageprocessingstep": StepRules(),
    "customapi": CustomApiRules(),
    "customapiresponseproperty": CustomApiResponsePropertyRules(),
    "plugintracelog": PluginTraceLogRules(),
    "organization": OrganizationRules(),
}
DEFAULT_RULES = TableRules()
