"""The fast PKCS#12 reader (``ppmi_build.signing.pkcs12``) against independent producers and oracles.

* PFX files made by ``openssl pkcs12 -export`` (OpenSSL 3 defaults: PBES2/PBKDF2/AES-256-CBC with an
  HMAC-SHA-256 MAC; ``-legacy``: RC2-40 certificates + 3DES key + SHA-1 MAC; explicit 3DES; AES-128
  with a SHA-512 MAC; a non-ASCII password) and by ``cryptography`` (the test PKI's PFX and the
  3DES/50,000-round shape ``ppmi-build cert new`` writes) must give exactly the key and
  certificates that ``cryptography``'s own ``load_key_and_certificates`` gives.
* The PKCS#12 KDF (RFC 7292 Appendix B.2) equals OpenSSL's ``PKCS12KDF`` (``openssl kdf``).
* A wrong password, a tampered file and a MAC-less file are left to cryptography's loader
  (fast path returns None) and ``load_key_source`` keeps its errors.

Also here, because they guard the same issue (#2, ``ppmi-build sign`` start-up): the modules the
sign command must not load, and the console entry point's quick exit (complete JSON on stdout,
exit codes, the signed file verified by osslsigncode).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from ppmi_build.errors import PasswordError
from ppmi_build.signing import keys
from ppmi_build.signing import pkcs12 as fast
from tests.conftest import require_tool, run_tool

PW = "pfx pw"


def _same(got, ref) -> None:
    k1, c1, x1 = got
    k2, c2, x2 = ref
    assert k1.private_numbers() == k2.private_numbers()
    assert c1 == c2
    assert list(x1) == list(x2)


@pytest.fixture(scope="module")
def openssl_pfx(pki, tmp_path_factory):
    """``name -> (path, password)`` of PFX files exported by the openssl command line."""
    require_tool("openssl")
    out = tmp_path_factory.mktemp("openssl-pfx")
    pwfile = out / "pw.txt"
    pwfile.write_text(PW)
    uni = out / "uni.txt"
    uni.write_text("pässwörd €𝄞", encoding="utf-8")
    variants = {
        "default-aes256": [],
        "legacy-rc2": ["-legacy"],
        "3des": ["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"],
        "aes128-sha512mac": ["-keypbe", "AES-128-CBC", "-certpbe", "AES-128-CBC", "-macalg", "sha512",
                             "-iter", "1000"],
        "certs-unencrypted": ["-certpbe", "NONE"],
        "no-mac": ["-nomac"],
        "unicode-password": [],
    }
    made = {}
    for name, extra in variants.items():
        path = out / f"{name}.pfx"
        source = uni if name == "unicode-password" else pwfile
        r = run_tool("openssl", "pkcs12", "-export", "-inkey", pki.leaf.keyfile, "-in", pki.leaf.chain_pem,
                     "-name", "leaf", "-out", path, "-passout", f"file:{source}", *extra)
        assert r.returncode == 0, r.stderr
        made[name] = (path, source.read_text(encoding="utf-8").encode("utf-8"))
    return made


@pytest.mark.interop
@pytest.mark.parametrize("name", ["default-aes256", "legacy-rc2", "3des", "aes128-sha512mac", "certs-unencrypted",
                                  "unicode-password"])
def test_openssl_made_pfx_gives_what_cryptography_gives(openssl_pfx, name):
    path, pw = openssl_pfx[name]
    data = path.read_bytes()
    got = fast.load_key_and_certificates(data, pw)
    assert got is not None, "the fast path should handle this file"
    _same(got, crypto_pkcs12.load_key_and_certificates(data, pw))
    assert len(got[2]) == 1  # leaf + intermediate in the file


@pytest.mark.interop
def test_rc2_certificates_go_to_cryptography_without_the_key(openssl_pfx, monkeypatch):
    """``-legacy`` encrypts the certificates with pbeWithSHA1And40BitRC2-CBC: that safe alone (no key,
    so no RSA key validation) is handed to cryptography; the key still takes the fast path."""
    path, pw = openssl_pfx["legacy-rc2"]
    data = path.read_bytes()
    seen = []
    real = crypto_pkcs12.load_key_and_certificates

    def spy(blob, password, *a, **kw):
        out = real(blob, password, *a, **kw)
        seen.append(out[0])
        return out

    monkeypatch.setattr(crypto_pkcs12, "load_key_and_certificates", spy)
    got = fast.load_key_and_certificates(data, pw)
    assert got is not None
    assert seen and all(k is None for k in seen)  # cryptography only ever saw a key-less PFX
    monkeypatch.undo()
    _same(got, crypto_pkcs12.load_key_and_certificates(data, pw))


@pytest.mark.parametrize("which", ["leaf", "self_signed"])
def test_cryptography_made_pfx(pki, pfx_password, which):
    data = getattr(pki, which).pfx.read_bytes()
    pw = pfx_password.encode()
    got = fast.load_key_and_certificates(data, pw)
    assert got is not None
    _same(got, crypto_pkcs12.load_key_and_certificates(data, pw))


def test_cert_new_shape_3des_50000_rounds(pki):
    """``ppmi-build cert new`` writes pbeWithSHAAnd3-KeyTripleDES-CBC + HMAC-SHA1 with 50,000 rounds."""
    enc = (serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(50000)
           .key_cert_algorithm(crypto_pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1())
           .build(PW.encode()))
    data = crypto_pkcs12.serialize_key_and_certificates(b"dev", pki.leaf.key, pki.leaf.cert, pki.leaf.chain, enc)
    got = fast.load_key_and_certificates(data, PW.encode())
    assert got is not None
    _same(got, crypto_pkcs12.load_key_and_certificates(data, PW.encode()))


def test_wrong_password_is_left_to_cryptography(pki, pfx_password, tmp_path):
    data = pki.leaf.pfx.read_bytes()
    assert fast.load_key_and_certificates(data, b"not the password") is None  # the MAC does not verify
    pwfile = tmp_path / "pw.txt"
    pwfile.write_text("not the password")
    with pytest.raises(PasswordError, match=r"wrong password for .*leaf\.pfx"):
        keys.load_key_source(pki.leaf.pfx, keys.PasswordSource(file=pwfile))


def test_tampered_file_fails_the_mac(pki, pfx_password, tmp_path):
    data = bytearray(pki.leaf.pfx.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the authenticated safe
    assert fast.load_key_and_certificates(bytes(data), pfx_password.encode()) is None
    bad = tmp_path / "tampered.pfx"
    bad.write_bytes(bytes(data))
    with pytest.raises(PasswordError):
        keys.load_key_source(bad, keys.PasswordSource(file=_pwfile(tmp_path, pfx_password)))


@pytest.mark.interop
def test_file_without_mac_falls_back_to_cryptography(openssl_pfx, tmp_path):
    path, pw = openssl_pfx["no-mac"]
    data = path.read_bytes()
    assert fast.load_key_and_certificates(data, pw) is None
    key = keys.load_key_source(path, keys.PasswordSource(file=_pwfile(tmp_path, pw.decode())))
    ref_key, ref_cert, _ = crypto_pkcs12.load_key_and_certificates(data, pw)
    assert key.private_key.private_numbers() == ref_key.private_numbers()
    assert key.certificate == ref_cert


def test_no_password_and_garbage_are_not_handled():
    assert fast.load_key_and_certificates(b"\x30\x03\x02\x01\x03", None) is None
    assert fast.load_key_and_certificates(b"\x30\x03\x02\x01\x03", b"") is None
    assert fast.load_key_and_certificates(b"not DER at all", b"pw") is None
    assert fast.load_key_and_certificates(b"\x30\x80\x02\x01\x03\x00\x00", b"pw") is None  # BER


def test_load_key_source_uses_the_fast_path(pki, pfx_password, tmp_path, monkeypatch):
    """The signing key of a PFX is loaded without cryptography's PKCS#12 loader (and so without
    OpenSSL's RSA key validation), and gives the same chain as before."""
    def forbidden(*a, **kw):
        raise AssertionError("cryptography's PKCS#12 loader should not run for this file")

    monkeypatch.setattr(crypto_pkcs12, "load_key_and_certificates", forbidden)
    key = keys.load_key_source(pki.leaf.pfx, keys.PasswordSource(file=_pwfile(tmp_path, pfx_password)))
    assert key.certificate == pki.leaf.cert
    assert key.certificate_chain() == [pki.leaf.cert, *pki.leaf.chain]


