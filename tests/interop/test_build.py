"""``ppmi-build build`` against the stand-in ``dotnet`` (tests/fake_dotnet/dotnet: compiles with Mono mcs,
prints MSBuild-format diagnostics, writes real NuGet packages), against a real ``dotnet`` when one is
installed, the MSBuild diagnostic parser, the csproj editor and the metadata reader.
Verifiers: sn, ikdasm, mono reflection, zipfile/unzip, lxml, git-free byte comparisons."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from ppmi_build.assembly.metadata import plugin_types, read_assembly_identity
from ppmi_build.errors import ProjectError
from ppmi_build.project import csproj as csprojmod
from ppmi_build.project.dotnet import Diagnostic, last_build, parse_diagnostic
from ppmi_build.project.scaffold import scaffold
from tests.conftest import require_tool, run_tool
from tests.xrm_sdk import FAKE_DOTNET, mcs_compile, surface_dll


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def fake(monkeypatch, tmp_path_factory, tmp_path):
    """Point ppmi-build at the stand-in dotnet; returns the invocation log path."""
    require_tool("mcs")
    require_tool("python3")
    log = tmp_path / "dotnet-calls.jsonl"
    monkeypatch.setenv("PPMI_DOTNET", str(FAKE_DOTNET))
    monkeypatch.setenv("FAKE_DOTNET_REFERENCES", str(surface_dll(tmp_path_factory)))
    monkeypatch.setenv("FAKE_DOTNET_LOG", str(log))
    return log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def new_project(tmp_path: Path, kind: str, name: str = "Contoso.Plugins") -> Path:
    root = tmp_path / f"{name}-{kind}"
    scaffold(root, name, kind=kind)
    return root


def build_json(cli, root: Path, *extra: str):
    r = cli("build", root, "--json", *extra)
    return r, (json.loads(r.stdout) if r.stdout.strip() else None)


# --- the stand-in dotnet ---------------------------------------------------------------------

@pytest.mark.interop
def test_assembly_build_reports_identity_verified_by_sn_and_ikdasm(fake, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PPMI_PFX_PASSWORD", "s3cret-pfx-password")
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", "eyJ.secret.token")
    root = new_project(tmp_path, "assembly")
    r, doc = build_json(cli, root)
    assert r.exit_code == 0, r.output
    (art,) = doc["artifacts"]
    dll = Path(art["path"])
    assert art["kind"] == "assembly" and dll == root / "src/bin/Release/net462/Contoso.Plugins.dll"
    assert art["sha256"] == sha(dll) and art["size"] == dll.stat().st_size
    a = art["assembly"]
    assert (a["name"], a["version"], a["culture"]) == ("Contoso.Plugins", "1.0.0.0", "neutral")
    assert run_tool("sn", "-q", "-v", dll).returncode == 0
    sn = run_tool("sn", "-T", dll).stdout
    assert re.search(r"Public Key Token:\s*([0-9a-f]{16})", sn).group(1) == a["public_key_token"]
    ik = run_tool("ikdasm", "-assembly", dll).stdout
    assert re.search(r"^Name:\s*(\S+)", ik, re.M).group(1) == a["name"]
    assert re.search(r"^Version:\s*(\S+)", ik, re.M).group(1) == a["version"]
    assert a["plugin_types"] == ["Contoso.Plugins.AcquireTokenPlugin"]
    token = a["public_key_token"]
    assert a["full_name"] == f"Contoso.Plugins, Version=1.0.0.0, Culture=neutral, PublicKeyToken={token}"
    assert doc["primary"] == str(dll) and doc["kind"] == "assembly"
    # the runner asked for the configuration and English output, and passed no secret on the command line
    (call,) = calls(fake)
    assert call["argv"][:1] == ["build"] and call["argv"][2:4] == ["-c", "Release"]
    assert call["ui_language"] == "en"
    assert not {"PPMI_PFX_PASSWORD", "PPMI_ACCESS_TOKEN"} & set(call["ppmi_env"])  # secrets kept from dotnet
    assert "s3cret" not in json.dumps(call) and "PPMI_DOTNET" in call["ppmi_env"]
    assert last_build(root)["primary"] == str(dll)


@pytest.mark.interop
def test_package_build_returns_a_real_nuget_package(fake, cli, tmp_path):
    root = new_project(tmp_path, "package", "Contoso.Pkg")
    r, doc = build_json(cli, root)
    assert r.exit_code == 0, r.output
    pkg, dll = (Path(a["path"]) for a in doc["artifacts"])
    assert pkg == root / "src/bin/Release/Contoso.Pkg.1.0.0.nupkg" and doc["primary"] == str(pkg)
    with zipfile.ZipFile(pkg) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert {"_rels/.rels", "[Content_Types].xml", "Contoso.Pkg.nuspec", "lib/net462/Contoso.Pkg.dll"} <= set(names)
        nuspec = etree.fromstring(z.read("Contoso.Pkg.nuspec"))
        ns = {"n": nuspec.nsmap[None]}
        assert nuspec.findtext("n:metadata/n:id", namespaces=ns) == "Contoso.Pkg"
        assert nuspec.findtext("n:metadata/n:version", namespaces=ns) == "1.0.0"
        assert hashlib.sha256(z.read("lib/net462/Contoso.Pkg.dll")).hexdigest() == sha(dll)
    unzip = run_tool("unzip", "-tq", pkg)
    assert unzip.returncode == 0, unzip.stdout
    p = doc["artifacts"][0]["package"]
    assert (p["id"], p["version"]) == ("Contoso.Pkg", "1.0.0")
    (inner,) = p["assemblies"]
    assert inner["path"] == "lib/net462/Contoso.Pkg.dll" and inner["public_key_token"] is None
    assert inner["plugin_types"] == ["Contoso.Pkg.AcquireTokenPlugin"]


@pytest.mark.interop
def test_version_bump_never_returns_the_old_package(fake, cli, tmp_path):
    root = new_project(tmp_path, "package", "Contoso.Pkg")
    r, first = build_json(cli, root)
    old = Path(first["primary"])
    old_sha = sha(old)
    changes = csprojmod.bump_version(root / "src/Contoso.Pkg.csproj")
    assert changes == {"AssemblyVersion": ("1.0.0.0", "1.0.1.0"), "FileVersion": ("1.0.0.0", "1.0.1.0")}
    r, second = build_json(cli, root)
    assert r.exit_code == 0, r.output
    new = Path(second["primary"])
    assert new.name == "Contoso.Pkg.1.0.1.nupkg"
    assert [a["path"] for a in second["artifacts"] if a["kind"] == "package"] == [str(new)]
    assert second["stale"] == [str(old)] and sha(old) == old_sha  # left in place, untouched, not returned
    assert second["artifacts"][1]["assembly"]["version"] == "1.0.1.0"
    assert last_build(root)["primary"] == str(new)


@pytest.mark.interop
def test_stale_package_with_the_same_name_is_rebuilt_not_returned(fake, cli, tmp_path):
    root = new_project(tmp_path, "package", "Contoso.Pkg")
    r, first = build_json(cli, root)
    pkg = Path(first["primary"])
    dll = root / "src/bin/Release/net462/Contoso.Pkg.dll"
    # an old package of the same name, newer than the assembly (as after an incremental build)
    stale = tmp_path / "stale.nupkg"
    with zipfile.ZipFile(stale, "w") as z:
        z.writestr("Contoso.Pkg.nuspec", "<package><metadata><id>Contoso.Pkg</id><version>1.0.0</version>"
                                         "</metadata></package>")
        z.writestr("lib/net462/Contoso.Pkg.dll", b"an assembly from an earlier build")
    shutil.copyfile(stale, pkg)
    future = time.time() + 3600
    os.utime(pkg, (future, future))
    # control: the stand-in, like the reported behaviour, does not rewrite a package newer than the DLL
    env = dict(os.environ)
    res = subprocess.run([str(FAKE_DOTNET), "build", str(root / "src/Contoso.Pkg.csproj"), "-c", "Release"],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0 and sha(pkg) == sha(stale)
    # ppmi-build moves it aside first, so the package it returns is from this run
    r, doc = build_json(cli, root)
    assert r.exit_code == 0, r.output
    assert doc["primary"] == str(pkg) and sha(pkg) != sha(stale)
    with zipfile.ZipFile(pkg) as z:
        assert hashlib.sha256(z.read("lib/net462/Contoso.Pkg.dll")).hexdigest() == sha(dll)
    assert doc["artifacts"][0]["sha256"] == sha(pkg) and doc["stale"] == []
    assert not list(pkg.parent.glob(".ppmi-stale-*"))


@pytest.mark.interop
def test_failing_build_exits_3_with_a_readable_summary_and_keeps_the_old_package(fake, cli, tmp_path):
    root = new_project(tmp_path, "package", "Contoso.Pkg")
    r, first = build_json(cli, root)
    pkg = Path(first["primary"])
    before = sha(pkg)
    bad = root / "src/Broken.cs"
    bad.write_text("namespace Contoso.Pkg\n{\n    public class Broken\n    {\n        int x = 1\n    }\n}\n")
    # what the compiler itself says about the file
    direct = mcs_compile(tmp_path / "direct.dll", [bad])
    line, col, code = re.search(r"Broken\.cs\((\d+),(\d+)\): error (CS\d+)", direct.stdout + direct.stderr).groups()
    r, doc = build_json(cli, root)
    assert r.exit_code == 3
    errors = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert [(e["file"], e["line"], e["column"], e["code"]) for e in errors] == [(str(bad), int(line), int(col), code)]
    assert errors[0]["project"] == str(root / "src/Contoso.Pkg.csproj")
    assert doc["error"]["exit_code"] == 3 and f"Broken.cs({line},{col}): error {code}" in doc["error"]["message"]
    assert "build failed: 1 error" in r.stderr and "Broken.cs" in r.stderr and f"{line}:{col}" in r.stderr
    assert sha(pkg) == before and not list(pkg.parent.glob(".ppmi-stale-*"))
    assert last_build(root)["primary"] == str(pkg)  # the record of the last good build is kept
    # human mode: the summary goes to stderr, nothing to stdout
    r = cli("build", root)
    assert r.exit_code == 3 and r.stdout == "" and "error: dotnet build failed" in r.stderr


@pytest.mark.interop
def test_output_is_streamed_and_json_stdout_stays_clean(fake, cli, tmp_path):
    root = new_project(tmp_path, "assembly")
    r = cli("build", root, "--json")
    assert r.exit_code == 0
    json.loads(r.stdout)  # exactly one JSON document
    assert "Build succeeded." in r.stderr and "Contoso.Plugins ->" in r.stderr
    from ppmi_build.project import dotnet

    lines: list[str] = []
    dotnet.build(root, on_output=lines.append, record=False)
    assert lines[0].strip() == "Determining projects to restore..." and "Build succeeded." in lines


def test_progress_indicator_on_a_terminal():
    import io

    from ppmi_build.cli.build import _Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    p = _Progress("dotnet build", stream=s)
    p("  Determining projects to restore...")
    p("/x/A.cs(1,2): error CS1002: ; expected [/x/A.csproj]")
    p.done()
    out = s.getvalue()
    assert "\r" in out and "dotnet build" in out
    assert "/x/A.cs(1,2): error CS1002: ; expected [/x/A.csproj]\n" in out  # diagnostics stay on screen


def test_missing_dotnet_says_how_to_install_and_exits_3(cli, tmp_path, monkeypatch):
    root = new_project(tmp_path, "package")
    monkeypatch.delenv("PPMI_DOTNET", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    r = cli("build", root, "--json")
    assert r.exit_code == 3
    assert "dotnet was not found" in r.stderr and "install the .NET SDK" in r.stderr
    assert json.loads(r.stdout)["error"]["exit_code"] == 3
    monkeypatch.setenv("PPMI_DOTNET", str(tmp_path / "nope" / "dotnet"))
    r = cli("build", root)
    assert r.exit_code == 3 and "PPMI_DOTNET" in r.stderr


def test_csproj_that_is_not_xml_is_refused_before_dotnet_runs(fake, cli, tmp_path):
    root = new_project(tmp_path, "package")
    proj = root / "src/Contoso.Plugins.csproj"
    proj.write_text("<Project Sdk=\"Microsoft.NET.Sdk\">\n  <PropertyGroup>\n</Project>\n")
    before = proj.read_bytes()
    r = cli("build", root, "--json")
    assert r.exit_code == 2
    assert "Contoso.Plugins.csproj is not well-formed XML" in r.stderr
    assert proj.read_bytes() == before and calls(fake) == []


def test_no_project_and_bad_configuration(fake, cli, tmp_path):
    r = cli("build", tmp_path)
    assert r.exit_code == 2 and "no .csproj" in r.stderr
    r = cli("build", tmp_path / "missing")
    assert r.exit_code == 2 and "does not exist" in r.stderr
    root = new_project(tmp_path, "package")
    r = cli("build", root, "-c", "Release;rm -rf /")
    assert r.exit_code == 2 and "--configuration" in r.stderr
    assert calls(fake) == []


def test_real_dotnet_when_installed(cli, tmp_path, monkeypatch):
    """Builds the generated project with the real .NET SDK (needs nuget.org for the package references)."""
    real = shutil.which("dotnet")
    if real is None:
        pytest.skip("the .NET SDK (dotnet) is not installed; the stand-in covers the runner")
    monkeypatch.delenv("PPMI_DOTNET", raising=False)
    root = new_project(tmp_path, "assembly")
    r, doc = build_json(cli, root)
    assert r.exit_code == 0, r.stderr[-3000:]
    art = doc["artifacts"][0]
    assert art["assembly"]["name"] == "Contoso.Plugins" and art["assembly"]["public_key_token"]
    assert art["assembly"]["plugin_types"] == ["Contoso.Plugins.AcquireTokenPlugin"]


# --- MSBuild diagnostics ------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    # the four examples of https://learn.microsoft.com/visualstudio/msbuild/msbuild-diagnostic-format-for-tasks
    ("Main.cs(17,20): warning CS0168: The variable 'x' is declared but never used",
     Diagnostic("warning", "CS0168", "The variable 'x' is declared but never used", "Main.cs", 17, 20)),
    (r"C:\dir1\strings.resx(2) : error BC30188: Declaration expected.",
     Diagnostic("error", "BC30188", "Declaration expected.", r"C:\dir1\strings.resx", 2, None)),
    ("cl : Command line warning D4024 : unrecognized source file type 'file1.cs', object . . .",
     Diagnostic("warning", "D4024", "unrecognized source file type 'file1.cs', object . . .", origin="cl")),
    ("error CS0006: Metadata file 'System.dll' could not be found.",
     Diagnostic("error", "CS0006", "Metadata file 'System.dll' could not be found.")),
    # what `dotnet build` prints: the project in brackets, NuGet warnings on the project file, node prefixes
    ("/src/A.cs(5,13): error CS1002: ; expected [/src/A.csproj]",
     Diagnostic("error", "CS1002", "; expected", "/src/A.cs", 5, 13, project="/src/A.csproj")),
    ("/src/A.csproj : warning NU1603: X 1.0 depends on Y (>= 2.0) but Y 2.0 was not found. [/src/A.csproj]",
     Diagnostic("warning", "NU1603", "X 1.0 depends on Y (>= 2.0) but Y 2.0 was not found.", "/src/A.csproj",
                project="/src/A.csproj")),
    ("1>C:\\p\\A.cs(3,1,3,9): error CS0246: The type 'Foo' could not be found",
     Diagnostic("error", "CS0246", "The type 'Foo' could not be found", "C:\\p\\A.cs", 3, 1)),
    ("MSBUILD : error MSB1009: Project file does not exist.",
     Diagnostic("error", "MSB1009", "Project file does not exist.", origin="MSBUILD")),
])
def test_parse_diagnostic(line, expected):
    assert parse_diagnostic(line) == expected


@pytest.mark.parametrize("line", [
    "Build FAILED.", "    0 Error(s)", "    2 Warning(s)", "  Contoso.Plugins -> /x/bin/Release/net462/X.dll",
    "Time Elapsed 00:00:01.23", "  All projects are up-to-date for restore.", "",
])
def test_non_diagnostics_are_ignored(line):
    assert parse_diagnostic(line) is None


# --- csproj edits ---------------------------------------------------------------------------------

HANDWRITTEN = (
    "\ufeff<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n"
    "<!-- my project -->\r\n"
    "<Project Sdk='Microsoft.NET.Sdk'>\r\n"
    "\r\n"
    "\t<PropertyGroup>\r\n"
    "\t\t<TargetFramework>net462</TargetFramework>\r\n"
    "\t\t<AssemblyVersion>1.2.3.4</AssemblyVersion>   <!-- keep in sync -->\r\n"
    "\t\t<FileVersion></FileVersion>\r\n"
    "\t\t<SignAssembly />\r\n"
    "\t\t<Description>Tom &amp; Jerry &lt;plugins&gt;</Description>\r\n"
    "\t</PropertyGroup>\r\n"
    "\t<PropertyGroup Condition=\" '$(Configuration)' == 'Debug' \">\r\n"
    "\t\t<AssemblyVersion>9.9.9.9</AssemblyVersion>\r\n"
    "\t</PropertyGroup>\r\n"
    "</Project>\r\n"
)


def test_csproj_edits_change_only_the_values(tmp_path):
    path = tmp_path / "Hand.csproj"
    path.write_bytes(HANDWRITTEN.encode("utf-8"))
    changes = csprojmod.set_version(path, "2.0.0.0")
    assert changes == {"AssemblyVersion": ("1.2.3.4", "2.0.0.0"), "FileVersion": ("", "2.0.0.0")}
    csprojmod.set_signing(path, "Hand.snk")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    text = raw.decode("utf-8-sig")
    diff = [d for d in difflib.ndiff(HANDWRITTEN.lstrip("\ufeff").splitlines(), text.splitlines())
            if d[:1] in "+-"]
    assert sorted(diff) == sorted([
        "- \t\t<AssemblyVersion>1.2.3.4</AssemblyVersion>   <!-- keep in sync -->",
        "- \t\t<FileVersion></FileVersion>",
        "- \t\t<SignAssembly />",
        "+ \t\t<AssemblyVersion>2.0.0.0</AssemblyVersion>   <!-- keep in sync -->",
        "+ \t\t<FileVersion>2.0.0.0</FileVersion>",
        "+ \t\t<SignAssembly>true</SignAssembly>",
        "+ \t\t<AssemblyOriginatorKeyFile>Hand.snk</AssemblyOriginatorKeyFile>",
    ])
    # an independent parse sees the new values and the untouched conditional one
    root = etree.fromstring(raw)
    groups = root.findall("PropertyGroup")
    assert groups[0].findtext("AssemblyVersion") == "2.0.0.0" and groups[1].findtext("AssemblyVersion") == "9.9.9.9"
    assert groups[0].findtext("Description") == "Tom & Jerry <plugins>"
    proj = csprojmod.Project.load(path)
    assert proj.get("SignAssembly") == "true" and proj.conditional() == [
        ("AssemblyVersion", "9.9.9.9", " '$(Configuration)' == 'Debug' ")]


@pytest.mark.interop
def test_generated_csproj_bump_is_minimal_and_builds_with_the_new_version(fake, cli, tmp_path):
    root = new_project(tmp_path, "assembly")
    path = root / "src/Contoso.Plugins.csproj"
    before = path.read_text()
    assert csprojmod.bump_version(path, "minor") == {"AssemblyVersion": ("1.0.0.0", "1.1.0.0"),
                                                     "FileVersion": ("1.0.0.0", "1.1.0.0")}
    after = path.read_text()
    changed = [d for d in difflib.ndiff(before.splitlines(), after.splitlines()) if d[:1] in "+-"]
    assert sorted(changed) == sorted([
        "-     <AssemblyVersion>1.0.0.0</AssemblyVersion>", "-     <FileVersion>1.0.0.0</FileVersion>",
        "+     <AssemblyVersion>1.1.0.0</AssemblyVersion>", "+     <FileVersion>1.1.0.0</FileVersion>"])
    r, doc = build_json(cli, root)
    assert r.exit_code == 0, r.output
    dll = doc["primary"]
    assert doc["artifacts"][0]["assembly"]["version"] == "1.1.0.0"
    assert re.search(r"^Version:\s*1\.1\.0\.0$", run_tool("ikdasm", "-assembly", dll).stdout, re.M)


def test_csproj_bad_input(tmp_path):
    bad = tmp_path / "Bad.csproj"
    bad.write_text("this is not xml")
    with pytest.raises(ProjectError, match="not well-formed XML"):
        csprojmod.bump_version(bad)
    assert bad.read_text() == "this is not xml" and [p.name for p in tmp_path.iterdir()] == ["Bad.csproj"]
    other = tmp_path / "Other.csproj"
    other.write_text("<Root/>")
    with pytest.raises(ProjectError, match="not <Project>"):
        csprojmod.Project.load(other)
    beta = tmp_path / "Beta.csproj"
    beta.write_text("<Project><PropertyGroup><Version>1.0.0-beta</Version></PropertyGroup></Project>")
    with pytest.raises(ProjectError, match="not 2-4 dot-separated numbers"):
        csprojmod.bump_version(beta)
    assert "1.0.0-beta" in beta.read_text()
    with pytest.raises(ProjectError):
        csprojmod.bump("1.0.0.0", "huge")


@pytest.mark.parametrize("version, part, expected", [
    ("1.0.0.0", "build", "1.0.1.0"), ("1.2.3", "minor", "1.3.0"), ("1.0", "revision", "1.0.0.1"),
    ("1.9.9.9", "major", "2.0.0.0"), ("1.0.0", "patch", "1.0.1"),
])
def test_bump(version, part, expected):
    assert csprojmod.bump(version, part) == expected


# --- plug-in type discovery against Mono reflection ----------------------------------------------------

EDGE_CASES = r"""
using System;
using System.Reflection;
using Microsoft.Xrm.Sdk;
[assembly: AssemblyVersion("3.1.0.7")]
namespace Edge
{
    public class Direct : IPlugin { public void Execute(IServiceProvider s) { } }
    public abstract class Base : IPlugin { public void Execute(IServiceProvider s) { } }
    public class FromBase : Base { }
    public class FromFromBase : FromBase { }
    public interface IMyPlugin : IPlugin { }
    public class ViaInterface : IMyPlugin { public void Execute(IServiceProvider s) { } }
    internal class Hidden : IPlugin { public void Execute(IServiceProvider s) { } }
    public class Outer { public class NestedPlugin : IPlugin { public void Execute(IServiceProvider s) { } }
                         private class PrivateNested : IPlugin { public void Execute(IServiceProvider s) { } } }
    public class Generic<T> : IPlugin { public void Execute(IServiceProvider s) { } }
    public class NotAPlugin { }
}
namespace Other { public class NoNamespaceClash : Edge.Base { } }
public class GlobalPlugin : IPlugin { public void Execute(IServiceProvider s) { } }
"""

LISTER = r"""
using System; using System.Linq; using System.Reflection;
static class P { static int Main(string[] a) {
  var iface = a.Length > 2 ? Assembly.LoadFrom(a[2]).GetType(a[1], true) : Type.GetType(a[1], true);
  foreach (var t in Assembly.LoadFrom(a[0]).GetExportedTypes()
      .Where(t => iface.IsAssignableFrom(t) && t.IsClass && !t.IsAbstract && !t.IsGenericTypeDefinition)
      .Select(t => t.FullName).OrderBy(n => n, StringComparer.Ordinal))
    Console.WriteLine(t);
  return 0;
} }
"""


@pytest.fixture(scope="module")
def lister(tmp_path_factory):
    """A Mono program printing the public concrete classes of an assembly that implement an interface."""
    mono = require_tool("mono")
    folder = tmp_path_factory.mktemp("lister")
    (folder / "Lister.cs").write_text(LISTER)
    exe = folder / "Lister.exe"
    res = mcs_compile(exe, [folder / "Lister.cs"], target="exe")
    assert res.returncode == 0, res.stdout + res.stderr

    def run(assembly: Path, interface: str, cwd: Path, interface_assembly: Path | None = None) -> list[str]:
        args = [mono, str(exe), str(assembly), interface] + ([str(interface_assembly)] if interface_assembly else [])
        res = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
        assert res.returncode == 0, res.stderr
        return sorted(res.stdout.split())

    return run


@pytest.mark.interop
def test_plugin_types_agree_with_reflection(tmp_path, tmp_path_factory, lister):
    sdk = surface_dll(tmp_path_factory)
    shutil.copy(sdk, tmp_path / sdk.name)
    (tmp_path / "Edge.cs").write_text(EDGE_CASES)
    dll = tmp_path / "Edge.dll"
    res = mcs_compile(dll, [tmp_path / "Edge.cs"], references=[sdk])
    assert res.returncode == 0, res.stdout + res.stderr
    expected = lister(dll, "Microsoft.Xrm.Sdk.IPlugin", tmp_path, tmp_path / sdk.name)
    assert "Edge.Outer+NestedPlugin" in expected and "Edge.FromFromBase" in expected
    assert plugin_types(dll) == expected
    ident = read_assembly_identity(dll)
    assert (ident.name, ident.version, ident.culture, ident.public_key_token) == ("Edge", "3.1.0.7", "neutral", None)


@pytest.mark.interop
def test_type_discovery_on_a_large_real_assembly(lister, tmp_path):
    """Mono's mscorlib: thousands of types, nested and generic types, structs, interface inheritance."""
    candidates = sorted(Path("/usr/lib/mono").glob("4.5/mscorlib.dll"))
    if not candidates:
        pytest.skip("Mono's mscorlib.dll not found under /usr/lib/mono/4.5")
    expected = lister(candidates[0], "System.IDisposable", tmp_path)
    assert len(expected) > 20
    assert plugin_types(candidates[0], "System.IDisposable") == expected


