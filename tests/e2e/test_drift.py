"""Configuration drift that must never end in "success" over an environment that cannot work.

A ``ppmi.toml`` still at ``[identity] version = 0`` after the record was upgraded to 2 (and the v0 FIC retired):
``bind``/``release`` used to set the record back to 0 (exit 0) and the plug-in then failed at run time. Expected
values: the record versions the emulator holds, and the FIC values from the published formulas (domain-spec §1.0,
§7 C: v0 issuer ``https://{env id without hyphens, last two hex digits after a dot}.environment.api.powerplatform
.com/sts``, v0 subject ``component:pluginassembly,thumbprint:{SHA-1 upper-case},environment:{id}``, lower-case v0
audience) with the thumbprint read by openssl.
"""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import run_tool
from tests.emulator_fixture import emulator  # noqa: F401
from tests.pipeline_helpers import ENV_DEV, TENANT, graph_fics, write_project, writes

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
