"""Authenticode signatures for PE files (PE32 and PE32+), written from the Authenticode PE
specification with asn1crypto structures and ``cryptography`` for the key operation.

Structure (signing-spec §1.4-§1.7; the ASN.1 choices follow SignTool as mirrored by jsign)::

    ContentInfo(signedData) -> SignedData v1 {
        digestAlgorithms { sha256 (NULL params) },
        encapContentInfo { 1.3.6.1.4.1.311.2.1.4, [0] SpcIndirectDataContent (a SEQUENCE) },
        certificates { leaf, intermediates },
        signerInfos { SignerInfo v1 (issuerAndSerialNumber, rsaEncryption,
            signed attrs: contentType, messageDigest, SpcStatementType(individual), SpcSpOpusInfo;
            unsigned attr 1.3.6.1.4.1.311.3.3.1 = RFC 3161 TimeStampToken) } }
    SpcIndirectDataContent { SpcAttributeTypeAndOptionalValue { SPC_PE_IMAGE_DATA, SpcPeImageData },
                             DigestInfo { sha256, authentihash } }
    SpcPeImageData { flags BIT STRING '' , file [0] EXPLICIT SpcLink.file [2] SpcString.unicode '' }
        -> 30 09 03 01 00 a0 04 a2 02 80 00 (jsign PR #56 / SignTool form, signing-spec §1.4)

``messageDigest`` is the hash of the SpcIndirectDataContent *contents* octets, without its tag and
length (RFC 2315 §9.3; signing-spec §1.5). No signingTime (SignTool and jsign omit it, §1.6).

These classes are private to ppmi-build: nothing is registered in asn1crypto's global OID maps
(signify registers its own; see :mod:`ppmi_build.signing.cms`).
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import algos, core
from asn1crypto import cms as acms
from cryptography import x509

from ..errors import PEFormatError
from . import cms, pe
from .keys import KeySource, hash_algorithm

SPC_INDIRECT_DATA_OID = cms.SPC_INDIRECT_DATA_OID  # 1.3.6.1.4.1.311.2.1.4
SPC_PE_IMAGE_DATA_OID = "1.3.6.1.4.1.311.2.1.15"
SPC_STATEMENT_TYPE_OID = "1.3.6.1.4.1.311.2.1.11"
SPC_SP_OPUS_INFO_OID = "1.3.6.1.4.1.311.2.1.12"
SPC_INDIVIDUAL_SP_KEY_PURPOSE_OID = "1.3.6.1.4.1.311.2.1.21"
SPC_COMMERCIAL_SP_KEY_PURPOSE_OID = "1.3.6.1.4.1.311.2.1.22"
SPC_NESTED_SIGNATURE_OID = "1.3.6.1.4.1.311.2.4.1"
#: szOID_RFC3161_counterSign: Authenticode unsigned attribute with an RFC 3161 token (signing-spec §1.7);
#: the same value as ppmi_build.signing.timestamp.RFC3161_COUNTERSIGN_OID (not imported: keeps start-up light)
RFC3161_COUNTERSIGN_OID = "1.3.6.1.4.1.311.3.3.1"

#: legacy Authenticode countersignature (PKCS#9), read only
PKCS9_COUNTERSIGNATURE_OID = "1.2.840.113549.1.9.6"


# --- ASN.1 (Authenticode_PE.docx with the errata of signify spc.py and jsign) ---------------


class SpcString(core.Choice):
    """``SpcString ::= CHOICE { unicode [0] IMPLICIT BMPString, ascii [1] IMPLICIT IA5String }``"""

    _alternatives = [("unicode", core.BMPString, {"implicit": 0}), ("ascii", core.IA5String, {"implicit": 1})]


class SpcSerializedObject(core.Sequence):
    """``SpcSerializedObject ::= SEQUENCE { classId SpcUuid, serializedData OCTET STRING }``"""

    _fields = [("class_id", core.OctetString), ("serialized_data", core.OctetString)]


class SpcLink(core.Choice):
    """``SpcLink ::= CHOICE { url [0] IMPLICIT IA5String, moniker [1] IMPLICIT SpcSerializedObject,
    file [2] EXPLICIT SpcString }``"""

    _alternatives = [
        ("url", core.IA5String, {"implicit": 0}),
        ("moniker", SpcSerializedObject, {"implicit": 1}),
        ("file", SpcString, {"explicit": 2}),
    ]


class SpcPeImageData(core.Sequence):
    """``SpcPeImageData ::= SEQUENCE { flags SpcPeImageFlags DEFAULT {includeResources},
    file [0] EXPLICIT SpcLink }`` (``file`` is tagged in real files: jsign, signing-spec §1.4)."""

    _fields = [("flags", core.BitString), ("file", SpcLink, {"explicit": 0, "optional": True})]


class SpcAttributeTypeAndOptionalValue(core.Sequence):
    """``SEQUENCE { type OBJECT IDENTIFIER, value ANY }`` (``value`` is not [0]-tagged in practice)."""

    _fields = [("type", core.ObjectIdentifier), ("value", core.Any, {"optional": True})]


class SpcIndirectDataContent(core.Sequence):
    """``SpcIndirectDataContent ::= SEQUENCE { data SpcAttributeTypeAndOptionalValue,
    messageDigest DigestInfo }``"""

    _fields = [("data", SpcAttributeTypeAndOptionalValue), ("message_digest", algos.DigestInfo)]


class SpcSpOpusInfo(core.Sequence):
    """``SpcSpOpusInfo ::= SEQUENCE { programName [0] EXPLICIT SpcString OPTIONAL,
    moreInfo [1] EXPLICIT SpcLink OPTIONAL }``"""

    _fields = [
        ("program_name", SpcString, {"explicit": 0, "optional": True}),
        ("more_info", SpcLink, {"explicit": 1, "optional": True}),
    ]


class SpcStatementType(core.SequenceOf):
    """``SpcStatementType ::= SEQUENCE OF OBJECT IDENTIFIER``"""

    _child_spec = core.ObjectIdentifier


# --- building -------------------------------------------------------------------------------


def pe_image_data() -> SpcPeImageData:
    """The SignTool/jsign SpcPeImageData: empty flags, ``file`` = empty unicode SpcString."""
    return SpcPeImageData({
        "flags": core.BitString(()),
        "file": SpcLink(name="file", value=SpcString(name="unicode", value="")),
    })


def indirect_data_content(authentihash: bytes, digest: str = "sha256") -> SpcIndirectDataContent:
    """SpcIndirectDataContent over ``authentihash`` made with ``digest``."""
    return SpcIndirectDataContent({
        "data": {"type": SPC_PE_IMAGE_DATA_OID, "value": core.Any.load(pe_image_data().dump())},
        "message_digest": {
            "digest_algorithm": {"algorithm": digest, "parameters": core.Null()},
            "digest": authentihash,
        },
    })


def opus_info(program_name: str | None = None, program_url: str | None = None) -> SpcSpOpusInfo:
    """SpcSpOpusInfo with the optional description (``signtool /d``) and URL (``/du``); always
    present, even empty, as jsign found Windows needs for SHA-512 (signing-spec §1.4, §1.6)."""
    value: dict = {}
    if program_name:
        value["program_name"] = SpcString(name="unicode", value=program_name)
    if program_url:
        value["more_info"] = SpcLink(name="url", value=program_url)
    if not value:
        return SpcSpOpusInfo.load(b"\x30\x00")  # empty SEQUENCE (asn1crypto cannot dump an empty dict)
    return SpcSpOpusInfo(value)


def authenticode_signed_attrs(program_name: str | None = None, program_url: str | None = None,
                              commercial: bool = False) -> list[acms.CMSAttribute]:
    """The signed attributes besides contentType and messageDigest (SignTool set, §1.6)."""
    purpose = SPC_COMMERCIAL_SP_KEY_PURPOSE_OID if commercial else SPC_INDIVIDUAL_SP_KEY_PURPOSE_OID
    return [
        cms.attribute(SPC_STATEMENT_TYPE_OID, SpcStatementType([purpose])),
        cms.attribute(SPC_SP_OPUS_INFO_OID, opus_info(program_name, program_url)),
    ]


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
        TimestampError: every TSA failed. BadInput: bad digest.
    """
    name = hash_algorithm(digest).name
    idc = indirect_data_content(authentihash, name)
    idc_der = idc.dump()
    # messageDigest over the *contents* of the SEQUENCE, not its tag and length (RFC 2315 §9.3)
    md = hashlib.new(name, idc.contents).digest()
    unsigned = None
    if timestamp_urls:
        from .timestamp import request_timestamp, token_attribute

        def unsigned(signature: bytes) -> list:
            token = request_timestamp(signature, list(timestamp_urls), digest=timestamp_digest or name,
                                      timeout=timestamp_timeout, retries=timestamp_retries)
            return [token_attribute(token, RFC3161_COUNTERSIGN_OID)]

    return cms.build_signed_data(
        content_type=SPC_INDIRECT_DATA_OID,
        encap_content=idc_der,
        message_digest=md,
        extra_signed_attrs=authenticode_signed_attrs(program_name, program_url),
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
        checksum_offset / complete_checksum: where the CheckSum goes and the callable that finishes it
            (see ``defer_checksum``).
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
    complete_checksum: object = None


def sign_pe_data(data, key: KeySource, *, name: str = "the file", digest: str = "sha256",
                 program_name: str | None = None, program_url: str | None = None,
                 timestamp_urls: Sequence[str] = (), timestamp_digest: str | None = None,
                 timestamp_timeout: float = 15, timestamp_retries: int = 2,
                 input_sha256: bool = False, defer_checksum: bool = False) -> SignOutcome:
    """Sign the PE file held in the writable buffer ``data`` (a bytearray, or a copy-on-write mmap of
    the input). The signed file is ``data[:outcome.image_length] + outcome.tail``; ``data`` is
    changed only in the CheckSum and certificate-table directory entry (both excluded from the
    authentihash). Steps (signing-spec §1.2-§1.3, §1.10): drop an existing certificate table
    (replace, never append), zero-pad the image to 8 bytes (the padding is hashed), compute the
    authentihash, sign, build the WIN_CERTIFICATE, point data directory 4 at it, recompute the PE
    checksum.

    Concurrency: the authentihash (and, with ``input_sha256``, the SHA-256 of the input) run in
    helper threads (hashlib releases the GIL); the checksum words of the image body are summed in
    another thread. With ``defer_checksum`` the CheckSum field is left 0 and the caller finishes it
    with ``outcome.complete_checksum()`` later (e.g. after writing and verifying the file, which
    the CheckSum does not affect), so the checksum pass overlaps the I/O.

    Raises:
        PEFormatError: not a PE / truncated / trailing data after the table / corrupt table.
        TimestampError, BadInput: see :func:`build_signature`.
    """
    alg_name = hash_algorithm(digest).name
    layout = pe.parse(data, name)
    image_len = layout.cert_table_offset if layout.signed else len(data)
    padding = -image_len % 8
    ck, cd = layout.checksum_offset, layout.cert_dir_offset
    signed_end = image_len + padding
    ranges = [(0, ck), (ck + 4, cd), (cd + 8, signed_end)]
    if ck % 2 or cd % 2 or ck + 4 > cd:  # pragma: no cover - 4-aligned, CheckSum before the directories
        raise PEFormatError(f"{name} has an unusual optional header layout that ppmi-build cannot sign")
    results: dict = {}
    mv = memoryview(data)
    split = cd + 8  # header words (which we patch) are summed here; the body in a thread

    def _run(key_name: str, fn) -> None:
        try:
            results[key_name] = fn()
        except BaseException as e:  # pragma: no cover - re-raised by the joiner
            results.setdefault("error", e)

    def _authentihash() -> bytes:
        h = hashlib.new(alg_name)
        for a, b in ranges:
            h.update(mv[a:min(b, image_len)])
        h.update(b"\0" * padding)  # the zero padding is part of the hashed image
        return h.digest()

    # checksum words with the CheckSum and the directory entry taken as zero (their new values are
    # added once known); the padding zeros add nothing
    head_sum = pe.wordsum(mv[:split]) - pe.wordsum(mv[ck:ck + 4]) - pe.wordsum(mv[cd:cd + 8])
    body = threading.Thread(target=_run, args=("body_sum", lambda: pe.wordsum(mv[split:image_len])),
                            name="pe-checksum")
    hashers = [threading.Thread(target=_run, args=("hash", _authentihash), name="authentihash")]
    if input_sha256:
        hashers.append(threading.Thread(target=_run, args=("input_sha256", lambda: hashlib.sha256(mv).hexdigest()),
                                        name="sha256-input"))
    for t in (*hashers, body):
        t.start()
    try:
        for t in hashers:
            t.join()
        if "error" in results:
            raise results["error"]
        blob = build_signature(results["hash"], key, digest=alg_name, program_name=program_name,
                               program_url=program_url, timestamp_urls=timestamp_urls,
                               timestamp_digest=timestamp_digest, timestamp_timeout=timestamp_timeout,
                               timestamp_retries=timestamp_retries)
    except BaseException:
        body.join()
        mv.release()
        raise
    wincert = pe.win_certificate(blob)
    dir_entry = struct.pack("<II", signed_end, len(wincert))
    mv[cd:cd + 8] = dir_entry  # outside the body thread's range
    mv[ck:ck + 4] = b"\0\0\0\0"
    outcome = SignOutcome(layout.signed, bool(timestamp_urls), results["hash"], padding, 0,
                          image_length=image_len, tail=b"\0" * padding + wincert,
                          input_sha256=results.get("input_sha256"), hashed_ranges=ranges, digest=alg_name)
    outcome.checksum_offset = ck

    def complete_checksum() -> int:
        """Wait for the body sum, store the PE CheckSum in ``data`` and return it."""
        if outcome.checksum:
            return outcome.checksum
        body.join()
        try:
            if "error" in results:
                raise results["error"]
            total = head_sum + results["body_sum"] + pe.wordsum(dir_entry) + pe.wordsum(wincert)
            outcome.checksum = pe.fold_checksum(total, True, signed_end + len(wincert))
            mv[ck:ck + 4] = struct.pack("<I", outcome.checksum)
        finally:
            mv.release()
        return outcome.checksum

    outcome.complete_checksum = complete_checksum
    if not defer_checksum:
        complete_checksum()
    return outcome


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
    from .api import atomic_write

    src = Path(src)
    buf = pe.read_file(src)
    layout = pe.parse(buf, src.name)
    if not layout.signed:
        return False
    layout = pe.strip_signature(buf, layout)
    struct.pack_into("<I", buf, layout.checksum_offset, pe.checksum(buf, layout.checksum_offset))
    atomic_write(Path(dst) if dst else src, buf)
    return True


def extract_signature(path: Path | str) -> bytes | None:
    """The DER PKCS#7 of the (first) Authenticode signature of a PE file, or None when unsigned.

    Raises:
        InputFileError, PEFormatError.
    """
    path = Path(path)
    buf = pe.read_file(path)
    layout = pe.parse(buf, path.name)
    if not layout.signed:
        return None
    return pe.pkcs7_blob(buf, layout)


# --- reading --------------------------------------------------------------------------------


@dataclass
class ParsedSignature:
    """One Authenticode signature, decoded (no verification done here).

    Attributes:
        content_info: the asn1crypto ContentInfo.
        signed_data / signer_info: shortcuts into it.
        digest_algorithm: e.g. ``sha256`` (SignerInfo digestAlgorithm).
        indirect_digest_algorithm / indirect_digest: the DigestInfo in SpcIndirectDataContent.
        idc_contents: SpcIndirectDataContent contents octets (what messageDigest covers).
        certificates: embedded certificates (cryptography objects).
        signer_certificate: the one named by the sid, or None.
        program_name / program_url: SpcSpOpusInfo values.
        timestamp_tokens: RFC 3161 tokens (asn1crypto ContentInfo) from unsigned attributes.
        legacy_countersignature: a PKCS#9 countersignature is present (not checked by us).
        nested: DER of nested signatures (1.3.6.1.4.1.311.2.4.1).
    """

    content_info: acms.ContentInfo
    signed_data: acms.SignedData
    signer_info: acms.SignerInfo
    digest_algorithm: str
    indirect_digest_algorithm: str
    indirect_digest: bytes
    idc_contents: bytes
    certificates: list[x509.Certificate]
    signer_certificate: x509.Certificate | None
    program_name: str | None = None
    program_url: str | None = None
    timestamp_tokens: list[acms.ContentInfo] = field(default_factory=list)
    legacy_countersignature: bool = False
    nested: list[bytes] = field(default_factory=list)


def parse_signature(der: bytes, name: str = "the file") -> ParsedSignature:
    """Decode an Authenticode PKCS#7 blob.

    Raises:
        PEFormatError: the blob is not a SignedData with one SignerInfo over SpcIndirectDataContent.
    """
    try:
        ci = acms.ContentInfo.load(der)
        if ci["content_type"].native != "signed_data":
            raise ValueError("not signedData")
        sd = ci["content"]
        eci = sd["encap_content_info"]
        if eci["content_type"].dotted != SPC_INDIRECT_DATA_OID:
            raise ValueError(f"content type {eci['content_type'].dotted} is not SPC_INDIRECT_DATA")
        content = eci["content"]
        idc_der = cms.der(content)  # may or may not include the [0] EXPLICIT wrapper; normalise below
        idc = SpcIndirectDataContent.load(_inner_sequence(idc_der))
        infos = list(sd["signer_infos"])
        if len(infos) != 1:
            raise ValueError(f"{len(infos)} signer infos (Authenticode has exactly one)")
        si = infos[0]
        di = idc["message_digest"]
        certs = cms.certificates_of(sd)
        parsed = ParsedSignature(
            content_info=ci, signed_data=sd, signer_info=si,
            digest_algorithm=si["digest_algorithm"]["algorithm"].native,
            indirect_digest_algorithm=di["digest_algorithm"]["algorithm"].native,
            indirect_digest=di["digest"].native,
            idc_contents=idc.contents,
            certificates=certs,
            signer_certificate=cms.find_signer_certificate(sd, si),
        )
        for value in cms.signed_attribute(si, SPC_SP_OPUS_INFO_OID):
            opus = SpcSpOpusInfo.load(cms.der(value))
            name_field, info_field = opus["program_name"], opus["more_info"]
            if not isinstance(name_field, core.Void):
                parsed.program_name = name_field.chosen.native
            if not isinstance(info_field, core.Void) and info_field.name == "url":
                parsed.program_url = info_field.chosen.native
        for attr in si["unsigned_attrs"] or []:
            oid = attr["type"].dotted
            for value in attr["values"]:
                if oid == RFC3161_COUNTERSIGN_OID:
                    parsed.timestamp_tokens.append(acms.ContentInfo.load(cms.der(value)))
                elif oid == PKCS9_COUNTERSIGNATURE_OID:
                    parsed.legacy_countersignature = True
                elif oid == SPC_NESTED_SIGNATURE_OID:
                    parsed.nested.append(cms.der(value))
        return parsed
    except PEFormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise PEFormatError(f"{name} has an unreadable Authenticode signature ({e}); sign it again") from None


def _inner_sequence(der: bytes) -> bytes:
    """Return the SEQUENCE TLV, unwrapping a ``[0]`` explicit tag if present."""
    if der[:1] == b"\xa0":
        n = der[1]
        skip = 2 if n < 0x80 else 2 + (n & 0x7F)
        return der[skip:]
    return der


def unsign_file(path: Path | str, output: Path | str | None = None) -> dict:
    """``ppmi-build unsign`` for assemblies: remove the Authenticode signature atomically.

    Returns:
        ``{"path", "kind": "assembly", "sha256_before", "sha256_after", "removed"}`` (hex SHA-256 of
        the whole file; ``removed`` False when the file was not signed and nothing was written).
    Raises:
        InputFileError (missing input, read-only target), PEFormatError.
    """
    path = Path(path)
    target = Path(output) if output is not None else path
    before_buf = pe.read_file(path)
    before = hashlib.sha256(before_buf).hexdigest()
    del before_buf
    removed = remove_signature(path, target)
    if not removed and target != path:
        from .api import atomic_write

        atomic_write(target, pe.read_file(path))
    after = hashlib.sha256(pe.read_file(target)).hexdigest()
    return {"path": str(target), "kind": "assembly", "sha256_before": before, "sha256_after": after,
            "removed": removed}
