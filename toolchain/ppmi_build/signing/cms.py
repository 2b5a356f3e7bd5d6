"""CMS / PKCS#7 SignedData builder shared by the Authenticode and NuGet signers.

This module builds one ``ContentInfo(signedData)`` with exactly one SignerInfo, the shape both
Authenticode (signing-spec §1.4, §1.6) and NuGet author signatures (signing-spec §2.3) need:

* ``encapContentInfo`` is *attached*: for ``data`` (NuGet) the content is an OCTET STRING; for
  Authenticode (``1.3.6.1.4.1.311.2.1.4`` SPC_INDIRECT_DATA) it is the ``SpcIndirectDataContent``
  SEQUENCE itself, not wrapped in an OCTET STRING (jsign ``AuthenticodeSignedDataGenerator``,
  signing-spec §1.4).
* signed attributes are DER-sorted (X.690 §11.6 "SET OF" ordering, RFC 5652 §5.4) and the signature
  is computed over their ``SET OF`` (tag 0x31) encoding, not the ``[0] IMPLICIT`` form that is
  stored in the SignerInfo (RFC 5652 §5.4; signing-spec §0 items 2-3).
* digest AlgorithmIdentifiers carry an explicit NULL (as SignTool; jsign ``AuthenticodeSigner``).
* ``certificates`` holds the signer certificate and its intermediates; no CRLs (signify rejects
  SignedData with CRLs: signing-spec §1.4).
* ``sid`` is IssuerAndSerialNumber (SignerInfo v1, SignedData v1: what SignTool writes and what
  signify can parse) or SubjectKeyIdentifier (SignerInfo v3 and SignedData v3, RFC 5652 §5.1/§5.3;
  what NuGet uses when the certificate has an SKI, signing-spec §2.3).

The module does not register anything in asn1crypto's global OID maps (signify does so for the
SPC types, and two registrations would clash): non-``data`` content and attribute values are
carried as pre-encoded DER.

Also here, for verifiers: :func:`signed_attrs_for_signature`, :func:`find_signer_certificate`
and :func:`verify_signer_info`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from asn1crypto import algos, core
from asn1crypto import cms as acms
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from .keys import KeySource, hash_algorithm

#: id-data (RFC 5652 §4)
DATA_OID = "1.2.840.113549.1.7.1"
#: SPC_INDIRECT_DATA_OBJID (Authenticode_PE.docx; signing-spec §1.4)
SPC_INDIRECT_DATA_OID = "1.3.6.1.4.1.311.2.1.4"

#: hash name -> OID (RFC 5754 §2)
DIGEST_OIDS = {
    "sha1": "1.3.14.3.2.26",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}

_SIGNATURE_ALGORITHMS = {"rsassa_pkcs1v15", "sha256_rsa", "sha384_rsa", "sha512_rsa"}


# --- DER helpers ----------------------------------------------------------------------------


def _der_length(n: int) -> bytes:
    """X.690 §8.1.3 definite length octets."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, contents: bytes) -> bytes:
    """One DER TLV with a single-byte ``tag`` (e.g. 0x30 SEQUENCE, 0x31 SET, 0xA0 [0] constructed)."""
    return bytes([tag]) + _der_length(len(contents)) + contents


