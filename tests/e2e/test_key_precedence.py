"""Every command picks the same signing key when several are configured (``resolve_signing_key``'s precedence:
command line > ``PPMI_PFX_BASE64`` > ``[signing]``).

With the test PKI's leaf PFX in ``PPMI_PFX_BASE64`` and the self-signed PFX in ``[signing] certificate``, ``sign``,
``fic``, ``cert show``, ``release --plan``, ``rotate --plan`` and ``doctor`` all report the leaf; the expected
thumbprint is computed by ``openssl x509 -fingerprint`` from the test's own certificate file.
"""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from ppmi_build.errors import BadInput, ConfigError
from ppmi_build.signing.keys import choose_signing_key
from tests.conftest import run_tool
from tests.emulator_fixture import emulator  # noqa: F401
from tests.pipeline_helpers import ENV_DEV, TENANT, write_project


def _sha1(pem) -> str:
    out = run_tool("openssl", "x509", "-in", pem, "-noout", "-fingerprint", "-sha1").stdout
    return out.strip().split("=", 1)[1].replace(":", "").upper()


def test_every_command_uses_the_ci_secret_over_the_project_certificate(cli, pki, password_env, tmp_path,
                                                                        monkeypatch, emulator, strong_named_dll):  # noqa: F811
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", emulator.token)
    for var in ("PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_GRAPH_URL", "PPMI_ARM_URL"):
        monkeypatch.delenv(var, raising=False)
    proj = write_project(tmp_path / "proj", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    monkeypatch.chdir(proj)
    monkeypatch.setenv("PPMI_PFX_BASE64", base64.b64encode(pki.leaf.pfx.read_bytes()).decode())
    leaf, other = _sha1(pki.leaf.pem), _sha1(pki.self_signed.pem)
    assert leaf != other
    seen: dict[str, str] = {}

    dll = tmp_path / "Contoso.Strong.dll"
    shutil.copyfile(strong_named_dll, dll)
    r = cli("sign", dll, "--no-timestamp", "--json")
    assert r.exit_code == 0, r.stderr
    seen["sign"] = json.loads(r.stdout)[0]["signer"]["thumbprint_sha1"]

    r = cli("fic", "--tenant-id", TENANT, "--environment-id", ENV_DEV, "--json")
    assert r.exit_code == 0, r.stderr
    seen["fic"] = json.loads(r.stdout)["certificate"]["thumbprint_sha1"]
    fic_subject = json.loads(r.stdout)["subject"]  # the FIC subject identifier of that certificate

    r = cli("cert", "show", "--json")
    assert r.exit_code == 0, r.stderr
    seen["cert show"] = json.loads(r.stdout)["thumbprint_sha1"]

    r = cli("doctor", "--json")
    doc = json.loads(r.stdout)
    (check,) = [c for c in doc["checks"] if c["name"] == "certificate"]
    seen["doctor"] = check["detail"].rsplit("SHA-1 ", 1)[1].rstrip(")")

    r = cli("release", "--env", "dev", "--plan", str(dll), "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    plan = r.stdout
    # the plan names the FIC it would create: the one of the certificate fic printed
    seen["release --plan"] = leaf if fic_subject in plan else plan

    r = cli("release", "--env", "dev", str(dll), "--json")  # registers what rotate reads back
    assert r.exit_code == 0, r.stdout + r.stderr
    r = cli("rotate", "--env", "dev", "--new-cert", pki.self_signed.pfx, "--plan", str(dll), "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    seen["rotate --plan"] = doc["old_certificate"]["thumbprint_sha1"]

    assert {k: v.upper() for k, v in seen.items()} == dict.fromkeys(seen, leaf)


def test_precedence_rules(tmp_path):
    class Signing:
        key = None
        certificate = "proj.pfx"

    class Settings:
        signing = Signing()
        config_file = tmp_path / "ppmi.toml"

        def resolve_path(self, p):
            return tmp_path / p

    s = Settings()
    env = {"PPMI_PFX_BASE64": "UEZY"}
    assert choose_signing_key(s, environ={}).origin == "[signing] certificate"
    assert choose_signing_key(s, environ=env).origin == "PPMI_PFX_BASE64"
    assert choose_signing_key(s, cert="cli.pfx", environ=env).origin == "--cert"
    assert choose_signing_key(s, key="pkcs11:token=T;object=K", environ=env).origin == "--key"
    assert choose_signing_key(s, environ={"PPMI_PFX_BASE64": ""}).origin == "[signing] certificate"
    with pytest.raises(BadInput, match="both name the signing key"):
        choose_signing_key(s, key="pkcs11:token=T;object=K", cert="x.pfx", environ={})
    Signing.key = "pkcs11:token=T;object=K"
    with pytest.raises(ConfigError, match="both set"):
        choose_signing_key(s, environ={})
    Signing.certificate = None
    assert choose_signing_key(s, environ={}).origin == "[signing] key"
    Signing.key = None
    with pytest.raises(ConfigError, match="no signing certificate; pass --cert PATH or --key URI"):
        choose_signing_key(s, environ={})
