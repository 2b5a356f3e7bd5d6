"""Key sources: where the signing key and its certificate chain come from.

A :class:`KeySource` gives the certificate chain (leaf first) and signs a *digest* with
RSASSA-PKCS1-v1_5, the only signature scheme Authenticode and NuGet signing use with the
certificates Windows trusts (signing-spec §1.9, §2.3). Signing a digest rather than a
message is the "digest signing" design of dotnet/sign and winsign (signing-spec §7.1),
so an Azure Key Vault or PKCS#11 key can implement the same protocol later.

Implemented here: PFX/PKCS#12 files and PEM files (key and certificates in one file, or a
key file plus a certificate/chain file), with the password coming from ``--password-env``,
``--password-file``, ``PPMI_PFX_PASSWORD``, a terminal prompt, and ``PPMI_PFX_BASE64`` for a
base64 PFX held in a CI secret. Passwords are never put into messages.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ..errors import CertificateError, InputFileError, PasswordError
from ..identity.certificates import has_code_signing_eku

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
    ``algorithm`` (SHA-256/384/512).
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


# --- loading --------------------------------------------------------------------------------


def _read(path: Path, what: str = "certificate file", option: str = "--cert") -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{what} {path} does not exist; check the path given to {option}") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} {path} is a directory; pass a file to {option}") from None
    except OSError as e:
        raise InputFileError(f"cannot read {what} {path}: {e.strerror}; check the path given to {option}") from None


def _order_chain(leaf: x509.Certificate, others: list[x509.Certificate]) -> list[x509.Certificate]:
    """Leaf first, then issuers in chain order; unrelated certificates are kept at the end."""
    chain = [leaf]
    rest = [c for c in others if c != leaf]
    while rest:
        nxt = next((c for c in rest if c.subject == chain[-1].issuer and c.subject != chain[-1].subject), None)
        if nxt is None:
            break
        chain.append(nxt)
        rest.remove(nxt)
    return chain + rest


def _pick_leaf(key: rsa.RSAPrivateKey | None, certs: list[x509.Certificate], path: Path) -> x509.Certificate:
    if not certs:
        raise CertificateError(f"{path} contains no certificate; export the PFX with its certificate chain")
    if key is not None:
        pub = key.public_key().public_numbers()
        for c in certs:
            cpub = c.public_key()
            if isinstance(cpub, rsa.RSAPublicKey) and cpub.public_numbers() == pub:
                return c
        raise CertificateError(f"{path}: the private key does not match any certificate in the file")
    return certs[0]


def _open_pfx(data: bytes, password: bytes | None):
    """``(key, certificate, additional certificates)`` of a PFX; ValueError for a wrong password or
    a file that is not PKCS#12.

    The fast reader (:mod:`ppmi_build.signing.pkcs12`) handles the usual files (PBES2/AES and
    3DES, with a MAC) and skips OpenSSL's RSA key validation (50-150 ms). That is acceptable only
    because every signature made with the key is verified against the signer certificate's public
    key before a signed file is kept (``ppmi_build.signing.api``: ``verify_signed_image`` and
    ``verify_pe`` call ``cms.verify_signer_info``, which runs ``RSAPublicKey.verify``; NuGet:
    ``nuget.verify_package``), so a corrupt key cannot yield an accepted signature. Anything else
    (RC2, no MAC, no password, a MAC that does not match) goes to cryptography's loader, which
    gives the authoritative answer and error.
    """
    from . import pkcs12 as fast

    got = fast.load_key_and_certificates(data, password)
    if got is not None:
        return got
    from cryptography.hazmat.primitives.serialization import pkcs12

    return pkcs12.load_key_and_certificates(data, password)


def _load_pfx(data: bytes, path: Path, password: PasswordSource | None):
    password = password or PasswordSource()
    pw = password.resolve(str(path))
    attempts: list[bytes | None] = [pw] if pw is not None else [None, b""]
    for attempt in attempts:
        try:
            return _open_pfx(data, attempt)
        except ValueError:
            continue
    if pw is None:
        pw = password.prompt(str(path))
        if pw is not None:
            try:
                return _open_pfx(data, pw)
            except ValueError:
                pass
    if pw is None:
        raise PasswordError(
            f"{path} is password-protected; give the password with --password-env VAR, "
            f"--password-file FILE or {PASSWORD_ENV_DEFAULT}"
        )
    raise PasswordError(
        f"wrong password for {path}, or the file is not a PKCS#12/PFX file; "
        "check the password variable or file you passed"
    )


def _load_pem_key(data: bytes, path: Path, password: PasswordSource | None, option: str = "--cert"):
    """The PEM private key; OpenSSL's RSA key validation (50-150 ms) is skipped for the reason
    given in :func:`_open_pfx` (every signature is verified with the certificate after signing)."""
    from cryptography.hazmat.primitives import serialization

    password = password or PasswordSource()
    pw = password.resolve(str(path))
    try:
        return serialization.load_pem_private_key(data, pw, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        if pw is not None:  # a password is set (e.g. PPMI_PFX_PASSWORD) but this key is not encrypted
            try:
                return serialization.load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True)
            except (TypeError, ValueError):
                pass
        pw = password.prompt(str(path))
        if pw is None:
            raise PasswordError(
                f"the private key in {path} is encrypted; give the password with --password-env VAR, "
                f"--password-file FILE or {PASSWORD_ENV_DEFAULT}"
            ) from None
        try:
            return serialization.load_pem_private_key(data, pw, unsafe_skip_rsa_key_validation=True)
        except ValueError:
            raise PasswordError(f"wrong password for the private key in {path}") from None
    except ValueError:
        if pw is not None:
            raise PasswordError(f"wrong password for the private key in {path}, or the key is corrupt") from None
        raise CertificateError(f"{path} does not contain a readable PEM private key; pass a PEM private key "
                               f"file to {option}") from None


def load_certificates(path: Path | str, password: PasswordSource | None = None) -> list[x509.Certificate]:
    """Load the certificates of a .pfx/.p12 (password options apply), .pem, .cer/.crt/.der file.

    Returns:
        list of certificates, the end-entity (leaf) first, then its issuers.
    Raises:
        InputFileError: missing/unreadable file.
        PasswordError: PFX password missing or wrong.
        CertificateError: no certificate found or unparsable.
    """
    path = Path(path)
    data = _read(path)
    if path.suffix.lower() in PFX_SUFFIXES or (not data.startswith(b"-----") and _looks_pkcs12(data)):
        key, cert, extra = _load_pfx(data, path, password)
        certs = ([cert] if cert else []) + list(extra or [])
        leaf = _pick_leaf(key, certs, path)  # type: ignore[arg-type]
        return _order_chain(leaf, certs)
    certs = _parse_certs(data, path)
    return _order_chain(_pick_leaf(None, _leaf_first(certs), path), certs)


def _looks_pkcs12(data: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(data)
        return False
    except ValueError:
        return data[:1] == b"\x30"


def _leaf_first(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Put first the certificate that issued none of the others (the end-entity)."""
    issuers = {c.issuer for c in certs}
    leaves = [c for c in certs if c.subject not in issuers or c.subject == c.issuer and len(certs) == 1]
    return leaves + [c for c in certs if c not in leaves] if leaves else certs


