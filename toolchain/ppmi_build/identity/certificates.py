"""Certificates: the ``cert show`` record, self-signed detection, development certificates, PFX/CER files.

* :func:`describe` — the ``cert show`` JSON record (DESIGN.md §3). ``subject``/``issuer`` are the
  exact ``X509Certificate2.Subject``/``.Issuer`` strings (:mod:`ppmi_build.identity.dn`).
* :func:`has_code_signing_eku`, :func:`key_bits` — the codeSigning EKU test and the short key description
  shared by ``cert show``, the FIC checks and the signing-certificate checks.
* :func:`certificate_problem`, :func:`check_certificate` — what makes a certificate unusable (a name
  .NET cannot render, naming the attribute; a malformed extension, naming it), so that every reader
  refuses it in one line instead of failing later inside ``cryptography``'s lazy parsing.
* :func:`is_self_signed` — the rule used to choose the FIC ``h/`` form (domain-spec §1.1).
* :func:`new_dev_certificate` — self-signed code-signing certificate from the ``certs/``
  profile (RSA 3072, EKU codeSigning, KeyUsage digitalSignature, SKI).
* :func:`write_pfx`, :func:`write_cer` — atomic writes (temporary file beside the target, then
  rename; nothing left behind on failure).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import BadInput, CertificateError, ConfigError, InputFileError
from ..fileio import atomic_write
from .dn import certificate_extension_ders, certificate_name_ders, dotnet_name, name_problem, parse_dotnet_dn

DEFAULT_PROFILE = "dev-code-signing"


def _iso(t: _dt.datetime) -> str:
    return t.astimezone(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _extension_name(oid: str) -> str:
    name = getattr(x509.ObjectIdentifier(oid), "_name", "") or ""
    return f"{name} ({oid})" if name and name != "Unknown OID" else oid


def _extension_problem(cert: x509.Certificate, error: Exception) -> str:
    """Name the extension ``cryptography`` could not parse (asn1crypto's structures tell which one)."""
    from asn1crypto import x509 as ax509

    try:
        exts = certificate_extension_ders(cert)
    except BadInput as e:
        return str(e)
    seen: set[str] = set()
    for oid, der in exts:
        if oid in seen:
            return f"the extension {_extension_name(oid)} appears twice (RFC 5280 §4.2)"
        seen.add(oid)
        try:
            ext = ax509.Extension.load(der, strict=True)
            _ = ext["extn_value"].parsed.native if ext["extn_value"].parsed is not None else None
            _ = ext["critical"].native
        except Exception:  # noqa: BLE001 - asn1crypto raises ValueError/TypeError/... on corrupt DER
            return f"the extension {_extension_name(oid)} is malformed"
    return f"an extension is malformed ({error})"


def certificate_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot be used or shown, in a few words, or None.

    Checked: the TBSCertificate layout (RFC 5280 §4.1), both names decode the way .NET decodes them
    (:func:`~ppmi_build.identity.dn.name_problem`; T61String, non-string values and the other cases
    .NET renders are fine), and the extensions parse (``cryptography`` parses them lazily and would
    raise ``ValueError`` at first use). Example: ``"the extension extendedKeyUsage (2.5.29.37) is
    malformed"``, ``"its subject cannot be rendered as .NET does: attribute CN (2.5.4.3): UTF8String
    is not UTF-8"``.
    """
    try:
        issuer_der, subject_der = certificate_name_ders(cert)
    except BadInput as e:
        return str(e)
    for role, der in (("issuer", issuer_der), ("subject", subject_der)):
        problem = name_problem(der)
        if problem:
            return f"its {role} cannot be rendered as .NET does: {problem}"
    try:
        _ = cert.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:  # not all ValueErrors
        return _extension_problem(cert, e)
    return None


def check_certificate(cert: x509.Certificate, label: str) -> x509.Certificate:
    """Return ``cert`` when :func:`certificate_problem` finds nothing.

    Args:
        label: the certificate, named for the message (``"certs/dev.cer: the certificate"``, ``"x.dll:
            the embedded signer certificate"``).
    Raises:
        CertificateError: one line ``"{label} is corrupt: {problem}; …"`` (exit 2).
    """
    problem = certificate_problem(cert)
    if problem:
        raise CertificateError(f"{label} is corrupt: {problem}; get an intact copy from its "
                               "source (re-export the .pfx/.cer, or ask the issuer for a new certificate)")
    return cert


def has_code_signing_eku(cert: x509.Certificate) -> bool:
    """True when the certificate has the codeSigning EKU (1.3.6.1.5.5.7.3.3). No EKU extension -> False."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CODE_SIGNING in eku


def key_bits(cert: x509.Certificate) -> str:
    """Short key description, e.g. ``RSA-3072`` or ``EC-P256``; ``unreadable`` when the key cannot be parsed."""
    try:
        pub = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unreadable"
    if isinstance(pub, rsa.RSAPublicKey):
        return f"RSA-{pub.key_size}"
    name = getattr(getattr(pub, "curve", None), "name", None)
    if name:
        return f"EC-{name}"
    return type(pub).__name__.replace("PublicKey", "").lstrip("_")


def der_bytes(cert: x509.Certificate) -> bytes:
    """The certificate's DER (what ``X509Certificate2.RawData`` and a ``.cer`` file hold)."""
    return cert.public_bytes(serialization.Encoding.DER)


def thumbprint_sha1(cert: x509.Certificate) -> str:
    """``X509Certificate2.Thumbprint``: SHA-1 of the DER, upper-case hex (domain-spec §1.0)."""
    return hashlib.sha1(der_bytes(cert)).hexdigest().upper()


def sha256_hex(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, lower-case hex: the FIC ``h/{hash}`` value (domain-spec §1.1)."""
    return hashlib.sha256(der_bytes(cert)).hexdigest()


def names_match(cert: x509.Certificate) -> bool:
    """True when ``X509Certificate2.Subject == X509Certificate2.Issuer`` (ordinal comparison)."""
    issuer_der, subject_der = certificate_name_ders(cert)
    return issuer_der == subject_der or dotnet_name(issuer_der) == dotnet_name(subject_der)


def signed_by_own_key(cert: x509.Certificate) -> bool:
    """True when the certificate's signature verifies with its own public key."""
    try:
        pub: Any = cert.public_key()
        sig_hash = cert.signature_hash_algorithm
        if isinstance(pub, rsa.RSAPublicKey):
            pad: Any = cert.signature_algorithm_parameters
            pub.verify(cert.signature, cert.tbs_certificate_bytes, pad, cast(hashes.HashAlgorithm, sig_hash))
            return True
        from cryptography.hazmat.primitives.asymmetric import ec

        if isinstance(pub, ec.EllipticCurvePublicKey) and sig_hash is not None:
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(sig_hash))
            return True
        pub.verify(cert.signature, cert.tbs_certificate_bytes)  # Ed25519/Ed448
        return True
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        return False


def is_self_signed(cert: x509.Certificate) -> bool:
    """Whether Dataverse will use the self-signed (``h/``) FIC form for ``cert``.

    How Dataverse decides is **not documented** (domain-spec §1.1); the only public code,
    [MIG-PS], compares ``$cert.Subject -eq $cert.Issuer``. Our rule: the .NET subject and issuer
    strings are identical **and** the signature verifies with the certificate's own key. A CA
    certificate that merely shares its issuer's name is therefore not "self-signed"; see
    :func:`self_signed_ambiguity` for that case.
    """
    return names_match(cert) and signed_by_own_key(cert)


def self_signed_ambiguity(cert: x509.Certificate) -> str | None:
    """A warning when subject == issuer but the certificate is not signed by its own key (the
    [MIG-PS] rule and ours disagree), else None."""
    if names_match(cert) and not signed_by_own_key(cert):
        return (
            "the certificate's subject equals its issuer but it is not signed by its own key; Dataverse may "
            "still treat it as self-signed (h/ form) — prefer a certificate whose subject differs from its issuer"
        )
    return None


def describe(cert: x509.Certificate) -> dict[str, Any]:
    """The ``cert show`` JSON record (DESIGN.md §3).

    Keys: ``subject``, ``issuer`` (exactly as .NET ``X509Certificate2.Subject``/``.Issuer``),
    ``thumbprint_sha1`` (upper-case hex), ``sha256`` (lower-case hex of the DER), ``not_before``,
    ``not_after`` (ISO 8601 UTC, ``Z``), ``self_signed`` (:func:`is_self_signed`), ``code_signing``
    (EKU 1.3.6.1.5.5.7.3.3 present), ``key`` (``RSA-3072``), ``serial_number`` (upper-case hex,
    as ``X509Certificate2.SerialNumber``).

    Raises:
        CertificateError: :func:`certificate_problem` found something (callers that know the file
            call :func:`check_certificate` first, so the message names it).
    """
    check_certificate(cert, "the certificate")
    issuer_der, subject_der = certificate_name_ders(cert)
    serial = cert.serial_number
    serial_hex = serial.to_bytes((serial.bit_length() + 8) // 8 or 1, "big", signed=True).hex().upper()
    return {
        "subject": dotnet_name(subject_der),
        "issuer": dotnet_name(issuer_der),
        "thumbprint_sha1": thumbprint_sha1(cert),
        "sha256": sha256_hex(cert),
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "self_signed": is_self_signed(cert),
        "code_signing": has_code_signing_eku(cert),
        "key": key_bits(cert),
        "serial_number": serial_hex,
    }


# --- profiles -------------------------------------------------------------------------------------


def load_profile(name: str = DEFAULT_PROFILE) -> dict[str, Any]:
    """Load ``certs/<name>.toml`` (shipped data, see ``certs/README.md``).

    Raises:
        ConfigError: unknown profile or unreadable TOML.
    """
    import tomllib

    from ..resources import certs

    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError(f"certificate profile name {name!r} is not valid; use e.g. {DEFAULT_PROFILE!r}")
    entry = certs() / f"{name}.toml"
    try:
        return tomllib.loads(entry.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"certificate profile {name!r} is not installed (certs/{name}.toml); "
                          f"use {DEFAULT_PROFILE!r}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"certificate profile certs/{name}.toml is not valid TOML: {e}; "
                          "reinstall ppmi-build") from None


_KEY_USAGE_FLAGS = (
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
)


def _key_usage(names: list[str]) -> x509.KeyUsage:
    unknown = set(names) - set(_KEY_USAGE_FLAGS)
    if unknown:
        raise ConfigError(f"certificate profile: unknown key_usage {sorted(unknown)}; use {list(_KEY_USAGE_FLAGS)}")
    flags = {f: f in names for f in _KEY_USAGE_FLAGS}
    return x509.KeyUsage(**flags)


def new_dev_certificate(
    subject: str | x509.Name,
    *,
    days: int | None = None,
    key_size: int | None = None,
    profile: str | dict[str, Any] = DEFAULT_PROFILE,
    now: _dt.datetime | None = None,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """Make a self-signed code-signing certificate for development.

    Args:
        subject: DN written the .NET/PowerShell way (``"CN=Contoso Dev, E=dev@contoso.com"``; parsed
            by :func:`~ppmi_build.identity.dn.parse_dotnet_dn` so that ``X509Certificate2.Subject``
            renders it as written) or an ``x509.Name``.
        days: validity in days (profile default 365, range from the profile).
        key_size: RSA key size in bits (profile default 3072; 2048/3072/4096).
        profile: profile name in ``certs/`` or an already loaded profile dict.
        now: override the current time (tests).
    Returns:
        (private key, certificate); issuer == subject, signed with the certificate's own key.
    Raises:
        BadInput: invalid DN, days or key size.
    """
    prof = load_profile(profile) if isinstance(profile, str) else profile
    kp, vp, ep = prof.get("key", {}), prof.get("validity", {}), prof.get("extensions", {})
    name = parse_dotnet_dn(subject) if isinstance(subject, str) else subject
    if not list(name):
        raise BadInput("the certificate subject is empty; pass --subject like 'CN=Contoso Dev'")
    days = int(vp.get("days", 365)) if days is None else days
    lo, hi = int(vp.get("min_days", 1)), int(vp.get("max_days", 3650))
    if not lo <= days <= hi:
        raise BadInput(f"--days {days} is out of range; use {lo} to {hi} days")
    key_size = int(kp.get("size", 3072)) if key_size is None else key_size
    allowed = [int(k) for k in kp.get("allowed_sizes", [2048, 3072, 4096])]
    if key_size not in allowed:
        raise BadInput(f"RSA key size {key_size} is not allowed; use one of {allowed}")
    hash_name = prof.get("signature", {}).get("hash", "sha256")
    algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}.get(hash_name)
    if algorithm is None:
        raise ConfigError(f"certificate profile: unsupported hash {hash_name!r}; use sha256, sha384 or sha512")

    now = now or _dt.datetime.now(_dt.UTC)
    not_before = now - _dt.timedelta(minutes=int(vp.get("backdate_minutes", 10)))
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    ekus = [x509.ObjectIdentifier(o) for o in ep.get("extended_key_usage", ["1.3.6.1.5.5.7.3.3"])]
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=bool(ep.get("basic_constraints_ca", False)), path_length=None),
                       critical=True)
        .add_extension(_key_usage(list(ep.get("key_usage", ["digital_signature"]))),
                       critical=bool(ep.get("key_usage_critical", True)))
        .add_extension(
            x509.ExtendedKeyUsage(ekus),
            critical=bool(ep.get("extended_key_usage_critical", False)),
        )
    )
    if ep.get("subject_key_identifier", True):
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return key, builder.sign(key, cast("hashes.SHA256 | hashes.SHA384 | hashes.SHA512", algorithm))


