"""Sandbox lint through the CLI: ``register --plan``, ``register`` and ``doctor`` warn, naming the assembly or
package and the fix, in text (stderr / the doctor table) and in ``--json`` (``sandbox_warnings``, doctor's
``checks``); a warning is never a refusal.

Inputs are compiled by Mono ``mcs`` (a strong-named assembly referencing ``Contoso.Helper`` with the weak copy of
``Contoso.Helper.dll`` beside it, as a build folder holds it; an ``Azure.Identity`` 1.10.0.0 assembly) and
packed by :mod:`tests.nupkg_builder`; the rules and their sources are in
``toolchain/ppmi_build/project/sandbox_rules.toml`` (build-and-package "Sign assemblies"; Azure.Identity above 1.9
pulls System.ClientModel).
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.emulator_fixture)
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compile_assembly
from tests.emulator_fixture import emulator, emulator_env  # noqa: F401
from tests.nupkg_builder import build_nupkg

TENANT = "7f2c1900-9fd4-4b89-91d3-79a649996f0a"
APP = "9f3d07ca-381e-43fc-8bef-76dd03b460d6"

USES_DEP = """
namespace Contoso.StrongUser {
    public sealed class Uses { public static string Name() { return typeof(Contoso.Helper.SamplePlugin).Name; } }
}
"""
WEAK_REFERENCE = "the strong-named assembly Contoso.StrongUser references Contoso.Helper 1.0.0.0, which is not " \
                 "strong-named"
WEAK_FIX = "strong-name it and merge it in, or deploy as a plug-in package"


@pytest.fixture(scope="module")
def libs(tmp_path_factory, snk_file):
    d: Path = tmp_path_factory.mktemp("sandbox-cli")
    # mcs refuses a strong-named assembly referencing a weak one (CS1577), so it is compiled against a strong-named
    # Contoso.Helper; the folder it sits in then holds the weak copy, as a build output folder would.
    (d / "strong").mkdir()
    (d / "azure").mkdir()
    strong_helper = compile_assembly(d / "strong" / "Contoso.Helper.dll", ns="Contoso.Helper", keyfile=snk_file)
    user = compile_assembly(d / "Contoso.StrongUser.dll", keyfile=snk_file, references=[strong_helper],
                            source=USES_DEP)
    compile_assembly(d / "Contoso.Helper.dll", ns="Contoso.Helper")
    azure = compile_assembly(d / "azure" / "Azure.Identity.dll", ns="Azure.Identity", version="1.10.0.0",
                             source='[assembly: System.Reflection.AssemblyVersion("1.10.0.0")]\n'
                                    'namespace Azure.Identity.SamplePlugin { public class X {} }')
    return {"strong_user": user, "azure": azure}


@pytest.fixture
def project(tmp_path, monkeypatch, emulator_env):
    (tmp_path / "ppmi.toml").write_text(
        "[plugin]\nkind = \"assembly\"\n\n"
        f"[identity]\ntenant_id = \"{TENANT}\"\napplication_id = \"{APP}\"\nversion = 2\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def warnings_on_stderr(r) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]


def test_register_plan_warns_about_a_weak_reference(cli, project, emulator, libs):
    mark = len(emulator.requests())
    r = cli("register", "--env", "emu", libs["strong_user"], "--plan", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    (w,) = doc["sandbox_warnings"]
    assert WEAK_REFERENCE in w and WEAK_FIX in w and str(libs["strong_user"]) in w
    assert [ln for ln in warnings_on_stderr(r) if WEAK_REFERENCE in ln] == [f"warning: {w}"]
    assert [q for q in emulator.requests()[mark:] if q["method"] != "GET"] == []  # --plan writes nothing
    assert emulator.rows("pluginassembly") == []

    text = cli("register", "--env", "emu", libs["strong_user"], "--plan")  # the text form says the same
    assert text.exit_code == 0 and any(WEAK_REFERENCE in ln for ln in warnings_on_stderr(text))


def test_register_warns_and_still_registers(cli, project, emulator, libs):
    r = cli("register", "--env", "emu", libs["strong_user"], "--json")
    assert r.exit_code == 0, r.stderr
    assert any(WEAK_REFERENCE in w for w in json.loads(r.stdout)["sandbox_warnings"])
    assert [row["name"] for row in emulator.rows("pluginassembly")] == ["Contoso.StrongUser"]


def test_register_plan_names_the_known_bad_package(cli, project, emulator, libs, plain_dll, tmp_path):
    pkg = build_nupkg(tmp_path / "Contoso.Plugins.1.0.0.nupkg", dlls=[plain_dll, libs["azure"]])
    r = cli("register", "--env", "emu", pkg, "--kind", "package", "--plan", "--json")
    assert r.exit_code == 0, r.stderr
    found = [w for w in json.loads(r.stdout)["sandbox_warnings"] if "Azure.Identity 1.10.0.0" in w]
    assert found and "Contoso.Plugins.1.0.0.nupkg!" in found[0] and "System.ClientModel" in found[0]
    assert any("Azure.Identity 1.10.0.0" in ln for ln in warnings_on_stderr(r))


def test_clean_assembly_has_no_sandbox_warning(cli, project, emulator, strong_named_dll):
    r = cli("register", "--env", "emu", strong_named_dll, "--plan", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["sandbox_warnings"] == []


def test_doctor_checks_each_artifact(cli, project, libs, strong_named_dll):
    r = cli("doctor", "--offline", "--artifact", libs["strong_user"], "--artifact", strong_named_dll, "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    weak = checks["sandbox:Contoso.StrongUser.dll"]
    assert weak["category"] == "sandbox" and weak["status"] == "warn"
    assert WEAK_REFERENCE in weak["detail"] and WEAK_FIX in weak["detail"]
    assert checks[f"sandbox:{strong_named_dll.name}"]["status"] == "ok"
    assert not any(c["status"] == "fail" and c["category"] == "sandbox" for c in checks.values())

    text = cli("doctor", "--offline", "--artifact", libs["strong_user"])
    line = next(ln for ln in text.stdout.splitlines() if "sandbox:Contoso.StrongUser.dll" in ln)
    assert line.startswith("WARN") and WEAK_REFERENCE in line


def test_doctor_lints_the_last_build_output(cli, project, libs):
    (project / ".ppmi").mkdir()
    (project / ".ppmi" / "last-build.json").write_text(json.dumps({"primary": str(libs["strong_user"])}))
    r = cli("doctor", "--offline", "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["sandbox:Contoso.StrongUser.dll"]["status"] == "warn"


def test_doctor_missing_artifact_fails(cli, project, tmp_path):
    r = cli("doctor", "--offline", "--artifact", tmp_path / "nope.dll", "--json")
    assert r.exit_code == 1
    check = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["sandbox:nope.dll"]
    assert check["status"] == "fail" and "no such file" in check["detail"]
