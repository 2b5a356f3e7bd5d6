"""Register a signed plug-in artifact in Dataverse: create or update its ``pluginassembly`` or ``pluginpackage`` row.

Rules (domain-spec §4):

* Standalone assembly (``.dll``) -> ``pluginassembly`` found by ``name``: create with ``name``, ``content`` (base64),
  ``isolationmode`` 2 (Sandbox), ``sourcetype`` 0 (Database), ``version``, ``culture``, ``publickeytoken``
  (§4.1); update with ``content`` + ``version``. It must be strong-named (§4.6: "Public assembly must have public
  key token"): checked locally before any upload. A ``pluginassembly`` row that belongs to a package
  (``_packageid_value`` set) is never patched: register the package instead (§4.2).
* Package (``.nupkg``) -> ``pluginpackage`` found by ``uniquename``: create with ``name``, ``uniquename``,
  ``version``, ``content`` (§4.2 field-tested body); update sends ``content`` only, never ``version`` ([BUILD]:
  "The name and version of the plug-in package cannot be changed"). Afterwards every assembly of the ``.nupkg``
  that contains an ``IPlugin`` class must have its ``pluginassembly`` row with ``packageid`` = the package
  ([BUILD]); a missing one is reported as a failed action.
* 16 MB limit (§4.6, [BUILD]) checked on the file size before it is read or uploaded.
* Unchanged content (byte-identical to what Dataverse holds) is not uploaded again: the action says
  ``unchanged``.
* ``MSCRM.SolutionUniqueName`` adds a created component to the environment's solution (§4.3).
* Plug-in types and steps (``plugintype``, ``sdkmessageprocessingstep``): :mod:`.steps`. The checks that need no
  write (unknown plug-in type, message or table in ``[[steps]]``; a type that disappears while steps or custom APIs
  use it) run before the upload; unused types that disappear are deleted before it, new types are created and steps
  synced after it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..assembly.metadata import AssemblyIdentity, PluginAssembly, read_plugin_assembly
from ..assembly.package import PackageInfo, read_package
from ..errors import BadInput, InputFileError
from .actions import ActionLog
from .client import DataverseClient, encode_body, odata_literal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..config import StepSettings

MAX_CONTENT = 16 * 1024 * 1024  # bytes: "Assembly size limit 16 MB" ([BUILD], domain-spec §4.6)
ISOLATION_SANDBOX = 2  # pluginassembly.isolationmode (domain-spec §4.1)
SOURCE_DATABASE = 0  # pluginassembly.sourcetype (domain-spec §4.1)

ASSEMBLY_SELECT = ("pluginassemblyid", "name", "version", "culture", "publickeytoken", "_packageid_value",
                   "_managedidentityid_value")
PACKAGE_SELECT = ("pluginpackageid", "name", "uniquename", "version", "_managedidentityid_value")


@dataclass
class Artifact:
    """A plug-in artifact read from disk.

    Attributes:
        path: the file.
        kind: ``assembly`` (standalone ``.dll``) or ``package`` (``.nupkg``).
        data: the file bytes (at most 16 MB).
        assembly: identity for an assembly, else None.
        package: package info for a package, else None.
        unique_name: the Dataverse name: assembly simple name, or the package ``uniquename``.
    """

    path: Path
    kind: str
    data: bytes
    assembly: PluginAssembly | None = None
    package: PackageInfo | None = None
    unique_name: str = ""

    @property
    def entity_set(self) -> str:
        return "pluginassemblies" if self.kind == "assembly" else "pluginpackages"

    @property
    def table(self) -> str:
        return "pluginassembly" if self.kind == "assembly" else "pluginpackage"

    @property
    def id_column(self) -> str:
        return f"{self.table}id"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def version(self) -> str:
        if self.assembly:
            return self.assembly.version
        assert self.package is not None
        return self.package.version


def kind_for(path: Path, kind: str | None = None) -> str:
    """``assembly`` for ``.dll``, ``package`` for ``.nupkg``; else ``kind``. Raises BadInput when neither fits."""
    ext = path.suffix.lower()
    by_ext = {".dll": "assembly", ".nupkg": "package"}.get(ext)
    if by_ext and kind and kind != by_ext:
        raise BadInput(f"{path.name} is a {ext} file but the kind is {kind!r}; give the "
                       f"{'.nupkg' if kind == 'package' else '.dll'} or change [plugin] kind / --kind")
    if by_ext:
        return by_ext
    if kind in ("assembly", "package"):
        return kind
    raise BadInput(f"{path}: cannot tell whether this is a plug-in assembly (.dll) or package (.nupkg); "
                   "rename it or pass --kind")


def load_artifact(path: Path | str, *, kind: str | None = None, unique_name: str | None = None) -> Artifact:
    """Read and inspect ``path`` (size limit first, then parse).

    Args:
        path: the ``.dll`` or ``.nupkg``.
        kind: ``assembly``/``package`` when the extension does not tell.
        unique_name: ``pluginpackage.uniquename`` to use instead of the nuspec ``<id>``.
    Raises:
        InputFileError: missing/unreadable file.
        BadInput: over 16 MB, not a .NET assembly / NuGet package, standalone assembly not strong-named.
    """
    path = Path(path)
    kind = kind_for(path, kind)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputFileError(f"{path} does not exist; build the plug-in first or give the artifact path") from None
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror}") from None
    if size > MAX_CONTENT:
        raise BadInput(f"{path.name} is {size} bytes; Dataverse accepts at most 16 MB ({MAX_CONTENT} bytes) for a "
                       "plug-in assembly or package: remove unneeded dependencies")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror}") from None
    if kind == "assembly":
        ident = read_plugin_assembly(data, label=path.name)
        if not ident.strong_named:
            raise BadInput(f"{path.name} is not strong-named (no public key token); Dataverse refuses standalone "
                           "plug-in assemblies without one: sign it with a .snk key at build time "
                           "(`ppmi-build snk`, <SignAssembly>) or register a plug-in package instead")
        return Artifact(path, kind, data, assembly=ident, unique_name=ident.name)
    import io

    from ..assembly.nupkg_rules import check_package

    check_package(io.BytesIO(data), path.name)  # the rules sign and verify apply too
    info = read_package(data, label=path.name)
    return Artifact(path, kind, data, package=info, unique_name=unique_name or info.id)


@dataclass
class Registration:
    """Result of :func:`register`.

    Attributes:
        log: the actions (and ids).
        artifact: what was registered.
        row: the component row as Dataverse holds it after the step (``PACKAGE_SELECT``/``ASSEMBLY_SELECT``
            columns), or None in plan mode when it does not exist yet.
        assemblies: for a package, its ``pluginassembly`` rows.
    """

    log: ActionLog
    artifact: Artifact
    row: dict[str, Any] | None
    assemblies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str | None:
        return self.row.get(self.artifact.id_column) if self.row else None

    @property
    def managed_identity_id(self) -> str | None:
        return self.row.get("_managedidentityid_value") if self.row else None


def find_component(client: DataverseClient, artifact: Artifact) -> dict[str, Any] | None:
    """The ``pluginassembly`` (by ``name``, preferring the same public key token, culture and major.minor) or
    ``pluginpackage`` (by ``uniquename``) row for ``artifact``, or None."""
    if artifact.kind == "package":
        rows = client.query("pluginpackages", select=PACKAGE_SELECT,
                            filter=f"uniquename eq {odata_literal(artifact.unique_name)}")
        return rows[0] if rows else None
    assert artifact.assembly is not None
    rows = client.query("pluginassemblies", select=ASSEMBLY_SELECT,
                        filter=f"name eq {odata_literal(artifact.unique_name)}")
    if not rows:
        return None
    ident = artifact.assembly
    major_minor = ident.version.split(".")[:2]

    def score(r: dict[str, Any]) -> tuple[int, int, int]:
        return ((r.get("publickeytoken") or "").lower() == (ident.public_key_token or ""),
                (r.get("culture") or "neutral").lower() == ident.culture.lower(),
                (r.get("version") or "").split(".")[:2] == major_minor)

    return max(rows, key=score)


def _same_content(client: DataverseClient, artifact: Artifact, row_id: str) -> bool:
    """True when Dataverse holds exactly ``artifact.data`` as the row's content."""
    row = client.retrieve(artifact.entity_set, row_id, select=["content"])
    remote = (row or {}).get("content")
    if not remote:
        return False
    try:
        return base64.b64decode(remote, validate=True) == artifact.data
    except (binascii.Error, ValueError):
        return False


