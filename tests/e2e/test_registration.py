"""register / bind / unbind (library level) against the emulator; the emulator's SQLite rows are the evidence.

Expected identities come from independent tools: ``sn -T`` (public key token), the C# sources compiled with
``mcs`` (names, versions, plug-in classes), ``osslsigncode`` (Authenticode signatures).
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.emulator_fixture / tests.dataverse_artifacts)
from __future__ import annotations

import base64

import pytest

from ppmi_build.dataverse.client import DataverseClient, DataverseError, RetryPolicy
from ppmi_build.dataverse.managed_identity import IdentitySpec, Target, bind, find_target, identity_id_for, unbind
from ppmi_build.dataverse.registration import check_package_assemblies, load_artifact, register
from ppmi_build.errors import BadInput, GuidError, InputFileError
from ppmi_build.http.tokens import StaticToken
from tests.dataverse_artifacts import PLUGIN_TYPES, dv  # noqa: F401
from tests.emulator_fixture import emulator  # noqa: F401

APP = "9F3D07CA-381E-43FC-8BEF-76DD03B460D6"  # domain-spec §7 I (upper case on purpose)
TENANT = "7f2c1900-9fd4-4b89-91d3-79a649996f0a"
FIXED_MI = "0bb91e27-1d0c-4a60-973c-ed810d9695ff"


@pytest.fixture
def client(emulator):
    c = DataverseClient(emulator.url, StaticToken(emulator.token),
                        retry=RetryPolicy(max_retries=2, backoff_base=0.01), solution="ContosoPlugins")
    yield c
    c.close()


def writes(emu) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in emu.requests() if r["method"] in ("POST", "PATCH", "DELETE")]


# --- loading ------------------------------------------------------------------------------------------------------


def test_load_assembly_identity_from_independent_tools(dv):
    art = load_artifact(dv.asm_v1)
    assert (art.kind, art.unique_name) == ("assembly", "Contoso.Plugins")
    a = art.assembly
    assert (a.name, a.version, a.culture, a.public_key_token) == ("Contoso.Plugins", "1.0.0.0", "neutral",
                                                                    dv.token_v1)
    assert a.plugin_types == ("Contoso.Plugins.AccountPlugin", "Contoso.Plugins.ContactPlugin")
    pkg = load_artifact(dv.pkg_v1)
    assert (pkg.kind, pkg.unique_name, pkg.package.version, pkg.package.signed) == ("package", "Contoso.Pkg",
                                                                                    "1.0.0", True)
    assert [x.name for x in pkg.package.plugin_assemblies] == ["Contoso.Pkg.Plugins"]
    assert load_artifact(dv.pkg_v1, unique_name="contoso_Pkg").unique_name == "contoso_Pkg"


def test_plugin_base_class_in_another_assembly_of_the_package(dv, tmp_path):
    """A plug-in class deriving from an abstract IPlugin base defined in a dependency of the package still counts;
    the dependency itself (abstract base only) registers no plug-in type."""
    from tests.conftest import compile_assembly
    from tests.nupkg_builder import build_nupkg

    base = compile_assembly(tmp_path / "Contoso.Base.dll", references=[dv.sdk], source=(
        "namespace Contoso.Base { public abstract class PluginBase : Microsoft.Xrm.Sdk.IPlugin {"
        " public void Execute(System.IServiceProvider s) { } } }"))
    derived = compile_assembly(tmp_path / "Contoso.Derived.dll", references=[dv.sdk, base], source=(
        "namespace Contoso.Derived { public sealed class Step : Contoso.Base.PluginBase { } "
        "public sealed class NotAPlugin { } }"))
    pkg = build_nupkg(tmp_path / "Contoso.Derived.1.0.0.nupkg", package_id="Contoso.Derived", version="1.0.0",
                      dlls=[base, derived])
    info = load_artifact(pkg).package
    assert {a.name: a.plugin_types for a in info.assemblies.values()} == {
        "Contoso.Base": (), "Contoso.Derived": ("Contoso.Derived.Step",)}


def test_load_refusals(dv, plain_dll, tmp_path):
    with pytest.raises(BadInput, match="not strong-named"):
        load_artifact(plain_dll)
    big = tmp_path / "big.nupkg"
    with open(big, "wb") as f:
        f.truncate(16 * 1024 * 1024 + 1)  # sparse: the limit is checked on the size, before reading
    with pytest.raises(BadInput, match="at most 16 MB"):
        load_artifact(big)
    with pytest.raises(InputFileError):
        load_artifact(tmp_path / "missing.dll")
    junk = tmp_path / "junk.dll"
    junk.write_bytes(b"MZ not really")
    with pytest.raises(BadInput, match="not a PE file|not a .NET assembly"):
        load_artifact(junk)
    with pytest.raises(BadInput, match="kind"):
        load_artifact(dv.pkg_v1, kind="assembly")
    odd = tmp_path / "plugin.bin"
    odd.write_bytes(b"x")
    with pytest.raises(BadInput, match="--kind"):
        load_artifact(odd)


# --- register: assembly -----------------------------------------------------------------------------------------


def test_register_assembly_create_rerun_update(emulator, client, dv):
    reg = register(client, load_artifact(dv.asm_v1))
    act, *types = reg.log.actions
    assert (act.kind, act.target, act.status) == ("pluginassembly", "Contoso.Plugins", "created")
    # one plugintype per IPlugin class of PLUGIN_CS (full names: namespace + class)
    assert [(t.kind, t.target, t.status) for t in types] == \
        [("plugintype", f"Contoso.Plugins.{c}", "created") for c in PLUGIN_TYPES]
    row = emulator.rows("pluginassembly")[0]
    assert act.id == row["pluginassemblyid"] == reg.id
    assert (row["name"], row["version"], row["culture"], row["publickeytoken"]) == ("Contoso.Plugins", "1.0.0.0",
                                                                                    "neutral", dv.token_v1)
    assert (row["isolationmode"], row["sourcetype"], row["packageid"]) == (2, 0, None)
    assert base64.b64decode(row["content"]) == dv.asm_v1.read_bytes()
    assert emulator.rows("solutioncomponent")[0]["objectid"] == row["pluginassemblyid"]

    n = len(writes(emulator))
    again = register(client, load_artifact(dv.asm_v1))
    assert [a.status for a in again.log.actions] == ["unchanged"] * 3 and not again.log.changed
    assert len(writes(emulator)) == n  # nothing written

    upd = register(client, load_artifact(dv.asm_v2))
    act, *_ = upd.log.actions
    assert act.status == "updated" and act.id == row["pluginassemblyid"] and "1.0.0.0 -> 1.0.1.0" in act.detail
    [row2] = emulator.rows("pluginassembly")
    assert row2["version"] == "1.0.1.0" and base64.b64decode(row2["content"]) == dv.asm_v2.read_bytes()


def test_register_plan_writes_nothing(emulator, client, dv):
    reg = register(client, load_artifact(dv.asm_v1), plan=True)
    assert [a.status for a in reg.log.actions] == ["planned"] * 3
    assert writes(emulator) == [] and emulator.rows("pluginassembly") == []


def test_assembly_of_a_package_is_never_patched(emulator, client, dv, tmp_path):
    register(client, load_artifact(dv.pkg_v1))
    before = emulator.rows("pluginassembly")
    # a standalone assembly with the same name as the package's plug-in assembly
    art = load_artifact(dv.asm_v1)
    art.unique_name = "Contoso.Pkg.Plugins"
    art.assembly = type(art.assembly)("Contoso.Pkg.Plugins", "1.0.0.0", "neutral", dv.token_v1, ())
    n = len(writes(emulator))
    with pytest.raises(BadInput, match="belongs to pluginpackage"):
        register(client, art)
    assert len(writes(emulator)) == n and emulator.rows("pluginassembly") == before


# --- register: package ------------------------------------------------------------------------------------------


def test_register_package_create_and_check_assemblies(emulator, client, dv):
    reg = register(client, load_artifact(dv.pkg_v1))
    kinds = [(a.kind, a.target, a.status) for a in reg.log.actions]
    assert kinds == [("pluginpackage", "Contoso.Pkg", "created"), ("pluginassembly", "Contoso.Pkg.Plugins", "created")]
    pkg = emulator.rows("pluginpackage")[0]
    assert (pkg["uniquename"], pkg["name"], pkg["version"]) == ("Contoso.Pkg", "Contoso.Pkg", "1.0.0")
    asm = emulator.rows("pluginassembly")[0]
    assert reg.log.ids == {"pluginpackage": pkg["pluginpackageid"], "pluginassembly": asm["pluginassemblyid"]}
    assert asm["packageid"] == pkg["pluginpackageid"]


def test_package_update_never_sends_version(emulator, client, dv):
    register(client, load_artifact(dv.pkg_v1))
    pid = emulator.rows("pluginpackage")[0]["pluginpackageid"]
    reg = register(client, load_artifact(dv.pkg_v2))  # local version 1.0.1, Dataverse keeps 1.0.0
    pkg_action = reg.log.actions[0]
    assert pkg_action.status == "updated" and "stays 1.0.0" in pkg_action.detail
    patches = [r for r in emulator.requests() if r["method"] == "PATCH"]
    assert len(patches) == 1 and patches[0]["status"] == 200
    [pkg] = emulator.rows("pluginpackage")
    assert pkg["version"] == "1.0.0" and base64.b64decode(pkg["content"]) == dv.pkg_v2.read_bytes()
    assert pkg["pluginpackageid"] == pid
    assert [(a.kind, a.status) for a in reg.log.actions[1:]] == [("pluginassembly", "updated")]
    assert emulator.rows("pluginassembly")[0]["version"] == "1.0.1.0"
    again = register(client, load_artifact(dv.pkg_v2))
    assert [a.status for a in again.log.actions] == ["unchanged", "unchanged"]


def test_missing_package_assembly_is_reported(emulator, client, dv):
    reg = register(client, load_artifact(dv.pkg_v1))
    # Dataverse lost the assembly row (simulated in the database directly)
    with emulator.state.lock:
        emulator.state.db.execute("DELETE FROM pluginassembly")
    from ppmi_build.dataverse.actions import ActionLog

    log = ActionLog()
    check_package_assemblies(client, reg.artifact, reg.id, "unchanged", log)
    [act] = log.failed
    assert act.target == "Contoso.Pkg.Plugins" and "no pluginassembly row" in act.detail
    assert "Contoso.Pkg.Plugins.AccountPlugin" in act.detail


# --- bind -------------------------------------------------------------------------------------------------------


def spec(**kw) -> IdentitySpec:
    return IdentitySpec(application_id=APP, tenant_id=TENANT, **kw)


def test_bind_assembly_idempotent_and_read_back(emulator, client, dv):
    art = load_artifact(dv.asm_v1)
    register(client, art)
    target = find_target(client, art)
    res = bind(client, target, spec())
    assert [(a.kind, a.status) for a in res.log.actions] == [("managedidentity", "created"), ("binding", "created")]
    [mi] = emulator.rows("managedidentity")
    assert mi["managedidentityid"] == identity_id_for(target, spec())
    assert (mi["applicationid"], mi["tenantid"], mi["credentialsource"], mi["subjectscope"], mi["version"]) == \
        (APP.lower(), TENANT, 2, 1, 2)
    assert mi["name"] == "Contoso.Plugins Identity"
    assert emulator.rows("pluginassembly")[0]["managedidentityid"] == mi["managedidentityid"]
    assert res.to_json()["component"]["managedidentityid"] == mi["managedidentityid"]
    assert res.log.ids == {"managedidentity": mi["managedidentityid"], "pluginassembly": target.id}

    n = len(writes(emulator))
    again = bind(client, find_target(client, art), spec())
    assert [a.status for a in again.log.actions] == ["unchanged", "unchanged"] and not again.log.changed
    assert len(writes(emulator)) == n


def test_version_is_always_sent(emulator, client, dv):
    """version 0 must be stored as 0, not left null (a row without version is v0 by omission, domain-spec §2.3)."""
    art = load_artifact(dv.asm_v1)
    register(client, art)
    bind(client, find_target(client, art), spec(version=0))
    assert emulator.rows("managedidentity")[0]["version"] == 0
    res = bind(client, find_target(client, art), spec(version=2))
    assert [(a.kind, a.status) for a in res.log.actions] == [("managedidentity", "updated"), ("binding", "unchanged")]
    assert "version 0 -> 2" in res.log.actions[0].detail
    assert emulator.rows("managedidentity")[0]["version"] == 2


def test_fixed_identity_id_and_rebinding_is_reported(emulator, client, dv):
    art = load_artifact(dv.asm_v1)
    register(client, art)
    first = bind(client, find_target(client, art), spec())
    old = first.identity["managedidentityid"]
    res = bind(client, find_target(client, art), spec(managed_identity_id=FIXED_MI))
    binding = res.log.actions[-1]
    assert binding.status == "updated" and f"was bound to managedidentity {old}" in binding.detail
    assert emulator.rows("pluginassembly")[0]["managedidentityid"] == FIXED_MI
    assert {r["managedidentityid"] for r in emulator.rows("managedidentity")} == {old, FIXED_MI}


def test_other_app_gets_its_own_row(emulator, client, dv):
    art = load_artifact(dv.asm_v1)
    register(client, art)
    bind(client, find_target(client, art), spec())
    other = IdentitySpec(application_id="11111111-2222-3333-4444-555555555555", tenant_id=TENANT)
    res = bind(client, find_target(client, art), other)
    assert [a.status for a in res.log.actions] == ["created", "updated"]
    rows = {r["applicationid"]: r for r in emulator.rows("managedidentity")}
    assert set(rows) == {APP.lower(), "11111111-2222-3333-4444-555555555555"}  # the first row was not rewritten


def test_unbind(emulator, client, dv):
    art = load_artifact(dv.asm_v1)
    register(client, art)
    bind(client, find_target(client, art), spec())
    res = unbind(client, find_target(client, art))
    assert [a.status for a in res.log.actions] == ["updated"]
    assert emulator.rows("pluginassembly")[0]["managedidentityid"] is None
    assert len(emulator.rows("managedidentity")) == 1  # the identity row is kept
    assert [a.status for a in unbind(client, find_target(client, art)).log.actions] == ["unchanged"]


def test_bind_unsigned_assembly_refused_with_hint(emulator, client, dv):
    art = load_artifact(dv.asm_v1_unsigned)
    register(client, art)
    target = find_target(client, art)
    with pytest.raises(DataverseError) as ei:
        bind(client, target, spec())
    assert ei.value.code == "0x80040216" and "not signed" in ei.value.hint
    assert emulator.rows("pluginassembly")[0]["managedidentityid"] is None
    # the re-run after signing reuses the identity row created before the failure: no orphan
    register(client, load_artifact(dv.asm_v1))
    bind(client, find_target(client, art), spec())
    assert len(emulator.rows("managedidentity")) == 1


def test_bind_package_binds_the_package_row(emulator, client, dv):
    art = load_artifact(dv.pkg_v1)
    register(client, art)
    target = find_target(client, art)
    assert isinstance(target, Target) and target.kind == "pluginpackage"
    bind(client, target, spec(managed_identity_id=FIXED_MI))
    assert emulator.rows("pluginpackage")[0]["managedidentityid"] == FIXED_MI
    assert emulator.rows("pluginassembly")[0]["managedidentityid"] is None


def test_not_registered_and_bad_guids(client, dv):
    with pytest.raises(BadInput, match="not registered.*ppmi-build register"):
        find_target(client, load_artifact(dv.asm_v1))
    with pytest.raises(GuidError, match="application_id"):
        IdentitySpec(application_id="nope", tenant_id=TENANT)
    with pytest.raises(GuidError, match="tenant_id"):
        IdentitySpec(application_id=APP, tenant_id="")
