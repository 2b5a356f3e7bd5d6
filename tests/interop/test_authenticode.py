"""Authenticode signing checked by independent verifiers: osslsigncode verify (with the test root
as CA file and TSA CA file), Mono chktrust, signify (test root trusted), Mono ``sn -v`` for the
strong-named assembly; authentihash equal to osslsigncode's computed digest; one-byte tamper
rejected by all; remove-signature / attach-signature round trips through osslsigncode."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
from pathlib import Path

import pytest
from asn1crypto import cms as acms

from ppmi_build.signing import api
from ppmi_build.signing.authenticode import pe
from ppmi_build.signing.authenticode.structures import extract_signature, parse_signature
from ppmi_build.signing.keys import PasswordSource, load_key_source
from tests.conftest import require_tool, run_tool
from tests.pe32plus import make_pe32plus

pytestmark = pytest.mark.interop


# --- helpers ------------------------------------------------------------------------------


def ossl_verify(path: Path, pki, *, timestamped: bool = False):
    args = ["osslsigncode", "verify", "-in", path, "-CAfile", pki.root.pem]
    if timestamped:
        args += ["-TSA-CAfile", pki.root.pem]
    return run_tool(*args)


def ossl_digests(stdout: str) -> tuple[str, str]:
    cur = re.search(r"Current message digest\s*:\s*([0-9A-F]+)", stdout)
    calc = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", stdout)
    assert cur and calc, stdout
    return cur.group(1), calc.group(1)


def signify_result(path: Path, *roots: Path) -> str:
    from signify.authenticode.signed_file import SignedPEFile
    from signify.x509 import Certificate, CertificateStore

    certs = [c for r in roots for c in Certificate.from_pems(Path(r).read_bytes())]
    store = CertificateStore(certs, trusted=True)
    with open(path, "rb") as f:
        res, exc = SignedPEFile(f).explain_verify(trusted_certificate_store=store)
    return res.name


@pytest.fixture(scope="module")
def mono_home(pki, tmp_path_factory) -> dict:
    """A throw-away $HOME whose Mono 'Trust' store holds the test root (the real $HOME is untouched)."""
    require_tool("certmgr")
    home = tmp_path_factory.mktemp("monohome")
    env = {**os.environ, "HOME": str(home)}
    res = run_tool("certmgr", "-add", "-c", "Trust", pki.root.cer, env=env)
    assert "added" in res.stdout, res.stdout + res.stderr
    return env


def chktrust(path: Path, env: dict):
    return run_tool("chktrust", path, env=env)


@pytest.fixture(scope="module")
def key(pki, pfx_password):
    return load_key_source(pki.leaf.pfx, PasswordSource(file=_pw_file(pki, pfx_password)))


def _pw_file(pki, pw: str) -> Path:
    p = pki.dir / "pfx-password.txt"
    if not p.exists():
        p.write_text(pw + "\n")
    return p


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("authenticode")


@pytest.fixture(scope="module")
def signed_plain(plain_dll, key, work):
    path = work / "plain.dll"
    shutil.copyfile(plain_dll, path)
    result = api.sign_file(path, key, program_name="Contoso Plug-ins", program_url="https://contoso.example/plugins")
    return path, result


@pytest.fixture(scope="module")
def signed_strong_ts(strong_named_dll, key, work, tsa):
    """Strong-named assembly, signed with an RFC 3161 timestamp from the loopback TSA."""
    path = work / "strong.dll"
    shutil.copyfile(strong_named_dll, path)
    result = api.sign_file(path, key, timestamp_urls=[tsa.url])
    return path, result


@pytest.fixture(scope="module")
def signed_pe32plus(key, work):
    original = make_pe32plus(work / "x64-original.dll", text_size=0x400)
    path = work / "x64.dll"
    shutil.copyfile(original, path)
    return original, path, api.sign_file(path, key)


# --- tests ----------------------------------------------------------------------------------


def test_signed_assembly_passes_osslsigncode(signed_plain, plain_dll, pki):
    path, result = signed_plain
    res = ossl_verify(path, pki)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Signature verification: ok" in res.stdout and "Succeeded" in res.stdout
    assert "Number of verified signatures: 1" in res.stdout
    assert "invalid PE checksum" not in res.stdout
    assert "Text description: Contoso Plug-ins" in res.stdout
    assert "URL description: https://contoso.example/plugins" in res.stdout
    # our authentihash == the digest osslsigncode computes from the file
    current, calculated = ossl_digests(res.stdout)
    assert current == calculated
    assert api.verify_file(path, trusted_roots=[pki.root.cert]).authentihash.upper() == calculated
    assert result.sha256_before == hashlib.sha256(plain_dll.read_bytes()).hexdigest()
    assert result.sha256_after == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.verified and not result.timestamped and not result.replaced_signature


def test_signed_assembly_passes_chktrust_and_signify(signed_plain, pki, mono_home):
    path, _ = signed_plain
    res = chktrust(path, mono_home)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr
    assert signify_result(path, pki.root.pem) == "OK"
    # and our own verifier, with signify as second opinion
    v = api.verify_file(path, trusted_roots=[pki.root.cert])
    assert v.valid and v.signed and v.problems == []
    assert v.signer["subject"] == "CN=Contoso Plug-in Signing, O=ppmi-build tests"


def test_untrusted_root_is_reported(signed_plain):
    path, _ = signed_plain
    v = api.verify_file(path)  # Microsoft store only
    assert v.signed and not v.valid
    assert any("untrusted signer" in p for p in v.problems)
    assert any(p.startswith("signify: CERTIFICATE_ERROR") for p in v.problems)


def test_osslsigncode_attach_reproduces_our_file(signed_plain, plain_dll, pki, work):
    """Our padding, WIN_CERTIFICATE and checksum are byte-identical to what osslsigncode writes
    when it attaches our PKCS#7 to the original file."""
    path, _ = signed_plain
    sig = work / "plain.p7"
    sig.write_bytes(extract_signature(path))
    out = work / "attached.dll"
    res = run_tool("osslsigncode", "attach-signature", "-sigin", sig, "-CAfile", pki.root.pem,
                   "-in", plain_dll, "-out", out)
    assert res.returncode == 0, res.stdout + res.stderr
    assert out.read_bytes() == path.read_bytes()


