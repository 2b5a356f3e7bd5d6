"""Keys and certificates from files: PFX/PKCS#12, PEM and DER.

PFX files are opened with ``cryptography``'s PKCS#12 loader (OpenSSL ``PKCS12_parse``: MAC check, then
PBES1/PBES2 decryption of the safes, RFC 7292 §4-5 and Appendix B). Only the public structure of the file is
read here, with asn1crypto, to bound the work a file can ask for before any password is tried: OpenSSL 3.0
applies no upper limit to the MAC or key-derivation iteration counts, so a PFX claiming 2^31 iterations would
keep the process busy for hours. The limits are those of .NET's ``Pkcs12LoaderLimits.Defaults`` (MAC 300,000,
one KDF 300,000, all KDFs together 1,000,000), which is what NuGet and signtool users' PFX files are made to
open with; a file above them is refused with one line (exit 2).

PEM: PKCS#8 or traditional private keys (encrypted or not) and ``CERTIFICATE`` blocks; DER: one certificate.
Passwords come from :class:`~ppmi_build.signing.keys.source.PasswordSource` and never appear in messages.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ...errors import CertificateError, InputFileError, PasswordError
from ...identity.certificates import check_certificate
from ...identity.dn import certificate_name_ders
from .source import (
    PASSWORD_ENV_DEFAULT,
    PFX_BASE64_ENV,
    PFX_SUFFIXES,
    CertificateChain,
    LocalKey,
    PasswordSource,
)

#: Largest MAC iteration count accepted (.NET ``Pkcs12LoaderLimits.MacIterationLimit`` default).
MAC_ITERATION_LIMIT = 300_000
#: Largest iteration count of one key derivation (.NET ``IndividualKdfIterationLimit`` default).
KDF_ITERATION_LIMIT = 300_000
#: Largest sum of the MAC and every readable KDF iteration count (.NET ``TotalKdfIterationLimit`` default).
TOTAL_ITERATION_LIMIT = 1_000_000


def _read(path: Path, what: str = "certificate file", option: str = "--cert") -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{what} {path} does not exist; check the path given to {option}") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} {path} is a directory; pass a file to {option}") from None
    except OSError as e:
        raise InputFileError(f"cannot read {what} {path}: {e.strerror}; check the path given to {option}") from None


def _checked(certs: list[x509.Certificate], label: Path | str) -> list[x509.Certificate]:
    """``certs`` when each one is intact (names .NET can render, extensions that parse), else one line
    naming the file and the fault (:func:`~ppmi_build.identity.certificates.check_certificate`)."""
    for i, c in enumerate(certs):
        check_certificate(c, f"{label}: the certificate" if len(certs) == 1
                          else f"{label}: certificate {i + 1} of {len(certs)}")
    return certs


def _issuer(cert: x509.Certificate) -> bytes:
    """Issuer DER as on the wire (``cert.issuer`` would re-parse it with cryptography's stricter Name rules)."""
    return certificate_name_ders(cert)[0]


def _subject(cert: x509.Certificate) -> bytes:
    return certificate_name_ders(cert)[1]


def order_chain(leaf: x509.Certificate, others: list[x509.Certificate]) -> list[x509.Certificate]:
    """Leaf first, then issuers in chain order; unrelated certificates are kept at the end.

    Names are compared as DER (RFC 5280 §7.1 binary comparison), from the certificate's own bytes."""
    chain = [leaf]
    rest = [c for c in others if c != leaf]
    while rest:
        last = chain[-1]
        nxt = next((c for c in rest if _subject(c) == _issuer(last) and _subject(c) != _subject(last)), None)
        if nxt is None:
            break
        chain.append(nxt)
        rest.remove(nxt)
    return chain + rest


def _key_kind(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "EC"
    return type(key).__name__.replace("PrivateKey", "").lstrip("_") or "not RSA"


def _pick_leaf(key: Any, certs: list[x509.Certificate], path: Path | str) -> x509.Certificate:
    """The certificate whose public key is ``key``'s (any key type), else the first one when ``key`` is None."""
    if not certs:
        raise CertificateError(f"{path} contains no certificate; export the PFX with its certificate chain")
    if key is not None:
        pub = key.public_key()
        for c in certs:
            try:
                if c.public_key() == pub:
                    return c
            except ValueError:  # an unreadable public key cannot be the key's
                continue
        raise CertificateError(f"{path}: the private key does not match any certificate in the file")
    return certs[0]


def _require_rsa(key: Any, path: Path | str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError(
            f"the key in {path} is {_key_kind(key)}; Authenticode/NuGet signing here needs RSA (>= 2048 bits)"
        )
    return key


# --- PKCS#12 --------------------------------------------------------------------------------------


def pfx_iteration_counts(data: bytes) -> tuple[int | None, list[int]] | None:
    """``(MAC iterations or None, [iteration count of each readable key derivation])`` of a PFX.

    Reads only public structure (RFC 7292 §4: ``MacData.iterations``; the ``AlgorithmIdentifier`` parameters of
    encrypted safes and of shrouded key bags in unencrypted safes: PKCS#12 PBE ``iterations`` or PBKDF2
    ``iterationCount``, RFC 8018 A.2). Returns None when ``data`` is not a PFX asn1crypto can read (the
    PKCS#12 loader then gives its own answer).
    """
    from asn1crypto import pkcs12 as asn1_pkcs12

    try:
        pfx = asn1_pkcs12.Pfx.load(data)
        mac = pfx["mac_data"]
        mac_iterations = None if mac.native is None else int(mac["iterations"].native)
        kdfs: list[int] = []
        auth = pfx["auth_safe"]
        if auth["content_type"].native != "data":
            return mac_iterations, kdfs
        safes = asn1_pkcs12.AuthenticatedSafe.load(auth["content"].native)
        for info in safes:
            kind = info["content_type"].native
            if kind == "encrypted_data":
                alg = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]
                kdfs.append(int(alg.kdf_iterations))
            elif kind == "data":
                for bag in asn1_pkcs12.SafeContents.load(info["content"].native):
                    if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                        kdfs.append(int(bag["bag_value"]["encryption_algorithm"].kdf_iterations))
        return mac_iterations, kdfs
    except Exception:  # noqa: BLE001 - any parse problem: leave the verdict to the PKCS#12 loader
        return None


def check_pfx_work(data: bytes, label: Path | str) -> None:
    """Refuse a PFX whose MAC or key derivations ask for more iterations than the documented limits.

    Raises:
        CertificateError (exit 2): one line naming the count, the limit and how to re-export.
    """
    counts = pfx_iteration_counts(data)
    if counts is None:
        return
    mac, kdfs = counts
    fix = "re-export it with fewer iterations (e.g. openssl pkcs12 -export -iter 2048 -maciter)"
    if mac is not None and mac > MAC_ITERATION_LIMIT:
        raise CertificateError(f"{label}: the PFX MAC asks for {mac:,} iterations, more than the limit of "
                               f"{MAC_ITERATION_LIMIT:,}; {fix}")
    for n in kdfs:
        if n > KDF_ITERATION_LIMIT:
            raise CertificateError(f"{label}: a PFX key derivation asks for {n:,} iterations, more than the "
                                   f"limit of {KDF_ITERATION_LIMIT:,}; {fix}")
    total = (mac or 0) + sum(kdfs)
    if total > TOTAL_ITERATION_LIMIT:
        raise CertificateError(f"{label}: the PFX asks for {total:,} iterations in all, more than the limit of "
                               f"{TOTAL_ITERATION_LIMIT:,}; {fix}")


def open_pfx(data: bytes, password: bytes | None, label: Path | str) -> tuple[Any, Any, list[x509.Certificate]]:
    """``(private key or None, certificate or None, additional certificates)`` of a PFX.

    Raises:
        CertificateError: the file asks for more iterations than the limits (see the module docstring).
        ValueError: wrong password, MAC mismatch, or not PKCS#12 (cryptography's loader).
    """
    check_pfx_work(data, label)
    from cryptography.hazmat.primitives.serialization import pkcs12

    key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    return key, cert, list(extra)


def _load_pfx(data: bytes, path: Path | str, password: PasswordSource | None) -> tuple[Any, Any, list]:
    password = password or PasswordSource()
    check_pfx_work(data, path)
    pw = password.resolve(str(path))
    attempts: list[bytes | None] = [pw] if pw is not None else [None, b""]
    for attempt in attempts:
        try:
            return open_pfx(data, attempt, path)
        except ValueError:
            continue
    if pw is None:
        pw = password.prompt(str(path))
        if pw is not None:
            try:
                return open_pfx(data, pw, path)
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


# --- PEM / DER ------------------------------------------------------------------------------------


def _load_pem_key(data: bytes, path: Path, password: PasswordSource | None, option: str = "--cert") -> Any:
    """The PEM private key. OpenSSL's RSA key validation (50-150 ms) is skipped: every signature made with the
    key is verified against the signer certificate's public key before a signed file is kept (the signing
    formats' post-sign verification, ``RSAPublicKey.verify``), so a corrupt key cannot yield an accepted
    signature. cryptography's PKCS#12 loader has no such switch, so PFX keys are always validated."""
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


def _looks_pkcs12(data: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(data)
        return False
    except (ValueError, x509.InvalidVersion):
        return data[:1] == b"\x30"


def _is_pfx(path: Path, data: bytes) -> bool:
    return path.suffix.lower() in PFX_SUFFIXES or (not data.startswith(b"-----") and _looks_pkcs12(data))


def _leaf_first(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Put first the certificate that issued none of the others (the end-entity)."""
    issuers = {_issuer(c) for c in certs}
    leaves = [c for c in certs if _subject(c) not in issuers or _subject(c) == _issuer(c) and len(certs) == 1]
    return leaves + [c for c in certs if c not in leaves] if leaves else certs


def _parse_certs(data: bytes, path: Path) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return list(x509.load_pem_x509_certificates(data))
        if data.startswith(b"-----"):
            return []
        return [x509.load_der_x509_certificate(data)]
    except x509.InvalidVersion as e:  # not a ValueError: cryptography reports the bad version number apart
        raise CertificateError(f"{path}: the certificate is corrupt: {e} (RFC 5280 §4.1.2.1 allows v1-v3); "
                               "get an intact copy from its source") from None
    except ValueError:
        raise CertificateError(
            f"{path} is not a certificate (expected .pfx/.p12, PEM or DER .cer/.crt)"
        ) from None


def load_certificates(path: Path | str, password: PasswordSource | None = None) -> list[x509.Certificate]:
    """Load the certificates of a .pfx/.p12 (password options apply), .pem, .cer/.crt/.der file.

    Returns:
        list of certificates, the end-entity (leaf) first, then its issuers.
    Raises:
        InputFileError: missing/unreadable file.
        PasswordError: PFX password missing or wrong.
        CertificateError: no certificate found or unparsable; a PFX above the iteration limits.
    """
    path = Path(path)
    data = _read(path)
    if _is_pfx(path, data):
        key, cert, extra = _load_pfx(data, path, password)
        certs = _checked(([cert] if cert else []) + list(extra or []), path)
        return order_chain(_pick_leaf(key, certs, path), certs)
    certs = _checked(_parse_certs(data, path), path)
    return order_chain(_pick_leaf(None, _leaf_first(certs), path), certs)


def load_chain_file(path: Path | str, option: str = "--cert-chain") -> list[x509.Certificate]:
    """Intermediate certificates from a PEM (one or more ``CERTIFICATE`` blocks) or DER file.

    Raises:
        InputFileError: missing/unreadable. CertificateError: no certificate in it.
    """
    path = Path(path)
    certs = _checked(_parse_certs(_read(path, "certificate chain file", option), path), path)
    if not certs:
        raise CertificateError(f"{path} contains no certificate; pass a PEM or DER certificate file to {option}")
    return certs


def certificate_source(path: Path | str, password: PasswordSource | None = None) -> CertificateChain:
    """:func:`load_certificates` wrapped as a key-less source (for commands that only read the certificate)."""
    return CertificateChain(load_certificates(path, password), str(path))


def load_key_source(
    cert_path: Path | str,
    password: PasswordSource | None = None,
    *,
    key_path: Path | str | None = None,
) -> LocalKey:
    """Load a signing key and its chain.

    Args:
        cert_path: .pfx/.p12, or a PEM with the private key and certificates, or a PEM/DER
            certificate (chain) file together with ``key_path``. ``"-"`` loads the base64 PFX
            in ``PPMI_PFX_BASE64``.
        password: where the PFX/key password comes from.
        key_path: PEM private key when it is not in ``cert_path``.
    Returns:
        :class:`LocalKey` with the chain leaf first.
    Raises:
        InputFileError, PasswordError, CertificateError (no private key, not RSA, iteration limits).
    """
    password = password or PasswordSource()
    if str(cert_path) in ("-", "env:" + PFX_BASE64_ENV):
        return load_pfx_from_env(password)
    path = Path(cert_path)
    data = _read(path)
    key: Any = None
    certs: list[x509.Certificate]
    if _is_pfx(path, data):
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
    rsa_key = _require_rsa(key, path)
    leaf = _pick_leaf(rsa_key, _checked(certs, path), path)
    origin: dict[str, Any]  # LocalKey's key_file / key_format
    if key_fmt == "pkcs12":
        origin = {"key_file": path, "key_format": "pkcs12"}
    else:
        origin = {"key_file": Path(key_path) if key_path is not None else path, "key_format": "pem"}
    return LocalKey(private_key=rsa_key, chain=order_chain(leaf, certs), source=str(path),
                    key_password=password.resolve_cached(), **origin)


def pfx_from_env(environ: Any = None) -> bytes:
    """The PFX bytes held base64-encoded in ``PPMI_PFX_BASE64``.

    Raises:
        CertificateError: unset, empty or not base64.
    """
    env = os.environ if environ is None else environ
    raw = env.get(PFX_BASE64_ENV)
    if raw is None:
        raise CertificateError(f"{PFX_BASE64_ENV} is not set; put the base64 of the PFX in that variable")
    if not raw.strip():
        raise CertificateError(f"{PFX_BASE64_ENV} is empty; put the base64 of the PFX in that variable "
                               "(base64 -w0 cert.pfx)")
    try:
        return base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError(
            f"{PFX_BASE64_ENV} is not valid base64; encode the PFX with `base64 -w0 cert.pfx`") from None


def load_pfx_from_env(password: PasswordSource | None = None, environ: Any = None) -> LocalKey:
    """Load the PFX held base64-encoded in ``PPMI_PFX_BASE64`` (CI secret).

    Raises:
        CertificateError: unset/empty/not base64, no RSA private key. PasswordError: wrong or missing password.
    """
    password = password or PasswordSource()
    data = pfx_from_env(environ)
    label = f"${PFX_BASE64_ENV}"
    key, cert, extra = _load_pfx(data, label, password)
    certs = ([cert] if cert else []) + list(extra or [])
    if key is None:
        raise CertificateError(f"the PFX in {PFX_BASE64_ENV} has no private key; export it with its private key")
    rsa_key = _require_rsa(key, f"the PFX in {PFX_BASE64_ENV}")
    leaf = _pick_leaf(rsa_key, _checked(certs, label), label)
    return LocalKey(private_key=rsa_key, chain=order_chain(leaf, certs), source=label,
                    key_format="pkcs12", pfx_data=data, key_password=password.resolve_cached())


def certificates_from_env(password: PasswordSource | None = None, environ: Any = None) -> CertificateChain:
    """The certificates of the PFX in ``PPMI_PFX_BASE64`` (a key is not required)."""
    data = pfx_from_env(environ)
    label = f"${PFX_BASE64_ENV}"
    key, cert, extra = _load_pfx(data, label, password)
    certs = _checked(([cert] if cert else []) + list(extra or []), label)
    return CertificateChain(order_chain(_pick_leaf(key, certs, label), certs), label)
