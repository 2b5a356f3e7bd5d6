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

import hashlib
import os
import stat
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ...errors import BadInput, InputFileError, PackageFormatError
from ...fileio import open_input
from ..keys import KeySource, check_signing_certificate, hash_algorithm
from ..staging import _is_read_only
from ..staging import sha256_file as _sha256_file
from .archive import (
    MAX_ENTRIES_BEFORE_SIGNING,
    Segment,
    _Archive,
    _iter_segments,
    _read_archive,
    _Record,
    _signature_entry_problems,
    _unsigned_segments,
    _zip64_error,
    signature_entry_headers,
)
from .content import build_author_signature, signature_content

# --- signing -------------------------------------------------------------------------------------------


def _open(path: Path) -> IO[bytes]:
    return open_input(path, what="package", directory_fix="pass a .nupkg file")


def _check_rules(f: IO[bytes], path: Path) -> None:
    """NuGet's package rules (zip layout, entry names, one nuspec, nuspec size and XML safety): the same ones
    ``verify`` and ``register`` apply (:func:`ppmi_build.assembly.nupkg_rules.check_package`). Raises
    PackageFormatError."""
    from ...assembly.nupkg_rules import check_package

    check_package(f, str(path))
    f.seek(0)


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
    from ...assembly.package import check_entries

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
        _check_rules(f, src)
        arc = _read_archive(f, src)
        existing = _check_signable(f, arc, overwrite=overwrite)
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


def check_signable(path: Path, *, overwrite: bool) -> bool:
    """Whether ``path`` is a package that may be signed now (see :func:`sign_package`): True when it is
    signed already and ``overwrite`` is set, False when unsigned.

    Raises:
        PackageFormatError (not a zip, Zip64, too many entries, bad signature entry), BadInput (NU3001).
    """
    with _open(Path(path)) as f:
        _check_rules(f, Path(path))
        arc = _read_archive(f, Path(path))
        return _check_signable(f, arc, overwrite=overwrite) is not None


def is_signed(path: Path) -> bool:
    """True when the package has a ``.signature.p7s`` central-directory entry
    (``SignedPackageArchiveUtility.IsSigned``)."""
    with _open(Path(path)) as f:
        arc = _read_archive(f, Path(path), check_local_zip64=False)
        return bool(arc.signature_records())




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
