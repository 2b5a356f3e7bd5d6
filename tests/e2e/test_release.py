"""``ppmi-build release`` against the Dataverse and Entra emulators over loopback HTTP.

What is shown, and how it is checked independently of ppmi-build's own output:
* a full release into two environments (two Dataverse emulators) with one app registration ends with two FICs
  whose issuer/subject/audience equal the documented formula (tests/pipeline_helpers.py) with the certificate
  hash read by openssl; the content each emulator holds is byte-identical to the signed file and its Authenticode
  signature verifies with osslsigncode; the ``managedidentities`` rows hold version 2 and are bound;
* re-running changes nothing (no write request reaches either emulator);
* ``--plan`` sends no write request and leaves the artifact untouched;
* a failed run (fault injected at the bind) converges when re-run; a failure at the FIC creation leaves
  Dataverse untouched (never bound to an artifact whose FIC is missing);
* the 20-FIC cap refuses before any write; a case-only FIC difference is reported.
"""

from __future__ import annotations

import base64
import shutil

import pytest

from ppmi_build.emulator import start
from tests.conftest import run_tool
from tests.dataverse_artifacts import dv  # noqa: F401
from tests.emulator_fixture import emulator  # noqa: F401
from tests.pipeline_helpers import (
    APP_OBJECT,
    AUDIENCE,
    ENV_DEV,
    ENV_TEST,
    ISSUER,
    arm_fics,
    graph_fics,
    held_component,
    openssl_sha256,
    parse_json,
    seed_graph_fics,
    self_signed_subject,
    sha256_file,
    write_project,
    writes,
)


@pytest.fixture
def env_vars(monkeypatch, password_env):
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", "emulator-token")
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "1")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_GRAPH_URL", "PPMI_ARM_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def second_emulator():
    emu = start()
    yield emu
    emu.stop()


@pytest.fixture
def dll(tmp_path, strong_named_dll):
    path = tmp_path / "artifacts" / strong_named_dll.name
    path.parent.mkdir()
    shutil.copyfile(strong_named_dll, path)
    return path


def project_for(tmp_path, emulator, second=None, **kw):  # noqa: F811
    envs = {"dev": (emulator.url, ENV_DEV)}
    if second is not None:
        envs["test"] = (second.url, ENV_TEST)
    return write_project(tmp_path / "proj", graph_url=emulator.url, envs=envs, **kw)


def actions_by_kind(doc, kind):
    return [a for a in doc["actions"] if a["kind"] == kind]


