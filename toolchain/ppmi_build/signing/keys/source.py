"""The key-source protocol, the in-memory key, password sources and the checks every signing certificate passes.

A :class:`KeySource` gives the certificate chain (leaf first) and signs a *digest* with RSASSA-PKCS1-v1_5
(RFC 8017 §8.2), the only signature scheme Authenticode and NuGet signing use with the certificates Windows
trusts (signing-spec §1.9, §2.3). Signing a digest rather than a message is the "digest signing" design of
dotnet/sign and winsign (signing-spec §7.1): a PFX in memory, a PKCS#11 token or a cloud key implement the same
two methods.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ...errors import CertificateError, InputFileError, PasswordError
from ...identity.certificates import has_code_signing_eku

#: Environment variable holding the PFX password by default.
PASSWORD_ENV_DEFAULT = "PPMI_PFX_PASSWORD"
#: Environment variable holding a base64-encoded PFX (CI secret).
PFX_BASE64_ENV = "PPMI_PFX_BASE64"
#: NuGet's RSAPublicKeyMinLength (SigningSpecificationsV1; signing-spec §2.3).
RSA_MIN_BITS = 2048

PFX_SUFFIXES = {".pfx", ".p12"}
CERT_SUFFIXES = {".cer", ".crt", ".der", ".pem"}


@runtime_checkable
class KeySource(Protocol):
    """A signing key plus its certificate chain.

    ``certificate_chain()`` returns the leaf first, then intermediates (the root may be
    omitted). ``sign_digest(digest, algorithm)`` returns an RSASSA-PKCS1-v1_5 signature
    (bytes, length = key size / 8) over an already computed ``digest`` made with
    ``algorithm`` (SHA-256/384/512). ``description`` names the source for messages (a path,
    ``$PPMI_PFX_BASE64``, or a key URI without secrets).
    """

    def certificate_chain(self) -> list[x509.Certificate]: ...

    def sign_digest(self, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes: ...

    @property
    def description(self) -> str: ...


@dataclass
class LocalKey:
    """A private key held in memory (from a PFX or PEM file)."""

    private_key: rsa.RSAPrivateKey
    chain: list[x509.Certificate]
    source: str = "memory"
    #: where the key came from, so external tools can read the original (still encrypted) file instead of a
    #: decrypted copy: ``key_format`` is ``"pkcs12"`` (``key_file`` is the PFX, or None with ``pfx_data`` for
    #: PPMI_PFX_BASE64) or ``"pem"`` (``key_file`` is the PEM private key); ``key_password`` opened it
    key_file: Path | None = None
    key_format: str | None = None
    key_password: bytes | None = field(default=None, repr=False)
    pfx_data: bytes | None = field(default=None, repr=False)

    def certificate_chain(self) -> list[x509.Certificate]:
        return list(self.chain)

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def description(self) -> str:
        return self.source

    def sign_digest(self, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        return self.private_key.sign(digest, padding.PKCS1v15(), Prehashed(algorithm))


@dataclass
class CertificateChain:
    """Certificates without a private key (a .cer/.crt/.pem file) for commands that only read a certificate
    (``fic``, ``cert show``, ``doctor``). ``sign_digest`` raises CertificateError."""

    chain: list[x509.Certificate]
    source: str

    def certificate_chain(self) -> list[x509.Certificate]:
        return list(self.chain)

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def description(self) -> str:
        return self.source

    def sign_digest(self, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        raise CertificateError(f"{self.source} holds no private key; pass a .pfx or a key URI to sign")


# --- passwords ------------------------------------------------------------------------------


@dataclass
class PasswordSource:
    """Where a password comes from. Resolution order: file, named env var, ``PPMI_PFX_PASSWORD``,
    terminal prompt (only if stdin is a TTY and ``interactive``). Returns ``None`` if none given.
    """

    env: str | None = None
    file: Path | None = None
    interactive: bool = True
    _cache: bytes | None = field(default=None, repr=False)

    def resolve(self, what: str = "the PFX") -> bytes | None:
        if self._cache is not None:
            return self._cache
        value: str | None = None
        if self.file is not None:
            try:
                # utf-8-sig: a byte order mark (Notepad, PowerShell 5 Out-File) is not part of the password
                value = Path(self.file).read_text(encoding="utf-8-sig").rstrip("\r\n")
            except UnicodeDecodeError:
                raise PasswordError(
                    f"password file {self.file} is not UTF-8 text; save it as UTF-8 (the first line is the password)"
                ) from None
            except OSError as e:
                raise InputFileError(
                    f"cannot read password file {self.file}: {e.strerror}; "
                    "pass an existing file to --password-file"
                ) from None
        elif self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise PasswordError(
                    f"environment variable {self.env} (from --password-env) is not set; "
                    f"export it with the password of {what}"
                )
        elif os.environ.get(PASSWORD_ENV_DEFAULT) is not None:
            value = os.environ[PASSWORD_ENV_DEFAULT]
        if value is None:
            return None
        self._cache = value.encode("utf-8")
        return self._cache

    def resolve_cached(self) -> bytes | None:
        """The password already resolved or prompted for (None when none was needed)."""
        return self._cache

    def prompt(self, what: str) -> bytes | None:
        """Ask on the terminal (no echo). Returns None when not interactive."""
        if not (self.interactive and sys.stdin.isatty()):
            return None
        import getpass

        self._cache = getpass.getpass(f"Password for {what}: ").encode("utf-8")
        return self._cache


# --- checks ---------------------------------------------------------------------------------


LIFETIME_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.13")


def check_signing_certificate(
    cert: x509.Certificate,
    *,
    label: str,
    now: _dt.datetime | None = None,
    nuget: bool = False,
) -> None:
    """Refuse a certificate that cannot make a valid code signature.

    Checks: RSA key >= 2048 bits (NU3014: NuGet ``SigningUtility.Verify`` /
    ``CertificateUtility.IsCertificatePublicKeyValid``; NU3023 is the *timestamp* certificate's
    key-length code in ``NuGetLogCode.cs``), codeSigning EKU 1.3.6.1.5.5.7.3.3 (NuGet builds the
    signing chain with the code-signing application policy and fails with NU3018,
    ``CertificateChainUtility.GetCertificateChain``; signing-spec §6), not lifetime-signing for
    NuGet (NU3015), inside its validity period (NU3017 when not yet valid, NU3018 when expired).

    Raises:
        CertificateError: with the NU code in ``code`` where NuGet defines one.
    """
    now = now or _dt.datetime.now(_dt.UTC)
    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        raise CertificateError(
            f"{'NU3014: ' if nuget else ''}{label}: the certificate key is not RSA; "
            f"use an RSA certificate of at least {RSA_MIN_BITS} bits",
            code="NU3014" if nuget else None,
        )
    if pub.key_size < RSA_MIN_BITS:
        prefix = "NU3014: " if nuget else ""
        raise CertificateError(
            f"{prefix}{label}: RSA key is {pub.key_size} bits; NuGet and Authenticode need at least "
            f"{RSA_MIN_BITS}; make a new certificate (ppmi-build cert new)",
            code="NU3014" if nuget else None,
        )
    if not has_code_signing_eku(cert):
        raise CertificateError(
            f"{'NU3018: ' if nuget else ''}{label}: the certificate has no code-signing EKU (1.3.6.1.5.5.7.3.3); "
            "use a code-signing certificate (ppmi-build cert new makes one for development)",
            code="NU3018" if nuget else None,
        )
    if nuget:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if LIFETIME_SIGNING_EKU in eku:
            raise CertificateError(
                f"NU3015: {label}: the certificate has the lifetime-signing EKU, which NuGet refuses; "
                "use a code-signing certificate without it",
                code="NU3015",
            )
    if now < cert.not_valid_before_utc:
        prefix = "NU3017: " if nuget else ""
        raise CertificateError(
            f"{prefix}{label}: the certificate is not valid until {cert.not_valid_before_utc.isoformat()}; "
            "wait for its start date or check the machine clock",
            code="NU3017" if nuget else None,
        )
    if now > cert.not_valid_after_utc:
        raise CertificateError(
            f"{'NU3018: ' if nuget else ''}{label}: the certificate expired on "
            f"{cert.not_valid_after_utc.isoformat()}; renew it and rotate (ppmi-build rotate)",
            code="NU3018" if nuget else None,
        )


HashName = str
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """``"sha256"|"sha384"|"sha512"`` -> cryptography hash instance. Raises BadInput otherwise."""
    from ...errors import BadInput

    try:
        return HASHES[name.lower().replace("-", "")]()
    except KeyError:
        raise BadInput(f"unsupported digest algorithm {name!r}; use sha256, sha384 or sha512") from None
