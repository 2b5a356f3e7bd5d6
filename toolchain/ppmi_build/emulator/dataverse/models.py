"""The Dataverse tables the emulator keeps, their Web API metadata, and the values shared by their rules.

Table and column names are the Dataverse logical names: ``managedidentity`` (domain-spec §2.1–2.2 [ENT-MI]),
``pluginassembly`` (§4.1 [ENT-PA]), ``pluginpackage`` (§4.2 [ENT-PP]) and ``plugintype`` (typename,
friendlyname, name, pluginassemblyid; §4.1). Lookup columns are stored under their logical name
(``managedidentityid``, ``packageid``, ``pluginassemblyid``) and read as ``_<name>_value`` ([WEBAPI-CREATE]).
The event registrations: ``sdkmessage`` and ``sdkmessagefilter`` (platform data, seeded by :func:`init_db` from
:data:`SEEDED_FILTERS`) and ``sdkmessageprocessingstep`` (a step: a plug-in type bound to a message and, through a
filter, a table; its event handler is read as ``_eventhandler_value``).
Also the platform tables the ``validate`` probe uses (:mod:`.probe`): ``customapi`` and
``customapiresponseproperty`` (validation.md §7), ``plugintracelog`` (read only) and ``organization`` (one row,
``plugintracelogsetting``). Besides them:
``solutioncomponent`` (which solution a component was created in, ``MSCRM.SolutionUniqueName``,
domain-spec §4.3) and ``emulator_meta`` (the ids ``WhoAmI`` answers).

A new table is one more :class:`~ppmi_build.emulator.core.store.Entity` in :data:`ENTITIES` and, when it has
rules, a :class:`~.rules.TableRules` in :data:`.rules.RULES`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import re
import sqlite3
import time
import uuid
from typing import Any

from ..core.responses import ApiError
from ..core.store import GUID, INT, MEMO, STR, Entity, Lookup, create_tables

#: a Web API ``Edm.Boolean`` column (stored as 0/1, read back as JSON true/false)
BOOL = "bool"

MAX_CONTENT = 16 * 1024 * 1024  # 16 MB ([BUILD], domain-spec §4.6)
# Dataverse error codes (domain-spec §4.4, §4.7, §6)
INVALID_ARGUMENT_CODE = "0x80040203"
UNSIGNED_CODE = "0x80040216"
UNSIGNED_MESSAGE = "Plugin assembly must be signed with valid certificate to associate to Managed Identity"
NOT_FOUND_CODE = "0x80040217"
DUPLICATE_CODE = "0x80040237"
BAD_PROPERTY_CODE = "0x80060888"
BAD_SEGMENT_CODE = "0x8006088a"

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

_version_counter = itertools.count(int(time.time() * 1000))

_COMMON_RO = {"createdon": STR, "modifiedon": STR, "versionnumber": INT}

ENTITIES: dict[str, Entity] = {
    # domain-spec §4.1 [ENT-PA]
    "pluginassemblies": Entity(
        entity_set="pluginassemblies",
        logical="pluginassembly",
        pk="pluginassemblyid",
        columns={
            "name": STR, "content": MEMO, "isolationmode": INT, "sourcetype": INT, "version": STR,
            "culture": STR, "publickeytoken": STR, "description": STR, "sourcehash": STR, "path": STR,
            "url": STR, "authtype": INT, "username": STR, "password": STR,
        },
        read_only={"major": INT, "minor": INT, "ismanaged": INT, "customizationlevel": INT, **_COMMON_RO},
        lookups={"managedidentityid": Lookup("managedidentityid", "managedidentities"),
                 "packageid": Lookup("packageid", "pluginpackages")},
        max_length={"name": 256, "version": 48, "culture": 32, "publickeytoken": 32},
    ),
    # domain-spec §4.2 [ENT-PP]
    "pluginpackages": Entity(
        entity_set="pluginpackages",
        logical="pluginpackage",
        pk="pluginpackageid",
        columns={"name": STR, "uniquename": STR, "version": STR, "content": MEMO, "statecode": INT,
                 "statuscode": INT},
        read_only={"ismanaged": INT, **_COMMON_RO},
        lookups={"managedidentityid": Lookup("managedidentityid", "managedidentities")},
        not_updatable=frozenset({"uniquename"}),
        max_length={"name": 100, "uniquename": 128},
    ),
    # domain-spec §2.2 [ENT-MI]
    "managedidentities": Entity(
        entity_set="managedidentities",
        logical="managedidentity",
        pk="managedidentityid",
        columns={"name": STR, "applicationid": GUID, "tenantid": GUID, "credentialsource": INT,
                 "subjectscope": INT, "version": INT, "statecode": INT, "statuscode": INT},
        read_only={"objectid": GUID, "ismanaged": INT, **_COMMON_RO},
        max_length={"name": 100},
    ),
    # plugintype rows (domain-spec §4.1: typename, friendlyname, name, pluginassemblyid)
    "plugintypes": Entity(
        entity_set="plugintypes",
        logical="plugintype",
        pk="plugintypeid",
        columns={"name": STR, "typename": STR, "friendlyname": STR, "description": STR,
                 "isworkflowactivity": INT},
        read_only={"assemblyname": STR, "version": STR, "culture": STR, "publickeytoken": STR, **_COMMON_RO},
        lookups={"pluginassemblyid": Lookup("pluginassemblyid", "pluginassemblies")},
    ),
    # sdkmessage: the platform's messages (https://learn.microsoft.com/power-apps/developer/data-platform/
    # reference/entities/sdkmessage); seeded, see SEEDED_FILTERS
    "sdkmessages": Entity(
        entity_set="sdkmessages",
        logical="sdkmessage",
        pk="sdkmessageid",
        columns={"name": STR, "categoryname": STR, "isprivate": INT},
        read_only={"customizationlevel": INT, **_COMMON_RO},
        max_length={"name": 256},
    ),
    # sdkmessagefilter: which tables a message can be registered on (primaryobjecttypecode = table logical name;
    # iscustomprocessingstepallowed = a plug-in step may use it); .../reference/entities/sdkmessagefilter
    "sdkmessagefilters": Entity(
        entity_set="sdkmessagefilters",
        logical="sdkmessagefilter",
        pk="sdkmessagefilterid",
        columns={"primaryobjecttypecode": STR, "secondaryobjecttypecode": STR,
                 "iscustomprocessingstepallowed": INT, "isvisible": INT},
        read_only={"customizationlevel": INT, **_COMMON_RO},
        lookups={"sdkmessageid": Lookup("sdkmessageid", "sdkmessages")},
    ),
    # sdkmessageprocessingstep (.../webapi/reference/sdkmessageprocessingstep): stage 10/20/40, mode 0 sync / 1
    # async, rank, filteringattributes (comma-separated), configuration (unsecure), name, description. The event
    # handler is the polymorphic lookup ``eventhandler``: nav property ``eventhandler_plugintype`` for a plug-in
    # type (domain-spec §4.3), read as ``_eventhandler_value``.
    "sdkmessageprocessingsteps": Entity(
        entity_set="sdkmessageprocessingsteps",
        logical="sdkmessageprocessingstep",
        pk="sdkmessageprocessingstepid",
        columns={"name": STR, "description": STR, "stage": INT, "mode": INT, "rank": INT,
                 "filteringattributes": STR, "configuration": MEMO, "supporteddeployment": INT,
                 "invocationsource": INT, "asyncautodelete": INT, "statecode": INT, "statuscode": INT},
        read_only={"ismanaged": INT, "customizationlevel": INT, **_COMMON_RO},
        lookups={"eventhandler_plugintype": Lookup("eventhandler", "plugintypes"),
                 "sdkmessageid": Lookup("sdkmessageid", "sdkmessages"),
                 "sdkmessagefilterid": Lookup("sdkmessagefilterid", "sdkmessagefilters")},
        max_length={"name": 256, "description": 256},
    ),
    # customapi (validation.md §7 step 1; Learn "Create a custom API with code"): bound to a plug-in type by
    # PluginTypeId@odata.bind, invoked as an unbound action POST /{uniquename} (:mod:`.probe`)
    "customapis": Entity(
        entity_set="customapis",
        logical="customapi",
        pk="customapiid",
        columns={"uniquename": STR, "name": STR, "displayname": STR, "description": STR, "bindingtype": INT,
                 "boundentitylogicalname": STR, "isfunction": BOOL, "isprivate": BOOL,
                 "allowedcustomprocessingsteptype": INT, "workflowsdkstepenabled": BOOL,
                 "executeprivilegename": STR},
        read_only={"ismanaged": INT, **_COMMON_RO},
        lookups={"PluginTypeId": Lookup("plugintypeid", "plugintypes")},
        not_updatable=frozenset({"uniquename", "bindingtype", "boundentitylogicalname", "isfunction",
                                 "allowedcustomprocessingsteptype"}),
        max_length={"uniquename": 128, "name": 100, "displayname": 100},
    ),
    # customapiresponseproperty (validation.md §7 step 2): type 10 = String
    "customapiresponseproperties": Entity(
        entity_set="customapiresponseproperties",
        logical="customapiresponseproperty",
        pk="customapiresponsepropertyid",
        columns={"uniquename": STR, "name": STR, "displayname": STR, "description": STR, "type": INT,
                 "logicalentityname": STR},
        read_only={"ismanaged": INT, **_COMMON_RO},
        lookups={"CustomAPIId": Lookup("customapiid", "customapis")},
        not_updatable=frozenset({"uniquename", "type"}),
        max_length={"uniquename": 128, "name": 100, "displayname": 100},
    ),
    # plugintracelog (validation.md §7 step 6; Learn webapi/reference/plugintracelog: GET and DELETE only)
    "plugintracelogs": Entity(
        entity_set="plugintracelogs",
        logical="plugintracelog",
        pk="plugintracelogid",
        columns={},
        read_only={"typename": STR, "messagename": STR, "messageblock": MEMO, "exceptiondetails": MEMO,
                   "correlationid": GUID, "primaryentity": STR, "mode": INT, "operationtype": INT, "depth": INT,
                   "performanceexecutionduration": INT, **_COMMON_RO},
    ),
    # organization: one row, the environment's; plugintracelogsetting 0 Off, 1 Exception, 2 All
    # (validation.md §7 step 4; Learn "Tracing and logging")
    "organizations": Entity(
        entity_set="organizations",
        logical="organization",
        pk="organizationid",
        columns={"plugintracelogsetting": INT},
        read_only={"name": STR, **_COMMON_RO},
    ),
}

#: Messages whose steps are registered per table, and the tables the emulator knows them for. A **subset** of what
#: an environment holds (an environment has hundreds of messages and thousands of filters; read yours with
#: ``GET sdkmessagefilters?$select=primaryobjecttypecode&$expand=sdkmessageid($select=name)``): the common data
#: operations (Create, Update, Delete, Retrieve, RetrieveMultiple, Assign, SetState, GrantAccess, RevokeAccess) on
#: common tables, Merge on the tables that support it, and the lead/opportunity/incident specials.
_COMMON_TABLES = ("account", "contact", "lead", "opportunity", "incident", "task", "email", "phonecall")
SEEDED_FILTERS: dict[str, tuple[str, ...]] = {
    **{m: _COMMON_TABLES for m in ("Create", "Update", "Delete", "Retrieve", "RetrieveMultiple", "Assign",
                                   "SetState", "SetStateDynamicEntity", "GrantAccess", "RevokeAccess")},
    "Merge": ("account", "contact", "lead", "incident"),
    "QualifyLead": ("lead",),
    "Win": ("opportunity",),
    "Lose": ("opportunity",),
    "Close": ("incident",),
}
#: Messages registered without a table (their steps have no sdkmessagefilter).
SEEDED_MESSAGES_WITHOUT_FILTER = ("Associate", "Disassociate", "WhoAmI")
#: stable ids for seeded rows: uuid5 of ``sdkmessage:<name>`` / ``sdkmessagefilter:<name>:<table>``
_SEED_NS = uuid.UUID("6f1d7a52-1d0e-4b8f-9c47-3b2a6c9f0e11")


def seed_id(kind: str, *parts: str) -> str:
    """The id of a seeded ``sdkmessage`` (``seed_id("sdkmessage", "Create")``) or ``sdkmessagefilter``
    (``seed_id("sdkmessagefilter", "Create", "account")``) row."""
    return str(uuid.uuid5(_SEED_NS, ":".join((kind, *parts))))


def seed(db: sqlite3.Connection) -> None:
    """Insert the platform's ``sdkmessage``/``sdkmessagefilter`` rows (:data:`SEEDED_FILTERS`; idempotent)."""
    stamp = now()
    names = [*SEEDED_FILTERS, *SEEDED_MESSAGES_WITHOUT_FILTER]
    for name in names:
        db.execute("INSERT OR IGNORE INTO sdkmessage (sdkmessageid, name, categoryname, isprivate, "
                   "customizationlevel, createdon, modifiedon, versionnumber) VALUES (?, ?, ?, 0, 0, ?, ?, ?)",
                   (seed_id("sdkmessage", name), name, "", stamp, stamp, next_version()))
    for name, tables in SEEDED_FILTERS.items():
        for table in tables:
            db.execute("INSERT OR IGNORE INTO sdkmessagefilter (sdkmessagefilterid, sdkmessageid, "
                       "primaryobjecttypecode, secondaryobjecttypecode, iscustomprocessingstepallowed, isvisible, "
                       "customizationlevel, createdon, modifiedon, versionnumber) "
                       "VALUES (?, ?, ?, 'none', 1, 1, 0, ?, ?, ?)",
                       (seed_id("sdkmessagefilter", name, table), seed_id("sdkmessage", name), table, stamp, stamp,
                        next_version()))

