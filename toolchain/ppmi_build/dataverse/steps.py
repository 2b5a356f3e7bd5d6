"""Plug-in types and steps of a registered artifact: the ``plugintype`` and ``sdkmessageprocessingstep`` rows that
make a registered plug-in run.

Rules:

* **Plug-in types of a standalone assembly** (domain-spec §4.1: "Plug-in types for a standalone assembly are created
  as ``plugintype`` rows (``typename``, ``friendlyname``, ``name``, ``pluginassemblyid``) by PRT or tool code";
  Dataverse does not create them). One row per public, non-abstract ``IPlugin`` class of the assembly
  (:func:`ppmi_build.assembly.metadata.plugin_types`), ``typename`` = ``name`` = ``friendlyname`` = the class's full
  name. Rows of classes that stay keep their ids; rows of classes that are gone are deleted only when nothing uses
  them, and **before** the new content is uploaded (Dataverse refuses content that lacks a registered type: "Plug-in
  assembly does not contain the required types or assembly content cannot be updated").
* **Plug-in types of a package**: Dataverse creates them from the package (domain-spec §4.2); they are read back
  after the upload and every ``IPlugin`` class of the package must have one.
* **A type that disappears while something uses it** (a step, or a custom API bound through ``PluginTypeId``):
  refused before anything is written, in one line naming the types and their users (domain-spec §4.2 "An update
  that removes assemblies or types used by step registrations is rejected").
* **Steps** come from ``[[steps]]`` in ``ppmi.toml`` (:class:`ppmi_build.config.StepSettings`): the message is looked
  up in ``sdkmessages`` (by ``name``), the table in ``sdkmessagefilters`` (by ``sdkmessageid`` and
  ``primaryobjecttypecode``; it must allow custom processing steps, ``iscustomprocessingstepallowed``), and the step
  is written with ``eventhandler_plugintype@odata.bind``, ``sdkmessageid@odata.bind`` and
  ``sdkmessagefilterid@odata.bind`` (domain-spec §4.3: navigation-property capitalization matters). An unknown
  plug-in type, message or message/table pair is one line before any write.
* **Which steps ppmi-build owns**: a step it creates has a ``description`` starting with :data:`MARKER`. The step
  ``name`` is the user's (shown in the Plugin Registration Tool and the maker portal, set in ``[[steps]]``), so it
  cannot carry a convention; ``description`` is free text the platform never interprets and it travels with the
  step through solutions. Owned steps are matched to ``[[steps]]`` tables by ``name``; only owned steps on the
  artifact's own plug-in types are updated, and removed (``--prune``) when the file no longer declares them. Steps
  made by other tools or by hand are never touched.
* Idempotent: a step whose stage, mode, rank, filtering attributes, configuration, message, table and plug-in type
  already match is ``unchanged`` (no write); a change of stage, mode, rank, filtering attributes or configuration
  is one ``PATCH`` with the changed columns; a change of message, table or plug-in type creates the new step and
  then deletes the old one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BadInput
from .actions import ActionLog
from .client import DataverseClient, odata_literal

if TYPE_CHECKING:
    from ..config import StepSettings
    from .registration import Artifact

#: ``description`` prefix of the steps ppmi-build created (see the module docstring)
MARKER = "ppmi-build:"
STEP_DESCRIPTION = (f"{MARKER} declared in ppmi.toml [[steps]]; `ppmi-build register --prune` deletes it when the "
                    "file no longer declares it")

TYPE_SELECT = ("plugintypeid", "typename", "name", "friendlyname", "_pluginassemblyid_value")
STEP_SELECT = ("sdkmessageprocessingstepid", "name", "description", "stage", "mode", "rank", "filteringattributes",
               "configuration", "_eventhandler_value", "_sdkmessageid_value", "_sdkmessagefilterid_value")
#: how many ids go in one ``$filter`` (``a eq x or a eq y …``), keeping URLs short
_CHUNK = 40
#: columns a PATCH may change; any other difference (message, table, plug-in type) replaces the step
_PATCHABLE = ("stage", "mode", "rank", "filteringattributes", "configuration")


def local_types(artifact: Artifact) -> list[str]:
    """Full names of the ``IPlugin`` classes of the artifact (every plug-in assembly of a package)."""
    if artifact.assembly is not None:
        return list(artifact.assembly.plugin_types)
    assert artifact.package is not None
    return sorted({t for a in artifact.package.plugin_assemblies for t in a.plugin_types})


def resolve_plugin(step: StepSettings, types: Sequence[str], artifact_name: str) -> str:
    """The full type name ``step.plugin`` names: an exact full name, or a class name that matches one type.

    Raises:
        BadInput: no such ``IPlugin`` class in the artifact (lists the ones it has).
    """
    if step.plugin in types:
        return step.plugin
    short = [t for t in types if t.rsplit(".", 1)[-1].rsplit("+", 1)[-1] == step.plugin]
    if len(short) == 1:
        return short[0]
    have = ", ".join(types) or "none"
    raise BadInput(f"ppmi.toml [[steps]] {step.display_name!r}: plugin = {step.plugin!r} is not a public IPlugin "
                   f"class of {artifact_name} (it has: {have}); use the class's full name")


def _any_eq(column: str, values: Iterable[str]) -> list[str]:
    """``$filter`` texts ``column eq v1 or column eq v2 …`` over at most :data:`_CHUNK` values each."""
    vals = list(dict.fromkeys(values))
    return [" or ".join(f"{column} eq {v}" for v in vals[i:i + _CHUNK]) for i in range(0, len(vals), _CHUNK)]


def _query_any(client: DataverseClient, entity_set: str, column: str, values: Iterable[str],
               select: tuple[str, ...], extra: str | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in _any_eq(column, values):
        rows += client.query(entity_set, select=select, filter=f"({f}) and ({extra})" if extra else f)
    return rows


@dataclass
class Registered:
    """What Dataverse holds for an artifact before the upload: its ``plugintype`` rows and the steps on them."""

    types: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def type_ids(self) -> dict[str, str]:
        return {t["typename"]: t["plugintypeid"] for t in self.types}


def read_types(client: DataverseClient, artifact: Artifact, row: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ``plugintype`` rows of the registered component ``row`` (for a package: of its assemblies)."""
    if row is None:
        return []
    if artifact.kind == "assembly":
        return client.query("plugintypes", select=TYPE_SELECT,
                            filter=f"_pluginassemblyid_value eq {row['pluginassemblyid']}")
    asm = client.query("pluginassemblies", select=("pluginassemblyid",),
                       filter=f"_packageid_value eq {row['pluginpackageid']}")
    if not asm:
        return []
    return _query_any(client, "plugintypes", "_pluginassemblyid_value", [a["pluginassemblyid"] for a in asm],
                      TYPE_SELECT)


