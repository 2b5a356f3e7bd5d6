"""``ppmi-build register`` / ``bind`` / ``emulator`` end to end over real HTTP on loopback.

Signing is done by independent tools (``osslsigncode`` for assemblies) or by ppmi-build's own signer for the package
path (that is the product's chain: sign -> register -> bind). What Dataverse holds is read back with plain httpx
``$select`` queries and from the emulator's SQLite rows.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.emulator_fixture / tests.dataverse_artifacts)
from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.dataverse_artifacts import dv  # noqa: F401
from tests.emulator_fixture import emulator, emulator_env  # noqa: F401

APP = "9f3d07ca-381e-43fc-8bef-76dd03b460d6"
TENANT = "7f2c1900-9fd4-4b89-91d3-79a649996f0a"


@pytest.fixture
def project(tmp_path, monkeypatch, emulator_env):
    """A project folder with ppmi.toml ([identity]) and the emulator as environment ``emu``."""
    (tmp_path / "ppmi.toml").write_text(
        "[plugin]\nkind = \"assembly\"\n\n"
        f"[identity]\ntenant_id = \"{TENANT}\"\napplication_id = \"{APP}\"\nversion = 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "3")
    return tmp_path


def run_json(cli, *args):
    r = cli(*args, "--json")
    return r, json.loads(r.stdout)


def select(emu, entity_set: str, id: str, columns: str) -> dict:
    r = httpx.get(f"{emu.api_url}/{entity_set}({id})", params={"$select": columns},
                  headers={"Authorization": f"Bearer {emu.token}"})
    r.raise_for_status()
    return r.json()


def statuses(doc) -> list[tuple[str, str]]:
    return [(a["kind"], a["status"]) for a in doc["actions"]]


def test_end_to_end_assembly(cli, project, emulator, dv):
    art = dv.copy(dv.asm_v1, project)  # signed by osslsigncode
    r, doc = run_json(cli, "register", "--env", "emu", art)
    assert r.exit_code == 0, r.stderr
    # one plugintype per IPlugin class of the standalone assembly (Dataverse does not make them itself)
    assert statuses(doc) == [("pluginassembly", "created"), ("plugintype", "created"), ("plugintype", "created")]
    aid = doc["ids"]["pluginassembly"]
    for a in doc["actions"]:
        assert set(a) == {"kind", "target", "status", "id", "detail"}

    r, doc = run_json(cli, "bind", "--env", "emu", art)
    assert r.exit_code == 0, r.stderr
    assert statuses(doc) == [("managedidentity", "created"), ("binding", "created")]
    mid = doc["ids"]["managedidentity"]
    assert doc["dataverse"]["component"]["managedidentityid"] == mid

    # read back with $select, as a user would
    row = select(emulator, "pluginassemblies", aid, "name,version,publickeytoken,_managedidentityid_value")
    assert (row["name"], row["version"], row["publickeytoken"], row["_managedidentityid_value"]) == \
        ("Contoso.Plugins", "1.0.0.0", dv.token_v1, mid)
    mi = select(emulator, "managedidentities", mid, "applicationid,tenantid,credentialsource,subjectscope,version")
    assert (mi["applicationid"], mi["tenantid"], mi["credentialsource"], mi["subjectscope"], mi["version"]) == \
        (APP, TENANT, 2, 1, 2)

    # re-run: nothing changes, and it says so
    before = len(emulator.requests())
    r1 = cli("register", "--env", "emu", art)
    r2 = cli("bind", "--env", "emu", art)
    assert r1.exit_code == 0 and r2.exit_code == 0
    assert r1.stdout.startswith("unchanged") and "nothing to change" in r2.stdout
    assert all(x["method"] == "GET" for x in emulator.requests()[before:])

    # new build: content updated in place, binding kept
    art.write_bytes(dv.asm_v2.read_bytes())
    r, doc = run_json(cli, "register", "--env", "emu", art)
    assert r.exit_code == 0 and statuses(doc) == [("pluginassembly", "updated"), ("plugintype", "unchanged"),
                                                  ("plugintype", "unchanged")]
    assert doc["ids"]["pluginassembly"] == aid
    row = select(emulator, "pluginassemblies", aid, "version,_managedidentityid_value")
    assert (row["version"], row["_managedidentityid_value"]) == ("1.0.1.0", mid)

    r, doc = run_json(cli, "bind", "--env", "emu", art, "--unbind")
    assert r.exit_code == 0 and statuses(doc) == [("binding", "updated")]
    assert select(emulator, "pluginassemblies", aid, "_managedidentityid_value")["_managedidentityid_value"] is None


def test_end_to_end_package_signed_by_ppmi_build(cli, project, emulator, dv, pki, password_env):
    """sign (ppmi-build's NuGet signer) -> register -> bind -> read back; the package row is bound."""
    pkg = dv.copy(dv.pkg_v1_unsigned, project)
    r = cli("sign", pkg, "--cert", pki.leaf.pfx, "--password-env", password_env, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    (project / "ppmi.toml").write_text((project / "ppmi.toml").read_text().replace('"assembly"', '"package"') +
                                       'managed_identity_id = "0bb91e27-1d0c-4a60-973c-ed810d9695ff"\n')
    r, doc = run_json(cli, "register", "--env", "emu", pkg)
    assert r.exit_code == 0, r.stderr
    assert statuses(doc) == [("pluginpackage", "created"), ("pluginassembly", "created")]
    r, doc = run_json(cli, "bind", "--env", "emu", pkg)
    assert r.exit_code == 0, r.stderr
    assert doc["ids"]["managedidentity"] == "0bb91e27-1d0c-4a60-973c-ed810d9695ff"
    pid = doc["ids"]["pluginpackage"]
    row = select(emulator, "pluginpackages", pid, "uniquename,version,_managedidentityid_value")
    assert (row["uniquename"], row["version"], row["_managedidentityid_value"]) == \
        ("Contoso.Pkg", "1.0.0", "0bb91e27-1d0c-4a60-973c-ed810d9695ff")
    assert emulator.rows("solutioncomponent")[0]["solutionuniquename"] == "ContosoPlugins"


def test_bind_unsigned_exit_3_with_hint_and_partial_actions(cli, project, emulator, dv):
    art = dv.copy(dv.asm_v1_unsigned, project)
    assert cli("register", "--env", "emu", art).exit_code == 0
    r, doc = run_json(cli, "bind", "--env", "emu", art)
    assert r.exit_code == 3
    assert doc["error"]["code"] == "0x80040216" and "not signed" in doc["error"]["message"]
    assert statuses(doc) == [("managedidentity", "created")]  # what was done before the refusal is reported
    assert emulator.rows("pluginassembly")[0]["managedidentityid"] is None


# --- faults ---------------------------------------------------------------------------------------------------------


def only_rows(emu, dv) -> None:
    rows = emu.rows("pluginassembly")
    assert len(rows) == 1 and rows[0]["version"] == "1.0.0.0"
    assert rows[0]["content"] and len(rows[0]["content"]) == len(__import__("base64").b64encode(
        dv.asm_v1.read_bytes()))


def test_fault_503_twice_then_success(cli, project, emulator, dv):
    emulator.add_fault(method="POST", path_contains="pluginassemblies", status=503, times=2)
    r = cli("register", "--env", "emu", dv.copy(dv.asm_v1, project))
    assert r.exit_code == 0, r.stderr
    assert r.stderr.count("HTTP 503; retry") == 2
    only_rows(emulator, dv)


def test_fault_dropped_connection_mid_upload(cli, project, emulator, dv):
    emulator.add_fault(method="POST", path_contains="pluginassemblies", drop=True)
    r = cli("register", "--env", "emu", dv.copy(dv.asm_v1, project))
    assert r.exit_code == 0, r.stderr
    posts = [(x["path"].rsplit("/", 1)[-1], x["status"]) for x in emulator.requests() if x["method"] == "POST"]
    assert posts == [("pluginassemblies", 0), ("pluginassemblies", 201), ("plugintypes", 201), ("plugintypes", 201)]
    only_rows(emulator, dv)


def test_fault_persistent_503_exit_3(cli, project, emulator, dv):
    emulator.add_fault(method="POST", path_contains="pluginassemblies", status=503, times=50)
    r, doc = run_json(cli, "register", "--env", "emu", dv.copy(dv.asm_v1, project))
    assert r.exit_code == 3 and doc["error"]["exit_code"] == 3 and "after 4 attempts" in doc["error"]["message"]
    assert len([x for x in emulator.requests() if x["method"] == "POST"]) == 4
    assert emulator.rows("pluginassembly") == []


def test_fault_bad_token_exit_3_no_retry(cli, project, emulator, dv, monkeypatch):
    secret = "tok-RECOGNISABLE-91ac5e"
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", secret)
    r = cli("register", "--env", "emu", dv.copy(dv.asm_v1, project))
    assert r.exit_code == 3
    assert "HTTP 401" in r.stderr and "access token was refused" in r.stderr
    assert [x["status"] for x in emulator.requests()] == [401]
    assert secret not in r.stdout + r.stderr
    assert emulator.rows("pluginassembly") == []


def test_token_never_printed_through_retries(cli, project, emulator, dv, monkeypatch, caplog):
    import logging

    secret = "tok-RECOGNISABLE-3e7b20"
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", secret)
    emulator.state.token = secret
    caplog.set_level(logging.DEBUG)
    emulator.add_fault(method="*", path_contains="plugin", status=429, retry_after=0, times=2)
    art = dv.copy(dv.asm_v1, project)
    outputs = []
    for args in (("register", "--env", "emu", art), ("bind", "--env", "emu", art), ("register", "--env", "emu", art,
                                                                                   "--json")):
        r = cli("-v", *args)
        assert r.exit_code == 0, r.stderr
        outputs.append(r.stdout + r.stderr)
    assert all(secret not in o for o in outputs)
    assert secret not in caplog.text


# --- bad input: exit 2, one line, nothing sent -------------------------------------------------------------------


def test_bad_input(cli, project, emulator, dv, plain_dll, tmp_path):
    big = project / "Big.dll"
    with open(big, "wb") as f:
        f.truncate(16 * 1024 * 1024 + 1)
    cases = [
        (("register", "--env", "emu", big), "at most 16 MB"),
        (("register", "--env", "emu", dv.copy(plain_dll, project)), "not strong-named"),
        (("register", "--env", "emu", project / "missing.dll"), "does not exist"),
        (("register", "--env", "nope", dv.copy(dv.asm_v1, project)), "environment 'nope' is not configured"),
        (("register", "--env", "emu"), "no ARTIFACT given"),
        (("bind", "--env", "emu", dv.copy(dv.asm_v1, project)), "not registered"),
    ]
    for args, msg in cases:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        assert msg in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    assert [x["method"] for x in emulator.requests()] == ["GET"]  # only the bind lookup reached the server
    assert big.stat().st_size == 16 * 1024 * 1024 + 1


def test_http_url_refused(cli, project, dv, monkeypatch):
    monkeypatch.setenv("PPMI_ENV_EMU_URL", "http://contoso.crm.dynamics.com")
    r = cli("register", "--env", "emu", dv.copy(dv.asm_v1, project))
    assert r.exit_code == 2 and "use https://" in r.stderr


def test_no_credentials(cli, project, dv, monkeypatch):
    monkeypatch.delenv("PPMI_ACCESS_TOKEN")
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    r = cli("register", "--env", "emu", dv.copy(dv.asm_v1, project))
    assert r.exit_code == 2 and "PPMI_ACCESS_TOKEN" in r.stderr


def test_plan_changes_nothing(cli, project, emulator, dv):
    art = dv.copy(dv.asm_v1, project)
    r, doc = run_json(cli, "register", "--env", "emu", art, "--plan")
    assert r.exit_code == 0 and statuses(doc) == [("pluginassembly", "planned"), ("plugintype", "planned"),
                                                  ("plugintype", "planned")]
    assert emulator.rows("pluginassembly") == [] and emulator.rows("plugintype") == []


def test_emulator_command(tmp_path):
    """``ppmi-build emulator --port 0 --db FILE`` serves the Web API with the given token until stopped."""
    db = tmp_path / "emu.db"
    proc = subprocess.Popen([sys.executable, "-m", "ppmi_build", "emulator", "--port", "0", "--db", str(db),
                             "--token", "t1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        url = first.strip().split(" on ")[1]
        deadline = time.monotonic() + 10
        while True:
            try:
                r = httpx.post(f"{url}/api/data/v9.2/managedidentities", json={"applicationid": APP},
                               headers={"Authorization": "Bearer t1"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert r.status_code == 204
        assert httpx.get(f"{url}/api/data/v9.2/managedidentities").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert db.exists()


def test_default_artifact_is_last_build_output(cli, project, emulator, dv):
    """Without ARTIFACT, register/bind use the primary artifact recorded by `ppmi-build build`."""
    art = dv.copy(dv.asm_v1, project)
    (project / ".ppmi").mkdir()
    (project / ".ppmi" / "last-build.json").write_text(json.dumps({"primary": str(art), "artifacts": []}))
    r, doc = run_json(cli, "register", "--env", "emu")
    assert r.exit_code == 0, r.stderr
    assert doc["actions"][0]["target"] == "Contoso.Plugins" and doc["actions"][0]["status"] == "created"
    r, doc = run_json(cli, "bind", "--env", "emu")
    assert r.exit_code == 0 and statuses(doc)[-1] == ("binding", "created")


def test_bind_without_identity_settings(cli, project, emulator, dv):
    (project / "ppmi.toml").write_text("[plugin]\nkind = \"assembly\"\n")
    r = cli("bind", "--env", "emu", dv.copy(dv.asm_v1, project))
    assert r.exit_code == 2 and "application ID is not set" in r.stderr
    assert emulator.requests() == []


def test_plan_summary_says_what_would_change(cli, project, emulator, dv):
    """``register --plan`` against an empty environment: the planned changes (the pluginassembly and its two
    plugintype rows) and "nothing was written"; it used to add "nothing to change: Dataverse already holds this"
    under the planned create."""
    art = dv.copy(dv.asm_v1, project)
    r = cli("register", "--env", "emu", art, "--plan")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("planned") and "pluginassembly" in lines[0]
    assert lines[-1] == "plan: 3 changes; nothing was written" and "nothing to change" not in r.stdout
    assert emulator.rows("pluginassembly") == []
    assert cli("register", "--env", "emu", art).exit_code == 0
    r = cli("register", "--env", "emu", art, "--plan")
    assert r.exit_code == 0 and r.stdout.splitlines()[-1] == "nothing to change: Dataverse already holds this"


def _ppmi_build_exe() -> str:
    from pathlib import Path

    exe = Path(sys.executable).with_name("ppmi-build")
    if not exe.exists():
        pytest.fail("the ppmi-build console script is not installed next to the test interpreter")
    return str(exe)


def test_no_azure_credentials_is_one_clean_line(tmp_path, emulator, dv):
    """azure-identity installed, nothing configured: exit 2 with one ``no Dataverse credentials`` line; it used to
    print DefaultAzureCredential's ~15 lines of logging and exit 3. With ``-v`` the azure-identity log is shown.

    Run as a real process (the log goes through Python's last-resort handler to stderr). ``AZURE_TOKEN_CREDENTIALS
    =dev`` keeps DefaultAzureCredential off the network (no managed identity endpoint probe); ``HOME`` is empty and
    ``PATH`` has no ``az``/``azd``/``pwsh``."""
    pytest.importorskip("azure.identity")
    art = dv.copy(dv.asm_v1, tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "AZURE_TOKEN_CREDENTIALS": "dev",
           "PPMI_ENV_EMU_URL": emulator.url, "PPMI_ENV_EMU_ENVIRONMENT_ID": "7efcc31a-c410-e20e-9b95-dd448cedf653"}
    res = subprocess.run([_ppmi_build_exe(), "register", "--env", "emu", str(art)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if not ln.startswith("registering ")]
    assert len(errors) == 1, res.stderr
    assert errors[0].startswith("error: no Dataverse credentials: DefaultAzureCredential found none configured")
    assert "PPMI_ACCESS_TOKEN" in errors[0] and "PPMI_AUTH" in errors[0]
    assert emulator.requests() == []
    res = subprocess.run([_ppmi_build_exe(), "-v", "register", "--env", "emu", str(art)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Attempted credentials" in res.stderr


def test_verbose_logs_each_request_without_the_token(cli, project, emulator, dv, monkeypatch):
    """``-v`` adds one stderr line per Web API request (method, path, status); without it there are none."""
    secret = "tok-RECOGNISABLE-5d1f09"
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", secret)
    emulator.state.token = secret
    art = dv.copy(dv.asm_v1, project)
    quiet = cli("register", "--env", "emu", art)
    assert quiet.exit_code == 0, quiet.stderr
    assert "ppmi_build.dataverse:" not in quiet.stderr
    loud = cli("-v", "register", "--env", "emu", art)
    assert loud.exit_code == 0, loud.stderr
    lines = [ln for ln in loud.stderr.splitlines() if ln.startswith("ppmi_build.dataverse: ")]
    sent = [(r["method"], r["status"]) for r in emulator.requests()][-len(lines):]
    assert len(lines) == len(sent) >= 1
    for line, (method, status) in zip(lines, sent, strict=True):
        assert line.startswith(f"ppmi_build.dataverse: {method} ") and f" -> {status} (" in line
    assert secret not in loud.stdout + loud.stderr
    again = cli("register", "--env", "emu", art)
    assert "ppmi_build.dataverse:" not in again.stderr
