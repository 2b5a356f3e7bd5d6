"""``ppmi-build validate`` (and ``release``'s final step) against the emulator playing Dataverse, the platform and
Entra (validation.md §4, §7; domain-spec §1, §6).

The plug-in is the one ``ppmi-build init`` scaffolds, compiled with Mono mcs against the SDK surface
(tests/xrm_sdk_surface.cs) and packed as a plug-in package (tests/nupkg_builder.py); Dataverse (and the emulator)
create the plug-in types of a package. Expected subjects come from the documented formula computed here
(domain-spec §1.1/§1.2 via tests/pipeline_helpers.py: ``/eid1/c/pub/t/{encodedTenantId}/a/qzXoWDkuqUa3l6zM5mM0Rw/
n/plugin/e/{environmentId}/h/{sha256}`` with the certificate SHA-256 read by openssl), never from ppmi-build.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid

import httpx
import pytest

from ppmi_build.emulator import start
from tests.conftest import make_snk, mcs_compile
from tests.nupkg_builder import build_nupkg
from tests.pipeline_helpers import (
    APP_OBJECT,
    APPLICATION,
    AUDIENCE,
    ENV_DEV,
    ISSUER,
    TENANT,
    graph_fics,
    openssl_sha256,
    seed_graph_fics,
    self_signed_subject,
    write_project,
)
from tests.xrm_sdk import surface_dll

MARKER = "ppmi-validate-probe/1"


def _init(root, kind, name):
    from click.testing import CliRunner

    from ppmi_build.cli import main

    r = CliRunner().invoke(main, ["init", str(root), "--name", name, "--kind", kind, "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return root


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """The scaffolded sources of both kinds compiled with mcs: {kind: dll}."""
    sdk = surface_dll(tmp_path_factory)
    out = {}
    for kind, name in (("package", "Contoso.Probe"), ("assembly", "Contoso.ProbeAsm")):
        root = _init(tmp_path_factory.mktemp("init") / name, kind, name)
        src = sorted((root / "src").glob("*.cs"))
        assert any(MARKER in p.read_text() for p in src), "the scaffolded plug-in has the probe handler"
        dll = tmp_path_factory.mktemp("bin") / f"{name}.dll"
        snk = next((root / "src").glob("*.snk"), None) or make_snk(dll.parent / "k.snk")
        res = mcs_compile(dll, src, references=[sdk], keyfile=snk)
        assert res.returncode == 0, res.stdout + res.stderr
        out[kind] = dll
    return out


def test_scaffolded_plugin_of_both_kinds_compiles_and_holds_the_probe_handler(scaffolded):
    for dll in scaffolded.values():
        data = dll.read_bytes()
        assert MARKER.encode("utf-16-le") in data  # ldstr in the #US heap (ECMA-335 §II.24.2.4)
        assert b"ppmi_probe_result".decode().encode("utf-16-le") in data


@pytest.fixture
def env_vars(monkeypatch, password_env):
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", "emulator-token")
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "1")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_GRAPH_URL", "PPMI_ARM_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def platform():
    emu = start(options={"environment_id": ENV_DEV, "applications": {APPLICATION: {"object_id": APP_OBJECT}}})
    yield emu
    emu.stop()


@pytest.fixture
def released(cli, tmp_path, platform, env_vars, scaffolded, pki):
    """A package released into the emulator (release exit 0, including validate's checks)."""
    pkg = build_nupkg(tmp_path / "Contoso.Probe.1.0.0.nupkg", package_id="Contoso.Probe",
                      dlls=[scaffolded["package"]])
    proj = write_project(tmp_path / "proj", graph_url=platform.url, envs={"dev": (platform.url, ENV_DEV)},
                         cert=pki.self_signed.pfx, kind="package", name="Contoso.Probe")
    r = cli("release", "--env", "dev", "--project", proj, pkg, "--json")
    assert r.exit_code == 0, r.stderr + r.stdout
    kinds = {(a["kind"], a["status"]) for a in json.loads(r.stdout)["actions"]}
    assert ("dataverse-fic", "unchanged") in kinds and ("check-fic", "unchanged") in kinds
    return proj, pkg


def expected_subject(pki):
    return self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem))