@pytest.mark.interop
def test_metadata_bad_input(tmp_path, plain_dll):
    from ppmi_build.errors import InputFileError, PEFormatError

    with pytest.raises(InputFileError):
        read_assembly_identity(tmp_path / "missing.dll")
    junk = tmp_path / "junk.dll"
    junk.write_bytes(b"MZ" + b"\0" * 100)
    with pytest.raises(PEFormatError):
        read_assembly_identity(junk)
    assert read_assembly_identity(plain_dll).public_key_token is None


CROSS_LIB = r"""
using System;
using Microsoft.Xrm.Sdk;
namespace Lib
{
    public abstract class PluginBase : IPlugin { public void Execute(IServiceProvider s) { } }
    public abstract class Middle : PluginBase { }
    public class Concrete : PluginBase { }
    public interface IStep : IPlugin { }
    public class Outer { public abstract class NestedBase : IPlugin { public void Execute(IServiceProvider s) { } } }
}
"""

CROSS_APP = r"""
namespace App
{
    public sealed class FromBase : Lib.PluginBase { }
    public sealed class FromMiddle : Lib.Middle { }
    public sealed class FromConcrete : Lib.Concrete { }
    public sealed class ViaInterface : Lib.IStep { public void Execute(System.IServiceProvider s) { } }
    public sealed class FromNested : Lib.Outer.NestedBase { }
    public abstract class LocalBase : Lib.PluginBase { }
    public sealed class FromLocal : LocalBase { }
    internal sealed class Hidden : Lib.PluginBase { }
    public sealed class NotAPlugin { }
}
"""

