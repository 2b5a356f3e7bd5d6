"""The emulated vault's certificates and keys (Key Vault REST 7.4; production-keys §2(a)).

Seed data, from ``state.options`` (:func:`ppmi_build.emulator.start` / ``make_server(options=…)``, or
``ppmi-build emulator --vault-certificate NAME=PFX``):

* :data:`OPTION` (``"vault_certificates"``): ``{NAME: PFX}`` where PFX is a path, the PFX bytes, a
  :class:`VaultCertificate`, or a list of those (several versions of one certificate, the last one current);
* :data:`PASSWORD_OPTION` (``"vault_pfx_password"``): the PFX password, else the variable ``PPMI_PFX_PASSWORD``.

Each certificate's version (and its key's version, as Key Vault gives a certificate and its key the same version) is
the first 32 hex digits of the SHA-256 of the certificate, so a version is stable across emulator runs. The seed is
read-only: :meth:`EmulatorState.reset` clears rows and faults, not the vault.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

OPTION = "vault_certificates"
PASSWORD_OPTION = "vault_pfx_password"
PASSWORD_ENV = "PPMI_PFX_PASSWORD"
#: Key Vault ``JsonWebKeySignatureAlgorithm`` -> hash (RFC 7518 §3.3: RSASSA-PKCS1-v1_5)
ALGORITHMS: dict[str, type[hashes.HashAlgorithm]] = {"RS256": hashes.SHA256, "RS384": hashes.SHA384,
                                                     "RS512": hashes.SHA512}
#: Key Vault REST API versions the emulator answers (the data plane's GA versions).
API_VERSIONS = {"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01"}


@dataclass(frozen=True)
class VaultCertificate:
    """One version of a vault certificate with its private key (which the emulator never serves)."""

    name: str
    certificate: x509.Certificate
    key: Any  # rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @property
    def version(self) -> str:
        return hashlib.sha256(self.der).hexdigest()[:32]

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)

    @property
    def kty(self) -> str:
        return "RSA-HSM" if isinstance(self.key, rsa.RSAPrivateKey) else "EC-HSM"


def load_pfx(name: str, pfx: str | os.PathLike[str] | bytes, password: str | None) -> VaultCertificate:
    """A certificate version from a PFX (path or bytes) holding a private key and its certificate.

    Raises:
        ValueError: one line naming the certificate and the fix (unreadable file, wrong password, no key).
    """
    label = f"vault certificate {name}"
    if isinstance(pfx, bytes):
        data = pfx
    else:
        try:
            data = Path(pfx).read_bytes()
        except OSError as e:
            raise ValueError(f"{label}: cannot read {pfx}: {e.strerror}; give NAME=PATH of an existing .pfx") from None
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError:
        raise ValueError(f"{label}: the PFX cannot be opened (wrong password or not a PKCS#12 file); set "
                         f"{PASSWORD_ENV} to its password") from None
    if key is None or cert is None:
        raise ValueError(f"{label}: the PFX holds no private key and certificate; export it with its key")
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"{label}: the key is {type(key).__name__}; Key Vault holds RSA or EC keys")
    return VaultCertificate(name, cert, key)


_loaded: weakref.WeakKeyDictionary[Any, dict[str, list[VaultCertificate]]] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def vault(state: Any) -> dict[str, list[VaultCertificate]]:
    """``{name (lower case): [versions, oldest first]}`` from ``state.options`` (loaded once per state).

    Raises:
        ValueError: a seed PFX cannot be loaded (the CLI loads them at start-up, so this is for in-process use).
    """
    with _guard:
        found = _loaded.get(state)
        if found is not None:
            return found
        options: Mapping[str, Any] = getattr(state, "options", None) or {}
        password = options.get(PASSWORD_OPTION)
        if password is None:
            password = os.environ.get(PASSWORD_ENV)
        out: dict[str, list[VaultCertificate]] = {}
        for name, seeds in dict(options.get(OPTION) or {}).items():
            for seed in seeds if isinstance(seeds, (list, tuple)) else [seeds]:
                vc = seed if isinstance(seed, VaultCertificate) else load_pfx(name, seed, password)
                out.setdefault(name.lower(), []).append(vc)  # Key Vault names are case-insensitive
        _loaded[state] = out
        return out


def find(state: Any, name: str, version: str | None) -> VaultCertificate | None:
    """The version asked for (None = the current one, the last seeded), or None."""
    versions = vault(state).get(name.lower()) or []
    if version is None:
        return versions[-1] if versions else None
    return next((v for v in versions if v.version == version.lower()), None)


def bundle(base_url: str, vc: VaultCertificate) -> dict[str, Any]:
    """The ``CertificateBundle`` JSON of Key Vault's "Get Certificate" for one version."""
    cert = vc.certificate
    nbf, exp = int(cert.not_valid_before_utc.timestamp()), int(cert.not_valid_after_utc.timestamp())
    created = int(_dt.datetime.now(_dt.UTC).timestamp())
    import base64

    x5t = base64.urlsafe_b64encode(hashlib.sha1(vc.der).digest()).rstrip(b"=").decode()  # noqa: S324 - x5t is SHA-1
    attrs = {"enabled": True, "nbf": nbf, "exp": exp, "created": created, "updated": created,
             "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}
    key_size = vc.key.key_size if isinstance(vc.key, rsa.RSAPrivateKey) else vc.key.curve.key_size
    try:
        ekus = [e.dotted_string for e in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    except x509.ExtensionNotFound:
        ekus = []
    base = f"{base_url}/certificates/{vc.name}"
    return {
        "id": f"{base}/{vc.version}",
        "kid": f"{base_url}/keys/{vc.name}/{vc.version}",
        "sid": f"{base_url}/secrets/{vc.name}/{vc.version}",
        "x5t": x5t,
        "cer": base64.b64encode(vc.der).decode(),
        "attributes": attrs,
        "policy": {
            "id": f"{base}/policy",
            "key_props": {"exportable": False, "kty": vc.kty, "key_size": key_size, "reuse_key": False},
            "secret_props": {"contentType": "application/x-pkcs12"},
            "x509_props": {"subject": cert.subject.rfc4514_string(), "ekus": ekus, "key_usage": ["digitalSignature"],
                           "validity_months": max(1, (exp - nbf) // (30 * 86400))},
            "issuer": {"name": "Unknown"},
            "attributes": {"enabled": True, "created": created, "updated": created},
        },
    }


def sign(vc: VaultCertificate, alg: str, digest: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 over an already computed ``digest`` (the DigestInfo is added here, as the vault does).

    Raises:
        ValueError: one line in Key Vault's words: unknown algorithm, key/algorithm mismatch, wrong digest length.
    """
    algorithm = ALGORITHMS.get(alg)
    if algorithm is None:
        raise ValueError(f"Invalid algorithm '{alg}'; the emulator signs with RS256, RS384 or RS512.")
    if not isinstance(vc.key, rsa.RSAPrivateKey):
        raise ValueError(f"Key and algorithm are not compatible: the key is {vc.kty}, the algorithm {alg}.")
    h = algorithm()
    if len(digest) != h.digest_size:
        raise ValueError(f"Invalid length of digest: {alg} needs {h.digest_size} bytes, got {len(digest)}.")
    return vc.key.sign(digest, padding.PKCS1v15(), Prehashed(h))


_SEED = re.compile(r"^(?P<name>[0-9A-Za-z-]{1,127})=(?P<pfx>.+)$")


def seed_options(specs: list[str] | tuple[str, ...], password: str | None) -> dict[str, Any]:
    """``make_server`` options from ``--vault-certificate NAME=PFX`` values (repeatable; the same NAME twice adds a
    version, the last one current), each PFX loaded now so a bad one fails at start-up.

    Raises:
        ValueError: one line naming the value and the fix.
    """
    seeded: dict[str, list[VaultCertificate]] = {}
    for spec in specs:
        m = _SEED.match(spec)
        if not m:
            raise ValueError(f"--vault-certificate {spec!r} is not NAME=PFX; write e.g. --vault-certificate "
                             "signer=signer.pfx (NAME: letters, digits and '-')")
        seeded.setdefault(m.group("name"), []).append(load_pfx(m.group("name"), m.group("pfx"), password))
    return {OPTION: seeded} if seeded else {}
