"""Signing with a key in (emulated) Azure Key Vault: ``--key keyvault:http://127.0.0.1:PORT/certificates/NAME``.

The emulator serves the test PKI's leaf certificate (``GET /certificates/NAME``, leaf only) and signs digests with
its key (``POST /keys/NAME/VERSION/sign``, production-keys §2(a)); the key never leaves it. Independent checks:
``osslsigncode verify -CAfile`` (test root) on the signed DLL, ``openssl cms -verify`` on the .nupkg's
``.signature.p7s``, the FIC of ``fic --key`` recomputed here from the certificate's .NET DN strings with hashlib
(domain-spec §1 v2: ``base64url(SHA-256(UTF-8(DN)))``, tenant ``base64url(bytes_le)``). Failures (401, 403, 404,
429, 500, an EC key, a key that does not match its certificate) are one line, non-zero exit, the file untouched
(sha256 before/after) and the token absent from the output.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import json
import shutil
import threading
import uuid
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from tests.conftest import run_tool
from tests.nupkg_builder import build_nupkg
from tests.pki import PFX_PASSWORD

TOKEN = "kv-test-token-7Qz9xW"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ENV_ID = "00000000-0000-0000-0000-0000000000aa"
SPEC_CONTENT = "Version:1\n\n2.16.840.1.101.3.4.2.1-Hash:{b64}\n\n"


@pytest.fixture(scope="module")
def aia_leaf(pki, tmp_path_factory):
    """A code-signing leaf issued by the test intermediate whose AIA caIssuers URL points at a loopback HTTP server
    serving the intermediate (DER), as a public CA's certificate does. Yields (PFX path, leaf certificate)."""
    d = tmp_path_factory.mktemp("aia")
    (d / "ca.cer").write_bytes(pki.intermediate.der)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(d), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ppmi-build tests"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "Contoso AIA Signing")]))
            .issuer_name(pki.intermediate.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(f"http://127.0.0.1:{server.server_address[1]}/ca.cer"))]),
                critical=False)
            .sign(pki.intermediate.key, hashes.SHA256()))
    pfx = d / "aia.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(b"aia", key, cert, None,
                                                          serialization.BestAvailableEncryption(PFX_PASSWORD.encode())))
    yield pfx, cert
    server.shutdown()
    server.server_close()


@pytest.fixture
def vault(pki, aia_leaf, monkeypatch):
    """The emulator seeded with Key Vault certificates: ``signer`` (the test leaf), ``aia`` (leaf with an AIA URL),
    ``ec`` (an ECDSA certificate) and ``mismatch`` (the leaf's certificate with another key); environment pointing
    ppmi-build at it (token, tiny back-off, no other key configured)."""
    from ppmi_build.emulator import start
    from ppmi_build.emulator.keyvault.models import VaultCertificate

    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_AUTH"):
        monkeypatch.delenv(var, raising=False)
    options = {"vault_certificates": {"signer": pki.leaf.pfx, "aia": aia_leaf[0], "ec": pki.ec.pfx,
                                      "mismatch": VaultCertificate("mismatch", pki.leaf.cert, pki.self_signed.key)},
               "vault_pfx_password": PFX_PASSWORD}
    emu = start(token=TOKEN, options=options)
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "2")
    try:
        yield emu
    finally:
        emu.stop()


def key_uri(vault, name: str = "signer") -> str:
    return f"keyvault:{vault.url}/certificates/{name}"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(r) -> str:
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def dn_hash(dn: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(dn.encode("utf-8")).digest()).rstrip(b"=").decode()


# --- signing ----------------------------------------------------------------------------------------