# --- files ----------------------------------------------------------------------------------------


def pfx_bytes(
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    password: bytes | None,
    *,
    friendly_name: str | None = None,
    encryption: str = "3des-sha1",
    kdf_rounds: int = 50000,
    chain: list[x509.Certificate] | None = None,
) -> bytes:
    """PKCS#12 (RFC 7292) holding ``key`` and ``cert`` (+ ``chain``).

    ``password=None`` writes an unprotected PFX. ``encryption``: ``"3des-sha1"``
    (pbeWithSHAAnd3-KeyTripleDES-CBC + HMAC-SHA1, readable everywhere) or ``"aes256-sha256"``
    (PBES2 AES-256-CBC + HMAC-SHA256).
    """
    from cryptography.hazmat.primitives.serialization import pkcs12

    if password is None:
        enc: serialization.KeySerializationEncryption = serialization.NoEncryption()
    else:
        mac: hashes.HashAlgorithm
        if encryption == "3des-sha1":
            alg, mac = pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC, hashes.SHA1()
        elif encryption == "aes256-sha256":
            alg, mac = pkcs12.PBES.PBESv2SHA256AndAES256CBC, hashes.SHA256()
        else:
            raise ConfigError(f"PFX encryption {encryption!r} is not supported; use '3des-sha1' or 'aes256-sha256'")
        enc = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(kdf_rounds)
            .key_cert_algorithm(alg)
            .hmac_hash(mac)
            .build(password)
        )
    name = friendly_name.encode("utf-8") if friendly_name else None
    return pkcs12.serialize_key_and_certificates(name, key, cert, chain or None, enc)


