"""The artifact formats ppmi-build signs, each behind one small protocol (:class:`ArtifactFormat`).

* :data:`AUTHENTICODE` - PE images (``.dll``/``.exe``): Authenticode, signing-spec §1
  (:mod:`ppmi_build.signing.authenticode`);
* :data:`NUGET` - NuGet packages (``.nupkg``): a primary author signature in ``.signature.p7s``, signing-spec §2
  (:mod:`ppmi_build.signing.nuget`).

:func:`format_for` picks the format of a file by its name (what ``sign``/``verify`` have always done: a
``.nupkg`` is a package, anything else is a PE image whose parser then says whether it is one).
:func:`sniff_format` looks at the first bytes instead (``MZ`` or ``PK\\x03\\x04``).

What sits above the formats, in :mod:`ppmi_build.signing.api`: the atomic temp file + rename, the post-sign check
against the key's own chain, external back-ends (``--backend``), ``--sign-contents`` (assemblies inside a
package, signed inside-out) and batches. Format modules are imported only when a format is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .results import ArtifactKind

if TYPE_CHECKING:
    from cryptography import x509

    from .keys import KeySource
    from .results import VerifyResult


class ArtifactFormat(Protocol):
    """One signable artifact format.

    Attributes:
        kind: the :class:`ArtifactKind` it handles.
        suffixes: file name endings it takes (lower case, with the dot).
    """

    kind: ArtifactKind
    suffixes: tuple[str, ...]

    def sniff(self, head: bytes) -> bool:
        """True when ``head`` (the first bytes of a file, at least 4) starts an artifact of this format."""
        ...

    def sign(self, src: Path, dst: Path, key: KeySource, options: Any) -> dict[str, Any]:
        """Write ``src`` signed with ``key`` to ``dst`` (not atomic: :func:`ppmi_build.signing.api.sign_file` writes
        to a temp file, verifies and renames). ``options``: ``backends.SignOptions``. Returns
        ``{"replaced_signature": bool, "timestamped": bool}``."""
        ...

    def verify(self, path: Path, trusted_roots: Sequence[x509.Certificate] = (), use_system_roots: bool = True,
               **checks: Any) -> VerifyResult:
        """Verify the signature of ``path``; never raises on a bad signature (problems go in the result).
        Raises InputFileError / PEFormatError / PackageFormatError for a file that is not one of this format."""
        ...

    def remove_signature(self, src: Path, dst: Path | None = None) -> dict[str, Any]:
        """Remove the signature atomically (``dst`` None: in place). Returns ``{"path", "sha256_after", ...}``."""
        ...

    def signer(self, path: Path) -> x509.Certificate:
        """The signer certificate. Raises BadInput when not signed."""
        ...


class _Authenticode:
    kind: ArtifactKind = ArtifactKind.ASSEMBLY
    suffixes: tuple[str, ...] = (".dll", ".exe")

    def sniff(self, head: bytes) -> bool:
        return head[:2] == b"MZ"

    def sign(self, src: Path, dst: Path, key: KeySource, options: Any) -> dict[str, Any]:
        from .authenticode.sign import sign_pe

        outcome = sign_pe(src, dst, key, timestamp_urls=options.timestamp_urls, digest=options.digest,
                          program_name=options.program_name, program_url=options.program_url)
        return {"replaced_signature": outcome.replaced_signature, "timestamped": outcome.timestamped}

    def verify(self, path: Path, trusted_roots: Sequence[x509.Certificate] = (), use_system_roots: bool = True,
               **checks: Any) -> VerifyResult:
        from .authenticode.verify import verify_pe

        return verify_pe(path, trusted_roots=list(trusted_roots), use_system_roots=use_system_roots, **checks)

    def remove_signature(self, src: Path, dst: Path | None = None) -> dict[str, Any]:
        from .authenticode.sign import unsign_file

        return unsign_file(src, dst)

    def signer(self, path: Path) -> x509.Certificate:
        from .authenticode.verify import signer_certificate

        return signer_certificate(path)


class _NuGet:
    kind: ArtifactKind = ArtifactKind.PACKAGE
    suffixes: tuple[str, ...] = (".nupkg",)

    def sniff(self, head: bytes) -> bool:
        return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")

    def sign(self, src: Path, dst: Path, key: KeySource, options: Any) -> dict[str, Any]:
        from .nuget.sign import sign_package

        return sign_package(src, dst, key, timestamp_urls=options.timestamp_urls, digest=options.digest,
                            overwrite=options.overwrite)

    def verify(self, path: Path, trusted_roots: Sequence[x509.Certificate] = (), use_system_roots: bool = True,
               **checks: Any) -> VerifyResult:
        from .nuget.verify import verify_package

        checks.pop("use_signify", None)  # the independent Authenticode opinion; packages have none
        return verify_package(path, trusted_roots=list(trusted_roots), use_system_roots=use_system_roots, **checks)

    def remove_signature(self, src: Path, dst: Path | None = None) -> dict[str, Any]:
        from .nuget.sign import unsign_package_file

        return unsign_package_file(src, dst)

    def signer(self, path: Path) -> x509.Certificate:
        from .nuget.verify import signer_certificate

        return signer_certificate(path)


AUTHENTICODE: ArtifactFormat = _Authenticode()
NUGET: ArtifactFormat = _NuGet()

#: every format, in the order :func:`sniff_format` tries them
FORMATS: tuple[ArtifactFormat, ...] = (AUTHENTICODE, NUGET)


def format_for(path: Path | str) -> ArtifactFormat:
    """The format of ``path`` by its name: :data:`NUGET` for ``.nupkg``, else :data:`AUTHENTICODE`."""
    return NUGET if str(path).lower().endswith(NUGET.suffixes) else AUTHENTICODE


def format_of_kind(kind: ArtifactKind | str) -> ArtifactFormat:
    """The format that handles ``kind``."""
    return NUGET if ArtifactKind(kind) is ArtifactKind.PACKAGE else AUTHENTICODE


def sniff_format(head: bytes) -> ArtifactFormat | None:
    """The format whose signature bytes start ``head``, or None."""
    return next((f for f in FORMATS if f.sniff(head)), None)
