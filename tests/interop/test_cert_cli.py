"""``cert new``, ``cert show`` and ``fic`` through the CLI, checked with independent tools.

Independent verifiers: ``openssl x509`` (fingerprints, EKU, key usage, key size, validity, subject
order), ``openssl pkcs12`` (the PFX opens with the password), ``openssl verify`` (self-signature),
Mono's ``X509Certificate2.Subject`` (plain names), ``osslsigncode`` (signs the DLL whose signer
``fic --artifact`` must find).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from ppmi_build.identity.fic import dn_hash
from tests.conftest import require_tool, run_tool
from tests.interop.test_dn import mono_subject  # noqa: F401  (session fixture: Mono X509Certificate2.Subject)

TENANT = "5f8a1a9f-2e1a-415f-b10c-84c3736a21b9"
ENV_ID = "7efcc31a-c410-e20e-9b95-dd448cedf653"
CONTRACT_KEYS = {"subject", "issuer", "thumbprint_sha1", "sha256", "not_before", "not_after", "self_signed",
                 "code_signing", "key"}


def _openssl_fingerprint(path: Path, alg: str, inform: str = "DER") -> str:
    r = run_tool("openssl", "x509", "-in", path, "-inform", inform, "-noout", "-fingerprint", f"-{alg}")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split("=", 1)[1].replace(":", "")


def _openssl_dates(path: Path, inform: str = "DER") -> tuple[str, str]:
    r = run_tool("openssl", "x509", "-in", path, "-inform", inform, "-noout", "-startdate", "-enddate")
    out = dict(line.split("=", 1) for line in r.stdout.strip().splitlines())

    def iso(v: str) -> str:
        t = dt.datetime.strptime(v.replace("  ", " "), "%b %d %H:%M:%S %Y GMT")
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    return iso(out["notBefore"]), iso(out["notAfter"])


def _one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# --- cert new -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One default `cert new` (RSA 3072) shared by the read-only checks below."""
    from click.testing import CliRunner

    from ppmi_build.cli import main

    out = tmp_path_factory.mktemp("certnew") / "out"
    r = CliRunner().invoke(main, ["cert", "new", "--subject", "E=dev@contoso.com, CN=Contoso Dev", "--out", str(out),
                                  "--json"], env={"PPMI_PFX_PASSWORD": "pfx pass 1"}, catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout), out