def validate(cli, proj, *args):
    r = cli("validate", "--env", "dev", "--project", proj, "--json", *args)
    return r, json.loads(r.stdout) if r.stdout.strip() else {}


def probe_gone(emu):
    assert emu.rows("customapi") == [] and emu.rows("customapiresponseproperty") == []
    assert [r["plugintracelogsetting"] for r in emu.rows("organization")] == [0]


def graph(emu, method, path="", **kw):
    r = httpx.request(method, f"{emu.url}/v1.0/applications/{APP_OBJECT}/federatedIdentityCredentials{path}",
                      headers={"Authorization": f"Bearer {emu.token}"}, **kw)
    r.raise_for_status()
    return r


def test_validate_after_release_is_valid_with_claims_and_leaves_nothing(cli, released, platform, pki):
    proj, _ = released
    mark = len(platform.requests())
    r, doc = validate(cli, proj)
    assert r.exit_code == 0, r.stderr + r.stdout
    v = doc["validation"]
    assert v["status"] == "valid"
    assert v["claims"]["appid"] == APPLICATION and v["claims"]["tid"] == TENANT
    assert v["claims"]["aud"] == "https://vault.azure.net" and v["claims"]["exp"] > 0
    assert v["expected"] == {"issuer": ISSUER, "subject": expected_subject(pki), "audience": AUDIENCE}
    assert v["dataverse_subject"] == expected_subject(pki)
    assert any(MARKER in t for t in v["trace"])
    assert "eyJ" not in r.stdout  # no token anywhere
    statuses = [(a["kind"], a["status"]) for a in doc["actions"]]
    assert ("customapi", "created") in statuses and ("customapi", "deleted") in statuses
    assert ("trace", "updated") in statuses and ("trace", "rolled-back") in statuses
    probe_gone(platform)
    reqs = platform.requests()[mark:]
    print(f"requests per validate: {len(reqs)} ({sum(r['method'] != 'GET' for r in reqs)} writes)")


def test_deleted_fic_is_aadsts700213_with_expected_subject_and_closest_fic(cli, released, platform, pki):
    proj, _ = released
    seed_graph_fics(platform, 1)
    ours = [f for f in graph_fics(platform) if f["subject"] == expected_subject(pki)]
    graph(platform, "DELETE", f"/{ours[0]['id']}")
    r, doc = validate(cli, proj)
    assert r.exit_code == 1, r.stderr
    d = doc["validation"]["diagnosis"][0]
    assert d["code"] == "AADSTS700213"
    assert expected_subject(pki) in d["cause"] and "'other-0'" in d["cause"]
    assert "AADSTS700213" in r.stderr
    probe_gone(platform)


def test_case_only_fic_is_aadsts7002138(cli, released, platform, pki):
    proj, _ = released
    ours = [f for f in graph_fics(platform) if f["subject"] == expected_subject(pki)][0]
    graph(platform, "DELETE", f"/{ours['id']}")
    sha = openssl_sha256(pki.self_signed.pem)
    graph(platform, "POST", json={"name": "case-only", "issuer": ISSUER, "audiences": [AUDIENCE],
                                  "subject": self_signed_subject(ENV_DEV, sha.upper())})
    r, doc = validate(cli, proj)
    assert r.exit_code == 1
    d = doc["validation"]["diagnosis"][0]
    assert d["code"] == "AADSTS7002138" and d["cause"].startswith("case-only difference")
    assert "case-only" in r.stderr


def test_record_version_1_while_fic_is_v2_names_the_version_mismatch(cli, released, platform):
    proj, _ = released
    mid = platform.rows("managedidentity")[0]["managedidentityid"]
    r = httpx.patch(f"{platform.url}/api/data/v9.2/managedidentities({mid})", json={"version": 1},
                    headers={"Authorization": f"Bearer {platform.token}", "If-Match": "*"})
    assert r.status_code == 204
    r, doc = validate(cli, proj)
    assert r.exit_code == 1
    failed = [a for a in doc["actions"] if a["status"] == "failed"]
    assert [a["kind"] for a in failed][:1] == ["check-version"]
    assert "version mismatch" in failed[0]["detail"] and "version is 1" in failed[0]["detail"]
    probe_gone(platform)


