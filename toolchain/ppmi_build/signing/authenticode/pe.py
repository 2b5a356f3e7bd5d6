"""PE/COFF layout for Authenticode: headers, checksum, certificate table, authentihash.

Sources (signing-spec §1.2-§1.3, §1.10):

* PE format, "Optional Header" and "Optional Header Data Directories": CheckSum at optional header
  +64; data directory 4 (Certificate Table) at optional header +128 (PE32, magic 0x10B) or +144
  (PE32+, magic 0x20B); its VirtualAddress is a *file offset*
  (https://learn.microsoft.com/windows/win32/debug/pe-format).
* "The Attribute Certificate Table (Image Only)": a list of ``WIN_CERTIFICATE { DWORD dwLength;
  WORD wRevision; WORD wCertificateType; BYTE bCertificate[] }`` entries, each 8-byte aligned;
  Authenticode uses revision 0x0200 and type 0x0002 (PKCS_SIGNED_DATA). As osslsigncode
  (``pe_append_pkcs7``) does, ``dwLength`` and the directory size include the zero padding.
* The table must end the file: verifiers ignore (osslsigncode) or reject (signify) a signature
  followed by other data (signing-spec §1.2).
* Authentihash (Authenticode_PE.docx "Calculating the PE Image Hash"; the equivalent form used by
  signify and osslsigncode, signing-spec §1.3): hash the whole file except the 4-byte CheckSum, the
  8-byte certificate-table directory entry and the certificate table itself. Before signing, the
  image is zero-padded to a multiple of 8 and that padding is hashed (osslsigncode ``pe.c``).
* PE checksum: 16-bit sum of the little-endian words of the file with the CheckSum field taken as
  zero, with end-around carry, plus the file length (osslsigncode ``pe_calc_checksum``; imagehlp
  ``CheckSumMappedFile``). An odd trailing byte counts as a word with a zero high byte (imagehlp,
  pefile); signed files are 8-byte aligned so this never matters for our output.

Signing needs three passes over the image (authentihash, checksum words, optionally the SHA-256 of
the input) and a copy of it into the output file: :class:`SigningPasses` runs them on
an executor given by the caller (:func:`ppmi_build.signing.api.sign_file`) while the key signs.

The hashing works on memoryviews of one buffer (no copies), and the checksum uses the identity
``2**16 ≡ 1 (mod 0xFFFF)``: the sum of the 16-bit words of a byte string equals, modulo 0xFFFF,
the little-endian integer it encodes, so ``int.from_bytes`` over 256 KiB chunks does the work in C.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

from ...errors import PEFormatError


class CertificateTableError(PEFormatError):
    """The image is a PE file whose certificate table (signature) is corrupt or followed by data:
    a verifier reports it as an invalid signature rather than as unusable input."""

PE32_MAGIC = 0x10B
PE32PLUS_MAGIC = 0x20B
WIN_CERT_REVISION_2_0 = 0x0200
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002
CERT_TABLE_INDEX = 4

_CHUNK = 1 << 20  # even, so chunk boundaries fall on 16-bit word boundaries
#: checksum words are summed this many bytes per ``int.from_bytes`` call: ~0.3 ms holding the GIL,
#: so threads coming back from I/O or hashing wait less for it
_SUM_CHUNK = 1 << 18


@dataclass
class Section:
    name: str
    pointer_to_raw_data: int
    size_of_raw_data: int


@dataclass
class PEImage:
    """Parsed layout of a PE file (offsets are file offsets, sizes in bytes).

    Attributes:
        name: file name used in error messages.
        size: file length.
        pe32plus: True for PE32+ (optional header magic 0x20B), False for PE32 (0x10B).
        checksum_offset: offset of the 4-byte optional header CheckSum.
        cert_dir_offset: offset of the 8-byte data directory entry 4 (Certificate Table).
        cert_table_offset / cert_table_size: the directory entry's values (0/0 when unsigned).
        size_of_headers: optional header SizeOfHeaders.
        sections: section headers with raw data.
        image_end: end of the last section's raw data (at least size_of_headers).
    """

    name: str
    size: int
    pe32plus: bool
    checksum_offset: int
    cert_dir_offset: int
    cert_table_offset: int
    cert_table_size: int
    size_of_headers: int
    sections: list[Section] = field(default_factory=list)
    image_end: int = 0

    @property
    def signed(self) -> bool:
        """A certificate table is present (it may hold any kind of WIN_CERTIFICATE)."""
        return self.cert_table_size != 0

    @property
    def hashed_end(self) -> int:
        """End of the bytes covered by the authentihash (the start of the certificate table)."""
        return self.cert_table_offset if self.signed else self.size


def _u16(d, off: int) -> int:
    return struct.unpack_from("<H", d, off)[0]


def _u32(d, off: int) -> int:
    return struct.unpack_from("<I", d, off)[0]


def parse(data, name: str = "the file", *, check_table: bool = True) -> PEImage:
    """Parse the headers needed for Authenticode and validate the layout.

    Args:
        data: the whole file (bytes, bytearray, memoryview or mmap).
        name: how to name the file in messages.
    Returns:
        :class:`PEImage`.
    Raises:
        PEFormatError: not a PE file, truncated, unsupported optional header, no certificate
            directory entry, corrupt certificate-table entry, data after the certificate table.
    """
    size = len(data)
    if size < 2 or bytes(data[:2]) != b"MZ":
        raise PEFormatError(f"{name} is not a PE file (no MZ header); pass a .dll or .exe")
    if size < 0x40:
        raise PEFormatError(f"{name} is truncated ({size} bytes, shorter than a DOS header); rebuild it")
    pe_off = _u32(data, 0x3C)
    if pe_off + 24 > size:
        raise PEFormatError(
            f"{name} is truncated or not a PE file (PE header offset {pe_off} is past the end, "
            f"{size} bytes); rebuild it"
        )
    if bytes(data[pe_off:pe_off + 4]) != b"PE\0\0":
        raise PEFormatError(f"{name} is not a PE file (an MZ file without a PE signature); pass a .dll or .exe")
    n_sections = _u16(data, pe_off + 6)
    opt_size = _u16(data, pe_off + 20)
    opt = pe_off + 24
    if opt + 2 > size:
        raise PEFormatError(f"{name} is truncated inside the optional header; rebuild it")
    magic = _u16(data, opt)
    if magic not in (PE32_MAGIC, PE32PLUS_MAGIC):
        raise PEFormatError(
            f"{name} has an unknown optional header magic 0x{magic:X}; only PE32 and PE32+ images can be signed"
        )
    plus = magic == PE32PLUS_MAGIC
    n_rva_off = opt + (108 if plus else 92)
    dir_base = opt + (112 if plus else 96)
    cert_dir = dir_base + 8 * CERT_TABLE_INDEX
    if opt_size < (dir_base - opt) + 8 * (CERT_TABLE_INDEX + 1):
        raise PEFormatError(
            f"{name}: the optional header ({opt_size} bytes) has no certificate table directory entry; "
            "the image cannot carry an Authenticode signature"
        )
    if opt + opt_size > size:
        raise PEFormatError(f"{name} is truncated inside the optional header; rebuild it")
    if _u32(data, n_rva_off) <= CERT_TABLE_INDEX:
        raise PEFormatError(
            f"{name}: NumberOfRvaAndSizes is {_u32(data, n_rva_off)}, so there is no certificate table "
            "directory entry; the image cannot carry an Authenticode signature"
        )
    size_of_headers = _u32(data, opt + 60)
    sec_table = opt + opt_size
    if sec_table + 40 * n_sections > size:
        raise PEFormatError(f"{name} is truncated inside the section table; rebuild it")
    sections = []
    image_end = max(size_of_headers, sec_table + 40 * n_sections)
    for i in range(n_sections):
        s = sec_table + 40 * i
        raw_size = _u32(data, s + 16)
        raw_ptr = _u32(data, s + 20)
        sname = bytes(data[s:s + 8]).rstrip(b"\0").decode("ascii", "replace")
        if raw_size:
            if raw_ptr + raw_size > size:
                raise PEFormatError(
                    f"{name} is truncated: section {sname or i} ends at byte {raw_ptr + raw_size} but the file has "
                    f"{size} bytes; rebuild it"
                )
            sections.append(Section(sname, raw_ptr, raw_size))
            image_end = max(image_end, raw_ptr + raw_size)
    if image_end > size:
        raise PEFormatError(f"{name} is truncated (headers end at byte {image_end}, file has {size}); rebuild it")
    va, sz = struct.unpack_from("<II", data, cert_dir)
    pe = PEImage(name, size, plus, opt + 64, cert_dir, va if sz else 0, sz, size_of_headers, sections, image_end)
    if sz and check_table:
        if va < image_end or va + sz > size or sz < 8:
            fix = ("remove the signature with `ppmi-build unsign` or rebuild the file" if image_end <= va <= size
                   else "rebuild the file")
            raise CertificateTableError(
                f"{name} has a corrupt certificate table entry (offset {va}, size {sz}, file {size} bytes); {fix}"
            )
        if va + sz != size:
            raise CertificateTableError(
                f"{name} has data after the certificate table ({size - va - sz} bytes); verifiers reject such "
                "files: rebuild the file (or remove the appended data) and sign again"
            )
        certificate_entries(data, pe)  # validates the WIN_CERTIFICATE list
    return pe


def certificate_entries(data, pe: PEImage) -> list[tuple[int, int, bytes]]:
    """The WIN_CERTIFICATE entries of the certificate table as ``(wRevision, wCertificateType,
    bCertificate)``; ``bCertificate`` still carries the padding zeros (DER parsers ignore them).

    Raises:
        PEFormatError: an entry length is shorter than 8 or runs past the table.
    """
    out = []
    pos, end = pe.cert_table_offset, pe.cert_table_offset + pe.cert_table_size
    while pos + 8 <= end:
        length, rev, typ = struct.unpack_from("<IHH", data, pos)
        if length < 8 or pos + length > end:
            raise CertificateTableError(
                f"{pe.name} has a corrupt certificate table (entry at {pos} claims {length} bytes); "
                "remove the signature with `ppmi-build unsign` or rebuild the file"
            )
        out.append((rev, typ, bytes(data[pos + 8:pos + length])))
        pos += (length + 7) & ~7
    return out


def pkcs7_blob(data, pe: PEImage) -> bytes | None:
    """DER bytes (padding stripped by length) of the first Authenticode PKCS#7 in the table, or None."""
    for _rev, typ, blob in certificate_entries(data, pe):
        if typ == WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            return _der_prefix(blob)
    return None


