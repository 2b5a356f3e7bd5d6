"""The ``managedidentities`` row and its binding to a ``pluginpackage`` / ``pluginassembly`` row.

Rules (domain-spec §2):

* Upsert the ``managedidentities`` row with ``applicationid``, ``tenantid``, ``credentialsource`` = 2 (IsManaged),
  ``subjectscope`` = 1 (environment scope) and ``version`` — always sent, because a row created without it is a
  version 0 row (§2.3, DESIGN.md §5). The primary key may be fixed in ``[identity] managed_identity_id`` so every
  environment uses the same id (§2.2: "client-chosen id"; solutions carry the link, §4.3).
* Bind with ``PATCH pluginpackages(<id>)`` (packages) or ``PATCH pluginassemblies(<id>)`` (standalone assemblies)
  ``{"managedidentityid@odata.bind": "/managedidentities(<id>)"}`` (§2.4); unbind with ``null``.
* Never lower a record's ``version`` implicitly: a record at version 2 whose only FIC is the version 2 one stops
  working when ``bind``/``release`` (with an older ``[identity] version``) set it back to 0. A configured version
  lower than the record's is refused before any write (:func:`check_not_lowered`); lowering it is the explicit
  ``ppmi-build upgrade --to 0 --force``, which also restores the matching FIC.
* Idempotent: a second run with the same settings sends no write and reports ``unchanged``; a component bound to
  another identity is rebound and the action says which identity it was bound to.
* What Dataverse holds afterwards is read back (``Prefer: return=representation`` with ``$select``) and compared.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import BadInput, GuidError, PlanRefused
from .actions import ActionLog
from .client import DataverseClient
from .registration import ASSEMBLY_SELECT, PACKAGE_SELECT, Artifact, find_component

CREDENTIAL_SOURCE_MANAGED = 2  # credentialsource "IsManaged" (domain-spec §2.2)
SUBJECT_SCOPE_ENVIRONMENT = 1  # subjectscope "EnviornmentScope" (sic) (domain-spec §2.2)
MI_SELECT = ("managedidentityid", "name", "applicationid", "tenantid", "credentialsource", "subjectscope", "version")


def _guid(value: str | None, what: str, setting: str) -> str:
    if not value:
        raise GuidError(f"{what} is not set; set {setting}")
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise GuidError(f"{what} {value!r} is not a GUID; fix {setting}") from None


@dataclass
class IdentitySpec:
    """What the ``managedidentities`` row must hold.

    Attributes:
        application_id: client ID of the app registration or user-assigned managed identity (GUID).
        tenant_id: Entra tenant ID (GUID).
        version: FIC format version 0, 1 or 2 (2 recommended).
        managed_identity_id: fixed row id, or None to reuse the bound row or create one.
        name: row name (default ``"<component> Identity"``).
    """

    application_id: str
    tenant_id: str
    version: int = 2
    managed_identity_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        self.application_id = _guid(self.application_id, "application ID", "[identity] application_id or "
                                                                            "PPMI_APPLICATION_ID")
        self.tenant_id = _guid(self.tenant_id, "tenant ID", "[identity] tenant_id or PPMI_TENANT_ID")
        if self.managed_identity_id:
            self.managed_identity_id = _guid(self.managed_identity_id, "managed identity id",
                                             "[identity] managed_identity_id or PPMI_MANAGED_IDENTITY_ID")
        if self.version not in (0, 1, 2):
            raise BadInput(f"managed identity version {self.version!r} is not 0, 1 or 2; use 2")

    def wanted(self) -> dict[str, Any]:
        return {"applicationid": self.application_id, "tenantid": self.tenant_id,
                "credentialsource": CREDENTIAL_SOURCE_MANAGED, "subjectscope": SUBJECT_SCOPE_ENVIRONMENT,
                "version": self.version}


@dataclass
class Target:
    """The component row a managed identity is bound to.

    Attributes:
        kind: ``pluginpackage`` or ``pluginassembly``.
        id: the row id.
        name: ``uniquename`` or assembly ``name``.
        managed_identity_id: the ``_managedidentityid_value`` Dataverse holds (None = unbound).
    """

    kind: str
    id: str
    name: str
    managed_identity_id: str | None = None

    @property
    def entity_set(self) -> str:
        return "pluginpackages" if self.kind == "pluginpackage" else "pluginassemblies"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @classmethod
    def from_row(cls, kind: str, row: dict[str, Any]) -> Target:
        name = row.get("uniquename") or row.get("name") or ""
        mid = row.get("_managedidentityid_value")
        return cls(kind, row[f"{kind}id"], name, mid.lower() if mid else None)


def find_target(client: DataverseClient, artifact: Artifact) -> Target:
    """The registered row for ``artifact``: the ``pluginpackage`` for a package, the ``pluginassembly`` for a
    standalone assembly (domain-spec §2.4: bind the package row, not the assemblies inside it).

    Raises:
        BadInput: not registered yet, or the assembly row belongs to a package.
    """
    row = find_component(client, artifact)
    if row is None:
        raise BadInput(f"{artifact.table} {artifact.unique_name} is not registered in {client.url}; run "
                       "`ppmi-build register` first")
    if artifact.kind == "assembly" and row.get("_packageid_value"):
        raise BadInput(f"pluginassembly {artifact.unique_name} belongs to pluginpackage {row['_packageid_value']}; "
                       "bind the package: give the .nupkg")
    return Target.from_row(artifact.table, row)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return a == b


@dataclass
class Binding:
    """Result of :func:`bind` / :func:`unbind`.

    Attributes:
        log: the actions.
        target: the component (its ``managed_identity_id`` is what Dataverse holds after the step).
        identity: the ``managedidentities`` row as Dataverse returned it (None for unbind / plan of a new row).
    """

    log: ActionLog
    target: Target
    identity: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        ident = {k: v for k, v in (self.identity or {}).items() if not k.startswith("@")} or None
        return {"component": {"kind": self.target.kind, "id": self.target.id, "name": self.target.name,
                              "managedidentityid": self.target.managed_identity_id},
                "managedidentity": ident}


def identity_id_for(target: Target, spec: IdentitySpec) -> str:
    """The ``managedidentityid`` used when none is configured: a name-based UUID (RFC 9562 §5.5) of the component
    and the app, so a run that failed half-way and its re-run use the same row instead of leaving orphans."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:ppmi-build:managedidentity:{target.kind}:{target.id.lower()}:"
                                              f"{spec.tenant_id}:{spec.application_id}"))