def test_sign_dll_with_vault_key(cli, vault, plain_dll, pki, tmp_path):
    dll = tmp_path / "Contoso.Plain.dll"
    shutil.copyfile(plain_dll, dll)
    r = cli("sign", dll, "--key", key_uri(vault), "--cert-chain", pki.intermediate.pem, "--no-timestamp", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert TOKEN not in r.stdout + r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["verified"] and rec["signer"]["sha256"] == hashlib.sha256(pki.leaf.der).hexdigest()
    v = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem)
    assert v.returncode == 0 and "Signature verification: ok" in v.stdout, v.stdout + v.stderr
    assert "ppmi-build Test Code Signing CA" in v.stdout  # the intermediate of --cert-chain is embedded
    calls = [(q["method"], q["path"].rsplit("/", 1)[-1] if "/keys/" in q["path"] else q["path"])
             for q in vault.requests()]
    assert calls == [("GET", "/certificates/signer"), ("POST", "sign")]
    assert all(q["query"] == "api-version=7.4" for q in vault.requests())


def test_intermediate_from_the_aia_url(cli, vault, plain_dll, pki, aia_leaf, tmp_path):
    dll = tmp_path / "aia.dll"
    shutil.copyfile(plain_dll, dll)
    r = cli("sign", dll, "--key", key_uri(vault, "aia"), "--no-timestamp", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    v = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem)
    assert v.returncode == 0 and "Signature verification: ok" in v.stdout, v.stdout + v.stderr
    assert "Contoso AIA Signing" in v.stdout and "ppmi-build Test Code Signing CA" in v.stdout


def test_sign_nupkg_with_vault_key(cli, vault, plain_dll, pki, tmp_path):
    pkg = build_nupkg(tmp_path / "Contoso.Plugins.1.0.0.nupkg", dlls=[plain_dll])
    original = pkg.read_bytes()
    r = cli("sign", pkg, "--key", key_uri(vault), "--cert-chain", pki.intermediate.pem, "--no-timestamp")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert TOKEN not in r.stdout + r.stderr
    p7s = tmp_path / "sig.p7s"
    with zipfile.ZipFile(pkg) as z:
        p7s.write_bytes(z.read(".signature.p7s"))
    out = tmp_path / "content.txt"
    res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.root.pem,
                   "-purpose", "any", "-out", out)
    assert res.returncode == 0, res.stderr
    assert out.read_text() == SPEC_CONTENT.format(b64=base64.b64encode(hashlib.sha256(original).digest()).decode())


def test_batch_signs_every_file_against_the_vault(cli, vault, plain_dll, pki, tmp_path):
    dlls = []
    for i in range(4):
        dlls.append(tmp_path / f"b{i}.dll")
        shutil.copyfile(plain_dll, dlls[-1])
    r = cli("sign", *dlls, "--key", key_uri(vault), "--cert-chain", pki.intermediate.pem, "--no-timestamp")
    assert r.exit_code == 0, r.stdout + r.stderr
    for dll in dlls:
        v = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem)
        assert v.returncode == 0, v.stdout + v.stderr
    assert sum(q["path"].endswith("/sign") for q in vault.requests()) == 4


def test_certificate_version_in_the_uri(cli, vault, plain_dll, pki, tmp_path):
    version = hashlib.sha256(pki.leaf.der).hexdigest()[:32]  # the emulator's version id (its models docstring)
    dll = tmp_path / "v.dll"
    shutil.copyfile(plain_dll, dll)
    r = cli("sign", dll, "--key", f"{key_uri(vault)}/{version}", "--cert-chain", pki.intermediate.pem,
            "--no-timestamp")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert vault.requests()[0]["path"] == f"/certificates/signer/{version}"


