"""``ppmi-build upgrade --env NAME --to 2`` against the emulators over loopback HTTP.

Starting point: a plug-in released as version 0 (v0 FIC on the app registration), whose ``managedidentities`` row
then has ``version`` null, as rows created by the 2024 preview payload (no ``version``) have (domain-spec §2.3,
§2.5). Expected FIC values from the published formulas and vectors (domain-spec §1.0, §7 C/D: v0 issuer for
environment ``7efcc31a-…`` is ``https://7efcc31ac410e20e9b95dd448cedf6.53.environment.api.powerplatform.com/sts``;
v0 subject ``component:pluginassembly,thumbprint:{SHA-1 upper-case},environment:{id}``; lower-case v0 audience)
with the thumbprint and SHA-256 read by openssl.
"""

from __future__ import annotations

import shutil

import httpx
import pytest

from tests.conftest import run_tool
from tests.emulator_fixture import emulator  # noqa: F401
from tests.pipeline_helpers import (
    ENV_DEV,
    ISSUER,
    TENANT,
    arm_fics,
    graph_fics,
    openssl_sha256,
    parse_json,
    self_signed_subject,
    write_project,
    writes,
)

V0_ISSUER = "https://7efcc31ac410e20e9b95dd448cedf6.53.environment.api.powerplatform.com/sts"  # domain-spec §7 C


def openssl_sha1(pem) -> str:
    out = run_tool("openssl", "x509", "-in", pem, "-noout", "-fingerprint", "-sha1").stdout
    return out.strip().split("=", 1)[1].replace(":", "").upper()


@pytest.fixture(params=["app", "uami"])
def v0_plugin(request, cli, tmp_path, emulator, monkeypatch, password_env, strong_named_dll, pki):  # noqa: F811
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", emulator.token)
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_MI_VERSION"):
        monkeypatch.delenv(var, raising=False)
    dll = tmp_path / "out" / strong_named_dll.name
    dll.parent.mkdir()
    shutil.copyfile(strong_named_dll, dll)
    proj = write_project(tmp_path / "proj", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx, version=0, fic_target=request.param)
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 0, r.stderr
    mid = emulator.rows("managedidentity")[0]["managedidentityid"]
    # make it a preview-era row: version null
    resp = httpx.patch(f"{emulator.api_url}/managedidentities({mid})", json={"version": None},
                       headers={"Authorization": f"Bearer {emulator.token}", "If-Match": "*"})
    assert resp.status_code == 204, resp.text
    assert emulator.rows("managedidentity")[0]["version"] is None
    return proj, dll, request.param


def fic_values(emulator, target):  # noqa: F811
    if target == "app":
        return {(f["issuer"], f["subject"], f["audiences"][0]) for f in graph_fics(emulator)}
    return {(f["properties"]["issuer"], f["properties"]["subject"], f["properties"]["audiences"][0])
            for f in arm_fics(emulator)}


def test_upgrade_null_to_2_keeps_old_fic_then_retires(cli, emulator, v0_plugin, pki):  # noqa: F811
    proj, dll, target = v0_plugin
    v0 = (V0_ISSUER, f"component:pluginassembly,thumbprint:{openssl_sha1(pki.self_signed.pem)},environment:{ENV_DEV}",
          "api://azureadtokenexchange")
    v2 = (ISSUER, self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem)), "api://AzureADTokenExchange")
    assert fic_values(emulator, target) == {v0}

    # plan first: read-only
    mark = len(emulator.requests())
    r = cli("upgrade", "--env", "dev", "--to", "2", "--project", proj, "--json", "--plan")
    assert r.exit_code == 0, r.stderr
    st = {(a["kind"], a["status"]) for a in parse_json(r)["actions"]}
    assert ("fic", "planned") in st and ("managedidentity", "planned") in st
    assert writes(emulator, mark) == []

    mark = len(emulator.requests())
    r = cli("upgrade", "--env", "dev", "--to", "2", "--project", proj, "--json")
    assert r.exit_code == 0, r.stderr
    doc = parse_json(r)
    assert doc["from_version"] is None and doc["to_version"] == 2
    st = {(a["kind"], a["status"]) for a in doc["actions"]}
    assert ("fic", "created") in st and ("managedidentity", "updated") in st and ("verify", "unchanged") in st
    # same order as Microsoft's manual upgrade: FIC first, then PATCH version
    log = writes(emulator, mark)
    assert [w["method"] for w in log] == (["POST"] if target == "app" else ["PUT"]) + ["PATCH"]
    assert "managedidentities(" in log[1]["path"]
    assert emulator.rows("managedidentity")[0]["version"] == 2
    assert fic_values(emulator, target) == {v0, v2}  # the old FIC is kept until confirmed
    assert "--retire-old" in doc["retire_command"]
    # the plug-in itself was not touched
    assert [w for w in log if "/api/data/" in w["path"] and "/plugin" in w["path"]] == []

    # re-run: nothing to do
    mark = len(emulator.requests())
    r = cli("upgrade", "--env", "dev", "--to", "2", "--project", proj, "--json")
    assert r.exit_code == 0 and parse_json(r)["changed"] is False
    assert writes(emulator, mark) == []

    # confirmed: retire the old FIC
    r = cli("upgrade", "--env", "dev", "--to", "2", "--project", proj, "--json", "--retire-old")
    assert r.exit_code == 0, r.stderr
    assert ("fic", "deleted") in {(a["kind"], a["status"]) for a in parse_json(r)["actions"]}
    assert fic_values(emulator, target) == {v2}
    assert emulator.rows("managedidentity")[0]["version"] == 2