def check_not_lowered(row: dict[str, Any] | None, spec: IdentitySpec, *, env_name: str = "NAME",
                      config_file: Any = None) -> None:
    """Refuse to set ``row`` (a ``managedidentities`` row, or None) to a lower ``version`` than it holds.

    Raises:
        PlanRefused (exit 1): names the record, both versions, the configuration file and the two fixes.
    """
    if row is None:
        return
    held = int(row.get("version") or 0)
    if held <= spec.version:
        return
    where = config_file or "ppmi.toml"
    mid = row.get("managedidentityid")
    raise PlanRefused(
        f"managedidentities({mid}) is at version {held} but [identity] version is {spec.version} (in {where}): "
        f"binding would lower the record to {spec.version} and the plug-in would fail at run time (its FIC is for "
        f"version {held}); set `version = {held}` in [identity] of {where} (or PPMI_MI_VERSION={held}), or lower "
        f"the record explicitly with `ppmi-build upgrade --env {env_name} --to {spec.version} --force` (it also "
        f"restores the version {spec.version} FIC)")


def bind(client: DataverseClient, target: Target, spec: IdentitySpec, *, plan: bool = False,
         log: ActionLog | None = None, env_name: str = "NAME", config_file: Any = None,
         allow_lower: bool = False) -> Binding:
    """Upsert the ``managedidentities`` row and bind it to ``target``, checking what Dataverse returns.

    The row id is ``spec.managed_identity_id``; else the row already bound to ``target`` when it holds the same
    application and tenant; else :func:`identity_id_for`. Requests: 1 read of the identity row, +1 when it is
    created or changed, +1 when the binding changes (``Prefer: return=representation`` returns what Dataverse
    holds, so no extra read). A second run sends only the read.

    Raises:
        PlanRefused: the row holds a higher ``version`` than ``spec`` (:func:`check_not_lowered`; ``env_name`` and
            ``config_file`` go into its message), unless ``allow_lower``. Nothing is written then.
        DataverseError: e.g. ``0x80040216`` when the artifact in Dataverse is not signed.
    """
    log = log if log is not None else ActionLog()
    wanted = spec.wanted()
    previous = target.managed_identity_id
    mid = spec.managed_identity_id or previous or identity_id_for(target, spec)
    row = client.retrieve("managedidentities", mid, select=MI_SELECT)
    if not spec.managed_identity_id and previous and row is not None and not (
            _same(row.get("applicationid"), spec.application_id) and _same(row.get("tenantid"), spec.tenant_id)):
        # bound to a row of another app: give this component its own row, do not rewrite a row others may share
        mid = identity_id_for(target, spec)
        row = client.retrieve("managedidentities", mid, select=MI_SELECT)
    if not allow_lower:
        check_not_lowered(row, spec, env_name=env_name, config_file=config_file)
    name = (spec.name or f"{target.name} Identity")[:100]
    held: dict[str, Any] | None = row

    if row is None:
        if plan:
            log.add("managedidentity", name, "planned", mid, "create: " + _describe(wanted))
        else:
            held = client.create("managedidentities", {"managedidentityid": mid, "name": name, **wanted},
                                 id_column="managedidentityid", id=mid, select=MI_SELECT)
            log.add("managedidentity", name, "created", mid, _describe(wanted))
            _check_identity(log, held, wanted, mid)
    else:
        diff = {k: v for k, v in wanted.items() if not _same(row.get(k), v)}
        label = row.get("name") or name
        if not diff:
            log.add("managedidentity", label, "unchanged", mid, _describe(wanted))
        elif plan:
            log.add("managedidentity", label, "planned", mid, _changes(row, diff))
        else:
            patch = dict(diff)
            patch["version"] = spec.version  # always sent (DESIGN.md §5)
            held = client.update("managedidentities", mid, patch, select=MI_SELECT) or {}
            log.add("managedidentity", label, "updated", mid, _changes(row, diff))
            _check_identity(log, held, wanted, mid)

    result = Binding(log, target, held)
    bind_label = f"{target.label} -> managedidentity {mid}"
    log.note_id(target.kind, target.id)
    if previous == mid:
        log.add("binding", bind_label, "unchanged", target.id, "already bound", record_id=False)
        return result
    detail = f"was bound to managedidentity {previous}" if previous else "was not bound"
    if plan:
        log.add("binding", bind_label, "planned", target.id, detail, record_id=False)
        return result
    row_after = client.update(target.entity_set, target.id,
                              {"managedidentityid@odata.bind": f"/managedidentities({mid})"},
                              select=(f"{target.kind}id", "_managedidentityid_value"))
    now = (row_after or {}).get("_managedidentityid_value")
    target.managed_identity_id = now.lower() if isinstance(now, str) else now
    if not _same(now, mid):
        log.add("binding", bind_label, "failed", target.id, f"Dataverse holds managedidentity {now} after the "
                                                             "update", record_id=False)
    else:
        log.add("binding", bind_label, "updated" if previous else "created", target.id, detail, record_id=False)
    return result


