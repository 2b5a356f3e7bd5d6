"""Plug-in types and steps: ``register`` keeps one ``plugintype`` per ``IPlugin`` class of a standalone assembly and
the ``sdkmessageprocessingstep`` rows of ``ppmi.toml [[steps]]``, against the emulator over real HTTP.

The assemblies are compiled by Mono ``mcs`` from the C# below against the SDK test surface (``tests/xrm_sdk.py``)
and strong-named with a Mono ``sn -k`` key. The expected type names are the CLR's ``Type.FullName`` of the classes
in that source (``Namespace.Class``; a nested class ``Outer+Inner``), written out by hand. What Dataverse holds is
read from the emulator's SQLite rows and its request log (``/_emulator/requests``).
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.emulator_fixture)
from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import compile_assembly, make_snk
from tests.dataverse_artifacts import PLUGIN_TYPES, dv  # noqa: F401
from tests.emulator_fixture import emulator, emulator_env  # noqa: F401
from tests.xrm_sdk import surface_dll

APP = "9f3d07ca-381e-43fc-8bef-76dd03b460d6"
TENANT = "7f2c1900-9fd4-4b89-91d3-79a649996f0a"

SOURCE = """
using System;
using System.Reflection;
[assembly: AssemblyVersion("{version}")]
namespace Fabrikam.Plugins
{{
    public abstract class PluginBase : Microsoft.Xrm.Sdk.IPlugin
    {{
        public void Execute(IServiceProvider serviceProvider) {{ Run(serviceProvider); }}
        protected abstract void Run(IServiceProvider serviceProvider);
    }}
    public sealed class {audit} : PluginBase {{ protected override void Run(IServiceProvider s) {{ }} }}
    public static class Outer
    {{
        public sealed class ContactSync : Microsoft.Xrm.Sdk.IPlugin {{ public void Execute(IServiceProvider s) {{ }} }}
    }}
    internal sealed class Hidden : PluginBase {{ protected override void Run(IServiceProvider s) {{ }} }}
}}
"""
#: Type.FullName of the public concrete IPlugin classes of SOURCE (abstract PluginBase and internal Hidden are not)
AUDIT = "Fabrikam.Plugins.AccountAudit"
AUDITOR = "Fabrikam.Plugins.AccountAuditor"  # the class renamed in version 2
CONTACT = "Fabrikam.Plugins.Outer+ContactSync"
WRITES = ("POST", "PATCH", "DELETE", "PUT")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Version 1 (AccountAudit + Outer+ContactSync) and version 2 (AccountAudit renamed AccountAuditor)."""
    folder = tmp_path_factory.mktemp("fabrikam")
    sdk = surface_dll(tmp_path_factory)
    key = make_snk(folder / "fabrikam.snk")
    out = {}
    for label, version, audit in (("v1", "1.0.0.0", "AccountAudit"), ("v2", "1.0.1.0", "AccountAuditor"),
                                  ("v1b", "1.0.2.0", "AccountAudit")):
        (folder / label).mkdir()
        out[label] = compile_assembly(folder / label / "Fabrikam.Plugins.dll", keyfile=key, references=[sdk],
                                      source=SOURCE.format(version=version, audit=audit))
    return out


STEP_AUDIT = """
[[steps]]
plugin = "Fabrikam.Plugins.AccountAudit"
message = "Update"
entity = "account"
stage = "preoperation"
mode = "sync"
rank = {rank}
filtering_attributes = ["name", "telephone1"]
configuration = "audit=on"
name = "Audit account updates"
"""
STEP_CONTACT = """
[[steps]]
plugin = "ContactSync"
message = "Create"
entity = "contact"
stage = "postoperation"
mode = "async"
"""


@pytest.fixture
def project(tmp_path, monkeypatch, emulator_env):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "3")
    return tmp_path


def write_toml(root, *steps: str) -> None:
    (root / "ppmi.toml").write_text(
        "[plugin]\nkind = \"assembly\"\n\n"
        f"[identity]\ntenant_id = \"{TENANT}\"\napplication_id = \"{APP}\"\nversion = 2\n" + "".join(steps))


def place(root, build):
    dst = root / "Fabrikam.Plugins.dll"
    dst.write_bytes(build.read_bytes())
    return dst


def register(cli, *args):
    r = cli("register", "--env", "emu", *args, "--json")
    doc = json.loads(r.stdout) if r.stdout.strip() else {}
    return r, doc