@pytest.mark.interop
def test_release_two_environments_then_rerun_changes_nothing(cli, tmp_path, emulator, second_emulator,  # noqa: F811
                                                             env_vars, dll, pki):
    proj = project_for(tmp_path, emulator, second_emulator, cert=pki.self_signed.pfx)
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 0, r.stderr
    doc = parse_json(r)
    assert doc["plan"] is False and doc["changed"] is True
    statuses = {(a["kind"], a["status"]) for a in doc["actions"]}
    assert ("sign", "created") in statuses and ("fic", "created") in statuses
    assert ("pluginassembly", "created") in statuses and ("managedidentity", "created") in statuses
    assert ("binding", "created") in statuses and ("verify", "unchanged") in statuses
    assert "[release" in r.stderr  # progress on stderr, stdout is the JSON document only
    signed_sha = sha256_file(dll)

    r2 = cli("release", "--env", "test", "--project", proj, dll, "--json")
    assert r2.exit_code == 0, r2.stderr
    doc2 = parse_json(r2)
    assert [a["status"] for a in actions_by_kind(doc2, "sign")] == ["unchanged"]
    assert [a["status"] for a in actions_by_kind(doc2, "fic")] == ["created"]
    assert sha256_file(dll) == signed_sha

    # one identity, two FICs, values from the documented formula
    sha = openssl_sha256(pki.self_signed.pem)
    fics = graph_fics(emulator)
    assert sorted((f["issuer"], f["subject"], tuple(f["audiences"])) for f in fics) == sorted(
        (ISSUER, self_signed_subject(env, sha), (AUDIENCE,)) for env in (ENV_DEV, ENV_TEST))

    held_files = []
    for emu in (emulator, second_emulator):
        asm = held_component(emu)
        data = base64.b64decode(asm["content"])
        assert data == dll.read_bytes()
        mi = emu.rows("managedidentity")
        assert len(mi) == 1 and mi[0]["version"] == 2 and mi[0]["credentialsource"] == 2
        assert asm["managedidentityid"] == mi[0]["managedidentityid"]
        held = tmp_path / f"held-{emu.port}.dll"
        held.write_bytes(data)
        held_files.append(held)
    for held in held_files:  # independent verifier: osslsigncode, trusting only the self-signed certificate
        v = run_tool("osslsigncode", "verify", "-in", held, "-CAfile", pki.self_signed.pem)
        assert v.returncode == 0 and "Signature verification: ok" in v.stdout, v.stdout + v.stderr

    # re-run both: nothing is written anywhere
    marks = (len(emulator.requests()), len(second_emulator.requests()))
    for env in ("dev", "test"):
        r3 = cli("release", "--env", env, "--project", proj, dll, "--json")
        assert r3.exit_code == 0, r3.stderr
        doc3 = parse_json(r3)
        assert doc3["changed"] is False
        assert {a["status"] for a in doc3["actions"]} == {"unchanged"}
    assert writes(emulator, marks[0]) == [] and writes(second_emulator, marks[1]) == []
    assert sha256_file(dll) == signed_sha


def test_plan_makes_no_write_request(cli, tmp_path, emulator, env_vars, dll, pki):  # noqa: F811
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    before = sha256_file(dll)
    r = cli("release", "--env", "dev", "--project", proj, dll, "--plan", "--json")
    assert r.exit_code == 0, r.stderr
    doc = parse_json(r)
    assert doc["plan"] is True and doc["changed"] is False
    kinds = {a["kind"]: a["status"] for a in doc["actions"]}
    for k in ("sign", "fic", "pluginassembly", "managedidentity", "binding"):
        assert kinds[k] == "planned", (k, doc["actions"])
    assert writes(emulator) == []
    assert emulator.requests(), "the plan reads the current state"
    assert sha256_file(dll) == before
    assert emulator.rows("pluginassembly") == [] and graph_fics(emulator) == []
    # human output says nothing changed
    r = cli("release", "--env", "dev", "--project", proj, dll, "--plan")
    assert r.exit_code == 0 and "Nothing was changed" in r.stdout
    assert writes(emulator) == []
    # after a real release the plan is all "unchanged" and still read-only
    assert cli("release", "--env", "dev", "--project", proj, dll).exit_code == 0
    mark = len(emulator.requests())
    doc = parse_json(cli("release", "--env", "dev", "--project", proj, dll, "--plan", "--json"))
    assert {a["status"] for a in doc["actions"]} == {"unchanged"}
    assert writes(emulator, mark) == []


def test_failed_bind_converges_on_rerun(cli, tmp_path, emulator, env_vars, dll, pki):  # noqa: F811
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    emulator.add_fault(method="PATCH", path_contains="pluginassemblies", status=503, times=5)
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 3
    doc = parse_json(r)
    assert doc["error"]["exit_code"] == 3
    assert any(a["kind"] == "bind" and a["status"] == "failed" for a in doc["actions"])
    assert len(graph_fics(emulator)) == 1  # the FIC came first
    assert held_component(emulator)["managedidentityid"] is None
    emulator.clear_faults()
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 0, r.stderr
    doc = parse_json(r)
    st = {a["kind"]: a["status"] for a in doc["actions"]}
    assert st["fic"] == "unchanged" and st["pluginassembly"] == "unchanged" and st["binding"] == "created"
    assert held_component(emulator)["managedidentityid"] == emulator.rows("managedidentity")[0]["managedidentityid"]