def _der_prefix(blob: bytes) -> bytes:
    """The leading DER TLV of ``blob`` (drops trailing padding)."""
    if len(blob) < 2 or blob[0] != 0x30:
        return blob
    n = blob[1]
    if n < 0x80:
        return blob[: 2 + n]
    k = n & 0x7F
    length = int.from_bytes(blob[2:2 + k], "big")
    return blob[: 2 + k + length]


def hashed_ranges(pe: PEImage, end: int | None = None) -> list[tuple[int, int]]:
    """The ``[start, stop)`` byte ranges covered by the authentihash (signing-spec §1.3)."""
    end = pe.hashed_end if end is None else end
    ck, cd = pe.checksum_offset, pe.cert_dir_offset
    return [(0, ck), (ck + 4, cd), (cd + 8, end)]


def authentihash(data, pe: PEImage, hash_name: str = "sha256", *, end: int | None = None) -> bytes:
    """The Authenticode PE image hash of ``data`` (whole file in memory; hashed without copies).

    Args:
        data: the file bytes (after padding, when computing the hash to sign).
        pe: layout from :func:`parse` of the same bytes.
        hash_name: ``sha256``, ``sha384``, ``sha512`` (or ``sha1``/``md5`` to read old signatures).
        end: stop hashing here instead of at the certificate table / end of file.
    Returns:
        the raw digest.
    """
    h = hashlib.new(hash_name)
    mv = memoryview(data)
    for a, b in hashed_ranges(pe, end):
        h.update(mv[a:b])
    return h.digest()


