"""Signing with a key on a real PKCS#11 token (SoftHSM2), checked by independent verifiers.

A token made in the test (``softhsm2-util --init-token``) holds the test PKI's leaf key and certificate
(``pkcs11-tool --write-object``, id 01, label K) and the intermediate CA certificate. ``ppmi-build sign --key
pkcs11:...`` signs a DLL and a .nupkg; osslsigncode, ``openssl cms -verify`` and Mono chktrust accept them; the
same DLL signed by osslsigncode through OpenSSL's PKCS#11 engine has the same authentihash (osslsigncode's
"Calculated message digest" of both files); a wrong PIN is one line, exit 2, file untouched, PIN not printed;
``fic``/``cert show --key`` use the token's certificate (thumbprint from ``openssl x509 -fingerprint``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import require_tool, run_tool
from tests.nupkg_builder import build_nupkg

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
ENGINE = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"
PIN = "8642-pin-Xq"
SO_PIN = "97531-so-Zr"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ENV_ID = "00000000-0000-0000-0000-0000000000aa"
SPEC_CONTENT = "Version:1\n\n2.16.840.1.101.3.4.2.1-Hash:{b64}\n\n"


@pytest.fixture(scope="module")
def token(pki, tmp_path_factory):
    """A SoftHSM2 token 'T' with the leaf key + certificate (id 01, label K) and the intermediate (label CA)."""
    require_tool("softhsm2-util")
    require_tool("pkcs11-tool")
    if not Path(MODULE).is_file():
        pytest.fail(f"{MODULE} is missing (install softhsm2)")
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    env = dict(os.environ)
    r = run_tool("softhsm2-util", "--init-token", "--free", "--label", "T", "--pin", PIN, "--so-pin", SO_PIN,
                 env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    key_der = d / "key.der"
    key_der.write_bytes(pki.leaf.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    (d / "leaf.der").write_bytes(pki.leaf.der)
    (d / "ca.der").write_bytes(pki.intermediate.der)
    tool = ["pkcs11-tool", "--module", MODULE, "--token-label", "T", "--login", "--pin", PIN]
    for args in (["--write-object", key_der, "--type", "privkey", "--id", "01", "--label", "K"],
                 ["--write-object", d / "leaf.der", "--type", "cert", "--id", "01", "--label", "K"],
                 ["--write-object", d / "ca.der", "--type", "cert", "--id", "02", "--label", "CA"]):
        r = run_tool(*tool, *args, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    key_der.unlink()
    yield f"pkcs11:token=T;object=K?module-path={MODULE}"
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


@pytest.fixture
def pin_env(monkeypatch):
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_PKCS11_MODULE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PPMI_PKCS11_PIN", PIN)


def _digests(path: Path) -> tuple[str, str]:
    """osslsigncode's "Current message digest" (in the signature) and "Calculated message digest" (of the file)."""
    out = run_tool("osslsigncode", "verify", "-in", path).stdout
    cur = re.search(r"Current message digest\s*:\s*([0-9A-F]+)", out)
    calc = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", out)
    assert cur and calc, out
    return cur.group(1), calc.group(1)


def _fingerprint(pem: Path) -> str:
    out = run_tool("openssl", "x509", "-in", pem, "-noout", "-fingerprint", "-sha1").stdout
    return out.strip().split("=", 1)[1].replace(":", "").upper()


def test_sign_dll_with_token_key(cli, token, pin_env, plain_dll, pki, tmp_path):
    dll = tmp_path / "Contoso.Plain.dll"
    shutil.copyfile(plain_dll, dll)
    r = cli("sign", dll, "--key", token, "--no-timestamp", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert PIN not in r.stdout + r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["verified"] and rec["signer"]["sha256"] == hashlib.sha256(pki.leaf.der).hexdigest()
    v = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem)
    assert v.returncode == 0 and "Signature verification: ok" in v.stdout, v.stdout + v.stderr
    # the intermediate came from the token (a certificate object beside the key's)
    assert "ppmi-build Test Code Signing CA" in v.stdout

    # osslsigncode through OpenSSL's PKCS#11 engine, same token, same input: the same authentihash
    require_tool("osslsigncode")
    if not Path(ENGINE).is_file():
        pytest.fail(f"{ENGINE} is missing (install libengine-pkcs11-openssl)")
    theirs = tmp_path / "engine.dll"
    e = run_tool("osslsigncode", "sign", "-pkcs11engine", ENGINE, "-pkcs11module", MODULE,
                 "-key", f"pkcs11:token=T;object=K;type=private;pin-value={PIN}", "-certs", pki.leaf.chain_pem,
                 "-h", "sha256", "-in", plain_dll, "-out", theirs)
    assert e.returncode == 0, e.stdout + e.stderr
    ours_cur, ours_calc = _digests(dll)
    theirs_cur, theirs_calc = _digests(theirs)
    assert ours_cur == ours_calc == theirs_cur == theirs_calc


def test_signed_dll_passes_chktrust(cli, token, pin_env, plain_dll, pki, tmp_path):
    require_tool("certmgr")
    home = tmp_path / "monohome"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    assert "added" in run_tool("certmgr", "-add", "-c", "Trust", pki.root.cer, env=env).stdout
    dll = tmp_path / "c.dll"
    shutil.copyfile(plain_dll, dll)
    r = cli("sign", dll, "--key", token, "--no-timestamp")
    assert r.exit_code == 0, r.stderr
    res = run_tool("chktrust", dll, env=env)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def test_sign_nupkg_with_token_key(cli, token, pin_env, plain_dll, pki, tmp_path):
    pkg = build_nupkg(tmp_path / "Contoso.Plugins.1.0.0.nupkg", dlls=[plain_dll])
    original = pkg.read_bytes()
    r = cli("sign", pkg, "--key", token, "--no-timestamp")
    assert r.exit_code == 0, r.stdout + r.stderr
    p7s = tmp_path / "sig.p7s"
    with zipfile.ZipFile(pkg) as z:
        p7s.write_bytes(z.read(".signature.p7s"))
    out = tmp_path / "content.txt"
    res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.root.pem,
                   "-purpose", "any", "-out", out)
    assert res.returncode == 0, res.stderr
    assert out.read_text() == SPEC_CONTENT.format(b64=base64.b64encode(hashlib.sha256(original).digest()).decode())