def test_cert_new_json(made):
    data, out = made
    assert CONTRACT_KEYS <= set(data)
    assert data["subject"] == "E=dev@contoso.com, CN=Contoso Dev"  # as written (domain-spec §1.2)
    assert data["issuer"] == data["subject"]
    assert data["self_signed"] is True and data["code_signing"] is True and data["key"] == "RSA-3072"
    assert data["pfx"] == str(out / "contoso-dev.pfx") and data["cer"] == str(out / "contoso-dev.cer")
    assert data["password_protected"] is True
    assert stat.S_IMODE(os.stat(data["pfx"]).st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["contoso-dev.cer", "contoso-dev.pfx"]  # no temp files


@pytest.mark.interop
def test_cert_new_matches_openssl(made):
    data, out = made
    cer = out / "contoso-dev.cer"
    assert _openssl_fingerprint(cer, "sha1") == data["thumbprint_sha1"]
    assert _openssl_fingerprint(cer, "sha256").lower() == data["sha256"]
    assert _openssl_dates(cer) == (data["not_before"], data["not_after"])
    ext = run_tool("openssl", "x509", "-in", cer, "-inform", "DER", "-noout", "-ext",
                   "extendedKeyUsage,keyUsage,basicConstraints,subjectKeyIdentifier").stdout
    assert "Code Signing" in ext and "Digital Signature" in ext and "CA:FALSE" in ext
    assert "Key Usage: critical" in ext and "Subject Key Identifier" in ext
    assert "Time Stamping" not in ext and "Any Extended Key Usage" not in ext
    text = run_tool("openssl", "x509", "-in", cer, "-inform", "DER", "-noout", "-text").stdout
    assert "Public-Key: (3072 bit)" in text and "sha256WithRSAEncryption" in text
    # RFC 2253 prints the reverse of the DER order: the written order, so DER holds CN first, then E.
    subj = run_tool("openssl", "x509", "-in", cer, "-inform", "DER", "-noout", "-subject", "-nameopt", "RFC2253")
    assert subj.stdout.strip() == "subject=emailAddress=dev@contoso.com,CN=Contoso Dev"
    pem = out.parent / "c.pem"
    run_tool("openssl", "x509", "-in", cer, "-inform", "DER", "-out", pem, check=True)
    assert run_tool("openssl", "verify", "-CAfile", pem, pem).stdout.strip() == f"{pem}: OK"


@pytest.mark.interop
def test_cert_new_pfx_opens_with_openssl(made):
    data, out = made
    env = dict(os.environ, PFXPW="pfx pass 1")
    r = run_tool("openssl", "pkcs12", "-in", data["pfx"], "-passin", "env:PFXPW", "-nokeys", env=env)
    assert r.returncode == 0, r.stderr
    assert "BEGIN CERTIFICATE" in r.stdout
    r = run_tool("openssl", "pkcs12", "-in", data["pfx"], "-passin", "env:PFXPW", "-nocerts", "-nodes", env=env)
    assert r.returncode == 0 and "PRIVATE KEY" in r.stdout
    env["PFXPW"] = "not the password"
    assert run_tool("openssl", "pkcs12", "-in", data["pfx"], "-passin", "env:PFXPW", "-nokeys", env=env).returncode != 0


@pytest.mark.interop
def test_cert_new_subject_matches_mono(made, mono_subject):  # noqa: F811
    data, out = made
    assert mono_subject(out / "contoso-dev.cer") == [(data["subject"], data["issuer"])]


def test_cert_new_without_password_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("PPMI_PFX_PASSWORD", raising=False)
    r = cli("cert", "new", "--subject", "CN=Contoso Dev", "--out", tmp_path / "o", "--key-size", "2048")
    assert r.exit_code == 2
    assert "--password-env" in _one_error_line(r) and "--no-password" in r.stderr
    assert not (tmp_path / "o").exists()


def test_cert_new_no_password(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("PPMI_PFX_PASSWORD", raising=False)
    r = cli("cert", "new", "--subject", "CN=Unprotected Dev", "--out", tmp_path, "--key-size", "2048",
            "--no-password", "--name", "u", "--days", "30", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["password_protected"] is False
    start, end = dt.datetime.fromisoformat(data["not_before"]), dt.datetime.fromisoformat(data["not_after"])
    assert end - start == dt.timedelta(days=30)
    r2 = cli("cert", "show", tmp_path / "u.pfx", "--json")
    assert r2.exit_code == 0 and json.loads(r2.stdout)["sha256"] == data["sha256"]


def test_cert_new_refuses_to_overwrite(cli, tmp_path, password_env):
    args = ("cert", "new", "--subject", "CN=Contoso Dev", "--out", tmp_path, "--key-size", "2048", "--json")
    assert cli(*args).exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    r = cli(*args)
    assert r.exit_code == 2
    assert "already exists" in _one_error_line(r) and "--force" in r.stderr
    assert json.loads(r.stdout)["error"]["exit_code"] == 2
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    r = cli(*args, "--force")
    assert r.exit_code == 0
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(after) == set(before) and after["contoso-dev.cer"] != before["contoso-dev.cer"]


@pytest.mark.parametrize("args,fragment", [
    (("--subject", 'CN="unterminated'), 'CN="unterminated'),
    (("--subject", "XX=nope"), "'XX'"),
    (("--subject", "E=dévéloppeur@contoso.com"), "ASCII"),
    (("--subject", ""), "empty"),
    (("--subject", "CN=ok", "--days", "0"), "--days 0"),
    (("--subject", "CN=ok", "--name", "../escape"), "--name"),
])
def test_cert_new_bad_input(cli, tmp_path, password_env, args, fragment):
    r = cli("cert", "new", "--out", tmp_path / "o", "--key-size", "2048", *args)
    assert r.exit_code == 2
    assert fragment in _one_error_line(r)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# --- cert show ------------------------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("which", ["cer", "pem", "pfx", "chain_pem"])
def test_cert_show_pki_leaf(cli, pki, password_env, which):
    path = getattr(pki.leaf, which)
    r = cli("cert", "show", path, "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert CONTRACT_KEYS <= set(data)
    # tests/pki.py encodes O then CN; .NET renders the reverse (written here by hand).
    assert data["subject"] == "CN=Contoso Plug-in Signing, O=ppmi-build tests"
    assert data["issuer"] == "CN=ppmi-build Test Code Signing CA, O=ppmi-build tests"
    assert data["thumbprint_sha1"] == _openssl_fingerprint(pki.leaf.cer, "sha1")
    assert data["sha256"] == _openssl_fingerprint(pki.leaf.cer, "sha256").lower()
    assert (data["not_before"], data["not_after"]) == _openssl_dates(pki.leaf.cer)
    assert data["self_signed"] is False and data["code_signing"] is True and data["key"] == "RSA-2048"
    assert data["chain_length"] == (1 if which in ("cer", "pem") else 2)


def test_cert_show_human(cli, pki):
    r = cli("cert", "show", pki.self_signed.cer)
    assert r.exit_code == 0
    assert "Subject:            E=dev@contoso.example, CN=Contoso Dev" in r.stdout
    assert "Self-signed:        yes" in r.stdout


def test_cert_show_wrong_password(cli, pki, tmp_path, monkeypatch):
    monkeypatch.delenv("PPMI_PFX_PASSWORD", raising=False)
    secret = "hunter2-wrong-Zq9"
    pwfile = tmp_path / "pw"
    pwfile.write_text(secret + "\n")
    before = pki.leaf.pfx.read_bytes()
    for extra in ((), ("--json",)):
        r = cli("cert", "show", pki.leaf.pfx, "--password-file", pwfile, *extra)
        assert r.exit_code == 2
        assert "wrong password" in _one_error_line(r)
        assert secret not in r.stdout and secret not in r.stderr
    assert json.loads(r.stdout)["error"]["exit_code"] == 2
    assert pki.leaf.pfx.read_bytes() == before


def test_cert_show_missing_file_and_garbage(cli, tmp_path):
    r = cli("cert", "show", tmp_path / "nope.cer")
    assert r.exit_code == 2 and "does not exist" in _one_error_line(r)
    junk = tmp_path / "junk.cer"
    junk.write_bytes(b"not a certificate")
    r = cli("cert", "show", junk)
    assert r.exit_code == 2 and "junk.cer" in _one_error_line(r)


# --- fic ------------------------------------------------------------------------------------------


def test_fic_json_and_normalisation_note(cli, pki):
    r = cli("fic", "--cert", pki.leaf.cer, "--tenant-id", "{" + TENANT.upper() + "}",
            "--environment-id", ENV_ID.replace("-", ""), "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert {"version", "issuer", "subject", "audience", "certificate", "name", "warnings"} <= set(data)
    assert data["version"] == 2 and data["cloud"] == "public"
    assert data["issuer"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert data["audience"] == "api://AzureADTokenExchange"
    assert data["subject"] == (
        f"/eid1/c/pub/t/nxqKXxouX0GxDITDc2ohuQ/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/{ENV_ID}"
        f"/i/{dn_hash('CN=ppmi-build Test Code Signing CA, O=ppmi-build tests')}"
        f"/s/{dn_hash('CN=Contoso Plug-in Signing, O=ppmi-build tests')}")
    assert data["certificate"]["thumbprint_sha1"] == hashlib.sha1(pki.leaf.der).hexdigest().upper()
    assert f"note: tenant ID '{{{TENANT.upper()}}}' normalized to {TENANT}" in r.stderr
    assert f"normalized to {ENV_ID}" in r.stderr


def test_fic_human_output(cli, pki):
    r = cli("fic", "--cert", pki.self_signed.pem, "--tenant-id", TENANT, "--environment-id", ENV_ID,
            "--mi-version", "1", "--cloud", "usgov")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"Issuer: https://login.microsoftonline.us/{TENANT}/v2.0"
    assert lines[1] == (f"Subject identifier: /eid1/c/usg/t/nxqKXxouX0GxDITDc2ohuQ/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/"
                        f"e/{ENV_ID}/h/{hashlib.sha256(pki.self_signed.der).hexdigest()}")
    assert lines[2] == "Audience: api://AzureADTokenExchangeUSGov"
    assert "warning: the certificate is self-signed" in r.stderr


@pytest.mark.parametrize("option,value,label", [
    ("--tenant-id", "xyz", "tenant ID 'xyz' is not a GUID"),
    ("--environment-id", "7efcc31a-c410-e20e-9b95", "environment ID '7efcc31a-c410-e20e-9b95' is not a GUID"),
])
def test_fic_malformed_guid(cli, pki, option, value, label):
    args = {"--tenant-id": TENANT, "--environment-id": ENV_ID, option: value}
    r = cli("fic", "--cert", pki.leaf.cer, *[x for kv in args.items() for x in kv], "--json")
    assert r.exit_code == 2
    assert label in _one_error_line(r)
    assert json.loads(r.stdout)["error"]["message"].startswith(label)


def test_fic_v1_comma_cn_refused(cli, pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from ppmi_build.identity.dn import parse_dotnet_dn
    from tests.unit.test_fic import _issue  # a CA-issued certificate with a comma in its CN

    cer = tmp_path / "comma.cer"
    cer.write_bytes(_issue(pki, parse_dotnet_dn('CN="Contoso, Inc."')).public_bytes(serialization.Encoding.DER))
    r = cli("fic", "--cert", cer, "--tenant-id", TENANT, "--environment-id", ENV_ID, "--mi-version", "1")
    assert r.exit_code == 2
    line = _one_error_line(r)
    assert "AADSTS700213" in line and "version 2" in line
    assert cli("fic", "--cert", cer, "--tenant-id", TENANT, "--environment-id", ENV_ID).exit_code == 0


def test_fic_from_ppmi_toml(cli, pki, tmp_path, monkeypatch):
    (tmp_path / "ppmi.toml").write_text(
        f'[identity]\nversion = 2\n[signing]\ncertificate = "{pki.self_signed.cer}"\n'
        f'[environments.dev]\nenvironment_id = "{ENV_ID.upper()}"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PPMI_TENANT_ID", TENANT)
    r = cli("fic", "--env", "dev", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["environment_id"] == ENV_ID and data["tenant_id"] == TENANT
    assert data["subject"].endswith("/h/" + hashlib.sha256(pki.self_signed.der).hexdigest())
    r = cli("fic", "--env", "prod")
    assert r.exit_code == 2 and "prod" in _one_error_line(r)


def test_fic_missing_inputs(cli, pki, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PPMI_TENANT_ID", raising=False)
    r = cli("fic", "--cert", pki.leaf.cer, "--tenant-id", TENANT)
    assert r.exit_code == 2 and "--environment-id" in _one_error_line(r)
    r = cli("fic", "--cert", pki.leaf.cer, "--environment-id", ENV_ID)
    assert r.exit_code == 2 and "tenant ID" in _one_error_line(r)
    r = cli("fic", "--tenant-id", TENANT, "--environment-id", ENV_ID)
    assert r.exit_code == 2 and "--cert" in _one_error_line(r)
    r = cli("fic", "--cert", pki.leaf.cer, "--artifact", pki.leaf.cer, "--tenant-id", TENANT,
            "--environment-id", ENV_ID)
    assert r.exit_code == 2


@pytest.mark.interop
def test_fic_artifact_uses_the_authenticode_signer(cli, pki, plain_dll, tmp_path, pfx_password):
    """The DLL is signed by osslsigncode (independent); its signer must be pki.leaf. Needs
    ppmi_build.signing.api.signer_certificate (the signing engineer's module)."""
    require_tool("osslsigncode")
    pw = tmp_path / "pw"
    pw.write_text(pfx_password)
    pw.chmod(0o600)
    signed = tmp_path / "signed.dll"
    r = run_tool("osslsigncode", "sign", "-pkcs12", pki.leaf.pfx, "-readpass", pw, "-h", "sha256",
                 "-in", plain_dll, "-out", signed)
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli("fic", "--artifact", signed, "--tenant-id", TENANT, "--environment-id", ENV_ID, "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["certificate"]["sha256"] == _openssl_fingerprint(pki.leaf.cer, "sha256").lower()
    assert data["subject"].endswith(f"/s/{dn_hash('CN=Contoso Plug-in Signing, O=ppmi-build tests')}")
    assert data["source"] == str(signed)


def test_fic_artifact_unsigned_or_missing(cli, plain_dll, tmp_path):
    r = cli("fic", "--artifact", plain_dll, "--tenant-id", TENANT, "--environment-id", ENV_ID)
    assert r.exit_code == 2, r.stderr
    assert "sign" in _one_error_line(r)
    r = cli("fic", "--artifact", tmp_path / "missing.dll", "--tenant-id", TENANT, "--environment-id", ENV_ID)
    assert r.exit_code == 2 and "missing.dll" in _one_error_line(r)


def test_cert_new_failure_keeps_old_files_and_leaves_no_temp(cli, tmp_path, password_env):
    # The .cer target is a folder, so the second write fails after the .pfx was written:
    # the old .pfx must come back and no temporary file may stay behind.
    out = tmp_path / "out"
    out.mkdir()
    (out / "contoso-dev.pfx").write_bytes(b"OLD PFX")
    (out / "contoso-dev.cer").mkdir()
    r = cli("cert", "new", "--subject", "CN=Contoso Dev", "--out", out, "--key-size", "2048", "--force")
    assert r.exit_code == 2
    assert "contoso-dev.cer" in _one_error_line(r)
    assert (out / "contoso-dev.pfx").read_bytes() == b"OLD PFX"
    assert sorted(p.name for p in out.iterdir()) == ["contoso-dev.cer", "contoso-dev.pfx"]


def test_atomic_write_into_missing_folder(tmp_path):
    from ppmi_build.errors import InputFileError
    from ppmi_build.identity.certificates import atomic_write

    with pytest.raises(InputFileError, match="does not exist"):
        atomic_write(tmp_path / "missing" / "x.cer", b"data")
    target = atomic_write(tmp_path / "x.pfx", b"secret", mode=0o600)
    assert target.read_bytes() == b"secret" and stat.S_IMODE(target.stat().st_mode) == 0o600