def test_fic_failure_leaves_dataverse_untouched(cli, tmp_path, emulator, env_vars, dll, pki):  # noqa: F811
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    emulator.add_fault(method="POST", path_contains="federatedIdentityCredentials", status=503, times=10)
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 3
    assert [w for w in writes(emulator) if "/api/data/" in w["path"]] == []
    assert emulator.rows("pluginassembly") == [] and emulator.rows("managedidentity") == []


def test_fic_cap_refuses_before_any_write(cli, tmp_path, emulator, env_vars, dll, pki):  # noqa: F811
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    seed_graph_fics(emulator, 20)
    mark = len(emulator.requests())
    before = sha256_file(dll)
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 1
    doc = parse_json(r)
    assert "20" in doc["error"]["message"] and "FIC_CAP" == doc["error"]["code"]
    assert writes(emulator, mark) == []
    assert sha256_file(dll) == before  # refused before signing: the artifact is untouched
    assert emulator.rows("pluginassembly") == []


def test_case_only_fic_is_reported(cli, tmp_path, emulator, env_vars, dll, pki):  # noqa: F811
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    sha = openssl_sha256(pki.self_signed.pem)
    import httpx

    wrong = self_signed_subject(ENV_DEV, sha.upper())  # upper-case hash: what CertUtil prints on old Windows
    httpx.post(f"{emulator.url}/v1.0/applications/{APP_OBJECT}/federatedIdentityCredentials",
               json={"name": "manual-upper", "issuer": ISSUER, "subject": wrong, "audiences": [AUDIENCE]},
               headers={"Authorization": f"Bearer {emulator.token}"}).raise_for_status()
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 0, r.stderr
    doc = parse_json(r)
    assert any("manual-upper" in n and "letter case" in n for n in doc["notes"])
    assert self_signed_subject(ENV_DEV, sha) in {f["subject"] for f in graph_fics(emulator)}


def test_release_to_user_assigned_identity(cli, tmp_path, emulator, env_vars, dll, pki):  # noqa: F811
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx, fic_target="uami")
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 0, r.stderr
    fics = arm_fics(emulator)
    sha = openssl_sha256(pki.self_signed.pem)
    assert [(f["properties"]["issuer"], f["properties"]["subject"]) for f in fics] == [
        (ISSUER, self_signed_subject(ENV_DEV, sha))]
    assert graph_fics(emulator) == []


def test_bad_input(cli, tmp_path, emulator, env_vars, dll, pki):  # noqa: F811
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    before = sha256_file(dll)
    r = cli("release", "--env", "prod", "--project", proj, dll)
    assert r.exit_code == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "'prod' is not configured" in last and "[environments.prod]" in last
    r = cli("release", "--env", "dev", "--project", proj, tmp_path / "missing.dll")
    assert r.exit_code == 2 and "missing.dll" in r.stderr
    r = cli("release", "--env", "dev", "--project", proj, dll, env={"PPMI_PFX_PASSWORD": "wrong"})
    assert r.exit_code == 2 and "password" in r.stderr.lower()
    assert sha256_file(dll) == before
    assert writes(emulator) == []
    assert list(dll.parent.iterdir()) == [dll]  # no temp file left beside the artifact


