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
* ``certificates`` holds the signer certificate and its intermediates, byte for byte as issued;
  no CRLs (signify rejects SignedData with CRLs: signing-spec §1.4).
* ``sid`` is IssuerAndSerialNumber (SignerInfo v1, SignedData v1: what SignTool writes and what
  signify can parse) or SubjectKeyIdentifier (SignerInfo v3 and SignedData v3, RFC 5652 §5.1/§5.3;
  what NuGet uses when the certificate has an SKI, signing-spec §2.3).

The outer structures are assembled as DER bytes here (X.690 §8.1 definite lengths) rather than by
asn1crypto containers, for two reasons: certificates and attribute values must keep their exact
bytes, and asn1crypto re-encodes any parsed value whose length octets end in 0x80 (it mistakes
them for an indefinite length), which breaks once signify has added names to asn1crypto's OID
maps. Use :func:`der` to get the bytes of an asn1crypto value without that re-encoding. Nothing is
registered in asn1crypto's global OID maps here.

asn1crypto is imported only by the functions that take or return its objects (the verification
helpers, :func:`attribute`): building a signature from DER bytes (:func:`attribute_der`, the
Authenticode signer) does not load it, which keeps ``ppmi-build sign`` start-up short.

Also here, for verifiers: :func:`signed_attrs_for_signature`, :func:`find_signer_certificate`,
:func:`signed_attribute` and :func:`verify_signer_info`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from .keys.source import KeySource, hash_algorithm

if TYPE_CHECKING:  # pragma: no cover
    from asn1crypto import cms as acms

#: id-data (RFC 5652 §4)
DATA_OID = "1.2.840.113549.1.7.1"
#: id-signedData (RFC 5652 §5.1)
SIGNED_DATA_OID = "1.2.840.113549.1.7.2"
#: SPC_INDIRECT_DATA_OBJID (Authenticode_PE.docx; signing-spec §1.4)
SPC_INDIRECT_DATA_OID = "1.3.6.1.4.1.311.2.1.4"
#: contentType / messageDigest attribute types (RFC 5652 §11.1, §11.2)
CONTENT_TYPE_ATTR_OID = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST_ATTR_OID = "1.2.840.113549.1.9.4"

