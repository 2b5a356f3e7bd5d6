"""Certificate inspection (``cert show``) — PLACEHOLDER owned by the identity helper; see describe()."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..signing.keys import has_code_signing_eku, key_bits
from .dn import dotnet_name


def describe(cert: x509.Certificate) -> dict[str, Any]:
    """The ``cert show`` JSON record of a certificate (DESIGN.md §3)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "subject": dotnet_name(cert.subject),
        "issuer": dotnet_name(cert.issuer),
        "thumbprint_sha1": hashlib.sha1(der).hexdigest().upper(),
        "sha256": hashlib.sha256(der).hexdigest(),
        "not_before": cert.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
        "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        "self_signed": cert.subject == cert.issuer,
        "code_signing": has_code_signing_eku(cert),
        "key": key_bits(cert),
    }