def writes(emu, since: int) -> list[tuple[str, str]]:
    return [(x["method"], x["path"].rsplit("/", 1)[-1]) for x in emu.requests()[since:] if x["method"] in WRITES]


def error_lines(r) -> list[str]:
    """The ``error:`` lines of stderr (progress lines such as "registering …" are not errors)."""
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


def type_rows(emu) -> dict[str, dict]:
    return {r["typename"]: r for r in emu.rows("plugintype")}


def message_id(emu, name: str) -> str:
    return emu.rows("sdkmessage", "name = ?", (name,))[0]["sdkmessageid"]


def filter_id(emu, message: str, table: str) -> str:
    return emu.rows("sdkmessagefilter", "sdkmessageid = ? AND primaryobjecttypecode = ?",
                    (message_id(emu, message), table))[0]["sdkmessagefilterid"]


def test_standalone_assembly_gets_one_plugintype_per_iplugin_class(cli, project, emulator, builds):
    write_toml(project)
    art = place(project, builds["v1"])
    r, doc = register(cli, art)
    assert r.exit_code == 0, r.stderr
    aid = doc["ids"]["pluginassembly"]
    types = type_rows(emulator)
    assert sorted(types) == sorted([AUDIT, CONTACT])
    for tn, row in types.items():
        assert (row["name"], row["friendlyname"], row["pluginassemblyid"]) == (tn, tn, aid)
    assert [(a["kind"], a["target"], a["status"]) for a in doc["actions"]] == [
        ("pluginassembly", "Fabrikam.Plugins", "created"), ("plugintype", AUDIT, "created"),
        ("plugintype", CONTACT, "created")]

    # re-run: nothing written
    before = len(emulator.requests())
    r, doc = register(cli, art)
    assert r.exit_code == 0 and writes(emulator, before) == []
    assert {a["status"] for a in doc["actions"]} == {"unchanged"}
    # a new build that keeps both classes: content updated, type ids kept
    ids = {tn: row["plugintypeid"] for tn, row in types.items()}
    r, _ = register(cli, place(project, builds["v1b"]))
    assert r.exit_code == 0, r.stderr
    assert {tn: row["plugintypeid"] for tn, row in type_rows(emulator).items()} == ids


def test_steps_created_once_rerun_writes_nothing_rank_change_is_one_patch(cli, project, emulator, builds):
    write_toml(project, STEP_AUDIT.format(rank=1), STEP_CONTACT)
    art = place(project, builds["v1"])
    start = len(emulator.requests())
    r, doc = register(cli, art)
    assert r.exit_code == 0, r.stderr
    first = emulator.requests()[start:]
    assert doc["requests"] == len(first)  # what the command reports is what the server saw
    types = type_rows(emulator)
    steps = {s["name"]: s for s in emulator.rows("sdkmessageprocessingstep")}
    # an unnamed step is named like the Plugin Registration Tool does: "<type full name>: <message> of <table>"
    assert sorted(steps) == sorted(["Audit account updates", f"{CONTACT}: Create of contact"])
    audit = steps["Audit account updates"]
    assert (audit["eventhandler"], audit["sdkmessageid"], audit["sdkmessagefilterid"]) == \
        (types[AUDIT]["plugintypeid"], message_id(emulator, "Update"), filter_id(emulator, "Update", "account"))
    assert (audit["stage"], audit["mode"], audit["rank"], audit["filteringattributes"], audit["configuration"]) == \
        (20, 0, 1, "name,telephone1", "audit=on")
    contact = steps[f"{CONTACT}: Create of contact"]
    assert (contact["eventhandler"], contact["stage"], contact["mode"], contact["sdkmessagefilterid"]) == \
        (types[CONTACT]["plugintypeid"], 40, 1, filter_id(emulator, "Create", "contact"))
    assert writes(emulator, start).count(("POST", "sdkmessageprocessingsteps")) == 2

    # re-run writes nothing
    before = len(emulator.requests())
    r, doc = register(cli, art)
    assert r.exit_code == 0, r.stderr
    assert writes(emulator, before) == []
    assert [a["status"] for a in doc["actions"] if a["kind"] == "sdkmessageprocessingstep"] == ["unchanged"] * 2
    rerun = len(emulator.requests()) - before

    # a changed rank is exactly one PATCH
    write_toml(project, STEP_AUDIT.format(rank=5), STEP_CONTACT)
    before = len(emulator.requests())
    r, doc = register(cli, art)
    assert r.exit_code == 0, r.stderr
    assert writes(emulator, before) == [("PATCH", f"sdkmessageprocessingsteps({audit['sdkmessageprocessingstepid']})")]
    assert emulator.rows("sdkmessageprocessingstep", "name = ?", ("Audit account updates",))[0]["rank"] == 5
    print(f"requests: first register {len(first)}, re-run {rerun}, rank change {len(emulator.requests()) - before}")