@pytest.mark.interop
@pytest.mark.parametrize(("digest", "password", "salt", "iterations", "id_byte", "n"), [
    ("sha1", "smeg", "0a58cf64530d823f", 1, 1, 24),
    ("sha1", "queeg", "05dec959acff72f7", 1000, 1, 24),
    ("sha1", "queeg", "1682c0fc5b3f7ec5", 1000, 3, 20),
    ("sha1", "pw", "01", 7, 2, 8),
    ("sha256", "a password long enough to need more than one sixty-four byte block", "0102030405060708090a",
     3, 1, 70),
    ("sha512", "x", "00", 2, 3, 64),
])
def test_pkcs12_kdf_matches_openssl(digest, password, salt, iterations, id_byte, n):
    bmp = password.encode("utf-16-be") + b"\0\0"  # RFC 7292 Appendix B.1
    r = run_tool("openssl", "kdf", "-keylen", str(n), "-kdfopt", f"digest:{digest.upper()}",
                 "-kdfopt", f"hexpass:{bmp.hex()}", "-kdfopt", f"hexsalt:{salt}", "-kdfopt", f"iter:{iterations}",
                 "-kdfopt", f"id:{id_byte}", "PKCS12KDF")
    assert r.returncode == 0, r.stderr
    expected = bytes.fromhex(r.stdout.strip().replace(":", ""))
    assert fast.pkcs12_kdf(digest, bmp, bytes.fromhex(salt), iterations, id_byte, n) == expected


