"""NuGet signature content and author signature (signing-spec §2.2-§2.3): ``Version:1`` /
``<hash OID>-Hash:`` content (``SignatureContent``), and the CMS author signature with contentType,
messageDigest, signing-time, commitment-type-indication proof-of-origin and signing-certificate-v2 (RFC 5035).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import re
from collections.abc import Sequence
from typing import Any

from asn1crypto import cms as acms
from asn1crypto import core, tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ...errors import PackageFormatError
from .. import cms
from ..keys import RSA_MIN_BITS, KeySource, hash_algorithm

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
        PackageFormatError: with ``code`` NU3007 (wrong/unknown version), NU3016 (hash algorithm not allowed)
            or NU3011 (unreadable) and a ``message`` without the code.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise PackageFormatError("the signature content is not UTF-8", code="NU3011") from None
    lines = text.split("\n")
    if not lines or lines[0] != "Version:1":
        raise PackageFormatError(f"the package signature format version is not supported ({lines[0][:40]!r})",
                                 code="NU3007")
    # first section after the header section (sections end with an empty line)
    try:
        start = lines.index("", 1) + 1
    except ValueError:
        raise PackageFormatError("the signature content has no hash section", code="NU3011") from None
    m = re.fullmatch(r"([0-9.]+)-Hash:([A-Za-z0-9+/=]+)", lines[start] if start < len(lines) else "")
    if not m:
        raise PackageFormatError("the signature content has no '<OID>-Hash:' line", code="NU3011")
    name = _OID_HASHES.get(m.group(1))
    if name is None:
        raise PackageFormatError(f"the package hash uses an unsupported hash algorithm ({m.group(1)})", code="NU3016")
    try:
        value = base64.b64decode(m.group(2), validate=True)
    except ValueError:
        raise PackageFormatError("the package hash in the signature content is not base64", code="NU3011") from None
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
        SigningCertificateChanged: a key answering each operation with its own chain changed its certificate at
            every try (:func:`ppmi_build.signing.cms.build_signed_data`).
    """
    name = hash_algorithm(digest).name
    when = (signing_time or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC).replace(microsecond=0)

    unsigned_for = None
    if timestamp_urls:
        def unsigned_for(signature: bytes) -> list[acms.CMSAttribute]:
            from ..timestamp import request_timestamp

            # X509SignatureProvider.TimestampPrimarySignatureAsync: imprint over the signature value;
            # NuGet needs an RSA >= 2048 TSA certificate (NU3023, signing-spec §2.3).
            token = request_timestamp(signature, list(timestamp_urls), digest=name, min_rsa_bits=RSA_MIN_BITS)
            return [cms.attribute(SIGNATURE_TIME_STAMP_TOKEN_OID, token.dump())]

    return cms.build_signed_data(
        content_type="data",
        encap_content=content,
        message_digest=hashlib.new(name, content).digest(),
        extra_signed_attrs=[],
        # signing-certificate-v2 names the leaf: built for the leaf of the operation that signs (a Trusted
        # Signing leaf can change between two operations; cms.build_signed_data)
        signed_attrs_for=lambda leaf: author_signed_attributes(leaf, name, when),
        key=key,
        digest=name,
        sid="auto",  # the SKI when the leaf has one (signing-spec §2.3)
        signature_algorithm="rsassa_pkcs1v15",
        unsigned_attrs_for=unsigned_for,
        include_root=True,  # CreateCmsSigner adds every certificate of the chain it built
    )