def test_module_from_environment_and_pin_env(cli, token, pin_env, plain_dll, pki, tmp_path, monkeypatch):
    monkeypatch.setenv("PPMI_PKCS11_MODULE", MODULE)
    monkeypatch.delenv("PPMI_PKCS11_PIN")
    monkeypatch.setenv("MY_TOKEN_PIN", PIN)
    dll = tmp_path / "m.dll"
    shutil.copyfile(plain_dll, dll)
    r = cli("sign", dll, "--key", "pkcs11:token=T;id=%01", "--pin-env", "MY_TOKEN_PIN", "--no-timestamp")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem).returncode == 0


def _one_line(r) -> str:
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_wrong_pin_is_one_line_and_file_untouched(cli, token, pin_env, plain_dll, tmp_path, monkeypatch):
    wrong = "1111-wrong-pin-Kz"
    monkeypatch.setenv("PPMI_PKCS11_PIN", wrong)
    dll = tmp_path / "w.dll"
    shutil.copyfile(plain_dll, dll)
    before = hashlib.sha256(dll.read_bytes()).hexdigest()
    r = cli("sign", dll, "--key", token, "--no-timestamp")
    assert r.exit_code == 2
    line = _one_line(r)
    assert "wrong PIN for token 'T'" in line and "CKR_PIN_INCORRECT" in line
    assert wrong not in r.stdout + r.stderr and PIN not in r.stdout + r.stderr
    assert hashlib.sha256(dll.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.dll"]


@pytest.mark.parametrize(("uri", "code", "fragment"), [
    ("pkcs11:token=T;object=K?pin-value=1234", 2, "carries pin-value"),
    ("pkcs11:token=Nope;object=K?module-path=" + MODULE, 2, "no token matches"),
    ("pkcs11:token=T;object=Missing?module-path=" + MODULE, 2, "no private key with label 'Missing'"),
    ("pkcs11:token=T;object=K?module-path=/nonexistent/libnothing.so", 3, "cannot load the PKCS#11 module"),
    ("pkcs11:token=T;object=K", 2, "no PKCS#11 module"),
    ("keyvault:https://v.vault.azure.net/keys/c", 2, "the path must be /certificates/NAME"),
    ("trustedsigning:https://weu.codesigning.azure.net/acct/prof", 2, "no Trusted Signing credentials"),
    ("keyvault:http://v.vault.azure.net/certificates/c", 2, "must start with https://"),
])
def test_key_uri_errors(cli, token, pin_env, plain_dll, tmp_path, uri, code, fragment):
    dll = tmp_path / "e.dll"
    shutil.copyfile(plain_dll, dll)
    before = dll.read_bytes()
    # (a Trusted Signing key must timestamp: a TSA URL that is never reached, since the key fails first)
    stamp = ["--timestamp-url", "http://127.0.0.1:9/"] if uri.startswith("trustedsigning:") else ["--no-timestamp"]
    r = cli("sign", dll, "--key", uri, *stamp)
    assert r.exit_code == code, r.stdout + r.stderr
    assert fragment in _one_line(r)
    assert "1234" not in r.stderr and PIN not in r.stderr
    assert dll.read_bytes() == before


def test_a_trusted_signing_key_refuses_no_timestamp_before_anything_is_signed(cli, plain_dll, tmp_path):
    """Its leaf certificates live 72 hours (production-keys §3): an untimestamped signature would stop verifying
    then. One line, exit 2, before any signing operation or write."""
    dll = tmp_path / "e.dll"
    shutil.copyfile(plain_dll, dll)
    before = dll.read_bytes()
    r = cli("sign", dll, "--key", "trustedsigning:https://weu.codesigning.azure.net/acct/prof", "--no-timestamp")
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "must be timestamped" in _one_line(r) and "--no-timestamp" in _one_line(r)
    assert dll.read_bytes() == before


def test_key_and_cert_together_is_a_usage_error(cli, token, pin_env, plain_dll, pki, tmp_path):
    dll = tmp_path / "u.dll"
    shutil.copyfile(plain_dll, dll)
    r = cli("sign", dll, "--key", token, "--cert", pki.leaf.pfx)
    assert r.exit_code == 2 and "both name the signing key" in _one_line(r)


def test_fic_and_cert_show_use_the_token_certificate(cli, token, pin_env, pki):
    thumb = _fingerprint(pki.leaf.pem)
    r = cli("fic", "--key", token, "--tenant-id", TENANT, "--environment-id", ENV_ID, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["certificate"]["thumbprint_sha1"].upper() == thumb
    assert data["source"] == token
    ref = cli("fic", "--cert", pki.leaf.cer, "--tenant-id", TENANT, "--environment-id", ENV_ID, "--json")
    assert {k: data[k] for k in ("issuer", "subject", "audience")} == {
        k: json.loads(ref.stdout)[k] for k in ("issuer", "subject", "audience")}
    s = cli("cert", "show", "--key", token, "--json")
    assert s.exit_code == 0, s.stderr
    assert json.loads(s.stdout)["thumbprint_sha1"].upper() == thumb and json.loads(s.stdout)["chain_length"] == 2