def authentihash_file(path: Path | str, hash_name: str = "sha256") -> bytes:
    """Authentihash of a file on disk (for verifiers). The file is read, not mapped: a mapping of a
    file that another process truncates meanwhile faults (SIGBUS) where a read just comes back short.

    Raises:
        InputFileError via :func:`read_file`, PEFormatError via :func:`parse`.
    """
    path = Path(path)
    data = read_file(path)
    if not data:
        raise PEFormatError(f"{path.name} is empty, not a PE file; pass a .dll or .exe")
    return authentihash(data, parse(data, path.name), hash_name)


def wordsum(data) -> int:
    """Sum of the little-endian 16-bit words of ``data``, modulo 0xFFFF (an odd final byte is a word
    with high byte 0). Uses ``2**16 ≡ 1 (mod 0xFFFF)`` so ``int.from_bytes`` does the summing."""
    mv = memoryview(data)
    total = 0
    fb = int.from_bytes
    for o in range(0, len(mv), _SUM_CHUNK):
        total += fb(mv[o:o + _SUM_CHUNK], "little")
    return total % 0xFFFF


def fold_checksum(word_sum_mod: int, nonzero: bool, length: int) -> int:
    """Finish the PE checksum: the end-around-carry sum (``0xFFFF`` stands for a non-zero multiple of
    0xFFFF, as osslsigncode's loop produces) plus the file length, as a 32-bit value."""
    s = word_sum_mod % 0xFFFF
    if s == 0 and nonzero:
        s = 0xFFFF
    return (s + length) & 0xFFFFFFFF


