"""``ppmi-build init``: the generated project compiles (Mono mcs against the SDK test surface), the
sample plug-in behaves as promised when run (Mono), and the csproj / ppmi.toml / .gitignore /
pipelines parse and say what DESIGN.md and the issue ask for. Verifiers: mcs, mono, sn, lxml,
tomllib, PyYAML, git check-ignore, bash."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from lxml import etree

from ppmi_build.assembly.metadata import plugin_types, read_assembly_identity
from ppmi_build.config import load_settings
from ppmi_build.project.scaffold import csharp_namespace
from tests.conftest import require_tool, run_tool
from tests.xrm_sdk import mcs_compile, surface_dll

TENANT = "5F8A1A9F-2E1A-415F-B10C-84C3736A21B9"  # doc example tenant (domain-spec §1.1), upper-case on purpose
APP = "9f3d07ca-381e-43fc-8bef-76dd03b460d6"
SCOPES = ["https://vault.azure.net/.default", "https://contoso.crm.dynamics.com/.default"]
TOKEN = "eyJ0eXAiOiJKV1QifQ.SECRET-TOKEN-VALUE.7f3c"  # what the fake IManagedIdentityService returns


def _invoke(*args):
    from click.testing import CliRunner

    from ppmi_build.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def asm_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("init") / "contoso-asm"
    scope_args = [x for s in SCOPES for x in ("--scope", s)]
    r = _invoke("init", root, "--name", "Contoso.Plugins", "--kind", "assembly", *scope_args,
                "--tenant-id", TENANT, "--application-id", APP, "--json")
    assert r.exit_code == 0, r.output
    return root, json.loads(r.stdout)


@pytest.fixture(scope="module")
def pkg_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("init") / "Contoso.Package"
    r = _invoke("init", root, "--json")  # name defaults to the folder name, kind to package
    assert r.exit_code == 0, r.output
    return root, json.loads(r.stdout)


@pytest.fixture(scope="module")
def compiled_asm(asm_project, tmp_path_factory):
    """The generated assembly-kind sources compiled with mcs -keyfile:<generated .snk> against the surface."""
    root, doc = asm_project
    sdk = surface_dll(tmp_path_factory)
    out_dir = tmp_path_factory.mktemp("compiled")
    out = out_dir / "Contoso.Plugins.dll"
    src = sorted((root / "src").glob("*.cs"))
    res = mcs_compile(out, src, references=[sdk], keyfile=root / "src" / "Contoso.Plugins.snk")
    assert res.returncode == 0, res.stdout + res.stderr
    (out_dir / sdk.name).write_bytes(sdk.read_bytes())
    return out


# --- what init writes ---------------------------------------------------------------------

def test_init_reports_and_writes_every_file(asm_project, pkg_project):
    root, doc = asm_project
    expected = {"src/Contoso.Plugins.csproj", "src/PluginBase.cs", "src/AcquireTokenPlugin.cs", "ppmi.toml",
                ".gitignore", "README.md", ".github/workflows/release.yml", "azure-pipelines.yml",
                "src/Contoso.Plugins.snk"}
    assert set(doc["files"]) == expected
    assert {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} == expected
    assert doc["kind"] == "assembly" and doc["namespace"] == "Contoso.Plugins"
    assert stat.S_IMODE((root / "src/Contoso.Plugins.snk").stat().st_mode) == 0o600
    proot, pdoc = pkg_project
    assert pdoc["name"] == "Contoso.Package" and pdoc["kind"] == "package"
    assert "src/Contoso.Package.snk" not in pdoc["files"] and pdoc["public_key_token"] is None


def _csproj(root: Path, name: str):
    tree = etree.parse(str(root / "src" / f"{name}.csproj"))
    props = {el.tag: (el.text or "") for g in tree.getroot().findall("PropertyGroup") for el in g}
    refs = {el.get("Include"): el.get("Version") for el in tree.getroot().iter("PackageReference")}
    return tree, props, refs


def test_assembly_csproj(asm_project):
    root, doc = asm_project
    tree, props, refs = _csproj(root, "Contoso.Plugins")
    assert tree.getroot().tag == "Project" and tree.getroot().get("Sdk") == "Microsoft.NET.Sdk"
    assert props["TargetFramework"] == "net462"
    assert props["ProjectTypeGuids"] == "{4C25E9B5-9FA6-436c-8E19-B395D2A65FAF};{FAE04EC0-301F-11D3-BF4B-00C04F79EFBC}"
    assert props["AssemblyVersion"] == "1.0.0.0" and props["FileVersion"] == "1.0.0.0"
    assert props["SignAssembly"] == "true"
    assert (root / "src" / props["AssemblyOriginatorKeyFile"]).is_file()
    assert props["RootNamespace"] == "Contoso.Plugins" and props["AssemblyName"] == "Contoso.Plugins"
    assert {"Microsoft.CrmSdk.CoreAssemblies", "Microsoft.NETFramework.ReferenceAssemblies"} <= set(refs)
    assert "Microsoft.PowerApps.MSBuild.Plugin" not in refs
    assert "PackageId" not in props


def test_package_csproj(pkg_project):
    root, doc = pkg_project
    tree, props, refs = _csproj(root, "Contoso.Package")
    assert props["TargetFramework"] == "net462" and props["SignAssembly"] == "false"
    assert "AssemblyOriginatorKeyFile" not in props
    assert props["PackageId"] == "Contoso.Package" and props["Version"] == "$(FileVersion)"
    assert {"Microsoft.CrmSdk.CoreAssemblies", "Microsoft.NETFramework.ReferenceAssemblies",
            "Microsoft.PowerApps.MSBuild.Plugin"} <= set(refs)
    from ppmi_build.project.csproj import Project

    ev = Project.load(root / "src" / "Contoso.Package.csproj").evaluated()
    assert ev["PackageVersion"] == "1.0.0.0" and ev["AssemblyName"] == "Contoso.Package"


def test_ppmi_toml_follows_design(asm_project, pkg_project):
    root, _ = asm_project
    data = tomllib.loads((root / "ppmi.toml").read_text())
    assert data["plugin"] == {"kind": "assembly", "project": "src/Contoso.Plugins.csproj", "name": "Contoso.Plugins"}
    assert data["identity"]["tenant_id"] == TENANT.lower() and data["identity"]["application_id"] == APP
    assert data["identity"]["version"] == 2
    assert data["signing"]["password_env"] == "PPMI_PFX_PASSWORD"
    assert "dev" in data["environments"]
    s = load_settings(root, environ={"PPMI_ENV_DEV_URL": "http://127.0.0.1:9/"})
    assert s.resolve_path(s.plugin.project).is_file()
    assert s.environment("dev").url == "http://127.0.0.1:9/"  # URLs can come from the environment (emulator)
    proot, _ = pkg_project
    ps = load_settings(proot, environ={})
    assert ps.plugin.kind == "package" and ps.identity.tenant_id is None


@pytest.mark.interop
def test_gitignore_keeps_keys_and_output_out_but_not_the_snk(asm_project, tmp_path):
    git = require_tool("git")
    root, _ = asm_project
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gitignore").write_bytes((root / ".gitignore").read_bytes())
    subprocess.run([git, "init", "-q", str(repo)], check=True)
    ignored = ["src/bin/Release/net462/X.dll", "src/obj/x.cache", "certs/signing.pfx", "dev.pfx", "a.p12", "k.pem",
               "k.key", ".ppmi/last-build.json", "out/Contoso.Plugins.1.0.0.nupkg"]
    kept = ["src/Contoso.Plugins.snk", "src/Contoso.Plugins.csproj", "ppmi.toml", "src/AcquireTokenPlugin.cs"]
    res = subprocess.run([git, "-C", str(repo), "check-ignore", "--no-index", *ignored, *kept],
                         capture_output=True, text=True)
    assert set(res.stdout.split()) == set(ignored)


# --- the pipelines ---------------------------------------------------------------------------

def _steps_with(steps, needle):
    return [s for s in steps if needle in (s.get("run") or s.get("bash") or s.get("script") or
                                           (s.get("inputs") or {}).get("inlineScript") or "")]


def test_github_workflow(asm_project):
    root, _ = asm_project
    wf = yaml.safe_load((root / ".github/workflows/release.yml").read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as true
    assert "workflow_dispatch" in triggers and triggers["push"]["tags"] == ["v*"]
    assert wf["permissions"]["id-token"] == "write"
    job = wf["jobs"]["release"]
    assert job["runs-on"].startswith("ubuntu")
    steps = job["steps"]
    assert any("actions/setup-dotnet" in (s.get("uses") or "") for s in steps)
    assert _steps_with(steps, "pip install") and "ppmi-build" in _steps_with(steps, "pip install")[0]["run"]
    (release,) = _steps_with(steps, "ppmi-build release")
    assert "--env" in release["run"] and "--json" in release["run"]
    env = release["env"]
    assert env["PPMI_PFX_BASE64"] == "${{ secrets.PPMI_PFX_BASE64 }}"
    assert env["PPMI_PFX_PASSWORD"] == "${{ secrets.PPMI_PFX_PASSWORD }}"
    assert env["PPMI_ACCESS_TOKEN"] == "${{ secrets.PPMI_ACCESS_TOKEN }}"
    assert any("azure/login" in (s.get("uses") or "") for s in steps)  # workload identity federation option


def test_azure_pipeline(asm_project):
    root, _ = asm_project
    p = yaml.safe_load((root / "azure-pipelines.yml").read_text())
    assert p["pool"]["vmImage"].startswith("ubuntu")
    assert {"group": "ppmi-build"} in p["variables"]
    flat = []
    for s in p["steps"]:
        if isinstance(s, dict) and len(s) == 1 and next(iter(s)).startswith("${{"):
            flat += next(iter(s.values()))  # conditional insertion
        else:
            flat.append(s)
    assert any(s.get("task", "").startswith("UseDotNet") for s in flat)
    assert any("pip install" in (s.get("script") or "") and "ppmi-build" in s["script"] for s in flat)
    releases = _steps_with(flat, "ppmi-build release")
    assert len(releases) == 2  # access token variant and AzureCLI (workload identity federation) variant
    for step in releases:
        assert step["env"]["PPMI_PFX_BASE64"] == "$(PPMI_PFX_BASE64)"
        assert step["env"]["PPMI_PFX_PASSWORD"] == "$(PPMI_PFX_PASSWORD)"
    assert any(s.get("task", "").startswith("AzureCLI") for s in releases)


@pytest.mark.interop
def test_release_step_script_runs_and_keeps_secrets_off_the_command_line(asm_project, tmp_path):
    """Run the GitHub step's script with bash and a recording `ppmi-build` on PATH."""
    bash = require_tool("bash")
    root, _ = asm_project
    wf = yaml.safe_load((root / ".github/workflows/release.yml").read_text())
    (release,) = _steps_with(wf["jobs"]["release"]["steps"], "ppmi-build release")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    rec = tmp_path / "rec.json"
    fake = bindir / "ppmi-build"
    fake.write_text("#!/usr/bin/env python3\nimport json, os, sys\n"
                    f"open({str(rec)!r}, 'w').write(json.dumps({{'argv': sys.argv[1:], "
                    "'env': {k: v for k, v in os.environ.items() if k.startswith(('PPMI_', 'DATAVERSE_'))}}))\n")
    fake.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PPMI_ENV": "dev", "PPMI_RELEASE_ARGS": "--plan",
           "DATAVERSE_URL": "http://127.0.0.1:8123", "PPMI_PFX_BASE64": "UEZYREFUQQ==",
           "PPMI_PFX_PASSWORD": "pa55word", "PPMI_ACCESS_TOKEN": "$(PPMI_ACCESS_TOKEN)"}
    res = subprocess.run([bash, "-c", release["run"]], cwd=root, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    got = json.loads(rec.read_text())
    assert got["argv"] == ["release", "--env", "dev", "--json", "--plan"]
    assert got["env"]["PPMI_ENV_DEV_URL"] == "http://127.0.0.1:8123"
    assert got["env"]["PPMI_PFX_BASE64"] == "UEZYREFUQQ==" and got["env"]["PPMI_PFX_PASSWORD"] == "pa55word"
    assert "PPMI_ACCESS_TOKEN" not in got["env"]  # an undefined Azure Pipelines macro is dropped, not sent
    assert not any("pa55word" in a or "UEZY" in a for a in got["argv"])


# --- the C# ----------------------------------------------------------------------------------

@pytest.mark.interop
def test_generated_assembly_compiles_strong_named(compiled_asm, asm_project):
    root, doc = asm_project
    res = run_tool("sn", "-q", "-v", compiled_asm)
    assert res.returncode == 0, res.stdout + res.stderr
    res = run_tool("sn", "-T", compiled_asm)
    assert doc["public_key_token"] in res.stdout.lower()
    assert read_assembly_identity(compiled_asm).public_key_token == doc["public_key_token"]


@pytest.mark.interop
def test_generated_package_sources_compile_as_csharp_7_2(pkg_project, tmp_path_factory, tmp_path):
    """Mono's highest numbered language version below 7.3: the templates use nothing newer."""
    root, _ = pkg_project
    res = mcs_compile(tmp_path / "Contoso.Package.dll", sorted((root / "src").glob("*.cs")),
                      references=[surface_dll(tmp_path_factory)], langversion="7.2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert plugin_types(tmp_path / "Contoso.Package.dll") == ["Contoso.Package.AcquireTokenPlugin"]


HARNESS = r"""
using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using Microsoft.Xrm.Sdk;
using NS = %(ns)s;

class Tracer : ITracingService {
    public List<string> Lines = new List<string>();
    public void Trace(string format, params object[] args) {
        Lines.Add(args == null || args.Length == 0 ? format : string.Format(format, args));
    }
}
class Ctx : IPluginExecutionContext {
    public Guid BusinessUnitId { get { return Guid.Empty; } }
    public Guid CorrelationId { get { return new Guid("11111111-2222-3333-4444-555555555555"); } }
    public int Depth { get { return 1; } }
    public Guid InitiatingUserId { get { return new Guid("00000000-0000-0000-0000-0000000000a1"); } }
    public bool IsExecutingOffline { get { return false; } }
    public bool IsInTransaction { get { return true; } }
    public bool IsOfflinePlayback { get { return false; } }
    public int IsolationMode { get { return 2; } }
    public string MessageName { get { return "Create"; } }
    public int Mode { get { return 0; } }
    public DateTime OperationCreatedOn { get { return DateTime.UtcNow; } }
    public Guid OperationId { get { return Guid.Empty; } }
    public Guid OrganizationId { get { return Guid.Empty; } }
    public string OrganizationName { get { return "contoso"; } }
    public Guid PrimaryEntityId { get { return Guid.Empty; } }
    public string PrimaryEntityName { get { return "account"; } }
    public Guid? RequestId { get { return null; } }
    public string SecondaryEntityName { get { return "none"; } }
    public Guid UserId { get { return new Guid("00000000-0000-0000-0000-0000000000b2"); } }
    public IPluginExecutionContext ParentContext { get { return null; } }
    public int Stage { get { return 40; } }
    public ParameterCollection InputParameters { get { return inputs; } }
    public ParameterCollection OutputParameters { get { return outputs; } }
    private readonly ParameterCollection inputs = new ParameterCollection();
    private readonly ParameterCollection outputs = new ParameterCollection();
}
class MI : IManagedIdentityService {
    public string Token; public Exception Error; public List<string[]> Calls = new List<string[]>();
    public string AcquireToken(IEnumerable<string> scopes) {
        Calls.Add(scopes.ToArray());
        if (Error != null) throw Error;
        return Token;
    }
    public string AcquireToken(Guid managedIdentityId, IEnumerable<string> scopes) {
        throw new NotSupportedException("the sample uses the scopes-only overload");
    }
}
class Provider : IServiceProvider {
    public Dictionary<Type, object> Map = new Dictionary<Type, object>();
    public object GetService(Type t) { object o; return Map.TryGetValue(t, out o) ? o : null; }
}
class Capturing : NS.AcquireTokenPlugin {
    public string Seen; public Exception Throw;
    public Capturing(string unsecure) : base(unsecure, null) { }
    protected override void CallDownstreamApi(NS.ILocalPluginContext ctx, string accessToken) {
        Seen = accessToken;
        if (Throw != null) throw Throw;
    }
}
static class Program {
    static void Run(string name, string config, MI mi, Exception downstream) {
        var tracer = new Tracer();
        var provider = new Provider();
        provider.Map[typeof(ITracingService)] = tracer;
        provider.Map[typeof(IPluginExecutionContext)] = new Ctx();
        if (mi != null) provider.Map[typeof(IManagedIdentityService)] = mi;
        var plugin = new Capturing(config) { Throw = downstream };
        Console.WriteLine("case " + name);
        try {
            ((IPlugin)plugin).Execute(provider);
            Console.WriteLine("result ok");
        } catch (InvalidPluginExecutionException e) {
            Console.WriteLine("result InvalidPluginExecutionException");
            Console.WriteLine("message " + e.Message.Replace("\n", " "));
            Console.WriteLine("inner " + (e.InnerException == null ? "" : e.InnerException.GetType().FullName));
        } catch (Exception e) {
            Console.WriteLine("result " + e.GetType().FullName);
            Console.WriteLine("message " + e.Message);
        }
        if (mi != null) foreach (var c in mi.Calls) Console.WriteLine("call " + string.Join(" ", c));
        Console.WriteLine("seen " + (plugin.Seen ?? ""));
        foreach (var l in tracer.Lines) Console.WriteLine("trace " + l.Replace("\n", " "));
    }
    static int Main(string[] args) {
        var token = args[0];
        Run("ok", null, new MI { Token = token }, null);
        Run("config", "https://a.example/.default; api://b/.default", new MI { Token = token }, null);
        Run("fail", null, new MI { Error = new InvalidOperationException(
            "AADSTS700213: No matching federated identity record found for presented assertion subject.") }, null);
        Run("nomi", null, null, null);
        Run("empty", null, new MI { Token = "" }, null);
        Run("downstream", null, new MI { Token = token }, new Exception("HTTP 401 from the API"));
        var asm = Assembly.LoadFrom(args[1]);
        foreach (var t in asm.GetExportedTypes()
                 .Where(t => typeof(IPlugin).IsAssignableFrom(t) && t.IsClass && !t.IsAbstract)
                 .OrderBy(t => t.FullName))
            Console.WriteLine("iplugin " + t.FullName);
        return 0;
    }
}
"""


@pytest.fixture(scope="module")
def harness_run(compiled_asm, tmp_path_factory):
    mono = require_tool("mono")
    folder = compiled_asm.parent
    src = folder / "Harness.cs"
    src.write_text(HARNESS % {"ns": "Contoso.Plugins"})
    exe = folder / "Harness.exe"
    res = mcs_compile(exe, [src], references=[folder / "Microsoft.Xrm.Sdk.dll", compiled_asm], target="exe")
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([mono, str(exe), TOKEN, str(compiled_asm)], capture_output=True, text=True, cwd=folder,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    cases: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in res.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "case":
            current = cases.setdefault(value, {})
        elif key == "iplugin":
            cases.setdefault("_iplugin", {}).setdefault("types", []).append(value)
        else:
            current.setdefault(key, []).append(value)
    return cases, res.stdout


@pytest.mark.interop
def test_sample_acquires_a_token_with_the_configured_scopes_and_never_traces_it(harness_run):
    cases, raw = harness_run
    ok = cases["ok"]
    assert ok["result"] == ["ok"]
    assert ok["call"] == [" ".join(SCOPES)]  # DefaultScopes = the --scope values, in order
    assert ok["seen"] == [TOKEN]  # the token reaches the API call
    assert any("Acquired an access token" in t for t in ok["trace"])
    assert any("11111111-2222-3333-4444-555555555555" in t for t in ok["trace"])  # correlation id traced
    assert cases["config"]["call"] == ["https://a.example/.default api://b/.default"]
    # the token never appears in any trace line or exception message, in any case
    for name, case in cases.items():
        for key in ("trace", "message"):
            assert not any(TOKEN in line or "SECRET-TOKEN" in line for line in case.get(key, [])), (name, key)


@pytest.mark.interop
def test_sample_fails_with_a_useful_invalid_plugin_execution_exception(harness_run):
    cases, _ = harness_run
    fail = cases["fail"]
    assert fail["result"] == ["InvalidPluginExecutionException"]
    msg = fail["message"][0]
    assert "AADSTS700213" in msg and SCOPES[0] in msg and "ppmi-build bind" in msg
    assert fail["inner"] == ["System.InvalidOperationException"]
    nomi = cases["nomi"]
    assert nomi["result"] == ["InvalidPluginExecutionException"] and "IManagedIdentityService" in nomi["message"][0]
    assert cases["empty"]["result"] == ["InvalidPluginExecutionException"]
    assert "empty token" in cases["empty"]["message"][0]
    down = cases["downstream"]
    assert down["result"] == ["InvalidPluginExecutionException"] and "HTTP 401" in down["message"][0]
    assert down["inner"] == ["System.Exception"]


@pytest.mark.interop
def test_plugin_types_match_reflection(harness_run, compiled_asm):
    cases, _ = harness_run
    assert plugin_types(compiled_asm) == cases["_iplugin"]["types"] == ["Contoso.Plugins.AcquireTokenPlugin"]


# --- names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, ns", [
    ("Contoso.Plugins", "Contoso.Plugins"),
    ("contoso-plugins", "contoso_plugins"),
    ("2024.Plugins", "_2024.Plugins"),
    ("Contoso.class.namespace", "Contoso._class._namespace"),
    ("Contoso.var", "Contoso.var"),  # contextual keyword: a valid identifier
    ("Ünïcode.Plügins", "Ünïcode.Plügins"),
])
def test_csharp_namespace(name, ns):
    assert csharp_namespace(name) == ns


@pytest.mark.interop
def test_awkward_name_still_compiles(tmp_path, tmp_path_factory):
    root = tmp_path / "p"
    r = _invoke("init", root, "--name", "my-plugins.2024.class", "--kind", "assembly", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["namespace"] == "my_plugins._2024._class"
    out = tmp_path / "x.dll"
    res = mcs_compile(out, sorted((root / "src").glob("*.cs")), references=[surface_dll(tmp_path_factory)],
                      keyfile=root / "src" / "my-plugins.2024.class.snk")
    assert res.returncode == 0, res.stdout + res.stderr
    assert plugin_types(out) == ["my_plugins._2024._class.AcquireTokenPlugin"]


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, needle", [
    ("Contoso Plugins", "not a valid project/package name"),
    ("Contoso/Plugins", "not a valid project/package name"),
    (".Contoso", "not a valid project/package name"),
    ("Contoso..Plugins", "not a valid project/package name"),
    ("Microsoft.Xrm.Sdk", "assembly plug-ins reference"),
    ("x" * 101, "at most 100"),
])
def test_invalid_names_are_refused_and_nothing_is_written(cli, tmp_path, name, needle):
    target = tmp_path / "new"
    r = cli("init", target, "--name", name)
    assert r.exit_code == 2
    assert needle in r.stderr and "--name" in r.stderr
    assert not target.exists()


