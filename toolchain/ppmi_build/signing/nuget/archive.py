"""Zip records of a NuGet package (PKWARE APPNOTE §4.3; signing-spec §2.5): local and central records,
the ``.signature.p7s`` entry, and the segments of the *unsigned* package that the signature's hash covers
(``SignedPackageArchiveUtility``: the signature's local entry and central record dropped, offsets adjusted).
"""

from __future__ import annotations

import os
import struct
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ...errors import PackageFormatError
from ..results import Problem

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


def _signature_entry_problems(f: IO[bytes], arc: _Archive, rec: _Record) -> list[Problem]:
    """``SignedPackageArchiveIOUtility.AssertSignatureEntryMetadata``: the signature's central and local
    headers must have flags 0, method 0, equal sizes, and (central) external attributes 0 -> NU3005."""
    problems: list[Problem] = []

    def bad(where: str, what: str, value: int) -> None:
        expected = "the uncompressed size" if what == "compressed size" else "0"
        problems.append(Problem("NU3005", f"the package signature file entry is invalid: the {where} header has "
                                          f"{what} {value:#x} (expected {expected})"))

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
        problems.append(Problem("NU3005", "the package signature file entry has no local file header"))
        return problems
    flags, method, _t, _d, _crc, comp, uncomp, nlen, _elen = struct.unpack_from("<HHHHIIIHH", head, 6)
    if flags:
        bad("local file", "general purpose bit flag", flags)
    if method:
        bad("local file", "compression method", method)
    if comp != uncomp:
        bad("local file", "compressed size", comp)
    if f.read(nlen) != SIGNATURE_NAME:
        problems.append(Problem("NU3005", "the package signature file's local header names another file"))
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