def checksum(data, checksum_offset: int) -> int:
    """PE CheckSum of ``data`` with the 4-byte field at ``checksum_offset`` taken as zero
    (osslsigncode ``pe_calc_checksum``; imagehlp ``CheckSumMappedFile``)."""
    mv = memoryview(data)
    total = wordsum(mv)
    stored = bytes(mv[checksum_offset:checksum_offset + 4])
    if checksum_offset % 2 == 0:
        total -= _u16(stored, 0) + _u16(stored, 2)
    else:  # never for real images (the field is 4-aligned); exact but slow path
        z = bytearray(mv)
        z[checksum_offset:checksum_offset + 4] = b"\0\0\0\0"
        total = wordsum(z)
    return fold_checksum(total, True, len(mv))


def win_certificate(pkcs7_der: bytes) -> bytes:
    """A WIN_CERTIFICATE (revision 2.0, PKCS_SIGNED_DATA) holding ``pkcs7_der``, zero-padded to a
    multiple of 8; ``dwLength`` includes the padding (osslsigncode ``pe_append_pkcs7``)."""
    pad = -(len(pkcs7_der) + 8) % 8
    return struct.pack("<IHH", 8 + len(pkcs7_der) + pad, WIN_CERT_REVISION_2_0,
                       WIN_CERT_TYPE_PKCS_SIGNED_DATA) + pkcs7_der + b"\0" * pad


def strip_signature(buf: bytearray, pe: PEImage) -> PEImage:
    """Remove the certificate table from ``buf`` in place (truncate at the table, zero the directory
    entry) and return the new layout. No-op for an unsigned image. The checksum is *not* updated."""
    if not pe.signed:
        return pe
    del buf[pe.cert_table_offset:]
    struct.pack_into("<II", buf, pe.cert_dir_offset, 0, 0)
    return parse(buf, pe.name)


def pad8(buf: bytearray) -> int:
    """Zero-pad ``buf`` to a multiple of 8 bytes (the padding is hashed; signing-spec §1.2). Returns
    the number of bytes added."""
    n = -len(buf) % 8
    if n:
        buf.extend(b"\0" * n)
    return n


@contextmanager
def _open_input(path: Path):
    """``open(path, "rb")`` with the one-line InputFileError messages shared by the readers below."""
    from ...errors import InputFileError
    from ...fileio import open_input

    f = open_input(path, directory_fix="pass a .dll, .exe or .nupkg file")
    try:
        with f:
            yield f
    except OSError as e:  # a read that fails after the open
        raise InputFileError(f"cannot read {path}: {e.strerror}") from None


