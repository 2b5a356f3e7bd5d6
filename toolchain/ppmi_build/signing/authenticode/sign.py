"""Authenticode signing of PE files (signing-spec §1.4-§1.7): the PKCS#7 SignedData over the authentihash,
its WIN_CERTIFICATE appended after the 8-byte padded image, the certificate-table entry and CheckSum patched.

``messageDigest`` is the hash of the SpcIndirectDataContent *contents* octets, without its tag and length
(RFC 2315 §9.3; signing-spec §1.5). No signingTime (SignTool and jsign omit it, §1.6). Removal of a signature
follows ``osslsigncode remove-signature`` (§1.10).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ...errors import BadInput, PEFormatError
from .. import cms
from ..keys import KeySource, hash_algorithm
from . import pe
from .structures import (
    RFC3161_COUNTERSIGN_OID,
    SPC_INDIRECT_DATA_OID,
    authenticode_signed_attrs_der,
    indirect_data_content_der,
)

if TYPE_CHECKING:  # pragma: no cover
    pass


def build_signature(
    authentihash: bytes,
    key: KeySource,
    *,
    digest: str = "sha256",
    program_name: str | None = None,
    program_url: str | None = None,
    timestamp_urls: Sequence[str] = (),
    timestamp_digest: str | None = None,
    timestamp_timeout: float = 15,
    timestamp_retries: int = 2,
) -> bytes:
    """The Authenticode PKCS#7 (DER ``ContentInfo(signedData)``) for a PE with this authentihash.

    Args:
        authentihash: the PE image hash (:func:`ppmi_build.signing.pe.authentihash`) made with ``digest``.
        key: signer.
        digest: ``sha256`` | ``sha384`` | ``sha512``.
        program_name / program_url: SpcSpOpusInfo programName / moreInfo.
        timestamp_urls: RFC 3161 TSAs tried in order; empty = no timestamp.
        timestamp_digest: imprint hash for the timestamp (default ``digest``).
    Raises:
        TimestampError: every TSA failed. BadInput: bad digest, non-ASCII ``program_url``.
    """
    name = hash_algorithm(digest).name
    idc_der = indirect_data_content_der(authentihash, name)
    # messageDigest over the *contents* of the SEQUENCE, not its tag and length (RFC 2315 §9.3)
    _, contents_start, _ = cms.read_tlv(idc_der, 0)
    md = hashlib.new(name, idc_der[contents_start:]).digest()
    unsigned = None
    if timestamp_urls:
        from ..timestamp import request_timestamp, token_attribute

        def unsigned(signature: bytes) -> list:
            token = request_timestamp(signature, list(timestamp_urls), digest=timestamp_digest or name,
                                      timeout=timestamp_timeout, retries=timestamp_retries)
            return [token_attribute(token, RFC3161_COUNTERSIGN_OID)]

    return cms.build_signed_data(
        content_type=SPC_INDIRECT_DATA_OID,
        encap_content=idc_der,
        message_digest=md,
        extra_signed_attrs=authenticode_signed_attrs_der(program_name, program_url),
        key=key,
        digest=name,
        sid="issuer_and_serial_number",  # signify cannot parse an SKI sid (signing-spec §1.6)
        signature_algorithm="rsassa_pkcs1v15",  # rsaEncryption, like SignTool (jsign)
        unsigned_attrs_for=unsigned,
    )


@dataclass
class SignOutcome:
    """What :func:`sign_pe_data` / :func:`sign_pe_buffer` did.

    Attributes:
        replaced_signature: the input had a certificate table that was replaced.
        timestamped: an RFC 3161 token was embedded.
        authentihash: the signed PE image hash (raw bytes).
        padding: zero bytes added before the certificate table.
        checksum: the new PE CheckSum.
        image_length: bytes of the input kept (everything before an old certificate table).
        tail: what follows them in the signed file: the zero padding and the new WIN_CERTIFICATE.
        input_sha256: hex SHA-256 of the input bytes (when asked for).
        hashed_ranges / digest: the byte ranges (in the signed file) and algorithm of the authentihash.
        checksum_offset: where the CheckSum is in the file.
        complete_checksum: stores the CheckSum in the buffer and returns it (already done unless
            ``defer_checksum``).
    """

    replaced_signature: bool
    timestamped: bool
    authentihash: bytes
    padding: int
    checksum: int
    image_length: int = 0
    tail: bytes = b""
    input_sha256: str | None = None
    hashed_ranges: list[tuple[int, int]] = field(default_factory=list)
    digest: str = "sha256"
    notes: list[str] = field(default_factory=list)
    checksum_offset: int = 0
    complete_checksum: Any = None  # () -> int, set by sign_pe_data


def sign_pe_data(data, key: KeySource, *, name: str = "the file", digest: str = "sha256",
                 program_name: str | None = None, program_url: str | None = None,
                 timestamp_urls: Sequence[str] = (), timestamp_digest: str | None = None,
                 timestamp_timeout: float = 15, timestamp_retries: int = 2,
                 input_sha256: bool = False, passes: pe.SigningPasses | None = None,
                 defer_checksum: bool = False) -> SignOutcome:
    """Sign the PE file held in the writable buffer ``data`` (a bytearray, or a copy-on-write mmap of
    the input). The signed file is ``data[:outcome.image_length] + outcome.tail``; ``data`` is
    changed only in the CheckSum and certificate-table directory entry (both excluded from the
    authentihash). Steps (signing-spec §1.2-§1.3, §1.10): drop an existing certificate table
    (replace, never append), zero-pad the image to 8 bytes (the padding is hashed), compute the
    authentihash, sign, build the WIN_CERTIFICATE, point data directory 4 at it, recompute the PE
    checksum.

    The passes over the image (authentihash, checksum words, optional input SHA-256) run in helper
    threads (:class:`ppmi_build.signing.pe.SigningPasses`); ``passes`` takes ones already started
    over ``data`` (:func:`ppmi_build.signing.api.sign_file` starts them with the copy into the temp
file), which must use the same ``digest``. With
    ``defer_checksum`` (only with ``passes``) the CheckSum field is left as it is and
    ``outcome.complete_checksum()`` stores it later (it waits for the checksum words), so writing
    the file can overlap that pass; the CheckSum is not covered by the authentihash or the signature.

    Raises:
        PEFormatError: not a PE / truncated / trailing data after the table / corrupt table.
        TimestampError, BadInput: see :func:`build_signature`.
    """
    alg_name = hash_algorithm(digest).name
    own = passes is None
    if own and defer_checksum:
        raise ValueError("defer_checksum needs passes the caller closes")
    if own:
        passes = pe.SigningPasses(data, name, alg_name, input_sha256=input_sha256)
    elif cast(pe.SigningPasses, passes).hash_name != alg_name or cast(pe.SigningPasses, passes).data is not data:
        raise ValueError("the given passes were made for another digest or buffer")
    assert passes is not None  # made above or given by the caller
    try:
        layout = passes.layout
        blob = build_signature(passes.authentihash(), key, digest=alg_name, program_name=program_name,
                               program_url=program_url, timestamp_urls=timestamp_urls,
                               timestamp_digest=timestamp_digest, timestamp_timeout=timestamp_timeout,
                               timestamp_retries=timestamp_retries)
        wincert = pe.win_certificate(blob)
        signed_end = passes.image_length + passes.padding
        dir_entry = struct.pack("<II", signed_end, len(wincert))
        input_hash = passes.input_sha256()  # before the header is patched
        ck = layout.checksum_offset
        _patch(data, layout.cert_dir_offset, dir_entry)
        outcome = SignOutcome(layout.signed, bool(timestamp_urls), passes.authentihash(), passes.padding, 0,
                              image_length=passes.image_length, tail=b"\0" * passes.padding + wincert,
                              input_sha256=input_hash, hashed_ranges=passes.hashed_ranges, digest=alg_name)
        outcome.checksum_offset = ck

        def complete_checksum() -> int:
            if not outcome.checksum:
                outcome.checksum = passes.checksum(dir_entry, wincert)
                _patch(data, ck, struct.pack("<I", outcome.checksum))
            return outcome.checksum

        outcome.complete_checksum = complete_checksum
        if not defer_checksum:
            complete_checksum()
        return outcome
    finally:
        if own:
            passes.close()


def _patch(data, offset: int, value: bytes) -> None:
    mv = memoryview(data)
    try:
        mv[offset:offset + len(value)] = value
    finally:
        mv.release()


def sign_pe_buffer(buf: bytearray, key: KeySource, **options) -> SignOutcome:
    """Sign the PE held in ``buf`` in place (``buf`` becomes the signed file); see :func:`sign_pe_data`."""
    outcome = sign_pe_data(buf, key, **options)
    del buf[outcome.image_length:]
    buf += outcome.tail
    return outcome


def sign_pe(src: Path | str, dst: Path | str, key: KeySource, **options) -> SignOutcome:
    """Read ``src``, sign it (see :func:`sign_pe_buffer` for ``options``) and write ``dst``.

    Not atomic by itself: :func:`ppmi_build.signing.api.sign_file` writes to a temp file and renames.
    """
    src = Path(src)
    buf = pe.read_file(src)
    outcome = sign_pe_buffer(buf, key, name=src.name, **options)
    with open(dst, "wb") as f:
        f.write(buf)
    return outcome


def remove_signature(src: Path | str, dst: Path | str | None = None) -> bool:
    """Remove the certificate table of ``src`` (written to ``dst``, default in place, atomically),
    recomputing the checksum like ``osslsigncode remove-signature``. Returns False when unsigned
    (nothing written).

    Raises:
        InputFileError, PEFormatError.
    """
    from ...fileio import atomic_write
    from ..staging import _check_target

    src = Path(src)
    buf = pe.read_file(src)
    try:
        layout = pe.parse(buf, src.name)
    except pe.CertificateTableError:
        # A corrupt or misplaced table (bad WIN_CERTIFICATE lengths, a size past the end, data after it):
        # remove what the directory entry covers when it starts after the image. Bytes after a table that
        # fits stay (appended data is not ours to drop); a table that runs past the end goes to the end.
        layout = pe.parse(buf, src.name, check_table=False)
        va, sz = layout.cert_table_offset, layout.cert_table_size
        if va < layout.image_end:
            raise PEFormatError(f"{src.name} has a certificate table directory entry that points into the image "
                                f"(offset {va}, image ends at {layout.image_end}); it cannot be removed safely: "
                                "rebuild the file") from None
        if va > layout.size:
            raise PEFormatError(f"{src.name} has a certificate table directory entry that points past the end of "
                                f"the file (offset {va}, file {layout.size} bytes); it cannot be removed safely: "
                                "rebuild the file") from None
        end = va + sz if va + sz <= layout.size else layout.size
        del buf[va:end]
        struct.pack_into("<II", buf, layout.cert_dir_offset, 0, 0)
        layout = pe.parse(buf, src.name)
    else:
        if not layout.signed:
            return False
        layout = pe.strip_signature(buf, layout)
    struct.pack_into("<I", buf, layout.checksum_offset, pe.checksum(buf, layout.checksum_offset))
    target = Path(dst) if dst else src
    _check_target(target)
    atomic_write(target, buf)
    return True



def unsign_file(path: Path | str, output: Path | str | None = None) -> dict:
    """``ppmi-build unsign`` for assemblies: remove the Authenticode signature atomically.

    Returns:
        ``{"path", "kind": "assembly", "sha256_before", "sha256_after", "removed"}`` (hex SHA-256 of
        the whole file; ``removed`` is always True).
    Raises:
        BadInput: the file is not signed (nothing to remove; like NU3004 for packages).
        InputFileError (missing input, read-only target), PEFormatError.
    """
    path = Path(path)
    target = Path(output) if output is not None else path
    before_buf = pe.read_file(path)
    before = hashlib.sha256(before_buf).hexdigest()
    if not pe.parse(before_buf, path.name, check_table=False).signed:  # as for a .nupkg (NU3004): exit 2
        raise BadInput(f"{path} is not signed; there is no signature to remove")
    del before_buf
    removed = remove_signature(path, target)
    if not removed:  # pragma: no cover - parse said signed; remove_signature found nothing to cut
        raise BadInput(f"{path} is not signed; there is no signature to remove")
    after = hashlib.sha256(pe.read_file(target)).hexdigest()
    return {"path": str(target), "kind": "assembly", "sha256_before": before, "sha256_after": after,
            "removed": removed}