def test_dataverse_fic_subject_differs_release_fails_showing_both(cli, released, platform, pki):
    proj, pkg = released
    want = expected_subject(pki)
    other = want[:-1] + ("0" if want[-1] != "0" else "1")
    httpx.post(f"{platform.url}/_emulator/dataverse/platform", json={"fic_subject": other}).raise_for_status()
    r = cli("release", "--env", "dev", "--project", proj, pkg)
    assert r.exit_code == 1
    assert want in r.stderr and other in r.stderr
    assert f"differ at index {len(want) - 1}" in r.stderr
    f = cli("fic", "--env", "dev", "--project", proj, "--from-dataverse", "--json")
    assert f.exit_code == 1, f.stderr
    fd = json.loads(f.stdout)
    assert fd["dataverse_subject"] == other and fd["computed_subject"] == want


def test_fic_from_dataverse_prints_dataverse_subject(cli, released, pki):
    proj, _ = released
    f = cli("fic", "--env", "dev", "--project", proj, "--from-dataverse")
    assert f.exit_code == 0, f.stderr
    assert expected_subject(pki) in f.stdout


def test_failure_mid_way_still_removes_probe_and_restores_tracing(cli, released, platform):
    proj, _ = released
    platform.add_fault(method="POST", path_contains="/ppmi_validate_", status=500, times=5)
    r, doc = validate(cli, proj)
    assert r.exit_code == 3, r.stderr
    probe_gone(platform)


def test_plan_writes_nothing_and_keep_leaves_the_probe(cli, released, platform):
    proj, _ = released
    mark = len(platform.requests())
    r, doc = validate(cli, proj, "--plan")
    assert r.exit_code == 0, r.stderr
    assert {a["status"] for a in doc["actions"] if a["kind"] in ("customapi", "invoke")} == {"planned"}
    assert [q for q in platform.requests()[mark:] if q["method"] != "GET"] == []
    r, doc = validate(cli, proj, "--keep")
    assert r.exit_code == 0
    assert len(platform.rows("customapi")) == 1
    r, doc = validate(cli, proj)  # reuses it, then removes it
    assert r.exit_code == 0 and ("customapi", "unchanged") in [(a["kind"], a["status"]) for a in doc["actions"]]
    probe_gone(platform)


def test_environment_without_the_function_falls_back(cli, released, platform):
    proj, _ = released
    platform.add_fault(method="GET", path_contains="GetComponentManagedIdentityFIC", status=404, code="0x8006088a",
                       message="Resource not found for the segment 'GetComponentManagedIdentityFIC'.")
    r, doc = validate(cli, proj, "--no-invoke")
    assert r.exit_code == 0, r.stderr
    assert any("does not offer GetComponentManagedIdentityFIC" in n for n in doc["notes"])


def test_standalone_assembly_with_a_plugintype_row(cli, tmp_path, platform, env_vars, scaffolded, pki):
    dll = tmp_path / "Contoso.ProbeAsm.dll"
    shutil.copyfile(scaffolded["assembly"], dll)
    proj = write_project(tmp_path / "proj", graph_url=platform.url, envs={"dev": (platform.url, ENV_DEV)},
                         cert=pki.self_signed.pfx, kind="assembly", name="Contoso.ProbeAsm")
    r = cli("release", "--env", "dev", "--project", proj, dll)
    assert r.exit_code == 0, r.stderr
    asm = platform.rows("pluginassembly")[0]
    if not platform.rows("plugintype"):  # standalone assemblies get their types from register
        with platform.state.lock:
            platform.state.db.execute(
                "INSERT INTO plugintype (plugintypeid, name, typename, friendlyname, pluginassemblyid, "
                "isworkflowactivity) VALUES (?, ?, ?, ?, ?, 0)",
                (str(uuid.uuid4()), "Contoso.ProbeAsm.AcquireTokenPlugin", "Contoso.ProbeAsm.AcquireTokenPlugin",
                 "AcquireTokenPlugin", asm["pluginassemblyid"]))
    r, doc = validate(cli, proj, dll)
    assert r.exit_code == 0, r.stderr + r.stdout
    assert doc["validation"]["status"] == "valid"
    assert doc["validation"]["signer"]["sha256"] == openssl_sha256(pki.self_signed.pem)
    assert hashlib.sha256(dll.read_bytes()).hexdigest()  # the released file itself was compared
    probe_gone(platform)
