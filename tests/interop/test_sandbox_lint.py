"""Sandbox lint on assemblies compiled by Mono ``mcs`` and packages built by :mod:`tests.nupkg_builder`.

The rules and their sources are in ``toolchain/ppmi_build/project/sandbox_rules.toml``; the facts checked here
come from the compiled inputs (``mcs -keyfile`` strong-names, ``-r:`` makes the AssemblyRef rows).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ppmi_build.project.sandbox import lint_artifact, lint_assembly, lint_package
from tests.conftest import compile_assembly
from tests.nupkg_builder import build_nupkg

USES_DEP = """
namespace Contoso.{ns} {{
    public sealed class Uses {{ public static string Name() {{ return typeof({dep}.SamplePlugin).Name; }} }}
}}
"""


@pytest.fixture(scope="module")
def libs(tmp_path_factory, snk_file):
    d: Path = tmp_path_factory.mktemp("sandbox")
    # mcs refuses a strong-named assembly that references a weak one (CS1577; csc only warns, CS8002), so the
    # referencer is compiled against a strong-named Contoso.Helper and the build folder then holds the weak copy.
    (d / "strong").mkdir()
    strong_helper = compile_assembly(d / "strong" / "Contoso.Helper.dll", ns="Contoso.Helper", keyfile=snk_file)
    strong_refs_plain = compile_assembly(
        d / "Contoso.StrongUser.dll", keyfile=snk_file, references=[strong_helper],
        source=USES_DEP.format(ns="StrongUser", dep="Contoso.Helper"))
    plain = compile_assembly(d / "Contoso.Helper.dll", ns="Contoso.Helper")
    azure = compile_assembly(d / "Azure.Identity.dll", ns="Azure.Identity", version="1.10.0.0",
                             source='[assembly: System.Reflection.AssemblyVersion("1.10.0.0")]\n'
                                    'namespace Azure.Identity.SamplePlugin { public class X {} }')
    return {"dir": d, "plain": plain, "strong_refs_plain": strong_refs_plain, "azure": azure}


def test_strong_named_assembly_referencing_a_weak_one(libs):
    (w,) = lint_assembly(libs["strong_refs_plain"])
    assert "Contoso.StrongUser" in w and "references Contoso.Helper 1.0.0.0" in w and "not strong-named" in w


def test_clean_strong_named_assembly_has_no_warning(strong_named_dll):
    assert lint_assembly(strong_named_dll) == []


def test_oversized_standalone_assembly(libs, tmp_path, monkeypatch):
    from ppmi_build.project import sandbox

    monkeypatch.setitem(sandbox.rules()["limits"], "assembly_bytes", 1024)  # the mcs output is a few kB
    (w,) = lint_assembly(libs["plain"])
    assert "over Dataverse's 0 MB limit" in w or "limit for a plug-in assembly" in w


def test_known_bad_azure_identity_in_a_package(libs, plain_dll, tmp_path):
    pkg = build_nupkg(tmp_path / "p.nupkg", dlls=[plain_dll, libs["azure"]])
    warnings = lint_package(pkg)
    assert any("Azure.Identity 1.10.0.0" in w and "System.ClientModel" in w and "1.9" in w for w in warnings)


def test_package_missing_a_referenced_assembly(libs, tmp_path, tmp_path_factory):
    from tests.xrm_sdk import surface_dll

    sdk = surface_dll(tmp_path_factory)
    user = compile_assembly(tmp_path / "Contoso.PkgPlugin.dll", references=[libs["plain"], sdk],
                            source=USES_DEP.format(ns="PkgPlugin", dep="Contoso.Helper").replace(
                                "public sealed class Uses", "public sealed class Uses : Microsoft.Xrm.Sdk.IPlugin")
                            .replace("{ public static", "{ public void Execute(System.IServiceProvider s) {} "
                                     "public static"))
    pkg = build_nupkg(tmp_path / "p.nupkg", dlls=[user])
    assert any("references Contoso.Helper" in w and "not in the package" in w for w in lint_artifact(pkg))
    ok = build_nupkg(tmp_path / "ok.nupkg", dlls=[user, libs["plain"]])
    assert not any("not in the package" in w for w in lint_package(ok))