def test_prune_removes_only_ppmi_builds_own_steps(cli, project, emulator, builds):
    write_toml(project, STEP_AUDIT.format(rank=1), STEP_CONTACT)
    art = place(project, builds["v1"])
    assert register(cli, art)[0].exit_code == 0
    # a step made by hand (another tool, the maker portal) on the same plug-in type
    audit_type = type_rows(emulator)[AUDIT]["plugintypeid"]
    manual = httpx.post(f"{emulator.api_url}/sdkmessageprocessingsteps",
                        headers={"Authorization": f"Bearer {emulator.token}"},
                        json={"name": "Hand-made", "stage": 40, "mode": 0, "rank": 1,
                              "eventhandler_plugintype@odata.bind": f"/plugintypes({audit_type})",
                              "sdkmessageid@odata.bind": f"/sdkmessages({message_id(emulator, 'Delete')})"})
    assert manual.status_code == 204, manual.text

    write_toml(project, STEP_AUDIT.format(rank=1))  # the contact step is no longer declared
    before = len(emulator.requests())
    r = cli("register", "--env", "emu", art)
    assert r.exit_code == 0, r.stderr
    assert writes(emulator, before) == [] and "--prune" in r.stdout
    assert len(emulator.rows("sdkmessageprocessingstep")) == 3

    r, doc = register(cli, art, "--plan", "--prune")
    assert r.exit_code == 0 and writes(emulator, before) == []
    assert [(a["target"], a["status"]) for a in doc["actions"] if a["kind"] == "sdkmessageprocessingstep"] == \
        [("Audit account updates", "unchanged"), (f"{CONTACT}: Create of contact", "planned")]

    r, doc = register(cli, art, "--prune")
    assert r.exit_code == 0, r.stderr
    assert [m for m, _ in writes(emulator, before)] == ["DELETE"]
    assert sorted(s["name"] for s in emulator.rows("sdkmessageprocessingstep")) == \
        ["Audit account updates", "Hand-made"]


def test_renaming_a_class_with_a_step_is_refused_before_upload(cli, project, emulator, builds):
    write_toml(project, STEP_AUDIT.format(rank=1))
    art = place(project, builds["v1"])
    assert register(cli, art)[0].exit_code == 0
    aid = emulator.rows("pluginassembly")[0]["pluginassemblyid"]
    content_v1 = emulator.rows("pluginassembly")[0]["content"]

    place(project, builds["v2"])  # AccountAudit renamed AccountAuditor; the step still names AccountAudit
    write_toml(project)  # ... even without [[steps]], the step in Dataverse still uses the type
    before = len(emulator.requests())
    for args in ((art, "--plan"), (art,)):
        r = cli("register", "--env", "emu", *args)
        assert r.exit_code == 2, r.stdout + r.stderr
        lines = error_lines(r)
        assert len(lines) == 1 and AUDIT in lines[0] and "Audit account updates" in lines[0], lines
        assert AUDITOR not in lines[0] or "no longer contains" in lines[0]
    assert writes(emulator, before) == []
    assert emulator.rows("pluginassembly")[0]["content"] == content_v1

    # the emulator refuses the upload itself, as Dataverse does
    import base64

    resp = httpx.patch(f"{emulator.api_url}/pluginassemblies({aid})",
                       headers={"Authorization": f"Bearer {emulator.token}", "If-Match": "*"},
                       json={"content": base64.b64encode(builds["v2"].read_bytes()).decode()})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == ("Plug-in assembly does not contain the required types or assembly "
                                               "content cannot be updated.")