def test_upgrade_bad_input(cli, emulator, v0_plugin):  # noqa: F811
    proj, dll, _ = v0_plugin
    r = cli("upgrade", "--env", "dev", "--to", "3", "--project", proj)
    assert r.exit_code == 2
    r = cli("upgrade", "--env", "nope", "--to", "2", "--project", proj)
    assert r.exit_code == 2 and "nope" in r.stderr
    assert emulator.rows("managedidentity")[0]["version"] is None


def test_failed_verification_sets_the_version_back(emulator, v0_plugin):  # noqa: F811
    from ppmi_build.errors import ServiceError
    from ppmi_build.pipeline.upgrade import run_upgrade

    proj, dll, target = v0_plugin
    if target != "app":
        pytest.skip("one identity kind is enough for the rollback path")
    armed = []

    def progress(msg: str) -> None:  # after the PATCH, the FIC listing of the verification fails
        if "reading back" in msg and not armed:
            armed.append(emulator.add_fault(method="GET", path_contains="federatedIdentityCredentials", status=503,
                                            times=20))

    v0_fics = graph_fics(emulator)
    with pytest.raises(ServiceError) as e:
        run_upgrade("dev", 2, start=proj, progress=progress)
    assert armed and "set back to null" in e.value.message
    st = {(a["kind"], a["status"]) for a in e.value.partial.to_json()["actions"]}
    assert ("rollback", "rolled-back") in st and ("fic", "rolled-back") in st
    assert emulator.rows("managedidentity")[0]["version"] is None
    emulator.clear_faults()
    assert graph_fics(emulator) == v0_fics  # the version 2 FIC this run added was removed again
    assert "version 2 FIC" in e.value.message


def test_failed_patch_removes_the_v2_fic(cli, emulator, v0_plugin):  # noqa: F811
    """The PATCH of the record's version fails after the v2 FIC was added: the v2 FIC is removed again and the
    record keeps its version (any failure after a FIC was created removes it)."""
    proj, dll, target = v0_plugin
    before = fic_values(emulator, target)
    emulator.add_fault(method="PATCH", path_contains="managedidentities", status=400, times=1)
    r = cli("upgrade", "--env", "dev", "--to", "2", "--project", proj, "--json")
    assert r.exit_code == 3
    doc = parse_json(r)
    st = [(a["kind"], a["status"]) for a in doc["actions"]]
    assert ("fic", "created") in st and ("managedidentity", "failed") in st and ("fic", "rolled-back") in st
    assert "was removed" in doc["error"]["message"]
    assert fic_values(emulator, target) == before
    assert emulator.rows("managedidentity")[0]["version"] is None


def test_fic_command_names_the_v0_fic_as_release_does(cli, emulator, v0_plugin, pki):  # noqa: F811
    """``ppmi-build fic --mi-version 0`` prints the name ``release`` gave the version 0 FIC (one naming rule:
    ``ppmi-<8 hex of the environment ID>-<12 hex of the certificate SHA-256>-v0``)."""
    proj, dll, target = v0_plugin
    names = [f["name"] for f in (graph_fics(emulator) if target == "app" else arm_fics(emulator))]
    expected = f"ppmi-{ENV_DEV.replace('-', '')[:8]}-{openssl_sha256(pki.self_signed.pem)[:12]}-v0"
    assert names == [expected]
    r = cli("fic", "--cert", pki.self_signed.pfx, "--environment-id", ENV_DEV, "--mi-version", "0", "--json")
    assert r.exit_code == 0, r.stderr
    assert parse_json(r)["name"] == expected
    r = cli("fic", "--cert", pki.self_signed.pfx, "--environment-id", ENV_DEV, "--tenant-id", TENANT,
            "--mi-version", "2", "--json")
    assert r.exit_code == 0 and parse_json(r)["name"] == expected[: -len("-v0")]
