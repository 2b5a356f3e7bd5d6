"""Authenticode ASN.1 structures (signing-spec §1.4-§1.6; Authenticode_PE.docx with the errata of signify
``spc.py`` and jsign): SpcIndirectDataContent, SpcPeImageData, SpcSpOpusInfo, SpcStatementType, written as DER
bytes for signing and read with asn1crypto classes, plus the reader of an embedded signature.

Structure (the ASN.1 choices follow SignTool as mirrored by jsign)::

    ContentInfo(signedData) -> SignedData v1 {
        digestAlgorithms { sha256 (NULL params) },
        encapContentInfo { 1.3.6.1.4.1.311.2.1.4, [0] SpcIndirectDataContent (a SEQUENCE) },
        certificates { leaf, intermediates },
        signerInfos { SignerInfo v1 (issuerAndSerialNumber, rsaEncryption,
            signed attrs: contentType, messageDigest, SpcStatementType(individual), SpcSpOpusInfo;
            unsigned attr 1.3.6.1.4.1.311.3.3.1 = RFC 3161 TimeStampToken) } }
    SpcPeImageData { flags BIT STRING '' , file [0] EXPLICIT SpcLink.file [2] SpcString.unicode '' }
        -> 30 09 03 01 00 a0 04 a2 02 80 00 (jsign PR #56 / SignTool form, signing-spec §1.4)

These classes are private to ppmi-build: nothing is registered in asn1crypto's global OID maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from ...errors import BadInput, PEFormatError
from .. import cms
from ..keys import hash_algorithm
from . import pe

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
# not import asn1crypto at all (~50 ms of start-up).

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