def write_pfx(
    path: Path | str,
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    password: bytes | None,
    *,
    friendly_name: str | None = None,
    encryption: str = "3des-sha1",
    kdf_rounds: int = 50000,
) -> Path:
    """Write a PFX atomically with mode 0600. ``password=None`` = unprotected (callers must ask first).

    Raises:
        InputFileError: folder missing or not writable.
    """
    data = pfx_bytes(key, cert, password, friendly_name=friendly_name, encryption=encryption, kdf_rounds=kdf_rounds)
    return atomic_write(path, data, mode=0o600)


def write_cer(path: Path | str, cert: x509.Certificate) -> Path:
    """Write the certificate as DER (``.cer``, what ``CertUtil -hashfile … SHA256`` hashes) atomically."""
    return atomic_write(path, der_bytes(cert), mode=0o644)


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def default_file_name(cert_or_name: x509.Certificate | x509.Name) -> str:
    """A file name stem from the subject CN (or the first value): ``"Contoso Dev"`` -> ``contoso-dev``."""
    from .dn import common_names, name_attributes

    name = certificate_name_ders(cert_or_name)[1] if isinstance(cert_or_name, x509.Certificate) else cert_or_name
    cns = common_names(name)
    values = cns or [a.value for rdn in name_attributes(name) for a in rdn if a.is_string]
    stem = re.sub(r"[^a-z0-9]+", "-", (values[0] if values else "").lower()).strip("-")[:60].strip("-")
    return stem or DEFAULT_PROFILE


