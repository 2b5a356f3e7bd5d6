"""Certificates built byte by byte (a tiny DER writer, not ppmi-build code), for names and extensions that
``cryptography``'s builder refuses to write: T61String with 8-bit bytes, non-string attribute values, a
BIT STRING issuer attribute, a malformed extension value. Signed with a real RSA key, so the certificate is
well formed except for the part under test.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

_KEY = None


def key() -> rsa.RSAPrivateKey:
    """One 2048-bit RSA key shared by the certificates of a test run."""
    global _KEY
    if _KEY is None:
        _KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEY


def tlv(tag: int, content: bytes) -> bytes:
    """DER TLV with a definite, minimal length (X.690 §8.1.3)."""
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def oid(dotted: str) -> bytes:
    """OBJECT IDENTIFIER TLV (X.690 §8.19)."""
    arcs = [int(x) for x in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for a in arcs[2:]:
        chunk = [a & 0x7F]
        a >>= 7
        while a:
            chunk.append(0x80 | (a & 0x7F))
            a >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def name(rdns: list[list[tuple[str, bytes]]]) -> bytes:
    """Name DER from RDNs of (OID, whole AttributeValue TLV), in the order given."""
    return tlv(0x30, b"".join(tlv(0x31, b"".join(tlv(0x30, oid(o) + v) for o, v in rdn)) for rdn in rdns))


def utf8_cn(text: str) -> bytes:
    return name([[("2.5.4.3", tlv(0x0C, text.encode()))]])


def extension(dotted: str, value: bytes, critical: bool = False) -> bytes:
    """Extension DER: extnID, critical (only when TRUE, DER), extnValue OCTET STRING wrapping ``value``."""
    return tlv(0x30, oid(dotted) + (tlv(0x01, b"\xff") if critical else b"") + tlv(0x04, value))


CODE_SIGNING_EKU = extension("2.5.29.37", tlv(0x30, oid("1.3.6.1.5.5.7.3.3")))


def certificate(issuer: bytes, subject: bytes, extensions: list[bytes] | None = None) -> bytes:
    """X.509 v3 certificate DER (RFC 5280 §4.1), sha256WithRSAEncryption, valid 2025-2035, serial 0x0123."""
    k = key()
    spki = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    alg = tlv(0x30, oid("1.2.840.113549.1.1.11") + b"\x05\x00")
    validity = tlv(0x30, tlv(0x17, b"250101000000Z") + tlv(0x17, b"350101000000Z"))
    exts = tlv(0xA3, tlv(0x30, b"".join(extensions))) if extensions else b""
    tbs = tlv(0x30, tlv(0xA0, tlv(0x02, b"\x02")) + tlv(0x02, b"\x01\x23") + alg + issuer + validity + subject
              + spki + exts)
    signature = k.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    return tlv(0x30, tbs + alg + tlv(0x03, b"\x00" + signature))


def pfx(cert_der: bytes, password: bytes) -> bytes:
    """A PFX holding ``cert_der`` and :func:`key` (cryptography's PKCS#12 writer)."""
    from cryptography import x509

    enc = serialization.BestAvailableEncryption(password)
    return pkcs12.serialize_key_and_certificates(b"t", key(), x509.load_der_x509_certificate(cert_der), None, enc)