def read_file(path: Path | str) -> bytearray:
    """Read a whole file into one bytearray, with one-line errors naming it.

    Raises:
        InputFileError: missing, a directory, unreadable.
    """
    path = Path(path)
    with _open_input(path) as f:
        size = os.fstat(f.fileno()).st_size
        buf = bytearray(size)
        n = f.readinto(buf)
        if n != size:  # file changed while reading
            del buf[n:]
        return buf


@contextmanager
def open_input(path: Path | str):
    """``os.open(path, O_RDONLY)`` as a context manager yielding the descriptor, with the one-line
    InputFileError messages of :func:`read_file` (missing, a directory, unreadable)."""
    path = Path(path)
    with _open_input(path) as f:
        yield f.fileno()


def pwrite_all(fd: int, data, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` (``os.pwrite``; ``lseek`` + ``write`` where the
    platform has no ``pwrite``, e.g. Windows). Raises OSError."""
    positional = hasattr(os, "pwrite")
    mv = memoryview(data)
    try:
        if not positional:  # pragma: no cover - Windows
            os.lseek(fd, offset, os.SEEK_SET)
        while mv:
            n = os.pwrite(fd, mv, offset) if positional else os.write(fd, mv)
            if n <= 0:  # pragma: no cover - a regular file does not take 0 bytes
                raise OSError(5, "short write")
            mv = mv[n:]
            offset += n
    finally:
        mv.release()


#: errno values meaning "copy_file_range cannot do this pair of files": fall back to pread/pwrite
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


def copy_file(src_fd: int, dst_fd: int, length: int, name: str = "the input") -> None:
    """Copy the first ``length`` bytes of ``src_fd`` to offset 0 of ``dst_fd``.

    On Linux the kernel copies (``os.copy_file_range``: nothing passes through this process, no
    GIL); where it cannot (another file system: EXDEV; old kernels; not Linux) the bytes are read
    with ``pread`` and written with ``pwrite``, 4 MiB at a time. The input is never mapped: a
    mapping of a file that another process truncates faults (SIGBUS) instead of failing a call.

    Raises:
        OSError: disk full, I/O error. InputFileError: the input (``name``) became shorter meanwhile.
    """
    off = 0
    kernel = hasattr(os, "copy_file_range")
    while off < length:
        if kernel:
            try:
                n = os.copy_file_range(src_fd, dst_fd, length - off, off, off)
            except OSError as e:
                if e.errno not in _NO_KERNEL_COPY:
                    raise
                kernel = False
                continue
        else:
            part = _pread(src_fd, min(length - off, _CHUNK * 4), off)
            n = len(part)
            if n:
                pwrite_all(dst_fd, part, off)
        if n == 0:
            from ...errors import InputFileError

            raise InputFileError(f"{name} became shorter while it was being signed; sign it again once nothing "
                                 "else writes to it")
        off += n


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, size)  # pragma: no cover


# --- the passes signing needs, started early --------------------------------------------------


class SigningPasses:
    """The passes over a PE image that Authenticode signing needs, run in helper threads as soon as
    this object is made (so they can overlap other work, e.g. the CLI's imports and key loading):

    * the authentihash of the image *as it will be signed* (signing-spec §1.3): an existing
      certificate table is left out and the zero padding to 8 bytes is hashed; ``hashlib``
      releases the GIL, so this runs on another core;
    * optionally the SHA-256 of the input bytes (``sha256_before``);
    * the PE checksum words of the image body (everything after the certificate-table directory
      entry), which hold the GIL (:func:`wordsum`); the header words are summed here with the
      CheckSum and directory entry taken as zero, so the signer can patch those two fields at once.

    Attributes:
        data: the buffer (not modified here).
        layout: :class:`PEImage` of ``data``.
        hash_name: the authentihash algorithm.
        image_length: bytes of ``data`` kept (before an old certificate table).
        padding: zero bytes to append before the new certificate table.
        hashed_ranges: the authentihash ranges in the signed file.
    Raises:
        PEFormatError: from :func:`parse` (no thread is started then).
    """

    def __init__(self, data, name: str, hash_name: str = "sha256", *, executor: Executor | None = None,
                 input_sha256: bool = False, owns=None):
        self.data = data
        self.name = name
        self.hash_name = hash_name
        self.wants_input_sha256 = input_sha256
        self._owns = owns
        self._closed = False
        self.layout = layout = parse(data, name)
        self.image_length = image_len = layout.cert_table_offset if layout.signed else len(data)
        self.padding = -image_len % 8
        ck, cd = layout.checksum_offset, layout.cert_dir_offset
        if ck % 2 or cd % 2 or ck + 4 > cd:  # pragma: no cover - 4-aligned, CheckSum before the directories
            raise PEFormatError(f"{name} has an unusual optional header layout that ppmi-build cannot sign")
        self.hashed_ranges = [(0, ck), (ck + 4, cd), (cd + 8, image_len + self.padding)]
        self._mv = mv = memoryview(data)
        split = cd + 8
        self._head_sum = wordsum(mv[:split]) - wordsum(mv[ck:ck + 4]) - wordsum(mv[cd:cd + 8])
        self._jobs: dict[str, Future] = {}

        def authentihash() -> bytes:
            h = hashlib.new(hash_name)
            for a, b in self.hashed_ranges:
                h.update(mv[a:min(b, image_len)])
            h.update(b"\0" * self.padding)  # the zero padding is part of the hashed image
            return h.digest()

        submit = executor.submit if executor is not None else _run_now
        try:
            # the jobs that run without the GIL first: starting a thread waits for it to run, which is
            # slow once a thread holds the GIL summing checksum words
            self._jobs["authentihash"] = submit(authentihash)
            if input_sha256:
                self._jobs["input_sha256"] = submit(lambda: hashlib.sha256(mv).hexdigest())
            self._jobs["body_sum"] = submit(wordsum, mv[split:image_len])
        except BaseException:  # e.g. SIGTERM while a thread starts: wait for the ones started, then re-raise
            self.close()
            raise

    def _get(self, key: str):
        return self._jobs[key].result()

    def authentihash(self) -> bytes:
        """The authentihash (raw digest) of the image to sign."""
        return self._get("authentihash")

    def input_sha256(self) -> str | None:
        """Lower-case hex SHA-256 of the input bytes, or None when not asked for."""
        return self._get("input_sha256") if self.wants_input_sha256 else None

    def checksum(self, dir_entry: bytes, table: bytes) -> int:
        """The PE CheckSum of the signed file: this image (with ``dir_entry`` in the certificate-table
        directory entry), the zero padding, then ``table`` (the WIN_CERTIFICATE)."""
        total = self._head_sum + self._get("body_sum") + wordsum(dir_entry) + wordsum(table)
        return fold_checksum(total, True, self.image_length + self.padding + len(table))

    def close(self) -> None:
        """Wait for the helper threads and release the buffer (and close the mapping, when owned).
        Idempotent. Raises only an interruption (SIGTERM, Ctrl-C) that arrived while waiting, after
        the threads are done and the buffer is released; their own errors went to whoever asked."""
        if self._closed:
            return
        self._closed = True
        pending: BaseException | None = None
        for job in self._jobs.values():
            while True:  # wait even when interrupted: the task reads the buffer released below
                try:
                    wait_done(job)
                    break
                except BaseException as e:  # noqa: PERF203
                    pending = pending or e
        try:
            self._mv.release()
            if self._owns is not None:
                self._owns.close()
        except BufferError:  # pragma: no cover - a view is still referenced (e.g. by a traceback)
            pass  # the mapping goes when the last view does; nothing is lost
        if pending is not None:
            raise pending


def wait_done(job: Future) -> None:
    """Wait until ``job`` has finished (its own exception is left for whoever asks for its result)."""
    from concurrent.futures import wait

    wait([job])


def _run_now(fn, *args) -> Future:
    """``fn(*args)`` run in this thread, as a finished Future (:class:`SigningPasses` without an executor)."""
    from concurrent.futures import Future

    job: Future = Future()
    try:
        job.set_result(fn(*args))
    except Exception as e:  # re-raised by result()
        job.set_exception(e)
    return job