def register(client: DataverseClient, artifact: Artifact, *, solution: str | None = None, plan: bool = False,
             force: bool = False, log: ActionLog | None = None, steps: Sequence[StepSettings] | None = None,
             prune: bool = False) -> Registration:
    """Create or update the artifact's row, its plug-in types and its steps; see the module docstring for the rules.

    Args:
        client: the environment's client.
        artifact: from :func:`load_artifact`.
        solution: ``MSCRM.SolutionUniqueName`` for a created row (default: the client's).
        plan: only read; actions say ``planned``/``unchanged``.
        force: upload even when the content is unchanged.
        log: an :class:`ActionLog` to append to (so a caller keeps the actions done before an error).
        steps: the ``[[steps]]`` of ``ppmi.toml``; None leaves steps alone (types are still kept in sync).
        prune: delete the steps ppmi-build created that ``steps`` no longer declares.
    Raises:
        BadInput: the assembly row belongs to a package; a ``[[steps]]`` table names an unknown plug-in type,
            message or message/table pair; the new content drops a type that steps or custom APIs use.
        DataverseError: the Web API refused a request (after retries).
    """
    from . import steps as st

    log = log if log is not None else ActionLog()
    pairs = st.check_step_specs(steps or (), artifact)  # no network: unknown plug-in types first
    existing = find_component(client, artifact)
    if artifact.kind == "assembly" and existing is not None and existing.get("_packageid_value"):
        assert artifact.assembly is not None
        raise BadInput(f"pluginassembly {artifact.assembly.name} ({existing['pluginassemblyid']}) belongs to "
                       f"pluginpackage {existing['_packageid_value']}; ppmi-build never changes an assembly of a "
                       "package: register the .nupkg instead")
    before = st.read_registered(client, artifact, existing)
    unused_gone = st.check_removed_types(client, artifact, before, st.local_types(artifact))
    desired = st.resolve_messages(client, pairs)
    if artifact.kind == "assembly":
        st.delete_types(client, unused_gone, plan=plan, log=log)
        reg = _register_assembly(client, artifact, existing, solution=solution, plan=plan, force=force, log=log)
        type_ids = st.sync_assembly_types(client, artifact, reg.id, before, solution=solution, plan=plan, log=log)
    else:
        reg = _register_package(client, artifact, existing, solution=solution, plan=plan, force=force, log=log)
        type_ids = st.check_package_types(client, artifact, reg.row, log)
    if steps is not None:
        st.sync_steps(client, desired, before, type_ids, solution=solution, plan=plan, prune=prune, log=log)
    return reg