def read_registered(client: DataverseClient, artifact: Artifact, row: dict[str, Any] | None) -> Registered:
    """:class:`Registered` for the component ``row`` (empty when it does not exist yet)."""
    types = read_types(client, artifact, row)
    steps = _query_any(client, "sdkmessageprocessingsteps", "_eventhandler_value",
                       [t["plugintypeid"] for t in types], STEP_SELECT) if types else []
    return Registered(types, steps)


def _custom_apis(client: DataverseClient, type_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Custom APIs bound to ``type_ids`` (``customapis`` ``_plugintypeid_value``); none where the environment has
    no such table (404)."""
    rows: list[dict[str, Any]] = []
    for f in _any_eq("_plugintypeid_value", type_ids):
        resp = client.request("GET", "customapis", params={"$select": "uniquename,_plugintypeid_value",
                                                           "$filter": f},
                              headers={"If-None-Match": "null"}, ok=(200, 404))
        if resp.status_code == 404:
            return []
        rows += resp.json().get("value", [])
    return rows


def check_removed_types(client: DataverseClient, artifact: Artifact, before: Registered,
                        local: Sequence[str]) -> list[dict[str, Any]]:
    """The registered types the new content no longer has and nothing uses (to delete).

    Raises:
        BadInput: a type that disappears still has steps or custom APIs: one line naming each such type and its
            users (Dataverse would refuse the upload: "Plug-in assembly does not contain the required types or
            assembly content cannot be updated").
    """
    gone = [t for t in before.types if t["typename"] not in local]
    if not gone:
        return []
    users: dict[str, list[str]] = {t["plugintypeid"]: [] for t in gone}
    for s in before.steps:
        if s.get("_eventhandler_value") in users:
            users[s["_eventhandler_value"]].append(f"step {s.get('name')!r}")
    for c in _custom_apis(client, list(users)):
        if c.get("_plugintypeid_value") in users:
            users[c["_plugintypeid_value"]].append(f"custom API {c.get('uniquename')!r}")
    used = [t for t in gone if users[t["plugintypeid"]]]
    if used:
        what = "; ".join(f"{t['typename']} (used by {', '.join(users[t['plugintypeid']])})" for t in used)
        raise BadInput(f"{artifact.path.name} no longer contains plug-in type{'s' if len(used) > 1 else ''} {what}: "
                       "Dataverse refuses content without a type that steps or custom APIs use; keep the class "
                       "(or its name), or remove those steps first (delete them from ppmi.toml and run "
                       "`ppmi-build register --prune` with the build Dataverse holds now)")
    return [t for t in gone if not users[t["plugintypeid"]]]


def delete_types(client: DataverseClient, types: Sequence[dict[str, Any]], *, plan: bool, log: ActionLog) -> None:
    """Delete unused ``plugintype`` rows of classes the new content no longer has."""
    for t in types:
        if plan:
            log.add("plugintype", t["typename"], "planned", t["plugintypeid"],
                    "delete: the class is gone from the new build", record_id=False)
            continue
        client.delete("plugintypes", t["plugintypeid"])
        log.add("plugintype", t["typename"], "deleted", t["plugintypeid"], "the class is gone from the new build",
                record_id=False)


def sync_assembly_types(client: DataverseClient, artifact: Artifact, assembly_id: str | None, before: Registered,
                        *, solution: str | None, plan: bool, log: ActionLog) -> dict[str, str | None]:
    """Create the missing ``plugintype`` rows of a standalone assembly; returns typename -> plugintypeid (None for
    a row that would be created in plan mode)."""
    have = before.type_ids()
    out: dict[str, str | None] = {}
    for tn in local_types(artifact):
        if tn in have:
            out[tn] = have[tn]
            log.add("plugintype", tn, "unchanged", have[tn])
            continue
        if plan or assembly_id is None:
            out[tn] = None
            log.add("plugintype", tn, "planned", detail="create")
            continue
        new_id = str(uuid.uuid4())
        row = client.create("plugintypes", {"plugintypeid": new_id, "typename": tn, "name": tn, "friendlyname": tn,
                                            "pluginassemblyid@odata.bind": f"/pluginassemblies({assembly_id})"},
                            id_column="plugintypeid", id=new_id, select=TYPE_SELECT, solution=solution)
        out[tn] = row.get("plugintypeid", new_id)
        log.add("plugintype", tn, "created", out[tn])
    return out


def check_package_types(client: DataverseClient, artifact: Artifact, row: dict[str, Any] | None,
                        log: ActionLog) -> dict[str, str | None]:
    """Read the ``plugintype`` rows Dataverse made from the package; a class without one is a ``failed`` action.
    Returns typename -> plugintypeid (None when the package is not registered yet)."""
    local = local_types(artifact)
    if row is None:
        return dict.fromkeys(local)
    have = {t["typename"]: t["plugintypeid"] for t in read_types(client, artifact, row)}
    for tn in local:
        if tn not in have:
            log.add("plugintype", tn, "failed", detail="Dataverse holds no plugintype row for this IPlugin class of "
                                                       "the package")
    return {tn: have.get(tn) for tn in local}


@dataclass
class DesiredStep:
    """A ``[[steps]]`` table resolved against the artifact and Dataverse's messages.

    Attributes:
        spec: the table.
        typename: the plug-in type's full name.
        message_id / filter_id: the ``sdkmessage`` / ``sdkmessagefilter`` ids (filter None without a table).
    """

    spec: StepSettings
    typename: str
    message_id: str
    filter_id: str | None

    @property
    def name(self) -> str:
        """``[[steps]] name``, else ``<type full name>: <message> of <table>`` (the Plugin Registration Tool's
        form)."""
        return self.spec.name or f"{self.typename}: {self.spec.message} of {self.spec.entity or 'any entity'}"

    def columns(self) -> dict[str, Any]:
        """The column values of the step row (``sdkmessageprocessingstep`` logical names)."""
        return {"name": self.name, "stage": self.spec.stage_value, "mode": self.spec.mode_value,
                "rank": self.spec.rank, "filteringattributes": _attrs(self.spec.filtering_attributes),
                "configuration": self.spec.configuration or None}


def _attrs(values: Iterable[str] | str | None) -> str | None:
    """Filtering attributes as Dataverse stores them: lower-case logical names joined by commas (None when empty)."""
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    names = [v.strip().lower() for v in values or () if v.strip()]
    return ",".join(dict.fromkeys(names)) or None


def check_step_specs(specs: Sequence[StepSettings], artifact: Artifact) -> list[tuple[StepSettings, str]]:
    """Pair each step with the full name of its plug-in type; no network.

    Raises:
        BadInput: an unknown plug-in type (see :func:`resolve_plugin`).
    """
    types = local_types(artifact)
    pairs = [(s, resolve_plugin(s, types, artifact.path.name)) for s in specs]
    seen: set[str] = set()
    for s, typename in pairs:
        name = s.name or f"{typename}: {s.message} of {s.entity or 'any entity'}"
        if name in seen:
            raise BadInput(f"ppmi.toml: two [[steps]] tables are named {name!r}; give each its own name = \"…\"")
        seen.add(name)
    return pairs


def resolve_messages(client: DataverseClient, pairs: Sequence[tuple[StepSettings, str]]) -> list[DesiredStep]:
    """Look up the ``sdkmessage`` and ``sdkmessagefilter`` of every step (two queries, whatever the count).

    Raises:
        BadInput: a message that does not exist, a message/table pair without a filter, or a filter that does not
            allow custom steps (one line naming the step).
    """
    if not pairs:
        return []
    names = sorted({s.message for s, _ in pairs})
    msgs = _query_any(client, "sdkmessages", "name", [odata_literal(n) for n in names], ("sdkmessageid", "name"))
    by_name = {(m.get("name") or "").lower(): m["sdkmessageid"] for m in msgs}
    for s, _ in pairs:
        if s.message.lower() not in by_name:
            raise BadInput(f"ppmi.toml [[steps]] {s.display_name!r}: message = {s.message!r} does not exist in this "
                           "environment (sdkmessages); check the spelling, e.g. Create, Update, Delete")
    with_table = [(s, by_name[s.message.lower()]) for s, _ in pairs if s.entity]
    filters: dict[tuple[str, str], dict[str, Any]] = {}
    if with_table:
        tables = sorted({s.entity.lower() for s, _ in with_table if s.entity})
        rows = _query_any(client, "sdkmessagefilters", "_sdkmessageid_value", sorted({m for _, m in with_table}),
                          ("sdkmessagefilterid", "primaryobjecttypecode", "iscustomprocessingstepallowed",
                           "_sdkmessageid_value"),
                          extra=" or ".join(f"primaryobjecttypecode eq {odata_literal(t)}" for t in tables))
        filters = {(r["_sdkmessageid_value"], (r.get("primaryobjecttypecode") or "").lower()): r for r in rows}
    out = []
    for s, typename in pairs:
        mid = by_name[s.message.lower()]
        fid = None
        if s.entity:
            f = filters.get((mid, s.entity.lower()))
            if f is None:
                raise BadInput(f"ppmi.toml [[steps]] {s.display_name!r}: message {s.message!r} cannot be registered on "
                               f"table {s.entity!r} in this environment (no sdkmessagefilter); check the table's "
                               "logical name (e.g. account), or write entity = \"none\"")
            if not f.get("iscustomprocessingstepallowed"):
                raise BadInput(f"ppmi.toml [[steps]] {s.display_name!r}: Dataverse does not allow plug-in steps for "
                               f"{s.message} on {s.entity} (iscustomprocessingstepallowed is false)")
            fid = f["sdkmessagefilterid"]
        out.append(DesiredStep(s, typename, mid, fid))
    return out


def _same(a: Any, b: Any) -> bool:
    return (a if a not in ("", None) else None) == (b if b not in ("", None) else None)


def _diff(want: dict[str, Any], have: dict[str, Any]) -> dict[str, Any]:
    """The columns of ``want`` that differ from the row ``have`` (filtering attributes compared as sets)."""
    out = {}
    for col, val in want.items():
        cur = have.get(col)
        if col == "filteringattributes":
            if set((_attrs(cur) or "").split(",")) != set((val or "").split(",")):
                out[col] = val
        elif not _same(cur, val):
            out[col] = val
    return out


def sync_steps(client: DataverseClient, desired: Sequence[DesiredStep], before: Registered,
               type_ids: dict[str, str | None], *, solution: str | None, plan: bool, prune: bool,
               log: ActionLog) -> None:
    """Create, update and (with ``prune``) delete the steps ppmi-build owns on the artifact's types.

    Args:
        desired: from :func:`resolve_messages`.
        before: the steps on the artifact's types (all of them; only owned ones are changed).
        type_ids: typename -> plugintypeid after the types were synced (None: not created yet, plan mode).
        prune: delete owned steps the file no longer declares.
    Raises:
        DataverseError: a write was refused.
    """
    owned = {s.get("name"): s for s in before.steps if (s.get("description") or "").startswith(MARKER)}
    for d in desired:
        tid = type_ids.get(d.typename)
        cols = d.columns()
        cur = owned.pop(d.name, None)
        where = f"{d.spec.message} of {d.spec.entity or 'any entity'}, {d.spec.stage} {d.spec.mode}, rank " \
                f"{d.spec.rank} -> {d.typename}"
        if cur is not None and tid is not None and cur.get("_eventhandler_value") == tid and \
                cur.get("_sdkmessageid_value") == d.message_id and cur.get("_sdkmessagefilterid_value") == d.filter_id:
            changed = _diff({c: cols[c] for c in _PATCHABLE}, cur)
            sid = cur["sdkmessageprocessingstepid"]
            if not changed:
                log.add("sdkmessageprocessingstep", d.name, "unchanged", sid, where)
            elif plan:
                log.add("sdkmessageprocessingstep", d.name, "planned", sid, f"update {_changes(changed, cur)}")
            else:
                client.update("sdkmessageprocessingsteps", sid, changed)
                log.add("sdkmessageprocessingstep", d.name, "updated", sid, _changes(changed, cur))
            continue
        replaced = f"; replaces {cur['sdkmessageprocessingstepid']} (message, table or plug-in type changed)" \
            if cur is not None else ""
        if plan or tid is None:
            log.add("sdkmessageprocessingstep", d.name, "planned", detail=f"create: {where}{replaced}")
            continue
        new_id = str(uuid.uuid4())
        body: dict[str, Any] = {"sdkmessageprocessingstepid": new_id, **{k: v for k, v in cols.items()
                                                                           if v is not None},
                                "description": STEP_DESCRIPTION, "supporteddeployment": 0,
                                "eventhandler_plugintype@odata.bind": f"/plugintypes({tid})",
                                "sdkmessageid@odata.bind": f"/sdkmessages({d.message_id})"}
        if d.filter_id:
            body["sdkmessagefilterid@odata.bind"] = f"/sdkmessagefilters({d.filter_id})"
        row = client.create("sdkmessageprocessingsteps", body, id_column="sdkmessageprocessingstepid", id=new_id,
                            select=("sdkmessageprocessingstepid",), solution=solution)
        log.add("sdkmessageprocessingstep", d.name, "created", row.get("sdkmessageprocessingstepid", new_id),
                where + replaced)
        if cur is not None:
            client.delete("sdkmessageprocessingsteps", cur["sdkmessageprocessingstepid"])
    for name, cur in owned.items():
        sid = cur["sdkmessageprocessingstepid"]
        if not prune:
            log.add("sdkmessageprocessingstep", str(name), "unchanged", sid,
                    "no longer in ppmi.toml; `register --prune` deletes it", record_id=False)
        elif plan:
            log.add("sdkmessageprocessingstep", str(name), "planned", sid, "delete (no longer in ppmi.toml)",
                    record_id=False)
        else:
            client.delete("sdkmessageprocessingsteps", sid)
            log.add("sdkmessageprocessingstep", str(name), "deleted", sid, "no longer in ppmi.toml", record_id=False)


def _changes(changed: dict[str, Any], cur: dict[str, Any]) -> str:
    return ", ".join(f"{c} {cur.get(c)!r} -> {v!r}" for c, v in changed.items())
