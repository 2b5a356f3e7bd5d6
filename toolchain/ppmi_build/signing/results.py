"""Result records shared by the Authenticode and NuGet signers and verifiers (the public types of
:mod:`ppmi_build`: :class:`ArtifactKind`, :class:`Problem`, :class:`CertificateInfo`, :class:`SignResult`,
:class:`VerifyResult`).

JSON shapes follow DESIGN.md §3: ``sign`` prints a list of :meth:`SignResult.to_json`,
``verify`` a list of :meth:`VerifyResult.to_json`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509

from .staging import kind_of as _kind_name


class ArtifactKind(StrEnum):
    """What is signed: an Authenticode PE image (``.dll``/``.exe``) or a NuGet package (``.nupkg``).

    A :class:`~enum.StrEnum`: ``ArtifactKind.PACKAGE == "package"`` and JSON shows the value."""

    ASSEMBLY = "assembly"
    PACKAGE = "package"


def kind_of(path: Path | str) -> ArtifactKind:
    """:attr:`ArtifactKind.PACKAGE` for a ``.nupkg`` name, else :attr:`ArtifactKind.ASSEMBLY` (by the name only)."""
    return ArtifactKind(_kind_name(path))


#: NuGet's own problem codes (``NU3000``-``NU3999``, NuGet "Errors and warnings" reference) are shown in the text
_NUGET_CODE = re.compile(r"NU\d{4}")

#: code of a problem whose text came without one (a verifier's own wording; see :meth:`Problem.from_text`)
UNCLASSIFIED = "UNCLASSIFIED"


@dataclass(frozen=True, eq=False)
class Problem(str):
    """One problem found by verification.

    Attributes:
        code: a stable identifier: NuGet's code for packages (``NU3004`` not signed, ``NU3008`` integrity,
            ``NU3018`` untrusted chain, ``NU3028`` untrusted timestamp chain, ...; NuGet "Errors and warnings"
            reference), ``AUTHENTICODE_*`` for assemblies (``AUTHENTICODE_NOT_SIGNED``,
            ``AUTHENTICODE_DIGEST_MISMATCH``, ``AUTHENTICODE_UNTRUSTED_SIGNER``, ...), ``SIGNIFY`` for the
            independent verifier's verdict, ``SIGNER_MISMATCH`` when signing produced another signer's file.
        message: the human-readable text, without the code.

    A Problem is also the ``str`` that ``verify`` prints and puts in its JSON ``problems`` list (DESIGN.md §3):
    ``"NU3018: message"`` for NuGet codes (as NuGet prints them), the message alone otherwise.
    """

    code: str
    message: str

    def __new__(cls, code: str, message: str) -> Problem:
        return super().__new__(cls, f"{code}: {message}" if _NUGET_CODE.fullmatch(code) else message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Problem, (self.code, self.message))

    @classmethod
    def from_text(cls, text: str, default: str = UNCLASSIFIED) -> Problem:
        """A Problem from a verifier's text: the NuGet code it starts with (``"NU3008: ..."``), else ``default``."""
        if isinstance(text, Problem):
            return text
        head, sep, rest = text.partition(": ")
        if sep and _NUGET_CODE.fullmatch(head):
            return cls(head, rest)
        return cls(default, text)


@dataclass(frozen=True)
class CertificateInfo:
    """A certificate as ``cert show`` describes it (DESIGN.md §3).

    Attributes:
        subject, issuer: the names exactly as .NET ``X509Certificate2.Subject`` / ``.Issuer`` render them.
        thumbprint_sha1: upper-case hex SHA-1 of the DER (the thumbprint Dataverse and Entra show).
        sha256: lower-case hex SHA-256 of the DER.
        not_before, not_after: ISO 8601 UTC (``2026-01-01T00:00:00Z``).
        key: algorithm and size, e.g. ``RSA-3072``.
        self_signed, code_signing: issuer == subject with a verifying signature; EKU 1.3.6.1.5.5.7.3.3 present.
        serial_number: upper-case hex, as ``X509Certificate2.SerialNumber``.
    """

    subject: str
    issuer: str
    thumbprint_sha1: str
    sha256: str
    not_before: str
    not_after: str
    key: str
    self_signed: bool = False
    code_signing: bool = False
    serial_number: str = ""

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> CertificateInfo:
        """Raises CertificateError when the certificate cannot be described (see ``identity.certificates.describe``)."""
        from ..identity.certificates import describe

        return cls.from_json(describe(cert))

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> CertificateInfo:
        """From a ``describe()`` / JSON ``signer`` record."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in record.items() if k in names})


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
        kept_vendor_signatures: ``--sign-contents``: ``{"entry": path inside the package, "signer": subject}`` per
            assembly whose intact third-party Authenticode signature was kept (not re-signed).
    """

    path: Path
    kind: ArtifactKind
    sha256_before: str | None
    sha256_after: str | None
    signer: dict[str, Any]
    timestamped: bool
    verified: bool
    replaced_signature: bool = False
    backend: str = "python"
    notes: list[str] = field(default_factory=list)
    kept_vendor_signatures: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": str(self.kind),
            "sha256_before": self.sha256_before,
            "sha256_after": self.sha256_after,
            "signer": self.signer,
            "timestamped": self.timestamped,
            "verified": self.verified,
            "replaced_signature": self.replaced_signature,
            "backend": self.backend,
            "notes": list(self.notes),
            "kept_vendor_signatures": [dict(k) for k in self.kept_vendor_signatures],
        }

    @property
    def certificate(self) -> CertificateInfo:
        """The signer as a typed record (``signer`` is the same as a JSON dict)."""
        return CertificateInfo.from_json(self.signer)


@dataclass
class VerifyResult:
    """Outcome of verifying one artifact.

    Attributes:
        signed: a signature is present.
        valid: signed, integrity and signature check out, the chain reaches a trusted root
            (``--trusted-root`` or the platform store), and no problem was found.
        signer: ``describe()`` of the signer certificate, or None.
        timestamp: ISO 8601 UTC time of the RFC 3161 timestamp, or None.
        kind: an :class:`ArtifactKind` (``"assembly"``/``"package"`` given here are converted).
        problems: one :class:`Problem` per problem found, with its code where the check that found it made it
            (each a ``str`` too: ``NU3008: …``, the text ``verify`` prints).
        signer_certificate: the signer's certificate object (not in JSON).
        authentihash: lower-case hex of the Authenticode PE image hash (assemblies), or None.
    """

    path: Path
    kind: ArtifactKind
    signed: bool
    valid: bool
    signer: dict[str, Any] | None = None
    timestamp: str | None = None
    problems: list[Problem] = field(default_factory=list)
    signer_certificate: x509.Certificate | None = None
    authentihash: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": str(self.path),
            "kind": str(self.kind),
            "signed": self.signed,
            "valid": self.valid,
            "signer": self.signer,
            "timestamp": self.timestamp,
            "problems": [str(p) for p in self.problems],
            "problem_codes": [p.code for p in self.problems],
        }
        if self.authentihash is not None:
            out["authentihash"] = self.authentihash
        return out

    def __post_init__(self) -> None:
        self.kind = ArtifactKind(self.kind)

    @property
    def certificate(self) -> CertificateInfo | None:
        """The signer as a typed record, or None when no signer certificate was found."""
        return CertificateInfo.from_json(self.signer) if self.signer else None
