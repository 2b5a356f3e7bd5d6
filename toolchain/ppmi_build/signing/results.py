"""Result records shared by the Authenticode and NuGet signers and verifiers.

JSON shapes follow DESIGN.md §3: ``sign`` prints a list of :meth:`SignResult.to_json`,
``verify`` a list of :meth:`VerifyResult.to_json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from .staging import kind_of  # noqa: F401  (re-exported)


@dataclass
class SignResult:
    """What ``sign`` did to one artifact.

    Attributes:
        path: the signed file (the output path when ``-o`` was given).
        kind: ``"assembly"`` (Authenticode PE) or ``"package"`` (NuGet author signature).
        sha256_before / sha256_after: lower-case hex SHA-256 of the whole file before and after
            (None when the caller asked ``sign_file(..., file_hashes=False)``).
        signer: ``identity.certificates.describe()`` of the signing certificate.
        timestamped: an RFC 3161 timestamp token was embedded.
        verified: the written file passed verification (always True when returned; a failed
            verification raises instead).
        replaced_signature: the input already had a signature that was replaced.
        backend: ``python``, ``osslsigncode``, ``signtool``, ``nuget`` or ``dotnet``.
        notes: human-readable remarks (e.g. "replaced an existing signature").
    """

    path: Path
    kind: str
    sha256_before: str | None
    sha256_after: str | None
    signer: dict[str, Any]
    timestamped: bool
    verified: bool
    replaced_signature: bool = False
    backend: str = "python"
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "sha256_before": self.sha256_before,
            "sha256_after": self.sha256_after,
            "signer": self.signer,
            "timestamped": self.timestamped,
            "verified": self.verified,
            "replaced_signature": self.replaced_signature,
            "backend": self.backend,
            "notes": list(self.notes),
        }


@dataclass
class VerifyResult:
    """Outcome of verifying one artifact.

    Attributes:
        signed: a signature is present.
        valid: signed, integrity and signature check out, the chain reaches a trusted root
            (``--trusted-root`` or the platform store), and no problem was found.
        signer: ``describe()`` of the signer certificate, or None.
        timestamp: ISO 8601 UTC time of the RFC 3161 timestamp, or None.
        problems: one string per problem, prefixed with a code where one exists (``NU3008: …``).
        signer_certificate: the signer's certificate object (not in JSON).
        authentihash: lower-case hex of the Authenticode PE image hash (assemblies), or None.
    """

    path: Path
    kind: str
    signed: bool
    valid: bool
    signer: dict[str, Any] | None = None
    timestamp: str | None = None
    problems: list[str] = field(default_factory=list)
    signer_certificate: x509.Certificate | None = None
    authentihash: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": str(self.path),
            "kind": self.kind,
            "signed": self.signed,
            "valid": self.valid,
            "signer": self.signer,
            "timestamp": self.timestamp,
            "problems": list(self.problems),
        }
        if self.authentihash is not None:
            out["authentihash"] = self.authentihash
        return out
