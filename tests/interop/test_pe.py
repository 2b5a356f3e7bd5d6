"""PE layout, checksum and authentihash (ppmi_build.signing.pe) against independent references:
pefile's ``generate_checksum``, osslsigncode's computed digest and checksum, a literal transcription
of osslsigncode's checksum loop, and hand-made malformed files."""

from __future__ import annotations

import os
import re
import struct

import pytest

from ppmi_build.errors import PEFormatError
from ppmi_build.signing.authenticode import pe
from tests.conftest import run_tool
from tests.pe32plus import make_pe32plus


def _osslsigncode_loop_checksum(data: bytes, checksum_offset: int) -> int:
    """osslsigncode ``pe_calc_checksum`` transcribed literally (per-word end-around carry)."""
    s = 0
    for i in range(0, len(data) - 1, 2):
        val = 0 if checksum_offset <= i < checksum_offset + 4 else data[i] | data[i + 1] << 8
        s += val
        s = ((s & 0xFFFF) + (s >> 16)) & 0xFFFF
    s = ((s & 0xFFFF) + (s >> 16)) & 0xFFFF
    return s + (len(data) // 2) * 2


@pytest.fixture(scope="module")
def ossl_signed(plain_dll, pki, tmp_path_factory):
    """plain_dll signed by osslsigncode (the independent reference signer)."""
    out = tmp_path_factory.mktemp("pe") / "ossl.dll"
    run_tool("osslsigncode", "sign", "-certs", pki.leaf.chain_pem, "-key", pki.leaf.keyfile, "-h", "sha256",
             "-in", plain_dll, "-out", out, check=True)
    return out


def test_parse_pe32_assembly(plain_dll):
    data = plain_dll.read_bytes()
    layout = pe.parse(data, plain_dll.name)
    pefile = pytest.importorskip("pefile")
    ref = pefile.PE(data=data, fast_load=True)
    assert layout.pe32plus is False and ref.OPTIONAL_HEADER.Magic == 0x10B
    assert layout.checksum_offset == ref.OPTIONAL_HEADER.get_field_absolute_offset("CheckSum")
    sec_dir = ref.OPTIONAL_HEADER.DATA_DIRECTORY[4]
    assert layout.cert_dir_offset == sec_dir.get_field_absolute_offset("VirtualAddress")
    assert not layout.signed


def test_parse_pe32plus(tmp_path):
    path = make_pe32plus(tmp_path / "x64.dll")
    data = path.read_bytes()
    layout = pe.parse(data, path.name)
    pefile = pytest.importorskip("pefile")
    ref = pefile.PE(data=data)
    assert ref.OPTIONAL_HEADER.Magic == 0x20B and ref.FILE_HEADER.Machine == 0x8664
    assert layout.pe32plus is True
    assert layout.cert_dir_offset == ref.OPTIONAL_HEADER.DATA_DIRECTORY[4].get_field_absolute_offset("VirtualAddress")
    assert pe.checksum(data, layout.checksum_offset) == ref.generate_checksum()


@pytest.mark.parametrize("size", [8, 11, 100, 4097, (1 << 20) + 6])
def test_wordsum_equals_the_literal_checksum_loop(size):
    data = os.urandom(size)
    ck = 4
    expected = _osslsigncode_loop_checksum(data[: size // 2 * 2], ck)
    # our checksum counts an odd last byte like imagehlp; compare on the even-length prefix
    assert pe.checksum(data[: size // 2 * 2], ck) == expected


def test_checksum_matches_pefile_and_osslsigncode(plain_dll, ossl_signed):
    pefile = pytest.importorskip("pefile")
    data = plain_dll.read_bytes()
    assert pe.checksum(data, pe.parse(data).checksum_offset) == pefile.PE(data=data).generate_checksum()
    signed = ossl_signed.read_bytes()
    layout = pe.parse(signed)
    stored = struct.unpack_from("<I", signed, layout.checksum_offset)[0]
    assert stored != 0
    assert pe.checksum(signed, layout.checksum_offset) == stored  # osslsigncode wrote it


@pytest.mark.interop
def test_authentihash_equals_osslsigncode_computed_digest(ossl_signed, plain_dll, pki):
    res = run_tool("osslsigncode", "verify", "-in", ossl_signed, "-CAfile", pki.root.pem)
    m = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", res.stdout)
    assert m, res.stdout
    signed = ossl_signed.read_bytes()
    assert pe.authentihash(signed, pe.parse(signed)).hex().upper() == m.group(1)
    # the hash covers the padded unsigned image too (osslsigncode pads to 8 before hashing)
    unsigned = bytearray(plain_dll.read_bytes())
    pe.pad8(unsigned)
    assert pe.authentihash(unsigned, pe.parse(unsigned)).hex().upper() == m.group(1)
    assert pe.authentihash_file(ossl_signed).hex().upper() == m.group(1)


@pytest.mark.interop
def test_certificate_table_layout_of_osslsigncode_output(ossl_signed):
    data = ossl_signed.read_bytes()
    layout = pe.parse(data)
    assert layout.signed and layout.cert_table_offset % 8 == 0
    assert layout.cert_table_offset + layout.cert_table_size == len(data)
    ((rev, typ, blob),) = pe.certificate_entries(data, layout)
    assert (rev, typ) == (0x0200, 0x0002)
    length = struct.unpack_from("<I", data, layout.cert_table_offset)[0]
    assert length == layout.cert_table_size and length % 8 == 0  # dwLength includes the padding
    der = pe.pkcs7_blob(data, layout)
    assert der[0] == 0x30 and len(der) <= len(blob)
    # our WIN_CERTIFICATE writer gives the same bytes for the same PKCS#7
    assert pe.win_certificate(der) == bytes(data[layout.cert_table_offset:])


def test_not_a_pe_file(tmp_path):
    with pytest.raises(PEFormatError, match=r"x\.dll is not a PE file \(no MZ header\); pass a \.dll or \.exe"):
        pe.parse(b"hello world, this is not a PE file" * 4, "x.dll")
    with pytest.raises(PEFormatError, match="not a PE file"):
        pe.parse(b"MZ" + b"\0" * 0x3A + struct.pack("<I", 0x40) + b"XX\0\0" + b"\0" * 64, "y.dll")


def test_truncated_pe(plain_dll):
    data = plain_dll.read_bytes()
    with pytest.raises(PEFormatError, match=r"is truncated.*rebuild it"):
        pe.parse(data[: len(data) // 2], "half.dll")
    with pytest.raises(PEFormatError, match="truncated"):
        pe.parse(data[:0x90], "tiny.dll")


def test_data_after_certificate_table(ossl_signed):
    data = ossl_signed.read_bytes() + b"appended payload"
    with pytest.raises(PEFormatError, match=r"data after the certificate table \(16 bytes\)"):
        pe.parse(data, "trail.dll")


def test_corrupt_certificate_table_entry(ossl_signed):
    data = bytearray(ossl_signed.read_bytes())
    layout = pe.parse(data)
    struct.pack_into("<II", data, layout.cert_dir_offset, len(data) + 64, 16)  # points past the end
    with pytest.raises(PEFormatError, match="corrupt certificate table entry"):
        pe.parse(data, "bad.dll")
    data = bytearray(ossl_signed.read_bytes())
    struct.pack_into("<I", data, layout.cert_table_offset, 4)  # dwLength < 8
    with pytest.raises(PEFormatError, match="corrupt certificate table"):
        pe.parse(data, "bad.dll")


def test_strip_and_pad(ossl_signed, plain_dll):
    buf = bytearray(ossl_signed.read_bytes())
    layout = pe.strip_signature(buf, pe.parse(buf))
    assert not layout.signed
    original = bytearray(plain_dll.read_bytes())
    added = pe.pad8(original)
    assert len(original) % 8 == 0 and added == len(original) - plain_dll.stat().st_size
    ck = layout.checksum_offset
    # equal to the padded original except the checksum osslsigncode wrote
    assert buf[:ck] == original[:ck] and buf[ck + 4:] == original[ck + 4:]