def _pwfile(tmp_path: Path, password: str) -> Path:
    p = tmp_path / "password.txt"
    p.write_text(password, encoding="utf-8")
    return p


@pytest.mark.interop
def test_sign_command_start_up_footprint(pki, pfx_password, plain_dll, tmp_path):
    """Issue #2: ``ppmi-build sign`` (no timestamp) loads neither asn1crypto, nor httpx, nor tomllib
    (no ppmi.toml), nor json (text output), nor cryptography's PKCS#12 loader, and the file it
    signs verifies with osslsigncode."""
    dll = tmp_path / "x.dll"
    dll.write_bytes(plain_dll.read_bytes())
    code = (
        "import sys\n"
        "from ppmi_build.cli import main\n"
        "try:\n"
        f"    main(['sign', {str(dll)!r}, '--cert', {str(pki.leaf.pfx)!r}, '--password-file', "
        f"{str(_pwfile(tmp_path, pfx_password))!r}], prog_name='ppmi-build', standalone_mode=False)\n"
        "finally:\n"
        # asn1crypto: the post-sign check reads the CMS with it (the hand-written DER walker is gone)
        "    print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'tomllib', 'json')"
        " or m == 'cryptography.hazmat.primitives.serialization.pkcs12'), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "[]"
    v = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem)
    assert v.returncode == 0, v.stdout + v.stderr


@pytest.mark.interop
def test_console_entry_point_exits_cleanly_after_signing(pki, pfx_password, plain_dll, tmp_path):
    """``run()`` ends a successful ``sign`` without the interpreter's teardown (issue #2): the whole
    JSON document must still reach stdout, the exit code be 0 and the file verify (osslsigncode)."""
    import json

    dll = tmp_path / "y.dll"
    dll.write_bytes(plain_dll.read_bytes())
    r = subprocess.run([sys.executable, "-m", "ppmi_build", "sign", str(dll), "--cert", str(pki.leaf.pfx),
                        "--password-file", str(_pwfile(tmp_path, pfx_password)), "--json"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    (record,) = json.loads(r.stdout)
    assert record["verified"] is True and record["sha256_after"] == __import__("hashlib").sha256(
        dll.read_bytes()).hexdigest()
    v = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem)
    assert v.returncode == 0, v.stdout + v.stderr
    version = subprocess.run([sys.executable, "-m", "ppmi_build", "--version"], capture_output=True, text=True,
                             timeout=60)
    from ppmi_build import __version__

    assert version.returncode == 0 and version.stdout == f"ppmi-build, version {__version__}\n"
    bad = subprocess.run([sys.executable, "-m", "ppmi_build", "sign", str(tmp_path / "missing.dll"), "--cert",
                          str(pki.leaf.pfx), "--password-file", str(_pwfile(tmp_path, pfx_password))],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert bad.returncode == 2 and "missing.dll does not exist" in bad.stderr
