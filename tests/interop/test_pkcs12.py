"""PFX/PKCS#12 loading (``ppmi_build.signing.keys.files``, cryptography's loader) against independent producers
and oracles.

* PFX files made by ``openssl pkcs12 -export`` (OpenSSL 3 defaults: PBES2/PBKDF2/AES-256-CBC with an
  HMAC-SHA-256 MAC; ``-legacy``: RC2-40 certificates + 3DES key + SHA-1 MAC; explicit 3DES; AES-128
  with a SHA-512 MAC; unencrypted certificates; no MAC; a non-ASCII password) and by ``cryptography`` (the test
  PKI's PFX and the 3DES/50,000-round shape ``ppmi-build cert new`` writes) give exactly the key and
  certificates that the ``openssl pkcs12`` command line extracts from them.
* A wrong password and a tampered file give the "wrong password" PasswordError; garbage is not taken for a PFX.
* A PFX whose MAC or key-derivation iteration count is above the documented limits (those of .NET's
  ``Pkcs12LoaderLimits``) is refused at once with one line, exit 2, instead of keeping the process busy.
* An EC key is named as such ("needs RSA"), not reported as a key/certificate mismatch.

Also here: the modules the sign command must not load, and the console entry point's quick exit (complete JSON on
stdout, exit codes, the signed file verified by osslsigncode).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from ppmi_build.errors import CertificateError, PasswordError
from ppmi_build.signing import keys
from tests.conftest import require_tool, run_tool

PW = "pfx pw"


def _openssl_contents(path: Path, password: bytes, tmp_path: Path):
    """``(private numbers, [certificates])`` as the openssl command line extracts them (the oracle)."""
    pwfile = tmp_path / "oracle-pw.bin"
    pwfile.write_bytes(password)
    base = ["openssl", "pkcs12", "-in", path, "-passin", f"file:{pwfile}"]
    legacy = ["-legacy"] if b"legacy" in path.name.encode() else []
    k = run_tool(*base, *legacy, "-nocerts", "-nodes")
    assert k.returncode == 0, k.stderr
    c = run_tool(*base, *legacy, "-nokeys")
    assert c.returncode == 0, c.stderr
    key = serialization.load_pem_private_key(k.stdout.encode(), None)
    certs = x509.load_pem_x509_certificates(c.stdout.encode())
    return key.private_numbers(), certs


def _check_against_openssl(path: Path, password: bytes, tmp_path: Path) -> None:
    pwfile = tmp_path / "pw.bin"
    pwfile.write_bytes(password)
    got = keys.load_key_source(path, keys.PasswordSource(file=pwfile))
    numbers, certs = _openssl_contents(path, password, tmp_path)
    assert got.private_key.private_numbers() == numbers
    assert sorted(c.fingerprint(hashes.SHA256()) for c in got.certificate_chain()) == sorted(
        c.fingerprint(hashes.SHA256()) for c in certs)
    assert got.certificate.public_key().public_numbers() == numbers.public_numbers


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
                                  "no-mac", "unicode-password"])
def test_openssl_made_pfx_gives_what_openssl_extracts(openssl_pfx, name, tmp_path):
    path, pw = openssl_pfx[name]
    _check_against_openssl(path, pw, tmp_path)
    assert len(keys.load_certificates(path, keys.PasswordSource(file=_pwfile(tmp_path, pw.decode())))) == 2


@pytest.mark.interop
@pytest.mark.parametrize("which", ["leaf", "self_signed"])
def test_cryptography_made_pfx(pki, pfx_password, which, tmp_path):
    _check_against_openssl(getattr(pki, which).pfx, pfx_password.encode(), tmp_path)


@pytest.mark.interop
def test_cert_new_shape_3des_50000_rounds(pki, tmp_path):
    """``ppmi-build cert new`` writes pbeWithSHAAnd3-KeyTripleDES-CBC + HMAC-SHA1 with 50,000 rounds."""
    enc = (serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(50000)
           .key_cert_algorithm(crypto_pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1())
           .build(PW.encode()))
    path = tmp_path / "dev.pfx"
    path.write_bytes(crypto_pkcs12.serialize_key_and_certificates(b"dev", pki.leaf.key, pki.leaf.cert,
                                                                  pki.leaf.chain, enc))
    _check_against_openssl(path, PW.encode(), tmp_path)


def test_wrong_password(pki, pfx_password, tmp_path):
    pwfile = tmp_path / "pw.txt"
    pwfile.write_text("not the password")
    with pytest.raises(PasswordError, match=r"wrong password for .*leaf\.pfx"):
        keys.load_key_source(pki.leaf.pfx, keys.PasswordSource(file=pwfile))


def test_tampered_file_fails_the_mac(pki, pfx_password, tmp_path):
    data = bytearray(pki.leaf.pfx.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the authenticated safe
    bad = tmp_path / "tampered.pfx"
    bad.write_bytes(bytes(data))
    with pytest.raises(PasswordError):
        keys.load_key_source(bad, keys.PasswordSource(file=_pwfile(tmp_path, pfx_password)))


@pytest.mark.parametrize("blob", [b"\x30\x03\x02\x01\x03", b"not DER at all", b"\x30\x80\x02\x01\x03\x00\x00"])
def test_garbage_is_not_a_pfx(blob, tmp_path):
    bad = tmp_path / "garbage.pfx"
    bad.write_bytes(blob)
    with pytest.raises(PasswordError, match=r"wrong password for .*garbage\.pfx, or the file is not a PKCS#12/PFX"):
        keys.load_key_source(bad, keys.PasswordSource(file=_pwfile(tmp_path, "pw")))


def _with_iterations(data: bytes, *, mac: int | None = None, kdf: int | None = None) -> bytes:
    """``data`` with the MAC and/or every readable KDF iteration count rewritten (asn1crypto, test side)."""
    from asn1crypto import pkcs12 as a

    pfx = a.Pfx.load(data)
    if mac is not None:
        pfx["mac_data"]["iterations"] = mac
    if kdf is not None:
        safes = a.AuthenticatedSafe.load(pfx["auth_safe"]["content"].native)
        for info in safes:
            if info["content_type"].native == "encrypted_data":
                params = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["parameters"]
                params["key_derivation_func"]["parameters"]["iteration_count"] = kdf
        pfx["auth_safe"]["content"] = a.ContentInfo({"content_type": "data", "content": safes.dump(force=True)})[
            "content"]
    return pfx.dump(force=True)


@pytest.mark.interop
@pytest.mark.parametrize(("mac", "kdf", "fragment"), [
    (2**31 - 1, None, "the PFX MAC asks for 2,147,483,647 iterations, more than the limit of 300,000"),
    (None, 2**31 - 1, "a PFX key derivation asks for 2,147,483,647 iterations, more than the limit of 300,000"),
])
def test_absurd_iteration_counts_are_refused_at_once(openssl_pfx, cli, tmp_path, mac, kdf, fragment):
    """OpenSSL 3.0 bounds neither count: this file would keep ``PKCS12_parse`` busy for hours."""
    path, pw = openssl_pfx["default-aes256"]
    bad = tmp_path / "slow.pfx"
    bad.write_bytes(_with_iterations(path.read_bytes(), mac=mac, kdf=kdf))
    start = time.monotonic()
    r = cli("cert", "show", bad, "--password-file", _pwfile(tmp_path, pw.decode()))
    assert time.monotonic() - start < 10
    assert r.exit_code == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "slow.pfx" in lines[0], r.stderr
    assert PW not in r.stderr + r.stdout
    with pytest.raises(CertificateError, match="iterations"):
        keys.load_key_source(bad, keys.PasswordSource(file=_pwfile(tmp_path, pw.decode())))


@pytest.mark.interop
def test_iteration_limit_boundary(pki, tmp_path):
    """openssl ``-iter N`` sets the KDF and MAC counts: 300,000 (the limit) opens, 300,001 is refused."""
    pwfile = _pwfile(tmp_path, PW)
    at_limit, above = tmp_path / "at.pfx", tmp_path / "above.pfx"
    for path, n in ((at_limit, 300_000), (above, 300_001)):
        r = run_tool("openssl", "pkcs12", "-export", "-inkey", pki.leaf.keyfile, "-in", pki.leaf.pem, "-out", path,
                     "-passout", f"file:{pwfile}", "-iter", str(n))
        assert r.returncode == 0, r.stderr
    _check_against_openssl(at_limit, PW.encode(), tmp_path)
    with pytest.raises(CertificateError, match="300,001 iterations, more than the limit of 300,000"):
        keys.load_key_source(above, keys.PasswordSource(file=pwfile))


def test_ec_key_is_named_not_a_mismatch(pki, pfx_password, tmp_path):
    pw = _pwfile(tmp_path, pfx_password)
    with pytest.raises(CertificateError, match="the key in .*ecdsa.pfx is EC; Authenticode/NuGet signing here needs "
                                               "RSA") as err:
        keys.load_key_source(pki.ec.pfx, keys.PasswordSource(file=pw))
    assert "does not match" not in err.value.message
    assert keys.load_certificates(pki.ec.pfx, keys.PasswordSource(file=pw))[0] == pki.ec.cert


def _pwfile(tmp_path: Path, password: str) -> Path:
    p = tmp_path / "password.txt"
    p.write_text(password, encoding="utf-8")
    return p


@pytest.mark.interop
def test_sign_command_start_up_footprint(pki, pfx_password, plain_dll, tmp_path):
    """``ppmi-build sign`` (no timestamp) loads neither httpx, nor tomllib (no ppmi.toml), nor json (text
    output), and the file it signs verifies with osslsigncode. (The PFX is read with cryptography's PKCS#12
    loader after asn1crypto checked its iteration counts, so both are expected.)"""
    dll = tmp_path / "x.dll"
    dll.write_bytes(plain_dll.read_bytes())
    code = (
        "import sys\n"
        "from ppmi_build.cli import main\n"
        "try:\n"
        f"    main(['sign', {str(dll)!r}, '--cert', {str(pki.leaf.pfx)!r}, '--password-file', "
        f"{str(_pwfile(tmp_path, pfx_password))!r}], prog_name='ppmi-build', standalone_mode=False)\n"
        "finally:\n"
        "    print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'tomllib', 'json')),\n"
        "          file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "[]"
    v = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem)
    assert v.returncode == 0, v.stdout + v.stderr


@pytest.mark.interop
def test_console_entry_point_exits_cleanly_after_signing(pki, pfx_password, plain_dll, tmp_path):
    """``run()`` ends a successful ``sign`` through the interpreter's normal exit: the whole
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