def _parse_certs(data: bytes, path: Path) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return list(x509.load_pem_x509_certificates(data))
        if data.startswith(b"-----"):
            return []
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CertificateError(
            f"{path} is not a certificate (expected .pfx/.p12, PEM or DER .cer/.crt)"
        ) from None


def load_key_source(
    cert_path: Path | str,
    password: PasswordSource | None = None,
    *,
    key_path: Path | str | None = None,
) -> LocalKey:
    """Load a signing key and its chain.

    Args:
        cert_path: .pfx/.p12, or a PEM with the private key and certificates, or a PEM/DER
            certificate (chain) file together with ``key_path``. ``"-"`` or ``None`` plus
            ``PPMI_PFX_BASE64`` set loads the base64 PFX from that variable.
        password: where the PFX/key password comes from.
        key_path: PEM private key when it is not in ``cert_path``.
    Returns:
        :class:`LocalKey` with the chain leaf first.
    Raises:
        InputFileError, PasswordError, CertificateError (no private key, not RSA).
    """
    password = password or PasswordSource()
    if str(cert_path) in ("-", "env:" + PFX_BASE64_ENV):
        return load_pfx_from_env(password)
    path = Path(cert_path)
    data = _read(path)
    key = None
    certs: list[x509.Certificate]
    if path.suffix.lower() in PFX_SUFFIXES or (not data.startswith(b"-----") and _looks_pkcs12(data)):
        key_fmt = "pkcs12"
        key, cert, extra = _load_pfx(data, path, password)
        certs = ([cert] if cert else []) + list(extra or [])
        if key is None:
            raise CertificateError(
                f"{path} has no private key; export the PFX with its private key (e.g. Export-PfxCertificate)"
            )
    else:
        key_fmt = "pem"
        certs = _parse_certs(data, path) if b"CERTIFICATE" in data or not data.startswith(b"-----") else []
        if key_path is not None:
            key = _load_pem_key(_read(Path(key_path), "private key file", "--key"), Path(key_path), password,
                                option="--key")
        elif b"PRIVATE KEY-----" in data:
            key = _load_pem_key(data, path, password)
        else:
            raise CertificateError(
                f"{path} has no private key; pass a .pfx, a PEM that holds the key, or --key KEY.pem"
            )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError(
            f"the key in {path} is not RSA; Authenticode and NuGet signing need an RSA key (>= 2048 bits)"
        )
    leaf = _pick_leaf(key, certs, path)
    origin: dict[str, Any]  # LocalKey's key_file / key_format
    if key_fmt == "pkcs12":
        origin = {"key_file": path, "key_format": "pkcs12"}
    else:
        origin = {"key_file": Path(key_path) if key_path is not None else path, "key_format": "pem"}
    return LocalKey(private_key=key, chain=_order_chain(leaf, certs), source=str(path),
                    key_password=password.resolve_cached(), **origin)