def test_osslsigncode_remove_signature_gives_back_the_original(signed_plain, plain_dll, work):
    path, _ = signed_plain
    out = work / "removed.dll"
    res = run_tool("osslsigncode", "remove-signature", "-in", path, "-out", out)
    assert res.returncode == 0, res.stdout + res.stderr
    original, removed = bytearray(plain_dll.read_bytes()), out.read_bytes()
    pe.pad8(original)  # the image was padded to 8 bytes before signing (hashed padding)
    ck = pe.parse(original).checksum_offset
    # identical except the checksum, which osslsigncode recomputes (mcs writes 0)
    assert removed[:ck] == original[:ck] and removed[ck + 4:] == original[ck + 4:]


def test_signature_structure_follows_signtool(signed_plain, pki):
    path, _ = signed_plain
    der = extract_signature(path)
    ci = acms.ContentInfo.load(der)
    sd = ci["content"]
    assert sd["version"].native == "v1" and len(sd["signer_infos"]) == 1 and not sd["crls"]
    si = sd["signer_infos"][0]
    assert si["version"].native == "v1" and si["sid"].name == "issuer_and_serial_number"
    assert si["signature_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.1"  # rsaEncryption
    assert si["digest_algorithm"].dump().endswith(b"\x05\x00")  # explicit NULL parameters
    oids = [a["type"].dotted for a in si["signed_attrs"]]
    assert sorted(oids) == sorted(["1.2.840.113549.1.9.3", "1.2.840.113549.1.9.4",
                                   "1.3.6.1.4.1.311.2.1.11", "1.3.6.1.4.1.311.2.1.12"])
    assert "1.2.840.113549.1.9.5" not in oids  # no signingTime, like SignTool
    dumps = [a.dump() for a in si["signed_attrs"]]
    assert dumps == sorted(dumps)  # DER SET OF order
    # SpcPeImageData as SignTool/jsign write it (signing-spec §1.4)
    assert b"\x30\x09\x03\x01\x00\xa0\x04\xa2\x02\x80\x00" in der
    certs = [c.chosen.native["tbs_certificate"]["subject"]["common_name"] for c in sd["certificates"]]
    # leaf + intermediate, no root
    assert sorted(certs) == ["Contoso Plug-in Signing", "ppmi-build Test Code Signing CA"]
    parsed = parse_signature(der)
    assert parsed.program_name == "Contoso Plug-ins"
    assert parsed.program_url == "https://contoso.example/plugins"


def test_timestamped_strong_named_assembly(signed_strong_ts, pki, mono_home, tsa):
    path, result = signed_strong_ts
    assert result.timestamped
    res = ossl_verify(path, pki, timestamped=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Timestamp Server Signature verification: ok" in res.stdout
    assert "Signature verification: ok" in res.stdout
    current, calculated = ossl_digests(res.stdout)
    assert current == calculated
    sn = run_tool("sn", "-q", "-v", path)
    assert sn.returncode == 0, sn.stdout + sn.stderr  # strong name still valid after Authenticode
    ck = chktrust(path, mono_home)
    assert ck.returncode == 0 and "SUCCESS" in ck.stdout, ck.stdout
    assert signify_result(path, pki.root.pem) == "OK"
    v = api.verify_file(path, trusted_roots=[pki.root.cert])
    assert v.valid and v.timestamp is not None, v.problems


def test_timestamp_token_verifies_with_openssl_ts(signed_strong_ts, pki, work):
    path, _ = signed_strong_ts
    parsed = parse_signature(extract_signature(path))
    (token,) = parsed.timestamp_tokens
    tok = work / "token.der"
    tok.write_bytes(token.dump())
    imprint = hashlib.sha256(parsed.signer_info["signature"].native).hexdigest()
    res = run_tool("openssl", "ts", "-verify", "-digest", imprint, "-token_in", "-in", tok,
                   "-CAfile", pki.root.pem, "-untrusted", pki.tsa.pem)
    assert "Verification: OK" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("target", ["plain", "strong"])
def test_one_byte_tamper_is_rejected_by_every_verifier(target, signed_plain, signed_strong_ts, pki, mono_home, work):
    path = (signed_plain if target == "plain" else signed_strong_ts)[0]
    bad = work / f"tampered-{target}.dll"
    data = bytearray(path.read_bytes())
    layout = pe.parse(data)
    pos = layout.sections[0].pointer_to_raw_data + 16  # a byte inside .text
    data[pos] ^= 0x01
    bad.write_bytes(data)
    res = ossl_verify(bad, pki, timestamped=target == "strong")
    assert res.returncode != 0 and "MISMATCH" in res.stdout
    assert "invalid" in chktrust(bad, mono_home).stdout.lower()
    assert signify_result(bad, pki.root.pem) == "INVALID_DIGEST"
    v = api.verify_file(bad, trusted_roots=[pki.root.cert])
    assert not v.valid and any("modified after signing" in p for p in v.problems)


def test_pe32plus(signed_pe32plus, pki):
    original, path, result = signed_pe32plus
    res = ossl_verify(path, pki)
    assert res.returncode == 0 and "Signature verification: ok" in res.stdout, res.stdout + res.stderr
    _, calculated = ossl_digests(res.stdout)
    assert pe.parse(path.read_bytes()).pe32plus
    assert api.verify_file(path, trusted_roots=[pki.root.cert]).authentihash.upper() == calculated
    assert signify_result(path, pki.root.pem) == "OK"
    # osslsigncode as the reference signer computes the same authentihash for the same input
    ref = path.with_name("x64-ossl.dll")
    run_tool("osslsigncode", "sign", "-certs", pki.leaf.chain_pem, "-key", pki.leaf.keyfile,
             "-in", original, "-out", ref, check=True)
    assert ossl_digests(ossl_verify(ref, pki).stdout)[1] == calculated


@pytest.mark.parametrize("digest", ["sha384", "sha512"])
def test_other_digests(digest, plain_dll, key, pki, work):
    path = work / f"{digest}.dll"
    shutil.copyfile(plain_dll, path)
    api.sign_file(path, key, digest=digest)
    res = ossl_verify(path, pki)
    assert res.returncode == 0 and f"Message digest algorithm  : {digest.upper()}" in res.stdout, res.stdout
    assert signify_result(path, pki.root.pem) == "OK"


def test_resigning_replaces_the_signature(signed_plain, key, pki, work):
    path = work / "resign.dll"
    shutil.copyfile(signed_plain[0], path)
    result = api.sign_file(path, key)
    assert result.replaced_signature and "replaced an existing signature" in result.notes
    res = ossl_verify(path, pki)
    assert res.returncode == 0 and "Number of verified signatures: 1" in res.stdout
    layout = pe.parse(path.read_bytes())
    assert len(pe.certificate_entries(path.read_bytes(), layout)) == 1


def test_pem_key_and_chain_and_self_signed(plain_dll, pki, work):
    key = load_key_source(pki.leaf.chain_pem, key_path=pki.leaf.keyfile)
    path = work / "pem.dll"
    shutil.copyfile(plain_dll, path)
    api.sign_file(path, key)
    assert ossl_verify(path, pki).returncode == 0

    ss = load_key_source(pki.self_signed.pem, key_path=pki.self_signed.keyfile)
    path2 = work / "self.dll"
    shutil.copyfile(plain_dll, path2)
    result = api.sign_file(path2, ss)
    assert result.signer["self_signed"] is True
    res = run_tool("osslsigncode", "verify", "-in", path2, "-CAfile", pki.self_signed.pem)
    assert res.returncode == 0 and "Signature verification: ok" in res.stdout, res.stdout
    assert signify_result(path2, pki.self_signed.pem) == "OK"
    assert api.verify_file(path2, trusted_roots=[pki.self_signed.cert]).valid


def test_osslsigncode_backend_output_is_verified(plain_dll, key, pki, work):
    path = work / "backend.dll"
    shutil.copyfile(plain_dll, path)
    result = api.sign_file(path, key, backend="osslsigncode", program_name="Via osslsigncode")
    assert result.backend == "osslsigncode" and result.verified
    v = api.verify_file(path, trusted_roots=[pki.root.cert])
    assert v.valid, v.problems
    assert ossl_verify(path, pki).returncode == 0


def test_signer_certificate_and_unsign(signed_plain, pki, work, plain_dll):
    path, _ = signed_plain
    assert api.signer_certificate(path) == pki.leaf.cert
    copy = work / "unsign.dll"
    shutil.copyfile(path, copy)
    from ppmi_build.signing.authenticode.sign import unsign_file

    out = unsign_file(copy)
    assert out["removed"] is True
    data = copy.read_bytes()
    layout = pe.parse(data)
    assert not layout.signed
    assert struct.unpack_from("<I", data, layout.checksum_offset)[0] == pe.checksum(data, layout.checksum_offset)
    res = run_tool("osslsigncode", "verify", "-in", copy)
    assert res.returncode != 0  # no signature left