def check_file_name(name: str) -> str:
    """Validate a ``--name`` (file stem without folders). Raises BadInput."""
    if not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise BadInput(f"--name {name!r} is not a usable file name; use letters, digits, '.', '_' or '-' "
                       "(e.g. contoso-dev)")
    return name


def certificate_file_paths(out_dir: Path | str, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """``(out_dir/NAME.pfx, out_dir/NAME.cer)``; raises InputFileError when one exists and not ``force``."""
    out = Path(out_dir)
    check_file_name(name)
    pfx_path, cer_path = out / f"{name}.pfx", out / f"{name}.cer"
    if not force:
        for p in (pfx_path, cer_path):
            if p.exists():
                raise InputFileError(f"{p} already exists; pass --force to replace it or choose another --name")
    return pfx_path, cer_path


def write_certificate_files(
    out_dir: Path | str,
    name: str,
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    password: bytes | None,
    *,
    force: bool = False,
    encryption: str = "3des-sha1",
    kdf_rounds: int = 50000,
) -> tuple[Path, Path]:
    """Write ``NAME.pfx`` (mode 0600) and ``NAME.cer`` into ``out_dir``, both or neither.

    Raises:
        InputFileError: a target exists (without ``force``), the folder cannot be made or written.
    """
    out = Path(out_dir)
    pfx_path, cer_path = certificate_file_paths(out, name, force=force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputFileError(f"cannot create output folder {out}: {e.strerror}; choose a writable --out") from None
    if not out.is_dir():
        raise InputFileError(f"--out {out} is not a folder; pass a folder for the .pfx and .cer")
    pfx_data = pfx_bytes(key, cert, password, friendly_name=name, encryption=encryption, kdf_rounds=kdf_rounds)
    # Keep the previous .pfx (if any) until the .cer is written too, so a failure loses nothing.
    backup: bytes | None = pfx_path.read_bytes() if pfx_path.exists() else None
    atomic_write(pfx_path, pfx_data, mode=0o600)
    try:
        write_cer(cer_path, cert)
    except BaseException:
        if backup is None:
            pfx_path.unlink(missing_ok=True)
        else:
            atomic_write(pfx_path, backup, mode=0o600)
        raise
    return pfx_path, cer_path