def load_pfx_from_env(password: PasswordSource | None = None) -> LocalKey:
    """Load the PFX held base64-encoded in ``PPMI_PFX_BASE64`` (CI secret)."""
    password = password or PasswordSource()
    raw = os.environ.get(PFX_BASE64_ENV)
    if raw is None:
        raise CertificateError(f"{PFX_BASE64_ENV} is not set; put the base64 of the PFX in that variable")
    if not raw.strip():
        raise CertificateError(f"{PFX_BASE64_ENV} is empty; put the base64 of the PFX in that variable "
                               "(base64 -w0 cert.pfx)")
    try:
        data = base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError(
            f"{PFX_BASE64_ENV} is not valid base64; encode the PFX with `base64 -w0 cert.pfx`") from None
    label = Path(f"${PFX_BASE64_ENV}")
    key, cert, extra = _load_pfx(data, label, password)
    certs = ([cert] if cert else []) + list(extra or [])
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError(f"the PFX in {PFX_BASE64_ENV} has no RSA private key")
    leaf = _pick_leaf(key, certs, label)
    return LocalKey(private_key=key, chain=_order_chain(leaf, certs), source=f"${PFX_BASE64_ENV}",
                    key_format="pkcs12", pfx_data=data,
                    key_password=password.resolve_cached())


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
    from ..errors import BadInput

    try:
        return HASHES[name.lower().replace("-", "")]()
    except KeyError:
        raise BadInput(f"unsupported digest algorithm {name!r}; use sha256, sha384 or sha512") from None