BY_LOGICAL = {e.logical: e for e in ENTITIES.values()}


def init_db(db: sqlite3.Connection) -> None:
    """Create the Dataverse tables and seed the platform's messages (idempotent; also run after a reset)."""
    create_tables(db, ENTITIES.values())
    db.execute("CREATE TABLE IF NOT EXISTS solutioncomponent (solutionuniquename TEXT, objecttypecode TEXT, "
               "objectid TEXT, PRIMARY KEY (solutionuniquename, objecttypecode, objectid))")
    db.execute("CREATE TABLE IF NOT EXISTS emulator_meta (key TEXT PRIMARY KEY, value TEXT)")
    seed(db)


def now() -> str:
    """The current UTC time as Dataverse writes ``createdon``/``modifiedon`` (``YYYY-MM-DDTHH:MM:SSZ``)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_version() -> int:
    """The next ``versionnumber`` (row version, increasing across the emulator's tables)."""
    return next(_version_counter)


def guid(value: Any, what: str) -> str:
    """``value`` as a lower-case GUID string. Raises ApiError (400 ``0x80040203``) when it is not a GUID."""
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise ApiError(400, INVALID_ARGUMENT_CODE, f"Invalid GUID for {what}: {value!r}")
    return value.lower()


def b64(text: str, what: str) -> bytes:
    """Decode a base64 ``content`` column; at most :data:`MAX_CONTENT` bytes (domain-spec §4.6).

    Raises:
        ApiError: 400 when it is not base64 or too large.
    """
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, INVALID_ARGUMENT_CODE, f"The '{what}' attribute is not valid base64.") from None
    if len(data) > MAX_CONTENT:
        raise ApiError(400, INVALID_ARGUMENT_CODE, f"The '{what}' is {len(data)} bytes; the maximum size is 16 MB "
                                                   f"({MAX_CONTENT} bytes).")
    return data


def get_row(db: sqlite3.Connection, ent: Entity, rid: str) -> dict[str, Any] | None:
    """The row of ``ent`` with primary key ``rid``, or None."""
    r = db.execute(f"SELECT * FROM {ent.logical} WHERE {ent.pk} = ?", (rid,)).fetchone()
    return dict(r) if r else None


def insert(db: sqlite3.Connection, ent: Entity, row: dict[str, Any]) -> None:
    """INSERT ``row`` (keys starting with ``_`` are rule scratch values, not columns)."""
    cols = [c for c in row if not c.startswith("_")]
    db.execute(f"INSERT INTO {ent.logical} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
               [row[c] for c in cols])
