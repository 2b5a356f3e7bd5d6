"""NuGet author signatures, library level, checked by independent tools.

Independent checks used here: ``openssl cms -verify`` (CMS signature, chain to the test root, attached
content), ``openssl ts -verify`` (RFC 3161 token over the signature value), Python ``zipfile`` and
``unzip -t`` (the signed zip), raw ``struct`` parsing of the zip headers written in this file from
PKWARE APPNOTE §4.3, and ``asn1crypto`` as a plain DER parser for the CMS structure. The expected signature
content is computed here from the input file with ``hashlib`` and the literal format string of the NuGet
signature specification (signing-spec §2.2), never with ppmi-build code.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zipfile
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from asn1crypto import tsp
from cryptography.hazmat.primitives import serialization

from ppmi_build.errors import BadInput, CertificateError, PackageFormatError
from ppmi_build.signing.keys import PasswordSource, load_key_source
from ppmi_build.signing.nuget import sign as nuget_sign
from ppmi_build.signing.nuget import verify as nuget_verify
from tests.conftest import run_tool
from tests.nupkg_builder import build_many_entries, build_nupkg

pytestmark = pytest.mark.interop

SPEC_CONTENT = "Version:1\n\n{oid}-Hash:{b64}\n\n"  # NuGet Package Signatures Technical Specification
SHA256_OID = "2.16.840.1.101.3.4.2.1"


def expected_content(unsigned: bytes, name: str = "sha256", oid: str = SHA256_OID) -> bytes:
    digest = hashlib.new(name, unsigned).digest()
    return SPEC_CONTENT.format(oid=oid, b64=base64.b64encode(digest).decode()).encode()


# --- zip parsing written here from APPNOTE §4.3 (independent of ppmi_build.signing.nuget) ---------------


def zip_records(data: bytes) -> tuple[list[dict], dict]:
    e = data.rfind(b"PK\x05\x06")
    _, _, n_disk, n, cd_size, cd_off = struct.unpack_from("<HHHHII", data, e + 4)
    recs, pos = [], cd_off
    for _ in range(n):
        assert data[pos:pos + 4] == b"PK\x01\x02"
        (made, need, flags, method, _t, _d, crc, csize, usize, fl, el, cl, disk, internal, external,
         lho) = struct.unpack_from("<HHHHHHIIIHHHHHII", data, pos + 4)
        recs.append(dict(pos=pos, flags=flags, method=method, csize=csize, usize=usize, external=external,
                         internal=internal, extra_len=el, comment_len=cl, lho=lho, crc=crc,
                         name=data[pos + 46:pos + 46 + fl], size=46 + fl + el + cl))
        pos += 46 + fl + el + cl
    return recs, dict(pos=e, entries=n, entries_disk=n_disk, cd_size=cd_size, cd_off=cd_off, cd_end=pos)


def local_header(data: bytes, off: int) -> dict:
    assert data[off:off + 4] == b"PK\x03\x04"
    need, flags, method, _t, _d, crc, csize, usize, fl, el = struct.unpack_from("<HHHHHIIIHH", data, off + 4)
    return dict(flags=flags, method=method, csize=csize, usize=usize, name=data[off + 30:off + 30 + fl],
                extra_len=el, data_off=off + 30 + fl + el, crc=crc)


def signature_blob(path: Path) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(".signature.p7s")


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pw_file(tmp_path_factory, pfx_password) -> Path:
    p = tmp_path_factory.mktemp("pw") / "pfx.txt"
    p.write_text(pfx_password)
    return p


@pytest.fixture(scope="session")
def key_for(pki, pw_file):
    cache = {}

    def load(name: str):
        if name not in cache:
            cache[name] = load_key_source(getattr(pki, name).pfx, PasswordSource(file=pw_file))
        return cache[name]

    return load


@pytest.fixture(scope="session")
def nupkg(tmp_path_factory, plain_dll) -> Path:
    """A real-layout package: lib/net462/Contoso.Plain.dll compiled by mcs, every entry deflated."""
    return build_nupkg(tmp_path_factory.mktemp("nupkg") / "Contoso.Plugins.1.0.0.nupkg", dlls=[plain_dll])


@pytest.fixture(scope="session")
def many_nupkg(tmp_path_factory, plain_dll) -> Path:
    return build_nupkg(tmp_path_factory.mktemp("many") / "Contoso.Many.1.0.0.nupkg", dlls=[plain_dll], many=3000)


@pytest.fixture(scope="session")
def signed(tmp_path_factory, nupkg, key_for, tsa) -> Path:
    """``nupkg`` signed by the leaf (SKI, issued by the intermediate) with an RFC 3161 timestamp."""
    out = tmp_path_factory.mktemp("signed") / nupkg.name
    nuget_sign.sign_package(nupkg, out, key_for("leaf"), timestamp_urls=[tsa.url])
    return out


# --- what the issue asks to be shown -------------------------------------------------------------------


def test_layout_of_the_input_package_is_real(nupkg):
    with zipfile.ZipFile(nupkg) as z:
        names = z.namelist()
        methods = {i.filename: i.compress_type for i in z.infolist()}
    assert "[Content_Types].xml" in names and "_rels/.rels" in names and "Contoso.Plugins.nuspec" in names
    assert "lib/net462/Contoso.Plain.dll" in names
    assert any(n.startswith("package/services/metadata/core-properties/") and n.endswith(".psmdcor") for n in names)
    assert set(methods.values()) == {zipfile.ZIP_DEFLATED}


def test_openssl_cms_accepts_signature_and_content_is_the_spec_string(signed, nupkg, pki, tmp_path):
    p7s = tmp_path / "sig.p7s"
    p7s.write_bytes(signature_blob(signed))
    content = tmp_path / "content.txt"
    res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.root.pem,
                   "-purpose", "any", "-out", content)
    assert res.returncode == 0 and "Verification successful" in res.stderr, res.stderr
    assert content.read_bytes() == expected_content(nupkg.read_bytes())


def test_openssl_rejects_signature_against_another_root(signed, pki, tmp_path):
    p7s = tmp_path / "sig.p7s"
    p7s.write_bytes(signature_blob(signed))
    res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.self_signed.pem,
                   "-purpose", "any", "-out", tmp_path / "c.txt")
    assert res.returncode != 0


def test_openssl_ts_accepts_timestamp_over_the_signature_value(signed, pki, tmp_path):
    si = acms.ContentInfo.load(signature_blob(signed))["content"]["signer_infos"][0]
    tokens = [a for a in si["unsigned_attrs"] if a["type"].dotted == "1.2.840.113549.1.9.16.2.14"]
    assert len(tokens) == 1
    tok = tmp_path / "token.der"
    tok.write_bytes(tokens[0]["values"][0].dump())
    imprint = hashlib.sha256(si["signature"].native).hexdigest()
    res = run_tool("openssl", "ts", "-verify", "-digest", imprint, "-token_in", "-in", tok,
                   "-CAfile", pki.root.pem, "-untrusted", pki.tsa.pem)
    assert "Verification: OK" in res.stdout, res.stdout + res.stderr
    # and the token does not verify for another imprint
    bad = run_tool("openssl", "ts", "-verify", "-digest", hashlib.sha256(b"other").hexdigest(), "-token_in",
                   "-in", tok, "-CAfile", pki.root.pem, "-untrusted", pki.tsa.pem)
    assert "Verification: OK" not in bad.stdout


def test_cms_profile_is_nugets_author_signature(signed, pki):
    """Spec §2.3: attached id-data, SKI signer (v3), the five signed attributes, proof-of-origin,
    signing-certificate-v2 over the leaf, the chain in certificates, rsaEncryption + sha256."""
    sd = acms.ContentInfo.load(signature_blob(signed))["content"]
    assert sd["version"].native == "v3"
    assert sd["encap_content_info"]["content_type"].dotted == "1.2.840.113549.1.7.1"
    assert sd["encap_content_info"]["content"].native.startswith(b"Version:1\n\n")
    certs = {c.chosen.dump() for c in sd["certificates"]}
    assert pki.leaf.der in certs and pki.intermediate.cert.public_bytes(serialization.Encoding.DER) in certs
    (si,) = list(sd["signer_infos"])
    assert si["version"].native == "v3"
    assert si["sid"].name == "subject_key_identifier"
    from cryptography import x509

    ski = pki.leaf.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert si["sid"].chosen.native == ski
    assert si["digest_algorithm"]["algorithm"].native == "sha256"
    assert si["signature_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.1"
    oids = [a["type"].dotted for a in si["signed_attrs"]]
    assert sorted(oids) == sorted([
        "1.2.840.113549.1.9.3",  # contentType
        "1.2.840.113549.1.9.4",  # messageDigest
        "1.2.840.113549.1.9.5",  # signing-time
        "1.2.840.113549.1.9.16.2.16",  # commitment-type-indication
        "1.2.840.113549.1.9.16.2.47",  # signing-certificate-v2
    ])
    encoded = [a.dump() for a in si["signed_attrs"]]
    assert encoded == sorted(encoded), "signed attributes must be in DER SET OF order"
    attrs = {a["type"].dotted: a["values"][0] for a in si["signed_attrs"]}
    cti = attrs["1.2.840.113549.1.9.16.2.16"]
    # CommitmentTypeIndication ::= SEQUENCE { OID id-cti-ets-proofOfOrigin }
    assert cti.dump() == bytes.fromhex("300d060b2a864886f70d0109100601")
    scv2 = tsp.SigningCertificateV2.load(attrs["1.2.840.113549.1.9.16.2.47"].dump())
    ess = scv2["certs"][0]
    assert ess["cert_hash"].native == hashlib.sha256(pki.leaf.der).digest()
    assert ess["issuer_serial"]["serial_number"].native == pki.leaf.cert.serial_number
    assert b"\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01" not in ess.dump(), "sha256 is DEFAULT: omitted in DER"


def test_issuer_and_serial_signer_when_certificate_has_no_ski(nupkg, key_for, tmp_path, pki):
    out = tmp_path / "noski.nupkg"
    nuget_sign.sign_package(nupkg, out, key_for("leaf_no_ski"))
    sd = acms.ContentInfo.load(signature_blob(out))["content"]
    si = sd["signer_infos"][0]
    assert si["sid"].name == "issuer_and_serial_number" and si["version"].native == "v1"
    assert sd["version"].native == "v1"
    p7s = tmp_path / "sig.p7s"
    p7s.write_bytes(signature_blob(out))
    res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.root.pem,
                   "-purpose", "any", "-out", tmp_path / "c.txt")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c.txt").read_bytes() == expected_content(nupkg.read_bytes())


def test_signature_entry_is_last_stored_and_flag_free(signed, nupkg):
    data = signed.read_bytes()
    recs, eocd = zip_records(data)
    orig_recs, orig_eocd = zip_records(nupkg.read_bytes())
    assert eocd["entries"] == eocd["entries_disk"] == orig_eocd["entries"] + 1
    sig = recs[-1]
    assert sig["name"] == b".signature.p7s"
    assert [r["name"] for r in recs[:-1]] == [r["name"] for r in orig_recs]
    assert sig["lho"] == max(r["lho"] for r in recs), "last local entry"
    assert (sig["flags"], sig["method"], sig["external"], sig["internal"], sig["extra_len"]) == (0, 0, 0, 0, 0)
    assert sig["csize"] == sig["usize"]
    lh = local_header(data, sig["lho"])
    assert (lh["flags"], lh["method"], lh["extra_len"], lh["name"]) == (0, 0, 0, b".signature.p7s")
    assert lh["csize"] == lh["usize"] == sig["usize"]
    assert lh["data_off"] + lh["csize"] == eocd["cd_off"], "signature data ends where the central directory starts"
    assert eocd["cd_end"] == eocd["pos"]
    blob = data[lh["data_off"]:lh["data_off"] + lh["csize"]]
    import zlib

    assert zlib.crc32(blob) & 0xFFFFFFFF == sig["crc"] == lh["crc"]


def test_zipfile_and_unzip_read_the_signed_package(signed, many_nupkg, key_for, pki, tmp_path):
    many_signed = tmp_path / "many.nupkg"
    nuget_sign.sign_package(many_nupkg, many_signed, key_for("leaf"))
    for path, source in ((signed, None), (many_signed, many_nupkg)):
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None
            assert z.namelist()[-1] == ".signature.p7s"
            if source is not None:
                with zipfile.ZipFile(source) as zs:
                    assert z.namelist()[:-1] == zs.namelist()
                    assert all(z.read(n) == zs.read(n) for n in zs.namelist()[:50])
        res = run_tool("unzip", "-tq", path)
        assert res.returncode == 0 and "No errors detected" in res.stdout, res.stdout + res.stderr
    v = nuget_verify.verify_package(many_signed, trusted_roots=[pki.root.cert])
    assert v.valid, v.problems
    out = tmp_path / "many-unsigned.nupkg"
    nuget_sign.remove_signature(many_signed, out)
    assert out.read_bytes() == many_nupkg.read_bytes()


def test_unsigned_package_rebuilt_from_signed_is_byte_identical(signed, nupkg, tmp_path):
    out = tmp_path / "unsigned.nupkg"
    nuget_sign.remove_signature(signed, out)
    assert out.read_bytes() == nupkg.read_bytes()


def test_verify_accepts_signed_package(signed, pki):
    res = nuget_verify.verify_package(signed, trusted_roots=[pki.root.cert])
    assert res.problems == [] and res.valid and res.signed
    assert res.signer["sha256"] == hashlib.sha256(pki.leaf.der).hexdigest()
    assert res.timestamp and res.timestamp.endswith("Z")
    assert nuget_verify.signer_certificate(signed) == pki.leaf.cert


def test_verify_needs_a_trusted_root(signed, pki):
    res = nuget_verify.verify_package(signed)
    assert not res.valid and any(p.startswith("NU3018") for p in res.problems)
    res = nuget_verify.verify_package(signed, trusted_roots=[pki.self_signed.cert])
    assert not res.valid and any(p.startswith("NU3018") for p in res.problems)
    assert any(p.startswith("NU3028") for p in res.problems), "the TSA chain is not trusted either"


def test_verify_unsigned_package(nupkg):
    res = nuget_verify.verify_package(nupkg)
    assert (res.signed, res.valid) == (False, False)
    assert res.problems and res.problems[0].startswith("NU3004")


def _positions_outside_signature(data: bytes, stride: int) -> list[int]:
    recs, eocd = zip_records(data)
    sig = recs[-1]
    lh = local_header(data, sig["lho"])
    skip = [(sig["lho"], lh["data_off"] + lh["csize"]), (sig["pos"], sig["pos"] + sig["size"]),
            (eocd["pos"] + 8, eocd["pos"] + 20)]  # the end-record fields that the signature itself changed
    return [i for i in range(0, len(data), stride) if not any(a <= i < b for a, b in skip)]


def test_one_byte_change_anywhere_fails_with_nu3008(signed, pki, tmp_path):
    """Every sampled byte outside the signature entry: a change in a local entry (headers or data) must give
    NU3008; a change in the central directory or end record must make verification fail too (NU3008, or
    the zip structure no longer leads to the signature)."""
    data = signed.read_bytes()
    recs, eocd = zip_records(data)
    positions = _positions_outside_signature(data, 53)
    positions += [recs[0]["pos"] + 46, recs[1]["lho"] + 10]  # a file name in the central directory, a DOS time
    assert len(positions) > 30
    nu3008 = 0
    for i in positions:
        bad = bytearray(data)
        bad[i] ^= 0x01
        p = tmp_path / "tampered.nupkg"
        p.write_bytes(bad)
        try:
            res = nuget_verify.verify_package(p, trusted_roots=[pki.root.cert])
        except PackageFormatError:
            assert i >= recs[-1]["lho"], f"byte {i} is in a local entry but broke the zip structure"
            continue
        assert not res.valid, f"byte {i} changed and the package still verifies"
        if i < recs[-1]["lho"]:
            assert any(pr.startswith("NU3008") for pr in res.problems), (i, res.problems)
        nu3008 += any(pr.startswith("NU3008") for pr in res.problems)
    assert nu3008 >= len(positions) - 4


def test_changed_signature_file_fails_the_cms_check(signed, pki, tmp_path):
    data = signed.read_bytes()
    si = acms.ContentInfo.load(signature_blob(signed))["content"]["signer_infos"][0]
    sig_value = si["signature"].native
    signing_time = [a for a in si["signed_attrs"] if a["type"].dotted == "1.2.840.113549.1.9.5"][0].dump()
    # a byte in the middle of the signature value, and the last seconds digit of the signing time
    for at in (data.index(sig_value) + len(sig_value) // 2, data.index(signing_time) + len(signing_time) - 2):
        bad = bytearray(data)
        bad[at] ^= 0x01
        p = tmp_path / "badsig.nupkg"
        p.write_bytes(bad)
        res = nuget_verify.verify_package(p, trusted_roots=[pki.root.cert])
        assert not res.valid
        assert any(pr.startswith("NU3012") for pr in res.problems), res.problems
        assert not any(pr.startswith("NU3008") for pr in res.problems), "the package bytes are intact"
        # and OpenSSL agrees that the CMS no longer verifies
        p7s = tmp_path / "bad.p7s"
        recs, _ = zip_records(bytes(bad))
        lh = local_header(bytes(bad), recs[-1]["lho"])
        p7s.write_bytes(bad[lh["data_off"]:lh["data_off"] + lh["csize"]])
        res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.root.pem,
                       "-purpose", "any", "-out", tmp_path / "c.txt")
        assert res.returncode != 0


def test_compressed_signature_entry_is_nu3005(signed, pki, tmp_path):
    """A .signature.p7s that is deflated (as a generic zip tool would write it) is refused (NU3005)."""
    p = tmp_path / "deflated.nupkg"
    with zipfile.ZipFile(signed) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zout:
        for n in zin.namelist():
            zout.writestr(n, zin.read(n))
    res = nuget_verify.verify_package(p, trusted_roots=[pki.root.cert])
    assert not res.valid and res.problems[0].startswith("NU3005")


@pytest.mark.parametrize("digest,oid", [("sha384", "2.16.840.1.101.3.4.2.2"), ("sha512", "2.16.840.1.101.3.4.2.3")])
def test_other_hash_algorithms(nupkg, key_for, pki, tmp_path, digest, oid):
    out = tmp_path / "h.nupkg"
    nuget_sign.sign_package(nupkg, out, key_for("leaf"), digest=digest)
    p7s = tmp_path / "sig.p7s"
    p7s.write_bytes(signature_blob(out))
    res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.root.pem,
                   "-purpose", "any", "-out", tmp_path / "c.txt")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c.txt").read_bytes() == expected_content(nupkg.read_bytes(), digest, oid)
    v = nuget_verify.verify_package(out, trusted_roots=[pki.root.cert])
    assert v.valid, v.problems


def test_self_signed_certificate_verifies_against_itself(nupkg, key_for, pki, tmp_path):
    out = tmp_path / "dev.nupkg"
    nuget_sign.sign_package(nupkg, out, key_for("self_signed"))
    assert nuget_verify.verify_package(out, trusted_roots=[pki.self_signed.cert]).valid
    p7s = tmp_path / "sig.p7s"
    p7s.write_bytes(signature_blob(out))
    res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.self_signed.pem,
                   "-purpose", "any", "-out", tmp_path / "c.txt")
    assert res.returncode == 0, res.stderr


def test_resign_with_overwrite_replaces_the_signature(signed, nupkg, key_for, pki, tmp_path):
    with pytest.raises(BadInput) as e:
        nuget_sign.sign_package(signed, tmp_path / "x.nupkg", key_for("leaf_no_ski"))
    assert e.value.code == "NU3001" and "--overwrite" in e.value.message
    out = tmp_path / "resigned.nupkg"
    r = nuget_sign.sign_package(signed, out, key_for("leaf_no_ski"), overwrite=True)
    assert r == {"replaced_signature": True, "timestamped": False}
    recs, _ = zip_records(out.read_bytes())
    assert [x["name"] for x in recs].count(b".signature.p7s") == 1
    v = nuget_verify.verify_package(out, trusted_roots=[pki.root.cert])
    assert v.valid, v.problems
    assert v.signer["sha256"] == hashlib.sha256(pki.leaf_no_ski.der).hexdigest()
    p7s = tmp_path / "sig.p7s"
    p7s.write_bytes(signature_blob(out))
    run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.root.pem, "-purpose", "any",
             "-out", tmp_path / "c.txt", check=True)
    assert (tmp_path / "c.txt").read_bytes() == expected_content(nupkg.read_bytes())
    unsigned = tmp_path / "u.nupkg"
    nuget_sign.remove_signature(out, unsigned)
    assert unsigned.read_bytes() == nupkg.read_bytes()


# --- refusals (library level; the CLI tests check exit codes and unchanged files) -----------------------


def test_zip64_package_is_refused_nu3006(tmp_path, key_for):
    p = build_nupkg(tmp_path / "z64.nupkg", zip64=True)
    with zipfile.ZipFile(p) as z:  # a valid zip that Python reads
        assert z.testzip() is None
    with pytest.raises(PackageFormatError) as e:
        nuget_sign.sign_package(p, tmp_path / "out.nupkg", key_for("leaf"))
    assert e.value.code == "NU3006" and e.value.message.startswith("NU3006")
    assert not (tmp_path / "out.nupkg").exists()


@pytest.mark.slow
def test_entry_limit_nu3039_follows_nuget(tmp_path, key_for, pki):
    """SigningUtility.SignAsync refuses GetPackageEntryCount() >= 0xFFFF - 1; 0xFFFD entries still sign
    (the signed package then has 0xFFFE entries, the most a non-Zip64 archive can hold)."""
    too_many = build_many_entries(tmp_path / "big.nupkg", 0xFFFE)
    with pytest.raises(PackageFormatError) as e:
        nuget_sign.sign_package(too_many, tmp_path / "o.nupkg", key_for("leaf"))
    assert e.value.code == "NU3039" and "NU3039" in e.value.message
    ok = build_many_entries(tmp_path / "ok.nupkg", 0xFFFD)
    nuget_sign.sign_package(ok, tmp_path / "ok.signed.nupkg", key_for("leaf"))
    with zipfile.ZipFile(tmp_path / "ok.signed.nupkg") as z:
        assert len(z.infolist()) == 0xFFFE and z.infolist()[-1].filename == ".signature.p7s"


@pytest.mark.parametrize("cert,code", [
    ("weak", "NU3014"), ("ec", "NU3014"), ("no_codesigning", "NU3018"), ("lifetime", "NU3015"),
    ("not_yet_valid", "NU3017"), ("expired", "NU3018"),
])
def test_certificate_refusals(nupkg, pki, pw_file, tmp_path, cert, code):
    from cryptography.hazmat.primitives.asymmetric import rsa

    c = getattr(pki, cert)
    if not isinstance(c.key, rsa.RSAPrivateKey):
        from ppmi_build.signing.keys import LocalKey

        key = LocalKey(c.key, [c.cert], "ec")  # load_key_source refuses non-RSA keys itself
    else:
        key = load_key_source(c.pfx, PasswordSource(file=pw_file))
    with pytest.raises(CertificateError) as e:
        nuget_sign.sign_package(nupkg, tmp_path / "o.nupkg", key)
    assert e.value.code == code and e.value.message.startswith(code)
    assert not (tmp_path / "o.nupkg").exists()


def test_not_a_zip_is_bad_input(tmp_path, key_for):
    p = tmp_path / "x.nupkg"
    p.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(PackageFormatError):
        nuget_sign.sign_package(p, tmp_path / "o.nupkg", key_for("leaf"))
    with pytest.raises(PackageFormatError):
        nuget_verify.verify_package(p)


def test_unsign_of_unsigned_package_is_nu3004(nupkg, tmp_path):
    with pytest.raises(BadInput) as e:
        nuget_sign.remove_signature(nupkg, tmp_path / "o.nupkg")
    assert e.value.code == "NU3004"


def _nuget_org_packages() -> list[Path]:
    """Real packages signed by their authors and/or nuget.org, from the NuGet global packages folder of a
    machine with the .NET SDK (absent here: the test is then skipped, not faked)."""
    import os

    folder = Path(os.environ.get("NUGET_PACKAGES") or Path.home() / ".nuget" / "packages")
    return sorted(folder.glob("*/*/*.nupkg"))[:8] if folder.is_dir() else []


@pytest.mark.skipif(not _nuget_org_packages(), reason="no NuGet global packages folder (needs a .NET SDK machine)")
def test_packages_signed_by_nuget_org_pass_integrity_and_cms(tmp_path):
    """Golden files from NuGet itself: our hash rebuild and CMS checks must accept what nuget.org signed."""
    for pkg in _nuget_org_packages():
        res = nuget_verify.verify_package(pkg)
        assert res.signed, pkg
        bad = [p for p in res.problems if p[:6] in ("NU3005", "NU3008", "NU3012", "NU3007", "NU3016")]
        assert bad == [], (pkg, bad)
        out = tmp_path / pkg.name
        nuget_sign.remove_signature(pkg, out)
        with zipfile.ZipFile(out) as z:
            assert ".signature.p7s" not in z.namelist() and z.testzip() is None
