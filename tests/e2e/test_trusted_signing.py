"""Trusted Signing (Artifact Signing) as a key source, against the emulated service (production-keys §2(b)).

What is shown, and how it is checked independently of ppmi-build's own code:
* ``sign --key trustedsigning:http://127.0.0.1:PORT/acct/prof`` of a DLL and a .nupkg: osslsigncode verify and
  openssl cms -verify accept them with the emulator's root (``GET /_emulator/trusted-signing/root``);
* the certificate embedded is the leaf of the very operation whose signature is embedded: the signature value is
  read from the file (osslsigncode extract-signature, asn1crypto) and looked up among the emulator's operations
  (``GET /_emulator/trusted-signing/operations``), whose leaf is compared with ``openssl pkcs7 -print_certs``;
  with ``--rotate-issuers`` the operations alternate issuing CAs, so a chain taken from another operation would
  be caught;
* an operation that stays ``InProgress`` past the timeout, a ``Failed`` operation, 401, 403 and 429 each give one
  line, a non-zero exit, the file untouched and no token in the output.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.request
import zipfile

import pytest
from asn1crypto import cms as acms
from cryptography import x509

from ppmi_build.emulator import start
from tests.conftest import require_tool, run_tool
from tests.nupkg_builder import build_nupkg
from tests.pipeline_helpers import (
    ENCODED_TENANT,
    ENV_DEV,
    ISSUER,
    graph_fics,
    held_component,
    parse_json,
    sha256_file,
    write_project,
)

SUBJECT = "CN=Contoso Ltd, O=Contoso Ltd, L=Redmond, S=WA, C=US"


def _start(rotate: bool = False):
    return start(options={"trusted_signing": {"profiles": {"acct/prof": SUBJECT}, "rotate_issuers": rotate}})


@pytest.fixture
def ts_emulator():
    emu = _start(rotate=True)
    yield emu
    emu.stop()


@pytest.fixture
def ts_env(monkeypatch, ts_emulator):
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", ts_emulator.token)
    monkeypatch.setenv("PPMI_TRUSTED_SIGNING_POLL_INTERVAL", "0.01")
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "1")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS"):
        monkeypatch.delenv(var, raising=False)
    return ts_emulator


def key_uri(emu) -> str:
    return f"trustedsigning:{emu.url}/acct/prof"


def control(emu, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{emu.url}/_emulator/trusted-signing/{path}", data=data,
                                 method="POST" if data else "GET")
    with urllib.request.urlopen(req) as r:
        return r.read()


def emulator_root(emu, tmp_path):
    pem = tmp_path / "ts-root.pem"
    pem.write_bytes(control(emu, "root"))
    return pem


def operations(emu) -> list[dict]:
    return json.loads(control(emu, "operations"))


def pem_certificates(out: str) -> list[x509.Certificate]:
    blocks = out.split("-----END CERTIFICATE-----")[:-1]
    return [x509.load_pem_x509_certificate((b[b.index("-----BEGIN"):] + "-----END CERTIFICATE-----").encode())
            for b in blocks]


def signer_signature(p7_der: bytes) -> bytes:
    ci = acms.ContentInfo.load(p7_der)
    return ci["content"]["signer_infos"][0]["signature"].native


def assert_embedded_leaf_is_the_operations(emu, p7_der: bytes, certs: list[x509.Certificate]) -> x509.Certificate:
    """``certs``: the certificates openssl read from the signature."""
    sig = base64.b64encode(signer_signature(p7_der)).decode()
    ops = [o for o in operations(emu) if o["signature"] == sig]
    assert len(ops) == 1, "the embedded signature is not one an operation returned"
    op_leaf = x509.load_pem_x509_certificate(ops[0]["certificate"].encode())
    leaves = [c for c in certs if c.subject.rfc4514_string().startswith("CN=Contoso Ltd")]
    assert leaves == [op_leaf]
    return op_leaf


@pytest.fixture
def dll(tmp_path, strong_named_dll):
    path = tmp_path / strong_named_dll.name
    shutil.copyfile(strong_named_dll, path)
    return path


def test_sign_dll_verifies_and_embeds_the_chain_of_the_same_operation(cli, ts_env, dll, tsa, pki, tmp_path):
    require_tool("osslsigncode")
    r = cli("sign", dll, "--key", key_uri(ts_env), "--timestamp-url", tsa.url)
    assert r.exit_code == 0, r.output
    root = emulator_root(ts_env, tmp_path)
    v = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", root, "-TSA-CAfile", pki.root.pem)
    assert v.returncode == 0 and "Signature verification: ok" in v.stdout, v.stdout + v.stderr
    sig = tmp_path / "sig.der"
    run_tool("osslsigncode", "extract-signature", "-in", dll, "-out", sig, check=True)
    certs = pem_certificates(run_tool("openssl", "pkcs7", "-inform", "DER", "-in", sig, "-print_certs",
                                      check=True).stdout)
    leaf = assert_embedded_leaf_is_the_operations(ts_env, sig.read_bytes(), certs)
    # the emulator alternated issuing CAs: at least one operation was answered by the other CA
    assert len({o["issuer"] for o in operations(ts_env)}) == 2
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == __import__("datetime").timedelta(hours=72)
    assert ts_env.token not in r.output


def test_sign_nupkg_verifies_with_openssl_cms(cli, ts_env, plain_dll, tsa, tmp_path):
    nupkg = build_nupkg(tmp_path / "Contoso.Plugins.1.0.0.nupkg", dlls=[plain_dll])
    r = cli("sign", nupkg, "--key", key_uri(ts_env), "--timestamp-url", tsa.url)
    assert r.exit_code == 0, r.output
    with zipfile.ZipFile(nupkg) as z:
        p7_der = z.read(".signature.p7s")
    p7s = tmp_path / "sig.p7s"
    p7s.write_bytes(p7_der)
    root = emulator_root(ts_env, tmp_path)
    res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", root, "-purpose", "any",
                   "-out", tmp_path / "content.txt", "-certsout", tmp_path / "certs.pem")
    assert res.returncode == 0 and "Verification successful" in res.stderr, res.stderr
    assert_embedded_leaf_is_the_operations(ts_env, p7_der, pem_certificates((tmp_path / "certs.pem").read_text()))


def _one_line_failure(r, dll, before, *secrets):
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith("error")]
    assert len(errors) == 1, r.output
    for s in secrets:
        assert s not in r.output
    assert sha256_file(dll) == before
    return errors[0]


def test_operation_in_progress_past_timeout(cli, ts_env, dll, tsa, monkeypatch):
    monkeypatch.setenv("PPMI_TRUSTED_SIGNING_TIMEOUT", "0.3")
    control(ts_env, "next", {"status": "InProgress"})
    before = sha256_file(dll)
    r = cli("sign", dll, "--key", key_uri(ts_env), "--timestamp-url", tsa.url)
    line = _one_line_failure(r, dll, before, ts_env.token)
    assert r.exit_code == 3 and "still InProgress after 0.3 s" in line and "PPMI_TRUSTED_SIGNING_TIMEOUT" in line


def test_failed_operation(cli, ts_env, dll, tsa):
    control(ts_env, "next", {"status": "Failed"})
    before = sha256_file(dll)
    r = cli("sign", dll, "--key", key_uri(ts_env), "--timestamp-url", tsa.url)
    line = _one_line_failure(r, dll, before, ts_env.token)
    assert r.exit_code == 3 and "ended Failed" in line


def test_401_wrong_token(cli, ts_env, dll, tsa, monkeypatch):
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", "not-the-emulator-token")
    before = sha256_file(dll)
    r = cli("sign", dll, "--key", key_uri(ts_env), "--timestamp-url", tsa.url)
    line = _one_line_failure(r, dll, before, "not-the-emulator-token", ts_env.token)
    assert r.exit_code == 3 and "HTTP 401" in line


def test_403_names_the_role(cli, ts_env, dll, tsa):
    ts_env.add_fault(method="POST", path_contains="certificateprofiles", status=403)
    before = sha256_file(dll)
    r = cli("sign", dll, "--key", key_uri(ts_env), "--timestamp-url", tsa.url)
    line = _one_line_failure(r, dll, before, ts_env.token)
    assert r.exit_code == 3 and "Artifact Signing Certificate Profile Signer" in line


def test_429_after_retries(cli, ts_env, dll, tsa):
    ts_env.add_fault(method="POST", path_contains="certificateprofiles", status=429, retry_after=0, times=5)
    before = sha256_file(dll)
    r = cli("sign", dll, "--key", key_uri(ts_env), "--timestamp-url", tsa.url)
    line = _one_line_failure(r, dll, before, ts_env.token)
    assert r.exit_code == 3 and "HTTP 429" in line
    posts = [q for q in ts_env.requests() if q["method"] == "POST" and "certificateprofiles" in q["path"]]
    assert len(posts) == 2  # the first attempt and PPMI_HTTP_RETRIES=1 retry


def test_unknown_profile_is_bad_input(cli, ts_env, dll, tsa):
    before = sha256_file(dll)
    r = cli("sign", dll, "--key", f"trustedsigning:{ts_env.url}/acct/nope", "--timestamp-url", tsa.url)
    line = _one_line_failure(r, dll, before, ts_env.token)
    assert r.exit_code == 2 and "HTTP 404" in line and "'nope'" in line


# --- FICs for a certificate whose issuer changes ---------------------------------------------------------------

_DOTNET_KEYS = {"2.5.4.3": "CN", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.7": "L", "2.5.4.8": "S", "2.5.4.6": "C"}


def dotnet_dn(name: x509.Name) -> str:
    """.NET's X500DistinguishedName.Name for a plain-ASCII DN of single-valued RDNs: last RDN first, ``, ``
    between them, CryptoAPI key names (``S=`` for the state) — the rendering domain-spec §1.2 hashes."""
    return ", ".join(f"{_DOTNET_KEYS[rdn_attr.oid.dotted_string]}={rdn_attr.value}"
                     for rdn in reversed(list(name.rdns)) for rdn_attr in rdn)


def v2_subject(env_id: str, cert: x509.Certificate) -> str:
    """domain-spec §1.2: ``{prefix}/i/{b64url(sha256(issuer DN))}/s/{b64url(sha256(subject DN))}``."""
    import hashlib

    def h(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    return (f"/eid1/c/pub/t/{ENCODED_TENANT}/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/{env_id}"
            f"/i/{h(dotnet_dn(cert.issuer))}/s/{h(dotnet_dn(cert.subject))}")


EMULATOR_ISSUERS = ["CN=PPMI Emulator ID Verified CS EOC CA 01, O=ppmi-build emulator",
                    "CN=PPMI Emulator ID Verified CS AOC CA 01, O=ppmi-build emulator"]


def embedded_leaf(path, tmp_path) -> x509.Certificate:
    sig = tmp_path / "embedded.der"
    sig.unlink(missing_ok=True)
    run_tool("osslsigncode", "extract-signature", "-in", path, "-out", sig, check=True)
    certs = pem_certificates(run_tool("openssl", "pkcs7", "-inform", "DER", "-in", sig, "-print_certs",
                                      check=True).stdout)
    return next(c for c in certs if dotnet_dn(c.subject) == SUBJECT)


@pytest.mark.interop
def test_rotating_issuers_two_releases_two_fics(cli, ts_env, dll, tsa, tmp_path, password_env, monkeypatch):
    require_tool("osslsigncode")
    emu = ts_env
    proj = write_project(tmp_path / "proj", graph_url=emu.url, envs={"dev": (emu.url, ENV_DEV)}, cert=None)
    toml = proj / "ppmi.toml"
    extra = ", ".join(f'"{d}"' for d in EMULATOR_ISSUERS)
    toml.write_text(toml.read_text().replace(
        "timestamp_urls = []", f'timestamp_urls = ["{tsa.url}"]\nkey = "{key_uri(emu)}"\nextra_issuers = [{extra}]'))

    r1 = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r1.exit_code == 0, r1.output
    leaf1 = embedded_leaf(dll, tmp_path)
    fics1 = graph_fics(emu)
    assert [(f["issuer"], f["subject"]) for f in fics1] == [(ISSUER, v2_subject(ENV_DEV, leaf1))]
    assert "new issuer " + dotnet_dn(leaf1.issuer) in r1.output

    mark = len(emu.requests())
    r2 = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r2.exit_code == 0, r2.output
    leaf2 = embedded_leaf(dll, tmp_path)
    assert dotnet_dn(leaf1.issuer) != dotnet_dn(leaf2.issuer)
    assert {dotnet_dn(leaf1.issuer), dotnet_dn(leaf2.issuer)} == set(EMULATOR_ISSUERS)
    fics2 = graph_fics(emu)
    assert sorted(f["subject"] for f in fics2) == sorted([v2_subject(ENV_DEV, leaf1), v2_subject(ENV_DEV, leaf2)])
    assert "new issuer " + dotnet_dn(leaf2.issuer) in r2.output
    # the second FIC was created before anything changed in Dataverse (content update, binding)
    log = [q for q in emu.requests()[mark:] if q["method"] != "GET"]
    fic_posts = [i for i, q in enumerate(log) if "federatedIdentityCredentials" in q["path"]]
    dv_writes = [i for i, q in enumerate(log) if q["path"].startswith("/api/data/")]
    assert len(fic_posts) == 1 and dv_writes and fic_posts[0] < min(dv_writes)
    # the held content is the file, signed by the second issuing CA
    assert base64.b64decode(held_component(emu)["content"]) == dll.read_bytes()

    monkeypatch.chdir(proj)
    r3 = cli("fic", "--key", key_uri(emu), "--env", "dev", "--json")
    assert r3.exit_code == 0, r3.output
    doc = parse_json(r3)
    listed = {f["subject"]: f for f in doc["issuer_set"]}
    for leaf in (leaf1, leaf2):
        assert v2_subject(ENV_DEV, leaf) in listed
    assert doc["fic_slots"] == {"used": 10, "cap": 20}  # 8 known Microsoft issuing CAs + the emulator's two
    assert emu.token not in r1.output + r2.output + r3.output