def _register_assembly(client: DataverseClient, artifact: Artifact, existing: dict[str, Any] | None, *,
                       solution: str | None, plan: bool, force: bool, log: ActionLog) -> Registration:
    ident = artifact.assembly
    assert ident is not None
    size = f"{len(artifact.data)} bytes"
    if existing is None:
        if plan:
            log.add("pluginassembly", ident.name, "planned", detail=f"create version {ident.version}, {size}")
            return Registration(log, artifact, None)
        new_id = str(uuid.uuid4())
        fields = {"pluginassemblyid": new_id, "name": ident.name, "isolationmode": ISOLATION_SANDBOX,
                  "sourcetype": SOURCE_DATABASE, "version": ident.version, "culture": ident.culture,
                  "publickeytoken": ident.public_key_token}
        body = encode_body(fields, content=artifact.data)
        row = client.create("pluginassemblies", body, id_column="pluginassemblyid", id=new_id,
                            select=ASSEMBLY_SELECT, solution=solution)
        del body
        log.add("pluginassembly", ident.name, "created", row.get("pluginassemblyid", new_id),
                f"version {ident.version}, public key token {ident.public_key_token}, {size}")
        _check_row(log, row, ident)
        return Registration(log, artifact, row)

    rid = existing["pluginassemblyid"]
    if not force and _same_content(client, artifact, rid):
        log.add("pluginassembly", ident.name, "unchanged", rid, f"version {existing.get('version')}, same content")
        return Registration(log, artifact, existing)
    if plan:
        log.add("pluginassembly", ident.name, "planned", rid,
                f"update content ({size}), version {existing.get('version')} -> {ident.version}")
        return Registration(log, artifact, existing)
    body = encode_body({"version": ident.version}, content=artifact.data)
    row = client.update("pluginassemblies", rid, body, select=ASSEMBLY_SELECT) or existing
    del body
    detail = f"content replaced ({size})"
    if existing.get("version") != ident.version:
        detail += f", version {existing.get('version')} -> {ident.version}"
    log.add("pluginassembly", ident.name, "updated", rid, detail)
    _check_row(log, row, ident)
    return Registration(log, artifact, row)