def test_a_class_gone_without_users_loses_its_plugintype(cli, project, emulator, builds):
    write_toml(project, STEP_CONTACT)
    art = place(project, builds["v1"])
    assert register(cli, art)[0].exit_code == 0
    contact_id = type_rows(emulator)[CONTACT]["plugintypeid"]
    place(project, builds["v2"])
    r, doc = register(cli, art)
    assert r.exit_code == 0, r.stderr
    assert [(a["kind"], a["target"], a["status"]) for a in doc["actions"]][:3] == [
        ("plugintype", AUDIT, "deleted"), ("pluginassembly", "Fabrikam.Plugins", "updated"),
        ("plugintype", AUDITOR, "created")]
    types = type_rows(emulator)
    assert sorted(types) == sorted([AUDITOR, CONTACT]) and types[CONTACT]["plugintypeid"] == contact_id


@pytest.mark.parametrize(("step", "needle"), [
    (STEP_AUDIT.format(rank=1).replace('"account"', '"acount"'), "'acount'"),
    (STEP_AUDIT.format(rank=1).replace('"Update"', '"Updat"'), "'Updat'"),
    (STEP_AUDIT.format(rank=1).replace("Fabrikam.Plugins.AccountAudit", "Fabrikam.Plugins.Missing"),
     "Fabrikam.Plugins.Missing"),
    (STEP_CONTACT.replace("postoperation", "preoperation"), "async"),
    (STEP_CONTACT.replace('"async"', '"later"'), "later"),
])
def test_bad_step_is_one_line_exit_2_and_nothing_written(cli, project, emulator, builds, step, needle):
    write_toml(project, step)
    art = place(project, builds["v1"])
    r = cli("register", "--env", "emu", art)
    assert r.exit_code == 2, r.stdout + r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and needle in lines[0], lines
    assert writes(emulator, 0) == []
    assert emulator.rows("pluginassembly") == []


def test_emulator_step_rules(emulator, builds, cli, project):
    """Dataverse's rules for steps, straight over HTTP: async only in post-operation, the filter must belong to the
    message, plug-in types only for classes of the assembly; seeded messages survive a reset."""
    write_toml(project)
    assert register(cli, place(project, builds["v1"]))[0].exit_code == 0
    h = {"Authorization": f"Bearer {emulator.token}"}
    tid = type_rows(emulator)[AUDIT]["plugintypeid"]
    base = {"name": "x", "eventhandler_plugintype@odata.bind": f"/plugintypes({tid})",
            "sdkmessageid@odata.bind": f"/sdkmessages({message_id(emulator, 'Create')})"}
    r = httpx.post(f"{emulator.api_url}/sdkmessageprocessingsteps", headers=h, json={**base, "stage": 20, "mode": 1})
    assert r.status_code == 400 and "stage 40" in r.json()["error"]["message"]
    r = httpx.post(f"{emulator.api_url}/sdkmessageprocessingsteps", headers=h,
                   json={**base, "stage": 40, "sdkmessagefilterid@odata.bind":
                         f"/sdkmessagefilters({filter_id(emulator, 'Update', 'account')})"})
    assert r.status_code == 400
    r = httpx.post(f"{emulator.api_url}/sdkmessageprocessingsteps", headers=h, json={**base, "stage": 30})
    assert r.status_code == 400
    aid = emulator.rows("pluginassembly")[0]["pluginassemblyid"]
    r = httpx.post(f"{emulator.api_url}/plugintypes", headers=h,  # internal class: not a plug-in type
                   json={"typename": "Fabrikam.Plugins.Hidden",
                         "pluginassemblyid@odata.bind": f"/pluginassemblies({aid})"})
    assert r.status_code == 400
    r = httpx.post(f"{emulator.api_url}/sdkmessageprocessingsteps", headers=h, json={**base, "stage": 40})
    assert r.status_code == 204
    r = httpx.delete(f"{emulator.api_url}/plugintypes({tid})", headers=h)
    assert r.status_code == 400  # a type with a step cannot be deleted
    emulator.reset()
    assert {m["name"] for m in emulator.rows("sdkmessage")} >= {"Create", "Update", "Delete", "Assign", "SetState"}