CROSS_FAR = "namespace Far { public sealed class FarPlugin : App.LocalBase { } }"


@pytest.fixture(scope="module")
def cross_assemblies(tmp_path_factory):
    """Lib (IPlugin bases) <- App (plug-ins deriving from them) <- Far (deriving from an App base), compiled by mcs
    into one folder with the SDK surface, so Mono reflection can load each with its dependencies."""
    folder = tmp_path_factory.mktemp("cross")
    sdk = Path(shutil.copy(surface_dll(tmp_path_factory), folder))
    out = {}
    refs = [sdk]
    for name, source in (("Lib", CROSS_LIB), ("App", CROSS_APP), ("Far", CROSS_FAR)):
        (folder / f"{name}.cs").write_text(source)
        out[name] = folder / f"{name}.dll"
        res = mcs_compile(out[name], [folder / f"{name}.cs"], references=refs)
        assert res.returncode == 0, res.stdout + res.stderr
        refs = refs + [out[name]]
    return folder, sdk, out


@pytest.mark.interop
def test_plugin_types_across_assemblies_agree_with_reflection(cross_assemblies, lister):
    """Base classes and interfaces in another assembly of the set are followed (chains over three assemblies);
    Mono reflection, which loads the dependencies, is the reference."""
    from ppmi_build.assembly.metadata import read_plugin_assemblies

    folder, sdk, dlls = cross_assemblies
    expected = {n: lister(p, "Microsoft.Xrm.Sdk.IPlugin", folder, sdk) for n, p in dlls.items()}
    assert "App.FromNested" in expected["App"] and expected["Far"] == ["Far.FarPlugin"]
    got = read_plugin_assemblies({n: p.read_bytes() for n, p in dlls.items()})
    assert {n: list(a.plugin_types) for n, a in got.items()} == expected
    assert [a.name for a in got.values()] == ["Lib", "App", "Far"]
    # one assembly alone cannot see through a base class in another (documented limit) ...
    alone = plugin_types(dlls["App"])
    assert set(alone) < set(expected["App"]) and "App.FromBase" not in alone and plugin_types(dlls["Far"]) == []
    # ... unless told which outside types implement IPlugin
    outside = ["Lib.PluginBase", "Lib.Middle", "Lib.Concrete", "Lib.IStep", "Lib.Outer+NestedBase"]
    assert plugin_types(dlls["App"], external=outside) == expected["App"]