def test_existing_folder_is_refused_without_force(cli, tmp_path):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    r = cli("init", target, "--name", "Contoso.Plugins", "--json")
    assert r.exit_code == 2 and "not empty" in r.stderr and "--force" in r.stderr
    assert json.loads(r.stdout)["error"]["exit_code"] == 2
    assert [p.name for p in target.iterdir()] == ["notes.txt"] and (target / "notes.txt").read_text() == "mine"


def test_force_writes_into_a_folder_and_keeps_the_strong_name_key(cli, tmp_path):
    target = tmp_path / "proj"
    r = cli("init", target, "--name", "Contoso.Plugins", "--kind", "assembly", "--json")
    first = json.loads(r.stdout)
    key = (target / "src/Contoso.Plugins.snk").read_bytes()
    (target / "notes.txt").write_text("mine")
    r = cli("init", target, "--name", "Contoso.Plugins", "--kind", "assembly", "--force", "--json")
    assert r.exit_code == 0, r.output
    second = json.loads(r.stdout)
    assert second["kept"] == ["src/Contoso.Plugins.snk"]
    assert second["public_key_token"] == first["public_key_token"]
    assert (target / "src/Contoso.Plugins.snk").read_bytes() == key
    assert (target / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args, needle", [
    (["--scope", "vault.azure.net"], "--scope"),
    (["--scope", 'https://x/"; evil();//'], "--scope"),
    (["--tenant-id", "not-a-guid"], "--tenant-id"),
    (["--application-id", "1234"], "--application-id"),
])
def test_bad_options_are_refused(cli, tmp_path, args, needle):
    target = tmp_path / "p"
    r = cli("init", target, "--name", "Contoso.Plugins", *args)
    assert r.exit_code == 2 and needle in r.stderr
    assert not target.exists()


def test_directory_that_is_a_file(cli, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = cli("init", f, "--name", "Contoso.Plugins")
    assert r.exit_code == 2 and "is a file" in r.stderr
    assert f.read_text() == "x"