@pytest.mark.interop
def test_release_plugin_package(cli, tmp_path, emulator, env_vars, dv, pki):  # noqa: F811
    """A .nupkg is NuGet-signed, registered as a pluginpackage, and the package row (not its assemblies) is bound."""
    import zipfile

    pkg = dv.copy(dv.pkg_v1_unsigned, tmp_path)
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx, kind="package", name="Contoso.Pkg")
    r = cli("release", "--env", "dev", "--project", proj, pkg, "--json")
    assert r.exit_code == 0, r.stderr
    doc = parse_json(r)
    st = {(a["kind"], a["status"]) for a in doc["actions"]}
    assert ("pluginpackage", "created") in st and ("binding", "created") in st and ("verify", "unchanged") in st
    row = held_component(emulator, "pluginpackage")
    assert base64.b64decode(row["content"]) == pkg.read_bytes()
    assert row["managedidentityid"] == emulator.rows("managedidentity")[0]["managedidentityid"]
    assert all(a["managedidentityid"] is None for a in emulator.rows("pluginassembly"))
    with zipfile.ZipFile(pkg) as z:  # NuGet signature: last entry, stored; CMS verifies with openssl
        last = z.infolist()[-1]
        assert last.filename == ".signature.p7s" and last.compress_type == zipfile.ZIP_STORED
        (tmp_path / "sig.p7s").write_bytes(z.read(last))
    v = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", tmp_path / "sig.p7s", "-CAfile",
                 pki.self_signed.pem, "-purpose", "any", "-out", tmp_path / "content.bin")
    assert v.returncode == 0, v.stderr
    sha = openssl_sha256(pki.self_signed.pem)
    assert [f["subject"] for f in graph_fics(emulator)] == [self_signed_subject(ENV_DEV, sha)]
    mark = len(emulator.requests())
    r = cli("release", "--env", "dev", "--project", proj, pkg, "--json")
    assert r.exit_code == 0 and parse_json(r)["changed"] is False
    assert writes(emulator, mark) == []


# --- inputs are checked before the first write (new-user test findings) -------------------------------------------


def test_unloadable_artifact_is_refused_before_signing_or_the_fic(cli, tmp_path, emulator, env_vars, plain_dll, pki):  # noqa: F811
    """A standalone assembly without a strong name cannot be registered: refused before the file is signed and
    before the FIC is created (it used to be signed in place and its FIC left in Graph)."""
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    art = tmp_path / "weak" / plain_dll.name
    art.parent.mkdir()
    shutil.copyfile(plain_dll, art)
    before = sha256_file(art)
    r = cli("release", "--env", "dev", "--project", proj, art, "--json")
    assert r.exit_code == 2
    doc = parse_json(r)
    assert "not strong-named" in doc["error"]["message"] and doc["error"]["exit_code"] == 2
    assert [(a["kind"], a["status"]) for a in doc["actions"]] == [("artifact", "failed")]
    assert writes(emulator) == [] and graph_fics(emulator) == []
    assert sha256_file(art) == before and list(art.parent.iterdir()) == [art]


def test_plan_without_artifact_needs_a_project(cli, tmp_path, emulator, env_vars, pki):  # noqa: F811
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    r = cli("release", "--env", "dev", "--project", proj, "--plan", "--json")
    assert r.exit_code == 2
    assert "no .csproj" in parse_json(r)["error"]["message"]
    assert writes(emulator) == []


def test_release_at_the_cap_names_the_fic_in_use(cli, tmp_path, emulator, env_vars, dll, pki):  # noqa: F811
    """20 FICs, one of them the deployed plug-in's (made by ppmi-build): the refusal says it must stay, and that the
    other 19 were not made by ppmi-build (it used to offer the FIC in use as one that "could go")."""
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    assert cli("release", "--env", "dev", "--project", proj, dll).exit_code == 0
    in_use = graph_fics(emulator)[0]["name"]
    seed_graph_fics(emulator, 19)
    text = (proj / "ppmi.toml").read_text()
    (proj / "ppmi.toml").write_text(text.replace(str(pki.self_signed.pfx), str(pki.leaf.pfx)))
    mark, before = len(emulator.requests()), sha256_file(dll)
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 1
    err = parse_json(r)["error"]
    assert err["code"] == "FIC_CAP"
    assert f"created by ppmi-build and in use (must stay): {in_use}" in err["message"]
    assert "no FIC created by ppmi-build can go" in err["message"] and "could go:" not in err["message"]
    assert "19 were not created by ppmi-build" in err["message"]
    assert writes(emulator, mark) == [] and sha256_file(dll) == before


