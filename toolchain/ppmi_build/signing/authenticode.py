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
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509

from ..errors import BadInput, PEFormatError
from . import cms, pe
from .keys import KeySource, hash_algorithm

if TYPE_CHECKING:  # pragma: no cover
    from asn1crypto import cms as acms

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
#
# The asn1crypto classes below are used to *read* signatures. They are created on first use
# (``authenticode.SpcIndirectDataContent`` etc. still work, through the module ``__getattr__``,
# PEP 562) so that signing, which writes the same structures as DER bytes (next section), does
# not import asn1crypto at all (issue #2: ~50 ms of start-up).

_ASN1_NAMES = ("SpcString", "SpcSerializedObject", "SpcLink", "SpcPeImageData", "SpcAttributeTypeAndOptionalValue",
               "SpcIndirectDataContent", "SpcSpOpusInfo", "SpcStatementType")


@cache
def _asn1() -> dict[str, Any]:  # asn1crypto classes (no stubs)
    from asn1crypto import algos, core

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

    classes = dict(locals())
    for name in _ASN1_NAMES:
        classes[name].__qualname__ = name
    return {name: classes[name] for name in _ASN1_NAMES}


def __getattr__(name: str):  # PEP 562: the asn1crypto classes, created on first access
    if name in _ASN1_NAMES:
        return _asn1()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- building (DER bytes; the same encodings the classes above read) ------------------------

_tlv = cms.der_tlv

#: SpcPeImageData as SignTool and jsign write it: flags = empty BIT STRING (03 01 00), file [0]
#: EXPLICIT SpcLink.file [2] EXPLICIT SpcString.unicode [0] IMPLICIT empty BMPString (signing-spec §1.4)
PE_IMAGE_DATA_DER = bytes.fromhex("3009030100a004a2028000")


def _spc_string_unicode(text: str) -> bytes:
    """SpcString.unicode: ``[0] IMPLICIT BMPString`` (UTF-16BE, X.690 §8.23.8 / X.680 §41)."""
    return _tlv(0x80, text.encode("utf-16-be"))


def _spc_link_url(url: str) -> bytes:
    """SpcLink.url: ``[0] IMPLICIT IA5String`` (7-bit ASCII)."""
    try:
        return _tlv(0x80, url.encode("ascii"))
    except UnicodeEncodeError:
        raise BadInput(f"--program-url {url!r} must be ASCII (an IA5String); percent-encode other "
                       "characters") from None


def indirect_data_content_der(authentihash: bytes, digest: str = "sha256") -> bytes:
    """DER of ``SpcIndirectDataContent { data { SPC_PE_IMAGE_DATA, SpcPeImageData }, messageDigest
    DigestInfo { AlgorithmIdentifier { digest, NULL }, authentihash } }`` (signing-spec §1.4)."""
    name = hash_algorithm(digest).name
    data = _tlv(0x30, cms.oid_der(SPC_PE_IMAGE_DATA_OID) + PE_IMAGE_DATA_DER)
    digest_info = _tlv(0x30, cms.algorithm_identifier(cms.DIGEST_OIDS[name]) + _tlv(0x04, bytes(authentihash)))
    return _tlv(0x30, data + digest_info)


def opus_info_der(program_name: str | None = None, program_url: str | None = None) -> bytes:
    """DER of SpcSpOpusInfo with the optional description (``signtool /d``, ``[0] EXPLICIT SpcString``)
    and URL (``/du``, ``[1] EXPLICIT SpcLink``); always present, even empty, as jsign found Windows
    needs for SHA-512 (signing-spec §1.4, §1.6).

    Raises:
        BadInput: a URL that is not ASCII.
    """
    body = b""
    if program_name:
        body += _tlv(0xA0, _spc_string_unicode(program_name))
    if program_url:
        body += _tlv(0xA1, _spc_link_url(program_url))
    return _tlv(0x30, body)


def authenticode_signed_attrs_der(program_name: str | None = None, program_url: str | None = None,
                                  commercial: bool = False) -> list[bytes]:
    """DER of the signed attributes besides contentType and messageDigest (SignTool set, §1.6):
    SpcStatementType (individual or commercial key purpose) and SpcSpOpusInfo."""
    purpose = SPC_COMMERCIAL_SP_KEY_PURPOSE_OID if commercial else SPC_INDIVIDUAL_SP_KEY_PURPOSE_OID
    return [
        cms.attribute_der(SPC_STATEMENT_TYPE_OID, _tlv(0x30, cms.oid_der(purpose))),
        cms.attribute_der(SPC_SP_OPUS_INFO_OID, opus_info_der(program_name, program_url)),
    ]


def pe_image_data():
    """The SignTool/jsign SpcPeImageData as an asn1crypto value (see :data:`PE_IMAGE_DATA_DER`)."""
    return _asn1()["SpcPeImageData"].load(PE_IMAGE_DATA_DER)


def indirect_data_content(authentihash: bytes, digest: str = "sha256"):
    """SpcIndirectDataContent over ``authentihash`` made with ``digest``, as an asn1crypto value."""
    return _asn1()["SpcIndirectDataContent"].load(indirect_data_content_der(authentihash, digest))


def opus_info(program_name: str | None = None, program_url: str | None = None):
    """:func:`opus_info_der` as an asn1crypto SpcSpOpusInfo."""
    return _asn1()["SpcSpOpusInfo"].load(opus_info_der(program_name, program_url))


def authenticode_signed_attrs(program_name: str | None = None, program_url: str | None = None,
                              commercial: bool = False) -> list[acms.CMSAttribute]:
    """:func:`authenticode_signed_attrs_der` as asn1crypto CMSAttribute values."""
    from asn1crypto import cms as acms

    return [acms.CMSAttribute.load(a) for a in authenticode_signed_attrs_der(program_name, program_url, commercial)]


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
        from .timestamp import request_timestamp, token_attribute

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
    from .api import atomic_write

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
        from asn1crypto import cms as acms
        from asn1crypto import core

        spc = _asn1()
        ci = acms.ContentInfo.load(der)
        if ci["content_type"].native != "signed_data":
            raise ValueError("not signedData")
        sd = ci["content"]
        eci = sd["encap_content_info"]
        if eci["content_type"].dotted != SPC_INDIRECT_DATA_OID:
            raise ValueError(f"content type {eci['content_type'].dotted} is not SPC_INDIRECT_DATA")
        content = eci["content"]
        idc_der = cms.der(content)  # may or may not include the [0] EXPLICIT wrapper; normalise below
        idc = spc["SpcIndirectDataContent"].load(_inner_sequence(idc_der))
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
            opus = spc["SpcSpOpusInfo"].load(cms.der(value))
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
    except Exception as e:  # asn1crypto/cryptography errors of every kind (ValueError, UnsupportedAlgorithm, ...)
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise PEFormatError(f"{name} has an unreadable Authenticode signature ({detail}); sign it again") from None


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
