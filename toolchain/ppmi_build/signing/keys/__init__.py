"""Key sources: where the signing key and its certificate chain come from, and which one a command uses.

A :class:`KeySource` gives the certificate chain (leaf first) and signs a digest with RSASSA-PKCS1-v1_5
(:mod:`.source`). Sources:

* files (:mod:`.files`): PFX/PKCS#12 (cryptography's loader), PEM key + certificates, PEM/DER certificates, and
  the base64 PFX of ``PPMI_PFX_BASE64`` (a CI secret);
* ``pkcs11:`` URIs, RFC 7512 (:mod:`.pkcs11`): a key on a hardware token or HSM;
* ``keyvault:`` URIs (:mod:`.keyvault`): a certificate and its key in Azure Key Vault (production-keys §2(a));
* ``trustedsigning:`` URIs (:mod:`.uri` parses them): Azure Trusted Signing, served by the module
  ``trusted_signing`` of this package when it is installed.

:func:`resolve_signing_key` is the one place that decides which key a command uses (``sign``, ``fic``,
``cert show``, ``release``, ``rotate``, ``doctor``)::

    from ppmi_build.signing.keys import resolve_signing_key
    key = resolve_signing_key(settings, key="pkcs11:token=T;object=K?module-path=/usr/lib/softhsm/libsofthsm2.so")
    key.certificate_chain()[0]           # the token's certificate
    key.sign_digest(digest, hashes.SHA256())
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from ...errors import BadInput, ConfigError, KeyUriError
from ...identity.certificates import has_code_signing_eku, key_bits
from .files import (
    KDF_ITERATION_LIMIT,
    MAC_ITERATION_LIMIT,
    TOTAL_ITERATION_LIMIT,
    certificate_source,
    certificates_from_env,
    load_certificates,
    load_chain_file,
    load_key_source,
    load_pfx_from_env,
    open_pfx,
)
from .source import (
    CERT_SUFFIXES,
    HASHES,
    LIFETIME_SIGNING_EKU,
    PASSWORD_ENV_DEFAULT,
    PFX_BASE64_ENV,
    PFX_SUFFIXES,
    RSA_MIN_BITS,
    CertificateChain,
    HashName,
    KeySource,
    LocalKey,
    PasswordSource,
    check_signing_certificate,
    hash_algorithm,
)
from .uri import SCHEMES, is_key_uri, parse_key_uri

__all__ = [
    "CERT_SUFFIXES", "HASHES", "KDF_ITERATION_LIMIT", "LIFETIME_SIGNING_EKU", "MAC_ITERATION_LIMIT",
    "PASSWORD_ENV_DEFAULT", "PFX_BASE64_ENV", "PFX_SUFFIXES", "RSA_MIN_BITS", "SCHEMES", "TOTAL_ITERATION_LIMIT",
    "NO_KEY_MESSAGE", "CertificateChain", "HashName", "KeyChoice", "KeySource", "LocalKey", "PasswordSource",
    "certificate_source", "certificates_from_env", "check_signing_certificate", "choose_signing_key",
    "has_code_signing_eku", "hash_algorithm", "is_key_uri", "key_bits", "load_certificates", "load_chain_file",
    "load_key_source", "load_pfx_from_env", "open_key_uri", "open_pfx", "parse_key_uri", "resolve_signing_key",
]

#: key URI scheme -> module of this package that opens it (``open_key(uri, **options) -> KeySource``)
SOURCE_MODULES = {"pkcs11": "pkcs11", "keyvault": "keyvault", "trustedsigning": "trusted_signing"}

NO_KEY_MESSAGE = ("no signing certificate; pass --cert PATH or --key URI, set [signing] certificate or key in "
                  f"ppmi.toml (or PPMI_CERT), or put a base64 PFX in {PFX_BASE64_ENV}")


@dataclass(frozen=True)
class KeyChoice:
    """Which key the precedence picked.

    ``kind``: ``"uri"`` (``value`` is the key URI text), ``"file"`` (``value`` is the certificate/PFX path,
    ``key_file`` the PEM key when separate) or ``"env-pfx"`` (the PFX in ``PPMI_PFX_BASE64``; ``value`` None).
    ``origin`` names where it came from: ``--key``, ``--cert``, ``PPMI_PFX_BASE64``, ``[signing] key`` or
    ``[signing] certificate``.
    """

    kind: str
    value: str | Path | None
    origin: str
    key_file: Path | None = None

    @property
    def label(self) -> str:
        """The source as shown in messages and reports (a path, ``$PPMI_PFX_BASE64`` or the URI)."""
        return f"${PFX_BASE64_ENV}" if self.kind == "env-pfx" else str(self.value)


def choose_signing_key(settings: Any = None, *, key: str | Path | None = None, cert: str | Path | None = None,
                       environ: Mapping[str, str] | None = None) -> KeyChoice:
    """Pick the signing key by the one precedence of ppmi-build.

    1. the command line: ``--key URI`` or ``--cert PATH`` (``--key KEY.pem`` is the private key of a
       ``--cert`` chain file); a key URI together with ``--cert`` is a usage error;
    2. the environment: ``PPMI_PFX_BASE64`` (the base64 PFX a CI pipeline holds as a secret) when set and not
       empty, so a pipeline's secret wins over a default checked into the repository;
    3. the project: ``[signing] key`` (a URI) or ``[signing] certificate`` (a path relative to ppmi.toml;
       ``PPMI_CERT`` overrides it) of ``settings``.

    Args:
        settings: an object with ``signing.key``, ``signing.certificate`` and ``resolve_path(p)``
            (:class:`ppmi_build.config.Settings`), or None to skip step 3.
        key, cert: the command-line values (paths relative to the current folder).
        environ: the environment (default ``os.environ``).
    Raises:
        BadInput (exit 2): a key URI and ``--cert`` together; ``--key KEY.pem`` without ``--cert``.
        ConfigError (exit 2): both ``[signing] key`` and ``certificate`` set; nothing configured.
    """
    env = os.environ if environ is None else environ
    if key is not None and is_key_uri(key):
        if cert is not None:
            raise BadInput(f"--key {parse_key_uri(str(key)).text} and --cert {cert} both name the signing key; "
                           "give one of them (--cert-chain FILE adds intermediates to a key URI)")
        return KeyChoice("uri", str(key), "--key")
    if key is not None and cert is None:
        raise BadInput(f"--key {key} is neither a key URI ({', '.join(s + ':' for s in SCHEMES)}) nor usable "
                       "alone; a PEM private key needs its certificate chain in --cert PATH")
    if cert is not None:
        return KeyChoice("file", Path(cert) if str(cert) != "-" else "-", "--cert",
                         Path(key) if key is not None else None)
    if env.get(PFX_BASE64_ENV):
        return KeyChoice("env-pfx", None, PFX_BASE64_ENV)
    signing = getattr(settings, "signing", None)
    configured_key = getattr(signing, "key", None)
    configured_cert = getattr(signing, "certificate", None)
    if configured_key and configured_cert:
        where = getattr(settings, "config_file", None) or "ppmi.toml"
        raise ConfigError(f"[signing] key and certificate (or PPMI_CERT) are both set in {where}; keep one "
                          "(key for a pkcs11:/keyvault:/trustedsigning: URI, certificate for a file)")
    if configured_key:
        if not is_key_uri(configured_key):
            raise KeyUriError(f"[signing] key = {configured_key!r} is not a key URI; use pkcs11:..., keyvault:... "
                              "or trustedsigning:..., or put a file path in [signing] certificate")
        return KeyChoice("uri", str(configured_key), "[signing] key")
    if configured_cert:
        return KeyChoice("file", settings.resolve_path(configured_cert), "[signing] certificate")
    raise ConfigError(NO_KEY_MESSAGE)


def open_key_uri(text: str, *, pin_env: str | None = None, cert_chain: list[x509.Certificate] | None = None,
                 environ: Mapping[str, str] | None = None, interactive: bool = True) -> KeySource:
    """Open the key a key URI names, through the module of its scheme (:data:`SOURCE_MODULES`).

    Raises:
        KeyUriError (exit 2): malformed URI, or a source this installation does not have.
        TokenError / TokenDeviceError and the source's own errors.
    """
    uri = parse_key_uri(text)
    name = SOURCE_MODULES[uri.scheme]
    if importlib.util.find_spec(f"{__name__}.{name}") is None:
        raise KeyUriError(f"{uri.scheme}: keys are not available in this version of ppmi-build; use a pkcs11: "
                          "URI, a PFX (--cert) or PPMI_PFX_BASE64")
    module = importlib.import_module(f"{__name__}.{name}")
    if uri.scheme == "pkcs11":
        from .pkcs11 import PinSource

        return module.open_key(uri, pin=PinSource(env=pin_env, interactive=interactive, environ=environ),
                               cert_chain=cert_chain, environ=environ)
    return module.open_key(uri, cert_chain=cert_chain, environ=environ)  # type: ignore[no-any-return]


def resolve_signing_key(settings: Any = None, *, key: str | Path | None = None, cert: str | Path | None = None,
                        password: PasswordSource | None = None, pin_env: str | None = None,
                        cert_chain: str | Path | None = None, environ: Mapping[str, str] | None = None,
                        interactive: bool = True, require_private_key: bool = True) -> KeySource:
    """The signing key a command uses, chosen by :func:`choose_signing_key`'s precedence and opened.

    Args:
        settings: see :func:`choose_signing_key`; its ``signing.password_env`` is the default password variable.
        key, cert: ``--key`` (URI or PEM key file) and ``--cert``.
        password: PFX/PEM password source (default ``[signing] password_env``, then ``PPMI_PFX_PASSWORD``).
        pin_env: ``--pin-env`` (PKCS#11 PIN variable; default ``PPMI_PKCS11_PIN``).
        cert_chain: ``--cert-chain FILE``: intermediates added to a key URI's certificate.
        interactive: allow password/PIN prompts on a terminal.
        require_private_key: False for commands that only read the certificate (``fic``, ``cert show``,
            ``doctor``): a .cer/.crt file is then accepted and the result may be a key-less
            :class:`CertificateChain`.
    Returns:
        a :class:`KeySource` (``LocalKey``, ``CertificateChain``, ``Pkcs11Key``, ...); ``description`` names it.
    Raises:
        BadInput / ConfigError / KeyUriError (exit 2) from the choice; InputFileError, PasswordError,
        CertificateError (exit 2) from files; TokenError (exit 2) / TokenDeviceError (exit 3) from tokens.
    """
    env = os.environ if environ is None else environ
    choice = choose_signing_key(settings, key=key, cert=cert, environ=env)
    if password is None:
        signing = getattr(settings, "signing", None)
        password = PasswordSource(env=getattr(signing, "password_env", None), interactive=interactive)
    if choice.kind == "uri":
        chain = load_chain_file(cert_chain) if cert_chain is not None else None
        return open_key_uri(str(choice.value), pin_env=pin_env, cert_chain=chain, environ=env,
                            interactive=interactive)
    if cert_chain is not None:
        raise BadInput("--cert-chain adds intermediates to a key URI (--key); a PFX or PEM file carries its own "
                       "chain")
    if choice.kind == "env-pfx":
        if require_private_key:
            return load_pfx_from_env(password, env)
        return certificates_from_env(password, env)
    if require_private_key or choice.key_file is not None:
        return load_key_source(choice.value, password, key_path=choice.key_file)  # type: ignore[arg-type]
    return certificate_source(choice.value, password)  # type: ignore[arg-type]
