"""Configuration drift that must never end in "success" over an environment that cannot work.

A ``ppmi.toml`` still at ``[identity] version = 0`` after the record was upgraded to 2 (and the v0 FIC retired):
``bind``/``release`` used to set the record back to 0 (exit 0) and the plug-in then failed at run time. Expected
values: the record versions the emulator holds, and the FIC values from the published formulas (domain-spec §1.0,
§7 C: v0 issuer ``https://{env id without hyphens, last two hex digits after a dot}.environment.api.powerplatform
.com/sts``, v0 subject ``component:pluginassembly,thumbprint:{SHA-1 upper-case},environment:{id}``, lower-case v0
audience) with the thumbprint read by openssl.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import run_tool
from tests.emulator_fixture import emulator  # noqa: F401
from tests.pipeline_helpers import APP_OBJECT, ENV_DEV, TENANT, graph_fics, write_project, writes

V0_ISSUER = "https://7efcc31ac410e20e9b95dd448cedf6.53.environment.api.powerplatform.com/sts"  # domain-spec §7 C


def openssl_sha1(pem) -> str:
    out = run_tool("openssl", "x509", "-in", pem, "-noout", "-fingerprint", "-sha1").stdout
    return out.strip().split("=", 1)[1].replace(":", "").upper()


@pytest.fixture
def upgraded(cli, tmp_path, emulator, monkeypatch, password_env, strong_named_dll, pki):  # noqa: F811
    """Released at version 0, upgraded to 2, old FIC retired; ppmi.toml still says version 0."""
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", emulator.token)
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_MI_VERSION"):
        monkeypatch.delenv(var, raising=False)
    dll = tmp_path / "out" / strong_named_dll.name
    dll.parent.mkdir()
    shutil.copyfile(strong_named_dll, dll)
    proj = write_project(tmp_path / "proj", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx, version=0)
    for args in (("release", "--env", "dev", "--project", proj, dll),
                 ("upgrade", "--env", "dev", "--to", "2", "--project", proj),
                 ("upgrade", "--env", "dev", "--to", "2", "--retire-old", "--project", proj)):
        r = cli(*args)
        assert r.exit_code == 0, (args, r.stderr)
    assert emulator.rows("managedidentity")[0]["version"] == 2
    assert [f["issuer"] for f in graph_fics(emulator)] == [f"https://login.microsoftonline.com/{TENANT}/v2.0"]
    monkeypatch.chdir(proj)
    return proj, dll


def test_bind_refuses_to_lower_the_record_version(cli, emulator, upgraded):  # noqa: F811
    proj, dll = upgraded
    before = emulator.rows("managedidentity")[0]
    mark = len(emulator.requests())
    r = cli("bind", "--env", "dev", dll)
    assert r.exit_code == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "version 2" in line and "[identity] version is 0" in line
    assert "`version = 2`" in line and "upgrade --env dev --to 0 --force" in line and str(proj) in line
    assert writes(emulator, mark) == []
    assert emulator.rows("managedidentity")[0] == before


def test_release_refuses_before_any_write(cli, emulator, upgraded):  # noqa: F811
    proj, dll = upgraded
    mark = len(emulator.requests())
    fics = graph_fics(emulator)
    sha = dll.read_bytes()
    for plan in ((), ("--plan",)):
        r = cli("release", "--env", "dev", "--project", proj, dll, *plan)
        assert r.exit_code == 1, r.stderr
        assert "is at version 2 but [identity] version is 0" in r.stderr
    assert writes(emulator, mark) == []
    assert graph_fics(emulator) == fics and dll.read_bytes() == sha
    assert emulator.rows("managedidentity")[0]["version"] == 2


def test_the_two_fixes(cli, emulator, upgraded, pki):  # noqa: F811
    proj, dll = upgraded
    # fix 1: an explicit downgrade restores the version 0 FIC first
    r = cli("upgrade", "--env", "dev", "--to", "0", "--project", proj)
    assert r.exit_code == 2 and "--force" in r.stderr
    r = cli("upgrade", "--env", "dev", "--to", "0", "--force", "--project", proj)
    assert r.exit_code == 0, r.stderr
    assert emulator.rows("managedidentity")[0]["version"] == 0
    v0 = (V0_ISSUER, f"component:pluginassembly,thumbprint:{openssl_sha1(pki.self_signed.pem)},environment:{ENV_DEV}",
          "api://azureadtokenexchange")
    assert v0 in {(f["issuer"], f["subject"], f["audiences"][0]) for f in graph_fics(emulator)}
    # now the configuration (version 0) matches the record: bind is a no-op
    mark = len(emulator.requests())
    r = cli("bind", "--env", "dev", dll)
    assert r.exit_code == 0, r.stderr
    assert writes(emulator, mark) == []

    # fix 2: version = 2 in ppmi.toml (after upgrading again): bind and release succeed, record stays 2
    assert cli("upgrade", "--env", "dev", "--to", "2", "--project", proj).exit_code == 0
    toml = proj / "ppmi.toml"
    toml.write_text(toml.read_text().replace("version = 0", "version = 2"))
    r = cli("bind", "--env", "dev", dll)
    assert r.exit_code == 0, r.stderr
    r = cli("release", "--env", "dev", "--project", proj, dll)
    assert r.exit_code == 0, r.stderr
    assert emulator.rows("managedidentity")[0]["version"] == 2


# --- what register uploads, and what doctor says about what Dataverse holds ------------------------------------


@pytest.fixture
def released(cli, tmp_path, emulator, monkeypatch, password_env, strong_named_dll, pki):  # noqa: F811
    """A signed strong-named assembly released (version 2) and bound; ``unsigned`` is the same assembly unsigned."""
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", emulator.token)
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_MI_VERSION"):
        monkeypatch.delenv(var, raising=False)
    dll = tmp_path / "out" / strong_named_dll.name
    dll.parent.mkdir()
    shutil.copyfile(strong_named_dll, dll)
    unsigned = tmp_path / "unsigned" / strong_named_dll.name
    unsigned.parent.mkdir()
    shutil.copyfile(strong_named_dll, unsigned)
    proj = write_project(tmp_path / "proj", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    assert cli("release", "--env", "dev", "--project", proj, dll).exit_code == 0
    monkeypatch.chdir(proj)
    return proj, dll, unsigned


def _held(emu) -> str:
    return emu.rows("pluginassembly")[0]["content"]


def test_register_refuses_unsigned_content_over_a_bound_assembly(cli, emulator, released):  # noqa: F811
    proj, dll, unsigned = released
    held, mark = _held(emulator), len(emulator.requests())
    for plan in ((), ("--plan",)):
        r = cli("register", "--env", "dev", unsigned, *plan)
        assert r.exit_code == 1, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert f"{unsigned.name} is not signed" in line and "is bound to managedidentities(" in line
        assert "ppmi-build sign" in line and "nothing was uploaded" in line
    assert writes(emulator, mark) == [] and _held(emulator) == held
    # unbound: a warning naming Dataverse's error, and the upload happens
    assert cli("bind", "--env", "dev", dll, "--unbind").exit_code == 0
    r = cli("register", "--env", "dev", unsigned)
    assert r.exit_code == 0, r.stderr
    assert "warning:" in r.stderr and "0x80040216" in r.stderr and f"{unsigned.name} is not signed" in r.stderr


def test_signed_dll_with_appended_data_and_truncated_dll_named_alike(cli, emulator, released, pki):  # noqa: F811
    proj, dll, _ = released
    appended = dll.parent / "appended.dll"
    appended.write_bytes(dll.read_bytes() + b"JUNK" * 4)
    truncated = dll.parent / "truncated.dll"
    truncated.write_bytes(dll.read_bytes()[:-100])
    held, mark = _held(emulator), len(emulator.requests())
    for path, words in ((appended, "has data after the certificate table (16 bytes)"),
                        (truncated, "corrupt certificate table entry")):
        before = path.read_bytes()
        runs = {
            "verify": cli("verify", path),
            "fic": cli("fic", "--artifact", path, "--env", "dev"),
            "sign": cli("sign", path, "--cert", pki.self_signed.pfx, "--no-timestamp"),
            "register": cli("register", "--env", "dev", path),
        }
        for name, r in runs.items():
            assert r.exit_code in (1, 2), (name, r.stderr)
            assert words in r.stderr + r.stdout, (name, r.stdout, r.stderr)
            assert "not signed" not in r.stderr and "native code" not in r.stderr, (name, r.stderr)
        assert runs["register"].exit_code == 1  # bound: refused
        assert path.read_bytes() == before
    assert writes(emulator, mark) == [] and _held(emulator) == held


def test_doctor_checks_the_signature_of_the_held_content(cli, emulator, released):  # noqa: F811
    import base64

    import httpx

    proj, dll, unsigned = released
    row = emulator.rows("pluginassembly")[0]
    httpx.patch(f"{emulator.api_url}/pluginassemblies({row['pluginassemblyid']})",
                json={"content": base64.b64encode(unsigned.read_bytes()).decode()},
                headers={"Authorization": f"Bearer {emulator.token}", "If-Match": "*"}).raise_for_status()
    r = cli("doctor", "--project", proj, "--json")
    assert r.exit_code == 1
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    c = checks["environment:dev:content"]
    assert c["status"] == "fail" and "the content Dataverse holds for pluginassembly" in c["detail"]
    assert "is not signed" in c["detail"] and "release --env dev" in c["detail"]


def test_doctor_names_near_miss_fics_with_the_exact_difference(cli, emulator, released, pki):  # noqa: F811
    import httpx

    proj, dll, _ = released
    mid = emulator.rows("managedidentity")[0]["managedidentityid"]
    auth = {"Authorization": f"Bearer {emulator.token}"}
    httpx.patch(f"{emulator.api_url}/managedidentities({mid})", json={"version": 0},
                headers={**auth, "If-Match": "*"}).raise_for_status()
    sha1 = openssl_sha1(pki.self_signed.pem)
    subject = f"component:pluginassembly,thumbprint:{sha1},environment:{ENV_DEV}"  # domain-spec §1.0
    typo_issuer = V0_ISSUER.replace("environment", "enviornment")
    for name, issuer, subj, aud in (
            ("lower-thumbprint", V0_ISSUER, subject.replace(sha1, sha1.lower()), "api://azureadtokenexchange"),
            ("typo-issuer", typo_issuer, subject, "api://azureadtokenexchange"),
            ("audience-case", V0_ISSUER, subject, "api://AzureADTokenExchange"),
            ("unrelated", "https://token.actions.githubusercontent.com", "repo:contoso/x:ref:main",
             "api://AzureADTokenExchange")):
        httpx.post(f"{emulator.url}/v1.0/applications/{APP_OBJECT}/federatedIdentityCredentials",
                   json={"name": name, "issuer": issuer, "subject": subj, "audiences": [aud]},
                   headers=auth).raise_for_status()
    r = cli("doctor", "--project", proj, "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    detail = checks["environment:dev:fic"]["detail"]
    assert checks["environment:dev:fic"]["status"] == "fail" and r.exit_code == 1
    at_tp = len("component:pluginassembly,thumbprint:") + 1
    at_env = V0_ISSUER.index("environment") + 1
    assert (f"FIC 'lower-thumbprint': subject has {sha1.lower()!r} where {sha1!r} is required (character {at_tp}, "
            "letter case only)") in detail
    assert (f"FIC 'typo-issuer': issuer has 'enviornment' where 'environment' is required (character {at_env})"
            in detail)
    assert ("FIC 'audience-case': audience has 'AzureADTokenExchange' where 'azureadtokenexchange' is required "
            "(character 7, letter case only)") in detail
    assert "unrelated" not in detail