def test_fic_of_the_vault_certificate(cli, vault):
    r = cli("fic", "--key", key_uri(vault), "--tenant-id", TENANT, "--environment-id", ENV_ID, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    tenant = base64.urlsafe_b64encode(uuid.UUID(TENANT).bytes_le).rstrip(b"=").decode()
    assert data["issuer"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert data["subject"] == (
        f"/eid1/c/pub/t/{tenant}/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/{ENV_ID}"
        f"/i/{dn_hash('CN=ppmi-build Test Code Signing CA, O=ppmi-build tests')}"
        f"/s/{dn_hash('CN=Contoso Plug-in Signing, O=ppmi-build tests')}")
    assert data["source"] == key_uri(vault)
    assert [q["path"] for q in vault.requests()] == ["/certificates/signer"]  # reading a certificate signs nothing


# --- failures ---------------------------------------------------------------------------------------


def _sign_fails(cli, vault, plain_dll, tmp_path, uri: str | None = None) -> tuple[int, str]:
    dll = tmp_path / "f.dll"
    shutil.copyfile(plain_dll, dll)
    before = sha(dll)
    r = cli("sign", dll, "--key", uri or key_uri(vault), "--no-timestamp")
    assert r.exit_code != 0, r.stdout + r.stderr
    assert TOKEN not in r.stdout + r.stderr
    assert sha(dll) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.dll"]
    return r.exit_code, one_line(r)


@pytest.mark.parametrize(("fault", "code", "fragments"), [
    ({"path_contains": "/certificates/", "status": 403, "code": "Forbidden"}, 3,
     ["certificates/get", "403 Forbidden", "'Key Vault Certificate User'"]),
    ({"path_contains": "/keys/", "status": 403, "code": "Forbidden"}, 3,
     ["keys/sign", "403 Forbidden", "'Key Vault Crypto User'"]),
    ({"path_contains": "/keys/", "status": 500, "times": 3}, 3, ["keys/sign", "answered 500 on all 3 attempts"]),
    ({"path_contains": "/certificates/", "status": 503, "times": 3}, 3, ["certificates/get", "answered 503"]),
    ({"path_contains": "/keys/", "status": 429, "retry_after": 0, "times": 3}, 3,
     ["keys/sign", "throttled (429", "on all 3 attempts"]),
    ({"path_contains": "/keys/", "status": 429, "retry_after": 900}, 3,
     ["keys/sign", "asked to wait 900 s", "PPMI_HTTP_MAX_RETRY_AFTER"]),
])
def test_service_refusals_are_one_line(cli, vault, plain_dll, tmp_path, fault, code, fragments):
    vault.add_fault(method="*", **fault)
    exit_code, line = _sign_fails(cli, vault, plain_dll, tmp_path)
    assert exit_code == code, line
    for f in fragments:
        assert f in line, line


def test_wrong_token_is_401(cli, vault, plain_dll, tmp_path, monkeypatch):
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", "not-the-token-3kd9")
    exit_code, line = _sign_fails(cli, vault, plain_dll, tmp_path)
    assert exit_code == 3 and "answered 401" in line and "access token was refused" in line
    assert "not-the-token-3kd9" not in line


@pytest.mark.parametrize(("name", "fragment"), [
    ("missing", "certificate missing was not found"),
    ("signer/0123456789abcdef0123456789abcdef", "certificate signer version 0123456789abcdef0123456789abcdef was "
                                                "not found"),
])
def test_unknown_certificate_is_404(cli, vault, plain_dll, tmp_path, name, fragment):
    exit_code, line = _sign_fails(cli, vault, plain_dll, tmp_path, key_uri(vault, name))
    assert exit_code == 2 and "answered 404 CertificateNotFound" in line and fragment in line


def test_ec_key_is_refused(cli, vault, plain_dll, tmp_path):
    exit_code, line = _sign_fails(cli, vault, plain_dll, tmp_path, key_uri(vault, "ec"))
    assert exit_code == 2 and "EC-HSM" in line and "needs an RSA key" in line
    assert not any(q["path"].endswith("/sign") for q in vault.requests())


def test_key_that_does_not_match_the_certificate(cli, vault, plain_dll, tmp_path):
    exit_code, line = _sign_fails(cli, vault, plain_dll, tmp_path, key_uri(vault, "mismatch"))
    assert exit_code == 2 and "does not verify with the public key of certificate mismatch" in line


def test_retry_after_is_honoured(cli, vault, plain_dll, pki, tmp_path):
    vault.add_fault(method="POST", path_contains="/keys/", status=429, retry_after=1)
    dll = tmp_path / "r.dll"
    shutil.copyfile(plain_dll, dll)
    r = cli("sign", dll, "--key", key_uri(vault), "--cert-chain", pki.intermediate.pem, "--no-timestamp")
    assert r.exit_code == 0, r.stdout + r.stderr
    signs = [q for q in vault.requests() if q["path"].endswith("/sign")]
    assert [q["status"] for q in signs] == [429, 200]
    assert signs[1]["time"] - signs[0]["time"] >= 0.95  # waited the Retry-After, not the 0.01 s back-off
    assert run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem).returncode == 0


def test_connection_refused_is_one_line(cli, vault, plain_dll, tmp_path):
    port = vault.port
    vault.stop()
    exit_code, line = _sign_fails(cli, vault, plain_dll, tmp_path, f"keyvault:http://127.0.0.1:{port}/certificates/s")
    assert exit_code == 3 and "ConnectError" in line and "is reachable" in line


# --- the emulated service ----------------------------------------------------------------------------


def test_emulator_service_answers_in_key_vault_shape(vault, pki):
    import httpx

    h = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=vault.url, headers=h) as c:
        bundle = c.get("/certificates/signer", params={"api-version": "7.4"}).json()
        assert base64.b64decode(bundle["cer"]) == pki.leaf.der
        props = bundle["policy"]["key_props"]
        assert props["kty"] == "RSA-HSM" and props["exportable"] is False
        assert bundle["kid"].startswith(f"{vault.url}/keys/signer/")
        assert "PRIVATE" not in json.dumps(bundle)
        kid = bundle["kid"][len(vault.url):]
        digest = hashlib.sha384(b"payload").digest()
        value = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        out = c.post(f"{kid}/sign", params={"api-version": "7.4"}, json={"alg": "RS384", "value": value}).json()
        sig = base64.urlsafe_b64decode(out["value"] + "=" * (-len(out["value"]) % 4))
        # RSASSA-PKCS1-v1_5 over the SHA-384 DigestInfo, checked with the certificate's public key (openssl)
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        pki.leaf.cert.public_key().verify(sig, digest, padding.PKCS1v15(), Prehashed(hashes.SHA384()))
        bad = c.post(f"{kid}/sign", params={"api-version": "7.4"}, json={"alg": "PS256", "value": value})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadParameter"
        short = c.post(f"{kid}/sign", params={"api-version": "7.4"}, json={"alg": "RS256", "value": value})
        assert short.status_code == 400 and "length of digest" in short.json()["error"]["message"]
        assert c.get("/certificates/signer").json()["error"]["code"] == "BadParameter"  # no api-version
        nf = c.get("/certificates/nope", params={"api-version": "7.4"})
        assert nf.status_code == 404 and nf.json()["error"]["code"] == "CertificateNotFound"
        nk = c.post("/keys/signer/00/sign", params={"api-version": "7.4"}, json={"alg": "RS256", "value": value})
        assert nk.status_code == 404 and nk.json()["error"]["code"] == "KeyNotFound"
        assert httpx.get(f"{vault.url}/certificates/signer?api-version=7.4").status_code == 401


def test_emulator_cli_refuses_a_bad_vault_certificate(cli, pki, monkeypatch):
    monkeypatch.setenv("PPMI_PFX_PASSWORD", "wrong-password-x")
    r = cli("emulator", "--port", "0", "--vault-certificate", f"signer={pki.leaf.pfx}")
    assert r.exit_code == 2 and "vault certificate signer: the PFX cannot be opened" in one_line(r)
    assert "wrong-password-x" not in r.stderr
    r = cli("emulator", "--port", "0", "--vault-certificate", "no-equals-sign")
    assert r.exit_code == 2 and "is not NAME=PFX" in one_line(r)