def _dump(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return value.dump()


def attribute(oid: str, *values: Any) -> acms.CMSAttribute:
    """A CMS ``Attribute ::= SEQUENCE { attrType OID, attrValues SET OF ANY }`` (RFC 5652 §5.3).

    Args:
        oid: dotted OID of the attribute type.
        values: each an asn1crypto value or its DER bytes (a *complete* TLV).
    Returns:
        :class:`asn1crypto.cms.CMSAttribute` parsed from the DER, so it works whether or not the
        type is registered in asn1crypto (or by signify).
    """
    set_of = sorted(_dump(v) for v in values)  # SET OF order (X.690 §11.6)
    der = der_tlv(0x30, core.ObjectIdentifier(oid).dump() + der_tlv(0x31, b"".join(set_of)))
    return acms.CMSAttribute.load(der)


def sorted_attributes(attrs: Iterable[acms.CMSAttribute]) -> list[acms.CMSAttribute]:
    """Sort attributes into DER ``SET OF`` order: ascending by their DER encodings compared as
    octet strings, the shorter padded with zeros (X.690 §11.6; RFC 5652 §5.4 requires DER for the
    signed attributes). Plain ``bytes`` comparison equals that rule except where one encoding is
    a prefix of another, which cannot happen for distinct complete TLVs.
    """
    return sorted(attrs, key=lambda a: a.dump())


def signed_attrs_der(attrs: Sequence[acms.CMSAttribute]) -> bytes:
    """The bytes that are hashed and signed: ``SET OF Attribute`` with the universal SET tag 0x31
    (RFC 5652 §5.4: "the DER encoding of the SignedAttrs value", EXPLICIT SET OF tag)."""
    return der_tlv(0x31, b"".join(a.dump() for a in attrs))


def signed_attrs_for_signature(signer_info: acms.SignerInfo) -> bytes:
    """For verifiers: the stored ``[0] IMPLICIT`` signed attributes re-tagged as ``SET OF`` (0x31),
    byte for byte otherwise (RFC 5652 §5.4). Raises ValueError when there are none."""
    sa = signer_info["signed_attrs"]
    if not sa or sa.contents is None:
        raise ValueError("SignerInfo has no signed attributes")
    return der_tlv(0x31, sa.contents)


def _to_asn1_cert(cert: x509.Certificate | ax509.Certificate) -> ax509.Certificate:
    if isinstance(cert, ax509.Certificate):
        return cert
    return ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _digest_algorithm(name: str) -> algos.DigestAlgorithm:
    # asn1crypto writes parameters NULL for the SHA-2 family, as SignTool does (jsign AuthenticodeSigner).
    return algos.DigestAlgorithm({"algorithm": name, "parameters": core.Null()})


def _encap_content_info(content_type: str, encap_content: Any, v3: bool) -> acms.ContentInfo:
    # asn1crypto types encapContentInfo as ContentInfo for SignedData v1 (PKCS#7 1.5) and as
    # EncapsulatedContentInfo for v3 (RFC 5652); the DER is the same.
    cls = acms.EncapsulatedContentInfo if v3 else acms.ContentInfo
    ct = acms.ContentType(content_type)
    if ct.dotted == DATA_OID:
        if isinstance(encap_content, (bytes, bytearray, memoryview)):
            inner = bytes(encap_content)
        elif isinstance(encap_content, core.OctetString):
            inner = encap_content.native
        else:
            raise TypeError("encap_content for content type 'data' must be bytes or an OctetString")
        return cls({"content_type": "data", "content": inner})
    # eContent [0] EXPLICIT: the content TLV itself (Authenticode keeps SpcIndirectDataContent as
    # a SEQUENCE, not an OCTET STRING; signing-spec §1.4)
    der = der_tlv(0x30, core.ObjectIdentifier(ct.dotted).dump() + der_tlv(0xA0, _dump(encap_content)))
    return cls.load(der)


def build_signed_data(
    *,
    content_type: str,
    encap_content: Any,
    message_digest: bytes,
    extra_signed_attrs: list,
    key: KeySource,
    digest: str = "sha256",
    sid: str = "issuer_and_serial_number",
    signature_algorithm: str = "rsassa_pkcs1v15",
    unsigned_attrs_for: Callable[[bytes], list] | None = None,
    certificates: list[x509.Certificate] | None = None,
) -> bytes:
    """Build and sign a CMS ``ContentInfo(signedData)`` with one SignerInfo.

    Args:
        content_type: ``"data"`` or a dotted OID such as ``"1.3.6.1.4.1.311.2.1.4"``
            (SPC_INDIRECT_DATA); goes into eContentType and the contentType signed attribute.
        encap_content: for ``"data"``: the content bytes (wrapped as OCTET STRING); otherwise an
            asn1crypto value (or its DER TLV) placed in ``eContent [0] EXPLICIT`` as is.
        message_digest: value of the messageDigest signed attribute, computed by the caller
            (Authenticode: hash of the SpcIndirectDataContent *contents* octets, RFC 2315 §9.3,
            signing-spec §1.5; NuGet: hash of the content bytes).
        extra_signed_attrs: :class:`asn1crypto.cms.CMSAttribute` values besides contentType and
            messageDigest (see :func:`attribute`).
        key: the :class:`~ppmi_build.signing.keys.KeySource` that signs the digest.
        digest: ``sha256`` | ``sha384`` | ``sha512`` (digestAlgorithm and the hash of the signed
            attributes).
        sid: ``"issuer_and_serial_number"`` (SignerInfo v1, SignedData v1) or
            ``"subject_key_identifier"`` (v3/v3; the leaf must carry an SKI extension).
        signature_algorithm: ``"rsassa_pkcs1v15"`` (rsaEncryption, as SignTool) or
            ``"sha256_rsa"``/``"sha384_rsa"``/``"sha512_rsa"``.
        unsigned_attrs_for: called with the signature value (bytes); returns unsigned attributes
            (e.g. the RFC 3161 timestamp token attribute).
        certificates: certificates to embed; default ``key.certificate_chain()`` without a
            self-signed root (unless the signer itself is self-signed).
    Returns:
        DER bytes of ``ContentInfo { signedData, [0] EXPLICIT SignedData }``.
    Raises:
        ValueError: unknown ``sid``/``signature_algorithm``, or SKI requested but missing.
        BadInput: unsupported ``digest``.
    """
    if sid not in ("issuer_and_serial_number", "subject_key_identifier"):
        raise ValueError(f"unknown sid choice {sid!r}")
    if signature_algorithm not in _SIGNATURE_ALGORITHMS:
        raise ValueError(f"unsupported signature algorithm {signature_algorithm!r}")
    alg = hash_algorithm(digest)
    digest_name = alg.name  # "sha256" ...
    chain = key.certificate_chain()
    leaf = chain[0]
    if certificates is None:
        certificates = [c for c in chain if c.subject != c.issuer or c is leaf]
    a_leaf = _to_asn1_cert(leaf)

    ct_oid = acms.ContentType(content_type).dotted
    attrs = [
        attribute("1.2.840.113549.1.9.3", core.ObjectIdentifier(ct_oid)),  # contentType (RFC 5652 §11.1)
        attribute("1.2.840.113549.1.9.4", core.OctetString(bytes(message_digest))),  # messageDigest (§11.2)
        *extra_signed_attrs,
    ]
    attrs = sorted_attributes(attrs)
    to_sign = signed_attrs_der(attrs)
    signature = key.sign_digest(hashlib.new(digest_name, to_sign).digest(), alg)

    if sid == "subject_key_identifier":
        try:
            ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            raise ValueError("the signing certificate has no SubjectKeyIdentifier extension") from None
        signer_id = acms.SignerIdentifier(name="subject_key_identifier", value=ski)
        version = "v3"
    else:
        signer_id = acms.SignerIdentifier(
            name="issuer_and_serial_number",
            value={"issuer": a_leaf.issuer, "serial_number": a_leaf.serial_number},
        )
        version = "v1"

    signer_info: dict[str, Any] = {
        "version": version,
        "sid": signer_id,
        "digest_algorithm": _digest_algorithm(digest_name),
        "signed_attrs": acms.CMSAttributes(attrs),
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": signature_algorithm}),
        "signature": signature,
    }
    if unsigned_attrs_for is not None:
        unsigned = list(unsigned_attrs_for(signature) or [])
        if unsigned:
            signer_info["unsigned_attrs"] = acms.CMSAttributes(sorted_attributes(unsigned))

    signed_data = acms.SignedData({
        "version": version,
        "digest_algorithms": [_digest_algorithm(digest_name)],
        "encap_content_info": _encap_content_info(content_type, encap_content, version == "v3"),
        "certificates": [acms.CertificateChoices(name="certificate", value=_to_asn1_cert(c)) for c in certificates],
        "signer_infos": [acms.SignerInfo(signer_info)],
    })
    return acms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


# --- verification helpers -------------------------------------------------------------------


def certificates_of(signed_data: acms.SignedData) -> list[x509.Certificate]:
    """The X.509 certificates embedded in a SignedData, as cryptography objects (others skipped)."""
    out = []
    for choice in signed_data["certificates"] or []:
        if choice.name == "certificate":
            out.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    return out


def find_signer_certificate(signed_data: acms.SignedData, signer_info: acms.SignerInfo) -> x509.Certificate | None:
    """The embedded certificate named by ``signer_info['sid']`` (issuer+serial or SKI), or None."""
    sid = signer_info["sid"]
    for cert in certificates_of(signed_data):
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            a = ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
            if a.serial_number == ias["serial_number"].native and a.issuer == ias["issuer"]:
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                continue
            if ski == sid.chosen.native:
                return cert
    return None


def signed_attribute(signer_info: acms.SignerInfo, oid: str) -> list:
    """Values (asn1crypto objects) of the signed attribute with dotted ``oid`` ([] when absent)."""
    for a in signer_info["signed_attrs"] or []:
        if a["type"].dotted == oid:
            return list(a["values"])
    return []


def verify_signer_info(signer_info: acms.SignerInfo, certificate: x509.Certificate,
                       content_digest: bytes | None = None) -> None:
    """Check one SignerInfo cryptographically (RFC 5652 §5.4/§5.6).

    Checks that the messageDigest attribute equals ``content_digest`` (when given) and that the
    signature over the ``SET OF`` signed attributes verifies with ``certificate``'s public key
    (RSASSA-PKCS1-v1_5 or PSS for RSA; ECDSA).

    Raises:
        ValueError: one-line reason (no signed attributes, digest mismatch, bad signature).
    """
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    try:
        alg = hash_algorithm(digest_name) if digest_name != "sha1" else hashes.SHA1()
    except Exception:
        raise ValueError(f"unsupported digest algorithm {digest_name}") from None
    data = signed_attrs_for_signature(signer_info)
    md = signed_attribute(signer_info, "1.2.840.113549.1.9.4")
    if len(md) != 1:
        raise ValueError("the signer info has no single messageDigest attribute")
    if content_digest is not None and core.OctetString.load(md[0].dump()).native != content_digest:
        raise ValueError("messageDigest does not match the content")
    digest = hashlib.new(alg.name, data).digest()
    sig = signer_info["signature"].native
    pub = certificate.public_key()
    sig_alg = signer_info["signature_algorithm"]
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            if sig_alg.signature_algo == "rsassa_pss":
                params = sig_alg["parameters"]
                pss_hash = hash_algorithm(params["hash_algorithm"]["algorithm"].native)
                pad: padding.AsymmetricPadding = padding.PSS(
                    mgf=padding.MGF1(pss_hash), salt_length=params["salt_length"].native)
                if pss_hash.name != alg.name:
                    digest = hashlib.new(pss_hash.name, data).digest()
                    alg = pss_hash
            else:
                pad = padding.PKCS1v15()
            pub.verify(sig, digest, pad, Prehashed(alg))
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, digest, ec.ECDSA(Prehashed(alg)))
        else:
            raise ValueError(f"unsupported signer key type {type(pub).__name__}")
    except InvalidSignature:
        raise ValueError("the signature over the signed attributes does not verify with the signer certificate") from None