def unbind(client: DataverseClient, target: Target, *, plan: bool = False, log: ActionLog | None = None) -> Binding:
    """Clear ``managedidentityid`` on ``target`` (the ``managedidentities`` row itself is kept); the answer of the
    PATCH (``return=representation``) must show the lookup empty."""
    log = log if log is not None else ActionLog()
    previous = target.managed_identity_id
    label = f"{target.label} -> managedidentity {previous}" if previous else target.label
    if not previous:
        log.add("binding", label, "unchanged", target.id, "not bound", record_id=False)
    elif plan:
        log.add("binding", label, "planned", target.id, "unbind", record_id=False)
    else:
        row = client.update(target.entity_set, target.id, {"managedidentityid@odata.bind": None},
                            select=(f"{target.kind}id", "_managedidentityid_value"))
        held = (row or {}).get("_managedidentityid_value")
        target.managed_identity_id = held
        if held:
            log.add("binding", label, "failed", target.id, f"Dataverse still holds managedidentity {held}",
                    record_id=False)
        else:
            log.add("binding", label, "updated", target.id, f"unbound from managedidentity {previous}",
                    record_id=False)
    log.note_id(target.kind, target.id)
    return Binding(log, target)


def read_back(client: DataverseClient, target: Target) -> dict[str, Any]:
    """What Dataverse holds now: ``{"component": row, "managedidentity": row or None}``."""
    select = PACKAGE_SELECT if target.kind == "pluginpackage" else ASSEMBLY_SELECT
    comp = client.retrieve(target.entity_set, target.id, select=select) or {}
    mid = comp.get("_managedidentityid_value")
    mi = client.retrieve("managedidentities", mid, select=MI_SELECT) if mid else None
    return {"component": _strip(comp), "managedidentity": _strip(mi)}


def _strip(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row without its ``@odata.*`` annotations."""
    return {k: v for k, v in row.items() if not k.startswith("@")} if row else row


def _describe(w: dict[str, Any]) -> str:
    return (f"applicationid {w['applicationid']}, tenantid {w['tenantid']}, version {w['version']}, "
            f"credentialsource {w['credentialsource']}, subjectscope {w['subjectscope']}")


def _changes(row: dict[str, Any], diff: dict[str, Any]) -> str:
    return ", ".join(f"{k} {row.get(k)} -> {v}" for k, v in diff.items())


def _check_identity(log: ActionLog, held: dict[str, Any], wanted: dict[str, Any], mid: str) -> None:
    bad = {k: held.get(k) for k, v in wanted.items() if k in held and not _same(held.get(k), v)}
    if bad:
        log.add("managedidentity", mid, "failed", mid,
                "Dataverse holds " + ", ".join(f"{k}={v}" for k, v in bad.items()), record_id=False)