def test_init_writes_an_example_step_and_plan_shows_it(cli, tmp_path, monkeypatch, emulator_env, tmp_path_factory):
    from tests.xrm_sdk import mcs_compile

    root = tmp_path / "proj"
    r = cli("init", root, "--name", "Contoso.Sample", "--kind", "assembly", "--tenant-id", TENANT,
            "--application-id", APP)
    assert r.exit_code == 0, r.stdout + r.stderr
    import tomllib

    steps = tomllib.loads((root / "ppmi.toml").read_text())["steps"]
    assert steps == [{"plugin": "Contoso.Sample.AcquireTokenPlugin", "message": "Create", "entity": "account",
                      "stage": "postoperation", "mode": "async", "rank": 1}]
    out = tmp_path / "Contoso.Sample.dll"
    res = mcs_compile(out, sorted((root / "src").glob("*.cs")), references=[surface_dll(tmp_path_factory)],
                      keyfile=root / "src" / "Contoso.Sample.snk")
    assert res.returncode == 0, res.stdout + res.stderr
    monkeypatch.chdir(root)
    r, doc = register(cli, out, "--plan")
    assert r.exit_code == 0, r.stderr
    assert ("sdkmessageprocessingstep", "Contoso.Sample.AcquireTokenPlugin: Create of account", "planned") in \
        [(a["kind"], a["target"], a["status"]) for a in doc["actions"]]
    assert ("plugintype", "Contoso.Sample.AcquireTokenPlugin", "planned") in \
        [(a["kind"], a["target"], a["status"]) for a in doc["actions"]]
    assert writes(emulator_env, 0) == []


def test_package_steps_bind_the_types_dataverse_made(cli, project, emulator, dv):
    """A plug-in package: Dataverse (the emulator) makes the plugintype rows; the step binds to the one for the
    class named in [[steps]] (PLUGIN_CS in tests/dataverse_artifacts.py, namespace Contoso.Pkg.Plugins)."""
    write_toml(project, '\n[[steps]]\nplugin = "Contoso.Pkg.Plugins.ContactPlugin"\nmessage = "Update"\n'
                        'entity = "contact"\nstage = "prevalidation"\n')
    (project / "ppmi.toml").write_text((project / "ppmi.toml").read_text().replace('"assembly"', '"package"'))
    pkg = dv.copy(dv.pkg_v1, project)
    r, doc = register(cli, pkg)
    assert r.exit_code == 0, r.stderr
    [step] = emulator.rows("sdkmessageprocessingstep")
    types = type_rows(emulator)
    assert sorted(types) == sorted(f"Contoso.Pkg.Plugins.{c}" for c in PLUGIN_TYPES)
    assert (step["eventhandler"], step["stage"], step["sdkmessagefilterid"]) == \
        (types["Contoso.Pkg.Plugins.ContactPlugin"]["plugintypeid"], 10, filter_id(emulator, "Update", "contact"))
    before = len(emulator.requests())
    assert register(cli, pkg)[0].exit_code == 0 and writes(emulator, before) == []


def test_config_rejects_bad_steps(tmp_path):
    """[[steps]] checks that need no network: required keys, stage/mode values, async only post-operation, names."""
    from ppmi_build.config import load_settings
    from ppmi_build.errors import ConfigError

    cases = [
        ('[[steps]]\nmessage = "Create"\n', "has no plugin"),
        ('[[steps]]\nplugin = "A.B"\n', "has no message"),
        ('[[steps]]\nplugin = "A.B"\nmessage = "Create"\nstage = "main"\n', "stage = 'main'"),
        ('[[steps]]\nplugin = "A.B"\nmessage = "Create"\nmode = "async"\nstage = "prevalidation"\n',
         "post-operation"),
        ('[[steps]]\nplugin = "A.B"\nmessage = "Create"\nrank = "1"\n', "without quotes"),
        ('[[steps]]\nplugin = "A.B"\nmessage = "Create"\ncolour = "red"\n', "unknown key 'colour'"),
        ('[[steps]]\nplugin = "A.B"\nmessage = "Create"\n[[steps]]\nplugin = "A.B"\nmessage = "Create"\n',
         "same name"),
    ]
    for text, needle in cases:
        (tmp_path / "ppmi.toml").write_text(text)
        with pytest.raises(ConfigError) as e:
            load_settings(tmp_path)
        assert needle in e.value.message, (text, e.value.message)
    (tmp_path / "ppmi.toml").write_text('[[steps]]\nplugin = "A.B"\nmessage = "Update"\nentity = "none"\n'
                                        'filtering_attributes = "name, telephone1"\n')
    [step] = load_settings(tmp_path).steps
    assert (step.entity, step.stage_value, step.mode_value, step.rank, step.filtering_attributes) == \
        (None, 40, 0, 1, ["name", "telephone1"])