def _timestamped(path, pki) -> bool:
    """osslsigncode's own reading of the signature: ``Timestamp Server Signature verification: ok`` when the
    signature carries a valid RFC 3161 countersignature, ``Timestamp is not available`` when it has none."""
    res = run_tool("osslsigncode", "verify", "-in", path, "-CAfile", pki.self_signed.pem, "-TSA-CAfile", pki.root.pem)
    assert res.returncode == 0, res.stdout + res.stderr
    if "Timestamp is not available" in res.stdout:
        return False
    assert "Timestamp Server Signature verification: ok" in res.stdout, res.stdout
    return True


@pytest.mark.interop
def test_timestamp_options(cli, tmp_path, emulator, env_vars, dll, pki, tsa, strong_named_dll, monkeypatch):  # noqa: F811
    """ppmi.toml lists a timestamp server that answers 500: ``--no-timestamp`` and an empty
    ``PPMI_TIMESTAMP_URLS=`` turn timestamping off, ``--timestamp-url`` replaces the configured server."""
    from ppmi_build.config import load_settings

    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    toml = proj / "ppmi.toml"
    toml.write_text(toml.read_text().replace("timestamp_urls = []", f'timestamp_urls = ["{tsa.url}fail"]'))
    before = sha256_file(dll)
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")  # the configured server fails
    assert r.exit_code == 3 and f"{tsa.url}fail: HTTP 500" in parse_json(r)["error"]["message"]
    assert sha256_file(dll) == before and writes(emulator) == []

    r = cli("release", "--env", "dev", "--project", proj, dll, "--no-timestamp", "--timestamp-url", tsa.url)
    assert r.exit_code == 2 and "contradict" in r.stderr and sha256_file(dll) == before

    r = cli("release", "--env", "dev", "--project", proj, dll, "--no-timestamp", "--json")
    assert r.exit_code == 0, r.stderr
    assert sha256_file(dll) != before and not _timestamped(dll, pki)

    def fresh(folder: str):
        path = tmp_path / folder / strong_named_dll.name
        path.parent.mkdir()
        shutil.copyfile(strong_named_dll, path)
        return path

    second = fresh("b")
    n = len(tsa.requests)
    r = cli("release", "--env", "dev", "--project", proj, second, "--timestamp-url", tsa.url, "--json")
    assert r.exit_code == 0, r.stderr
    assert _timestamped(second, pki) and len(tsa.requests) == n + 1

    monkeypatch.setenv("PPMI_TIMESTAMP_URLS", "")  # set but empty: no timestamp, whatever ppmi.toml says
    assert load_settings(proj).signing.timestamp_urls == []
    monkeypatch.setenv("PPMI_TIMESTAMP_URLS", f"{tsa.url}, {tsa.url}x")
    assert load_settings(proj).signing.timestamp_urls == [tsa.url, f"{tsa.url}x"]
    monkeypatch.setenv("PPMI_TIMESTAMP_URLS", "")
    third = fresh("c")
    r = cli("release", "--env", "dev", "--project", proj, third, "--json")
    assert r.exit_code == 0, r.stderr
    assert not _timestamped(third, pki)


def test_plan_says_when_dotnet_is_missing(cli, tmp_path, emulator, env_vars, pki, monkeypatch):  # noqa: F811
    """--plan never builds, but a release without dotnet would stop at the build: the plan says so."""
    proj = project_for(tmp_path, emulator, cert=pki.self_signed.pfx)
    (proj / "Contoso.Plugins.csproj").write_text(
        '<Project Sdk="Microsoft.NET.Sdk"><PropertyGroup><TargetFramework>net462</TargetFramework>'
        "</PropertyGroup></Project>\n")
    monkeypatch.setenv("PPMI_DOTNET", str(tmp_path / "no-such-dotnet"))
    r = cli("release", "--env", "dev", "--project", proj, "--plan", "--json")
    assert r.exit_code == 0, r.output
    warning = "warning: the release would stop at the build: PPMI_DOTNET="
    assert any(n.startswith(warning) for n in parse_json(r)["notes"])
    assert warning in r.stderr
    assert writes(emulator) == []