def _check_row(log: ActionLog, row: dict[str, Any], ident: AssemblyIdentity) -> None:
    """Compare what Dataverse returned with the local identity; a mismatch is a failed action."""
    problems = []
    if row.get("version") and row["version"] != ident.version:
        problems.append(f"version {row['version']} (expected {ident.version})")
    if row.get("publickeytoken") and ident.public_key_token and \
            row["publickeytoken"].lower() != ident.public_key_token:
        problems.append(f"public key token {row['publickeytoken']} (expected {ident.public_key_token})")
    if problems:
        log.add("pluginassembly", ident.name, "failed", row.get("pluginassemblyid"),
                "Dataverse holds " + ", ".join(problems), record_id=False)


def _register_package(client: DataverseClient, artifact: Artifact, existing: dict[str, Any] | None, *,
                      solution: str | None, plan: bool, force: bool, log: ActionLog) -> Registration:
    info = artifact.package
    assert info is not None
    name = artifact.unique_name
    size = f"{len(artifact.data)} bytes"
    if existing is None:
        if plan:
            log.add("pluginpackage", name, "planned", detail=f"create version {info.version}, {size}")
            for a in info.plugin_assemblies:
                log.add("pluginassembly", a.name, "planned", detail="Dataverse registers it from the package")
            return Registration(log, artifact, None)
        new_id = str(uuid.uuid4())
        fields = {"pluginpackageid": new_id, "name": name, "uniquename": name, "version": info.version}
        body = encode_body(fields, content=artifact.data)
        row = client.create("pluginpackages", body, id_column="pluginpackageid", id=new_id,
                            select=PACKAGE_SELECT, solution=solution)
        del body
        log.add("pluginpackage", name, "created", row.get("pluginpackageid", new_id),
                f"version {info.version}, {size}")
        status = "created"
    else:
        rid = existing["pluginpackageid"]
        row = existing
        if not force and _same_content(client, artifact, rid):
            log.add("pluginpackage", name, "unchanged", rid, f"version {existing.get('version')}, same content")
            status = "unchanged"
        elif plan:
            log.add("pluginpackage", name, "planned", rid, f"update content ({size})")
            return Registration(log, artifact, existing)
        else:
            # never send version: Dataverse refuses package version changes ([BUILD])
            row = client.update("pluginpackages", rid, encode_body({}, content=artifact.data),
                                select=PACKAGE_SELECT) or existing
            detail = f"content replaced ({size})"
            if existing.get("version") and existing["version"] != info.version:
                detail += (f"; the package version stays {existing['version']} in Dataverse (local {info.version}): "
                           "Dataverse does not allow changing it")
            log.add("pluginpackage", name, "updated", rid, detail)
            status = "updated"
    assemblies = check_package_assemblies(client, artifact, row["pluginpackageid"], status, log)
    return Registration(log, artifact, row, assemblies)


def check_package_assemblies(client: DataverseClient, artifact: Artifact, package_id: str, status: str,
                             log: ActionLog) -> list[dict[str, Any]]:
    """Read the package's ``pluginassembly`` rows and check that every plug-in assembly of the ``.nupkg`` has one
    with the same version and public key token; a missing or different one is a ``failed`` action."""
    info = artifact.package
    assert info is not None
    rows = client.query("pluginassemblies", select=("pluginassemblyid", "name", "version", "publickeytoken",
                                                    "_packageid_value"),
                        filter=f"_packageid_value eq {package_id}")
    by_name = {(r.get("name") or "").lower(): r for r in rows}
    for ident in info.plugin_assemblies:
        r = by_name.get(ident.name.lower())
        types = ", ".join(ident.plugin_types)
        if r is None:
            log.add("pluginassembly", ident.name, "failed", detail=f"Dataverse holds no pluginassembly row for it "
                                                                 f"in the package (plug-in types: {types})")
            continue
        problems = []
        if r.get("version") != ident.version:
            problems.append(f"version {r.get('version')} (package has {ident.version})")
        if (r.get("publickeytoken") or None) != ident.public_key_token:
            problems.append(f"public key token {r.get('publickeytoken')} (package has {ident.public_key_token})")
        if problems:
            log.add("pluginassembly", ident.name, "failed", r["pluginassemblyid"],
                    "Dataverse holds " + ", ".join(problems), record_id=False)
        else:
            log.add("pluginassembly", ident.name, status, r["pluginassemblyid"],
                    f"version {ident.version}, registered by Dataverse from the package")
    return rows