@pytest.mark.interop
def test_package_reader_follows_bases_across_its_assemblies(cross_assemblies, lister, tmp_path):
    from ppmi_build.assembly.package import read_package
    from ppmi_build.errors import PackageFormatError
    from ppmi_build.project.dotnet import describe_package
    from tests.nupkg_builder import build_nupkg

    folder, sdk, dlls = cross_assemblies
    native = tmp_path / "Native.dll"
    native.write_bytes(b"MZ" + b"\0" * 100)  # not a .NET assembly (a native helper stand-in)
    pkg = build_nupkg(tmp_path / "Cross.1.0.0.nupkg", package_id="Cross", version="1.0.0",
                      dlls=[dlls["Lib"], dlls["App"], dlls["Far"], native])
    expected = {f"lib/net462/{n}.dll": lister(p, "Microsoft.Xrm.Sdk.IPlugin", folder, sdk) for n, p in dlls.items()}
    with pytest.raises(PackageFormatError, match=r"Cross\.1\.0\.0\.nupkg!lib/net462/Native\.dll"):
        read_package(pkg.read_bytes(), label=pkg.name)
    info = read_package(pkg.read_bytes(), label=pkg.name, skip_non_assemblies=True)
    assert (info.id, info.version, info.signed) == ("Cross", "1.0.0", False)
    assert {n: list(a.plugin_types) for n, a in info.assemblies.items()} == expected
    record = describe_package(pkg)
    assert (record["id"], record["version"]) == ("Cross", "1.0.0")
    assert {a["path"]: a["plugin_types"] for a in record["assemblies"]} == expected
    # NuGet's PackageArchiveReader.GetNuspec refuses a package with more than one root .nuspec (MultipleNuspecFiles)
    with zipfile.ZipFile(pkg, "a") as z:
        z.writestr("Second.NUSPEC", "<package><metadata><id>X</id><version>1.0.0</version></metadata></package>")
    with pytest.raises(PackageFormatError, match="2 .nuspec files"):
        read_package(pkg.read_bytes(), label=pkg.name)


def test_timeout_stops_a_hanging_dotnet(cli, tmp_path, monkeypatch):
    root = new_project(tmp_path, "package")
    hang = tmp_path / "dotnet"
    hang.write_text("#!/bin/sh\necho '  Determining projects to restore...'\nsleep 60\necho never\n")
    hang.chmod(0o755)
    monkeypatch.setenv("PPMI_DOTNET", str(hang))
    started = time.monotonic()
    r = cli("build", root, "--timeout", "1", "--json")
    assert r.exit_code == 3 and "did not finish within 1 s" in r.stderr
    assert time.monotonic() - started < 15
    assert "never" not in r.stderr