#: hash name -> OID (RFC 5754 §2)
DIGEST_OIDS = {
    "sha1": "1.3.14.3.2.26",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
#: signatureAlgorithm choices -> OID (RFC 8017 Appendix C; RFC 5754 §3.2)
SIGNATURE_OIDS = {
    "rsassa_pkcs1v15": "1.2.840.113549.1.1.1",  # rsaEncryption (what SignTool writes)
    "sha256_rsa": "1.2.840.113549.1.1.11",
    "sha384_rsa": "1.2.840.113549.1.1.12",
    "sha512_rsa": "1.2.840.113549.1.1.13",
}


# --- DER helpers ----------------------------------------------------------------------------


def _der_length(n: int) -> bytes:
    """X.690 §8.1.3 definite length octets (short form below 128, else long form)."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, contents: bytes) -> bytes:
    """One DER TLV with a single-byte ``tag`` (e.g. 0x30 SEQUENCE, 0x31 SET, 0xA0 [0] constructed)."""
    return bytes([tag]) + _der_length(len(contents)) + contents


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, int, int]:
    """Parse the TLV at ``pos`` (single-byte tag, definite length). Returns ``(tag, contents_start,
    end)``. Raises ValueError on truncated or indefinite-length input.

    For byte positions inside DER we built or must hash as received (the messageDigest over
    SpcIndirectDataContent's contents, signing-spec §3; a TimeStampResp whose token asn1crypto's spec makes
    mandatory, RFC 3161 §2.4.2); structures are read with asn1crypto."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    elif first == 0x80:
        raise ValueError("indefinite length is not DER")
    else:
        k = first & 0x7F
        start = pos + 2 + k
        if start > len(data):
            raise ValueError("truncated DER")
        length = int.from_bytes(data[pos + 2:start], "big")
    end = start + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, start, end


def der(value: Any) -> bytes:
    """DER bytes of ``value`` (bytes pass through). For asn1crypto values this returns the parsed
    bytes unchanged (or encodes a freshly built value), without asn1crypto's forced re-encoding of
    values whose length octets end in 0x80."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    from asn1crypto import core

    return core.Asn1Value.dump(value)


_OID_CACHE: dict[str, bytes] = {}


def oid_der(dotted: str) -> bytes:
    """DER OBJECT IDENTIFIER TLV of a dotted OID (X.690 §8.19: first two arcs as 40*a+b, each
    subidentifier base 128, high bit set on all but its last octet).

    Raises:
        ValueError: not a dotted OID.
    """
    cached = _OID_CACHE.get(dotted)
    if cached is not None:
        return cached
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39) or min(arcs) < 0:
        raise ValueError(f"not an OID: {dotted!r}")
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    out = der_tlv(0x06, bytes(body))
    _OID_CACHE[dotted] = out
    return out


_oid = oid_der


def algorithm_identifier(oid: str, null_params: bool = True) -> bytes:
    """``AlgorithmIdentifier { algorithm, parameters NULL }`` (RFC 5280 §4.1.1.2)."""
    return der_tlv(0x30, _oid(oid) + (b"\x05\x00" if null_params else b""))


def attribute_der(oid: str, *values: Any) -> bytes:
    """DER of a CMS ``Attribute ::= SEQUENCE { attrType OID, attrValues SET OF ANY }`` (RFC 5652
    §5.3); ``values`` are complete TLVs (bytes) or asn1crypto values, sorted into SET OF order
    (X.690 §11.6)."""
    set_of = sorted(der(v) for v in values)
    return der_tlv(0x30, oid_der(oid) + der_tlv(0x31, b"".join(set_of)))


def attribute(oid: str, *values: Any) -> acms.CMSAttribute:
    """A CMS ``Attribute ::= SEQUENCE { attrType OID, attrValues SET OF ANY }`` (RFC 5652 §5.3).

    Args:
        oid: dotted OID of the attribute type.
        values: each an asn1crypto value or its DER bytes (a *complete* TLV).
    Returns:
        :class:`asn1crypto.cms.CMSAttribute` parsed from the DER, so it works whether or not the
        type is registered in asn1crypto (or by signify). Get its bytes with :func:`der`.
    """
    from asn1crypto import cms as acms

    return acms.CMSAttribute.load(attribute_der(oid, *values))


def sorted_attributes(attrs: Iterable[Any]) -> list:
    """Sort attributes into DER ``SET OF`` order: ascending by their DER encodings compared as
    octet strings (X.690 §11.6; RFC 5652 §5.4 requires DER for the signed attributes). Plain
    ``bytes`` comparison equals that rule for distinct complete TLVs."""
    return sorted(attrs, key=der)


def signed_attrs_der(attrs: Sequence[Any]) -> bytes:
    """The bytes that are hashed and signed: ``SET OF Attribute`` with the universal SET tag 0x31
    (RFC 5652 §5.4: "the DER encoding of the SignedAttrs value", EXPLICIT SET OF tag)."""
    return der_tlv(0x31, b"".join(der(a) for a in attrs))


def signed_attrs_for_signature(signer_info: acms.SignerInfo) -> bytes:
    """For verifiers: the stored ``[0] IMPLICIT`` signed attributes re-tagged as ``SET OF`` (0x31),
    byte for byte otherwise (RFC 5652 §5.4). Raises ValueError when there are none."""
    from asn1crypto import core

    sa = signer_info["signed_attrs"]
    if isinstance(sa, core.Void) or sa.contents is None:
        raise ValueError("SignerInfo has no signed attributes")
    return der_tlv(0x31, sa.contents)


def cert_der(cert: Any) -> bytes:
    """DER of a certificate (a cryptography object, an asn1crypto value or bytes)."""
    if isinstance(cert, x509.Certificate):
        return cert.public_bytes(serialization.Encoding.DER)
    return der(cert)


_cert_der = cert_der


def issuer_and_serial(cert_der: bytes) -> bytes:
    """``IssuerAndSerialNumber ::= SEQUENCE { issuer Name, serialNumber INTEGER }`` with the issuer
    and serial TLVs copied byte for byte from the certificate's tbsCertificate (RFC 5652 §10.2.4); read with
    asn1crypto, whose ``dump()`` of a loaded value is its original encoding (a name .NET reads but a strict
    parser would re-encode, e.g. a T61String, stays as the certificate has it)."""
    from asn1crypto import x509 as ax509

    tbs = ax509.Certificate.load(bytes(cert_der))["tbs_certificate"]
    return der_tlv(0x30, tbs["issuer"].dump() + tbs["serial_number"].dump())


def _encap_content_info(content_type_oid: str, encap_content: Any) -> bytes:
    if content_type_oid == DATA_OID:
        if isinstance(encap_content, (bytes, bytearray, memoryview)):
            inner = bytes(encap_content)
        else:
            from asn1crypto import core

            if not isinstance(encap_content, core.OctetString):
                raise TypeError("encap_content for content type 'data' must be bytes or an OctetString")
            inner = encap_content.native
        content = der_tlv(0x04, inner)
    else:
        # Authenticode keeps SpcIndirectDataContent as a SEQUENCE, not an OCTET STRING (§1.4)
        content = der(encap_content)
    # EncapsulatedContentInfo ::= SEQUENCE { eContentType, eContent [0] EXPLICIT }
    return der_tlv(0x30, _oid(content_type_oid) + der_tlv(0xA0, content))


def _content_type_oid(content_type: str) -> str:
    """Dotted OID of a content type given as ``"data"``, ``"signed_data"`` or a dotted OID."""
    known = {"data": DATA_OID, "signed_data": SIGNED_DATA_OID}
    if content_type in known:
        return known[content_type]
    if content_type[:1].isdigit():
        return content_type
    from asn1crypto import cms as acms

    return acms.ContentType(content_type).dotted


#: sign operations one :func:`build_signed_data` call may make with a key that answers each operation with its
#: own chain (Trusted Signing): the leaf the caller read is asked for twice (a service alternating between
#: issuing CAs comes back to it); after that the service's current leaf is taken, and signed attributes that name
#: the leaf are built for it again, until an operation is answered by the leaf they name
LEAF_ATTEMPTS = 4


def is_self_issued(cert: x509.Certificate) -> bool:
    """Whether the certificate's issuer Name equals its subject Name, compared as DER bytes from the
    TBSCertificate (RFC 5280 §3.2 "self-issued"; :func:`ppmi_build.identity.dn.certificate_name_ders`), so a
    name cryptography cannot parse (a T61String with 8-bit bytes, a BIT STRING attribute: both read by .NET)
    does not raise.

    Raises:
        BadInput: the TBSCertificate does not have the RFC 5280 layout.
    """
    from ..identity.dn import certificate_name_ders

    issuer, subject = certificate_name_ders(cert)
    return issuer == subject


def _embedded(chain: Sequence[x509.Certificate], include_root: bool) -> list[x509.Certificate]:
    """The certificates a SignedData carries for ``chain`` (leaf first): all of them, or without self-issued
    certificates other than the leaf (a root is found by the verifier, as SignTool leaves it out)."""
    leaf = chain[0]
    return [c for c in chain if include_root or c is leaf or not is_self_issued(c)]


def _same_certificate(a: x509.Certificate, b: x509.Certificate) -> bool:
    return cert_der(a) == cert_der(b)


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
    signed_attrs_for: Callable[[x509.Certificate], list] | None = None,
    include_root: bool = False,
) -> bytes:
    """Build and sign a CMS ``ContentInfo(signedData)`` with one SignerInfo.

    The signer certificate (the SignerInfo ``sid``) and the embedded certificates are those of the key: when
    the key has ``sign_digest_with_chain(digest, algorithm) -> (signature, chain)`` (a key whose certificate
    can change between two operations: :class:`~ppmi_build.signing.keys.trusted_signing.TrustedSigningKey`,
    issue-11 rule "embed the chain returned by the same operation"), they come from the chain returned *with
    the signature*; otherwise from ``key.certificate_chain()``.

    Args:
        content_type: ``"data"`` or a dotted OID such as ``"1.3.6.1.4.1.311.2.1.4"``
            (SPC_INDIRECT_DATA); goes into eContentType and the contentType signed attribute.
        encap_content: for ``"data"``: the content bytes (wrapped as OCTET STRING); otherwise an
            asn1crypto value (or its DER TLV) placed in ``eContent [0] EXPLICIT`` as is.
        message_digest: value of the messageDigest signed attribute, computed by the caller
            (Authenticode: hash of the SpcIndirectDataContent *contents* octets, RFC 2315 §9.3,
            signing-spec §1.5; NuGet: hash of the content bytes).
        extra_signed_attrs: :class:`asn1crypto.cms.CMSAttribute` values (or their DER) besides
            contentType and messageDigest (see :func:`attribute`) that do not depend on the signer.
        key: the :class:`~ppmi_build.signing.keys.KeySource` that signs the digest.
        digest: ``sha256`` | ``sha384`` | ``sha512`` (digestAlgorithm and the hash of the signed
            attributes).
        sid: ``"issuer_and_serial_number"`` (SignerInfo v1, SignedData v1) or
            ``"subject_key_identifier"`` (v3/v3; the leaf must carry an SKI extension) or ``"auto"``: the SKI
            when the signing leaf has one, else issuer and serial (NuGet, signing-spec §2.3).
        signature_algorithm: ``"rsassa_pkcs1v15"`` (rsaEncryption, as SignTool) or
            ``"sha256_rsa"``/``"sha384_rsa"``/``"sha512_rsa"``.
        unsigned_attrs_for: called with the signature value (bytes); returns unsigned attributes
            (e.g. the RFC 3161 timestamp token attribute).
        certificates: certificates to embed instead of the signer's chain (only for keys without
            ``sign_digest_with_chain``, whose chain is known before signing).
        signed_attrs_for: called with the leaf; returns the signed attributes that depend on it (NuGet's
            signing-certificate-v2, RFC 5035). With ``sign_digest_with_chain``, they are first built for the leaf
            ``key.certificate_chain()`` gives (the one the caller read); an operation answered by another leaf
            is repeated once, then the attributes are built for the leaf the service answered with and signed
            again, at most :data:`LEAF_ATTEMPTS` operations in all. Without signed attributes that name the
            leaf, the second operation's signature is kept with its own chain whatever its leaf.
        include_root: embed every certificate of the chain, the self-signed root too (NuGet's
            ``CreateCmsSigner`` adds the chain it built); default: leave self-issued certificates other than
            the leaf out (SignTool).
    Returns:
        DER bytes of ``ContentInfo { signedData, [0] EXPLICIT SignedData }``.
    Raises:
        ValueError: unknown ``sid``/``signature_algorithm``, or SKI requested but missing.
        BadInput: unsupported ``digest``.
        SigningCertificateChanged (exit 3): :data:`LEAF_ATTEMPTS` operations were each answered by another
            certificate than the one the signed attributes name.
    """
    from ..errors import SigningCertificateChanged

    if sid not in ("issuer_and_serial_number", "subject_key_identifier", "auto"):
        raise ValueError(f"unknown sid choice {sid!r}")
    if signature_algorithm not in SIGNATURE_OIDS:
        raise ValueError(f"unsupported signature algorithm {signature_algorithm!r}")
    alg = hash_algorithm(digest)
    digest_name = alg.name  # "sha256" ...
    sign_with_chain = getattr(key, "sign_digest_with_chain", None)
    if sign_with_chain is not None and certificates is not None:
        raise ValueError("certificates cannot be given for a key that returns the chain with each signature")
    ct_oid = _content_type_oid(content_type)
    fixed = [
        attribute_der(CONTENT_TYPE_ATTR_OID, oid_der(ct_oid)),
        attribute_der(MESSAGE_DIGEST_ATTR_OID, der_tlv(0x04, bytes(message_digest))),
        *extra_signed_attrs,
    ]

    def signed_attrs(for_leaf: x509.Certificate) -> bytes:
        leaf_attrs = signed_attrs_for(for_leaf) if signed_attrs_for is not None else []
        return b"".join(der(a) for a in sorted_attributes([*fixed, *leaf_attrs]))

    if sign_with_chain is None:  # one fixed chain: one signature
        chain = key.certificate_chain()
        attrs_bytes = signed_attrs(chain[0])
        signature = key.sign_digest(hashlib.new(digest_name, der_tlv(0x31, attrs_bytes)).digest(), alg)
    else:
        # the chain comes with each signature; prefer the leaf the caller read (and may have checked or shown)
        target = key.certificate_chain()[0]
        attrs_bytes = signed_attrs(target)
        answered: list[x509.Certificate] = []
        for attempt in range(LEAF_ATTEMPTS):
            to_sign = hashlib.new(digest_name, der_tlv(0x31, attrs_bytes)).digest()  # RFC 5652 §5.4
            signature, chain = sign_with_chain(to_sign, alg)
            answered.append(chain[0])
            if _same_certificate(chain[0], target):
                break
            if attempt >= 1:  # twice another leaf: the service has moved on to it
                if signed_attrs_for is None:
                    break  # nothing signed names the leaf: this signature and its own chain go together
                target = chain[0]
                attrs_bytes = signed_attrs(target)
        else:
            serials = ", ".join(f"{c.serial_number:x}" for c in answered)
            raise SigningCertificateChanged(
                f"{key.description}: {LEAF_ATTEMPTS} sign operations were each answered by another certificate than "
                f"the one the signed attributes name (serials {serials}); the service's signing certificate keeps "
                "changing: run the command again later")
    leaf = chain[0]
    if certificates is None:
        certificates = _embedded(chain, include_root)
    leaf_der = cert_der(leaf)

    ski: bytes | None = None
    if sid != "issuer_and_serial_number":
        try:
            ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            if sid == "subject_key_identifier":
                raise ValueError("the signing certificate has no SubjectKeyIdentifier extension") from None
    if ski is not None:
        sid_der = der_tlv(0x80, ski)  # subjectKeyIdentifier [0] IMPLICIT SubjectKeyIdentifier
        version = 3
    else:
        sid_der = issuer_and_serial(leaf_der)
        version = 1
    version_der = der_tlv(0x02, bytes([version]))
    digest_alg = algorithm_identifier(DIGEST_OIDS[digest_name])

    # SignerInfo (RFC 5652 §5.3)
    si = (version_der + sid_der + digest_alg
          + der_tlv(0xA0, attrs_bytes)  # signedAttrs [0] IMPLICIT SET OF
          + algorithm_identifier(SIGNATURE_OIDS[signature_algorithm])
          + der_tlv(0x04, signature))
    if unsigned_attrs_for is not None:
        unsigned = sorted_attributes(unsigned_attrs_for(signature) or [])
        if unsigned:
            si += der_tlv(0xA1, b"".join(der(a) for a in unsigned))  # [1] IMPLICIT SET OF
    signer_info = der_tlv(0x30, si)

    certs = sorted(_cert_der(c) for c in certificates)  # DER SET OF order
    signed_data = der_tlv(0x30, (
        version_der
        + der_tlv(0x31, digest_alg)  # digestAlgorithms SET OF
        + _encap_content_info(ct_oid, encap_content)
        + der_tlv(0xA0, b"".join(certs))  # certificates [0] IMPLICIT CertificateSet
        + der_tlv(0x31, signer_info)  # signerInfos SET OF
    ))
    return der_tlv(0x30, _oid(SIGNED_DATA_OID) + der_tlv(0xA0, signed_data))


# --- verification helpers -------------------------------------------------------------------


def certificates_of(signed_data: acms.SignedData) -> list[x509.Certificate]:
    """The X.509 certificates embedded in a SignedData, as cryptography objects (others skipped)."""
    out: list[x509.Certificate] = []
    from asn1crypto import core

    certs = signed_data["certificates"]
    if isinstance(certs, core.Void):
        return out
    for choice in certs:
        if choice.name == "certificate":
            try:
                out.append(x509.load_der_x509_certificate(der(choice.chosen)))
            except ValueError:
                continue
    return out


def find_signer_certificate(signed_data: acms.SignedData, signer_info: acms.SignerInfo) -> x509.Certificate | None:
    """The embedded certificate named by ``signer_info['sid']`` (issuer+serial or SKI), or None."""
    sid = signer_info["sid"]
    for cert in certificates_of(signed_data):
        if sid.name == "issuer_and_serial_number":
            try:
                if issuer_and_serial(cert.public_bytes(serialization.Encoding.DER)) == der(sid.chosen):
                    return cert
            except ValueError:
                continue
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
    from asn1crypto import core

    attrs = signer_info["signed_attrs"]
    if isinstance(attrs, core.Void):
        return []
    for a in attrs:
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
    from asn1crypto import core

    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    try:
        alg = hashes.SHA1() if digest_name == "sha1" else hash_algorithm(digest_name)
    except Exception:
        raise ValueError(f"unsupported digest algorithm {digest_name}") from None
    data = signed_attrs_for_signature(signer_info)
    md = signed_attribute(signer_info, MESSAGE_DIGEST_ATTR_OID)
    if len(md) != 1:
        raise ValueError("the signer info has no single messageDigest attribute")
    if content_digest is not None and core.OctetString.load(der(md[0])).native != content_digest:
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
        raise ValueError(
            "the signature over the signed attributes does not verify with the signer certificate") from None
