"""RFC 3161 time-stamp client (httpx), shared by the Authenticode and NuGet signers.

Request (RFC 3161 §2.4.1): ``TimeStampReq { version 1, messageImprint { hashAlgorithm, H(signature) },
nonce (64-bit random), certReq TRUE }`` POSTed as ``application/timestamp-query`` (§3.4). The
imprint is over the SignerInfo signature value, as Authenticode (signing-spec §1.7,
osslsigncode ``bio_encode_rfc3161_request``) and NuGet (``X509SignatureProvider``, signing-spec
§2.3) both require.

Response checks (RFC 3161 §2.4.2): PKIStatus granted or grantedWithMods; the token is a
SignedData whose eContentType is id-ct-TSTInfo; TSTInfo nonce equals ours; messageImprint equals
ours; the token's SignerInfo verifies over its signed attributes and its messageDigest matches the
TSTInfo; the ESS signing-certificate(-v2) attribute, when present, names the signer certificate
(RFC 5035, RFC 3161 §2.4.1); the signer certificate carries the *critical* id-kp-timeStamping EKU
(§2.3); optionally its RSA key has at least ``min_rsa_bits`` (NuGet NU3023, signing-spec §2.3).

Production TSAs are flaky (signing-spec §1.7): URLs are tried in order, each with bounded retries
on network errors, HTTP 429 and 5xx (the one :class:`ppmi_build.http.RetryPolicy`, ``Retry-After``
honoured up to its cap); a response that fails validation moves on to the next URL. Each URL gets at most
``PPMI_TIMESTAMP_TIMEOUT`` seconds in all, retries and waits included (default
:data:`DEFAULT_TOTAL_TIMEOUT_S`; :func:`total_timeout_from_env`), so a server that accepts the connection and
never answers cannot hold a signing run for longer; after :data:`PROGRESS_AFTER_S` seconds without an answer one
WARNING record on the ``ppmi_build.signing.timestamp`` logger says which server is being waited for (the command
line prints it on stderr). Transport:
:func:`ppmi_build.http.new_client` (user agent, timeouts); URLs in messages without credentials or
query string (:func:`ppmi_build.http.redact_url`). TSA URLs carry no bearer token, so plain http is
accepted (most public TSAs serve http).

``rfc3161-client`` is not used for the protocol: its request builder offers SHA-256 and SHA-512
imprints only (NuGet and Authenticode also use SHA-384), and its verifier needs the trust roots when
the answer arrives, while a signer checks the token's structure, nonce, imprint, ESS binding, critical
timeStamping EKU and RSA size (NU3023) here and leaves trust to verification time.

Attribute OIDs where the token goes: :data:`RFC3161_COUNTERSIGN_OID` (Authenticode unsigned
attribute szOID_RFC3161_counterSign) and :data:`SIGNATURE_TIME_STAMP_TOKEN_OID` (CMS/NuGet
id-aa-timeStampToken, RFC 3161 Appendix A).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from asn1crypto import cms as acms
from asn1crypto import core, tsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import BadInput, ConfigError, TimestampError
from ..http.client import check_urls, env_number, redact_url  # noqa: F401  (check_urls re-exported)
from . import cms
from .results import Problem

#: Authenticode unsigned attribute holding an RFC 3161 TimeStampToken (signing-spec §1.7)
RFC3161_COUNTERSIGN_OID = "1.3.6.1.4.1.311.3.3.1"
#: id-aa-timeStampToken / signature-time-stamp-token (RFC 3161 Appendix A; NuGet, signing-spec §2.3)
SIGNATURE_TIME_STAMP_TOKEN_OID = "1.2.840.113549.1.9.16.2.14"
#: id-ct-TSTInfo (RFC 3161 §2.4.2)
TST_INFO_OID = "1.2.840.113549.1.9.16.1.4"

#: seconds one TSA URL may take in all (every attempt and wait) when ``PPMI_TIMESTAMP_TIMEOUT`` is not set
DEFAULT_TOTAL_TIMEOUT_S = 60.0
#: seconds without an answer after which the server being waited for is named (once per URL)
PROGRESS_AFTER_S = 5.0
#: the variable that sets the total time per TSA URL
TOTAL_TIMEOUT_ENV = "PPMI_TIMESTAMP_TIMEOUT"

log = logging.getLogger("ppmi_build.signing.timestamp")

_SIGNING_CERTIFICATE_OID = "1.2.840.113549.1.9.16.2.12"  # RFC 2634 §5.4 (SHA-1 ESSCertID)
_SIGNING_CERTIFICATE_V2_OID = "1.2.840.113549.1.9.16.2.47"  # RFC 5035 §3 (ESSCertIDv2)


@dataclass
class TimestampInfo:
    """What a timestamp token says and what is wrong with it.

    Attributes:
        gen_time: TSTInfo genTime (timezone-aware UTC), or None when unreadable.
        tsa_certificate: the token's signer certificate, or None when not embedded.
        problems: one :class:`~ppmi_build.signing.results.Problem` per problem, with the NuGet code of the
            check that failed (``NuGetLogCode``: NU3019 imprint, NU3020 no TSA certificate, NU3021 token
            signature, NU3028 TSA chain or timeStamping EKU, NU3029 unreadable token, NU3030 unsupported
            imprint hash) and a message starting ``timestamp:``; empty when the token is valid (and, when
            trusted roots were given, chains to one of them). Authenticode reports the message under its own
            code.
    """

    gen_time: _dt.datetime | None
    tsa_certificate: x509.Certificate | None
    problems: list[Problem] = field(default_factory=list)


class _Rejected(Exception):
    """A TSA answer that fails validation (no retry on the same URL). ``code``: the NuGet code of the failed
    check (``NuGetLogCode``; NU3021 "timestamp signature validation failed" unless a more precise one applies)."""

    code: str

    def __init__(self, message: str, code: str = "NU3021") -> None:
        super().__init__(message)
        self.code = code


class _Expired(Exception):
    """The total time for one TSA URL is used up (not an httpx error, so the retry policy does not retry it)."""


def total_timeout_from_env(environ: Mapping[str, str] | None = None) -> float:
    """Seconds one TSA URL may take in all, from ``PPMI_TIMESTAMP_TIMEOUT`` (default :data:`DEFAULT_TOTAL_TIMEOUT_S`),
    validated like the ``PPMI_HTTP_*`` values (:func:`ppmi_build.http.client.env_number`).

    Raises:
        ConfigError (exit 2): not a number, ``nan``/``inf``, negative or 0.
    """
    env = os.environ if environ is None else environ
    value = env_number(env, TOTAL_TIMEOUT_ENV, DEFAULT_TOTAL_TIMEOUT_S)
    if value == 0:
        raise ConfigError(f"{TOTAL_TIMEOUT_ENV}=0 would give up on every timestamp server at once; use a number of "
                          "seconds above 0")
    return value


def _digest_name(digest: str) -> str:
    name = digest.lower().replace("-", "")
    if name not in ("sha256", "sha384", "sha512"):
        raise BadInput(f"unsupported timestamp digest {digest!r}; use sha256, sha384 or sha512")
    return name


def build_request(signature: bytes, digest: str = "sha256", nonce: int | None = None) -> tuple[bytes, int]:
    """DER ``TimeStampReq`` over ``H(signature)`` (RFC 3161 §2.4.1). Returns ``(der, nonce)``."""
    name = _digest_name(digest)
    nonce = secrets.randbits(64) if nonce is None else nonce
    req = tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": name, "parameters": core.Null()},
            "hashed_message": hashlib.new(name, signature).digest(),
        },
        "nonce": nonce,
        "cert_req": True,
    })
    return req.dump(), nonce


def _tst_info(token: acms.ContentInfo) -> tsp.TSTInfo:
    if token["content_type"].native != "signed_data":
        raise _Rejected("the token is not a CMS SignedData")
    sd = token["content"]
    eci = sd["encap_content_info"]
    if eci["content_type"].dotted != TST_INFO_OID:
        raise _Rejected(f"the token's content type is {eci['content_type'].dotted}, not id-ct-TSTInfo")
    raw = _tst_info_bytes(token)
    info = tsp.TSTInfo.load(raw)
    info.native  # noqa: B018 - force a full parse so malformed tokens fail here
    return info


def _tst_info_bytes(token: acms.ContentInfo) -> bytes:
    content = token["content"]["encap_content_info"]["content"]
    return bytes(content) if isinstance(content, core.ParsableOctetString) else core.OctetString.load(
        cms.der(content)).native


def _check_token(
    token: acms.ContentInfo,
    signature: bytes,
    *,
    nonce: int | None,
    digest: str | None,
    min_rsa_bits: int | None,
) -> tuple[tsp.TSTInfo, x509.Certificate]:
    """Validate a TimeStampToken against the signature it timestamps. Raises _Rejected."""
    try:
        info = _tst_info(token)
    except _Rejected:
        raise
    except Exception as e:  # asn1crypto raises ValueError/TypeError on malformed DER
        raise _Rejected(f"the token's TSTInfo cannot be parsed ({type(e).__name__})", "NU3029") from None
    imprint = info["message_imprint"]
    alg = imprint["hash_algorithm"]["algorithm"].native
    if digest is not None and alg != digest:
        raise _Rejected(f"the TSA used {alg} for the message imprint; {digest} was requested")
    try:
        expected = hashlib.new(alg, signature).digest()
    except (ValueError, TypeError):
        raise _Rejected(f"unsupported imprint algorithm {alg}", "NU3030") from None
    if imprint["hashed_message"].native != expected:
        raise _Rejected("the message imprint does not match the signature (wrong data timestamped)", "NU3019")
    if nonce is not None and info["nonce"].native != nonce:
        raise _Rejected("the nonce in the response does not match the request (replayed or foreign response)",
                        "NU3026")
    if info["gen_time"].native is None:
        raise _Rejected("the token has no genTime")

    sd = token["content"]
    infos = list(sd["signer_infos"])
    if len(infos) != 1:
        raise _Rejected(f"the token has {len(infos)} signer infos; expected 1")
    si = infos[0]
    cert = cms.find_signer_certificate(sd, si)
    if cert is None:
        raise _Rejected("the token does not include the TSA certificate (certReq was TRUE)", "NU3020")
    try:
        content_digest = hashlib.new(si["digest_algorithm"]["algorithm"].native, _tst_info_bytes(token)).digest()
        cms.verify_signer_info(si, cert, content_digest)
    except ValueError as e:
        raise _Rejected(f"the token's signature is invalid: {e}") from None
    _check_ess(si, cert)

    try:
        eku_ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        eku_ext = None
    if eku_ext is None or ExtendedKeyUsageOID.TIME_STAMPING not in eku_ext.value:
        raise _Rejected("the TSA certificate has no id-kp-timeStamping EKU (RFC 3161 §2.3)", "NU3028")
    if not eku_ext.critical:
        raise _Rejected("the TSA certificate's timeStamping EKU is not critical (RFC 3161 §2.3)", "NU3028")
    if min_rsa_bits is not None:
        pub = cert.public_key()
        if not isinstance(pub, rsa.RSAPublicKey) or pub.key_size < min_rsa_bits:
            size = f"RSA-{pub.key_size}" if isinstance(pub, rsa.RSAPublicKey) else type(pub).__name__
            raise _Rejected(f"NU3023: the TSA certificate key ({size}) is shorter than RSA-{min_rsa_bits}",
                            "NU3023")
    return info, cert


def _check_ess(si: acms.SignerInfo, cert: x509.Certificate) -> None:
    """RFC 3161 §2.4.1 / RFC 5035: the ESS signing-certificate attribute must name the signer cert."""
    der = cert.public_bytes(serialization.Encoding.DER)
    v2 = cms.signed_attribute(si, _SIGNING_CERTIFICATE_V2_OID)
    v1 = cms.signed_attribute(si, _SIGNING_CERTIFICATE_OID)
    try:
        if v2:
            ids = tsp.SigningCertificateV2.load(cms.der(v2[0]))["certs"]
            first = ids[0]
            alg = first["hash_algorithm"]["algorithm"].native  # DEFAULT sha256 (RFC 5035 §4), applied by asn1crypto
            if first["cert_hash"].native != hashlib.new(alg, der).digest():
                raise _Rejected("the token's signing-certificate-v2 attribute names another certificate")
        elif v1:
            first = tsp.SigningCertificate.load(cms.der(v1[0]))["certs"][0]
            if first["cert_hash"].native != hashlib.sha1(der).digest():
                raise _Rejected("the token's signing-certificate attribute names another certificate")
    except _Rejected:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise _Rejected(f"the token's signing-certificate attribute cannot be parsed ({type(e).__name__})",
                        "NU3029") from None


def _parse_response(body: bytes, signature: bytes, nonce: int, digest: str,
                    min_rsa_bits: int | None) -> acms.ContentInfo:
    # TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken TimeStampToken OPTIONAL }
    # (RFC 3161 §2.4.2); parsed by hand because asn1crypto's spec makes the token mandatory.
    try:
        tag, start, end = cms.read_tlv(body, 0)
        if tag != 0x30 or end != len(body):
            raise ValueError("not a single SEQUENCE")
        _, _, status_end = cms.read_tlv(body, start)
        status_info = tsp.PKIStatusInfo.load(body[start:status_end])
        status = status_info["status"].native
        token_der = body[status_end:end]
    except Exception:
        raise _Rejected("the answer is not an RFC 3161 TimeStampResp") from None
    if status not in ("granted", "granted_with_mods"):
        try:
            text = status_info.native.get("status_string")
            fail = status_info.native.get("fail_info")
        except Exception:
            text = fail = None
        detail = "; ".join(", ".join(sorted(x)) if isinstance(x, (set, list)) else str(x) for x in (text, fail) if x)
        raise _Rejected(f"the TSA refused the request: status {status}{' (' + detail + ')' if detail else ''}")
    if not token_der:
        raise _Rejected("the answer grants the request but carries no time-stamp token")
    try:
        token = acms.ContentInfo.load(token_der)
        token["content"]  # noqa: B018 - parse now
    except Exception:
        raise _Rejected("the time-stamp token cannot be parsed") from None
    _check_token(token, signature, nonce=nonce, digest=digest, min_rsa_bits=min_rsa_bits)
    return token


#: a TimeStampResp is a few KiB; a larger body is refused instead of read into memory without limit
MAX_RESPONSE_BYTES = 1 << 20


class _TooLarge(Exception):
    pass


def _read_capped(response) -> bytes:
    length = response.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
        raise _TooLarge
    out = bytearray()
    for chunk in response.iter_bytes():
        out += chunk
        if len(out) > MAX_RESPONSE_BYTES:
            raise _TooLarge
    return bytes(out)


def request_timestamp(
    signature: bytes,
    urls: Sequence[str],
    *,
    digest: str = "sha256",
    timeout: float = 15,
    retries: int = 2,
    min_rsa_bits: int | None = None,
    sleep: Callable[[float], None] | None = None,
    total_timeout: float | None = None,
    progress_after: float = PROGRESS_AFTER_S,
) -> acms.ContentInfo:
    """Get a validated RFC 3161 TimeStampToken for ``signature``.

    Args:
        signature: the SignerInfo signature value (encryptedDigest) to timestamp.
        urls: TSA URLs, tried in order (fallbacks).
        digest: imprint hash, ``sha256`` | ``sha384`` | ``sha512``.
        timeout: seconds per HTTP request.
        retries: extra attempts per URL after a network error, HTTP 429 or 5xx (jittered back-off from
            0.25-0.5 s, or the server's ``Retry-After`` up to 300 s).
        min_rsa_bits: reject a TSA certificate whose key is not RSA of at least this size (NuGet: 2048).
        sleep: waits between attempts (tests); default :func:`time.sleep`.
        total_timeout: seconds each URL may take in all, attempts and waits included; default
            ``PPMI_TIMESTAMP_TIMEOUT`` (:func:`total_timeout_from_env`, 60 s).
        progress_after: seconds without an answer from a URL after which one WARNING record on :data:`log`
            names it (at most once per URL).
    Returns:
        The TimeStampToken, an :class:`asn1crypto.cms.ContentInfo` (signedData over TSTInfo).
    Raises:
        BadInput: no URL given or an unsupported digest. ConfigError: a bad ``PPMI_TIMESTAMP_TIMEOUT``.
        TimestampError (exit 3): every URL failed; the message lists each URL and why (a URL that used up
            its total time: "no answer within N s"), and the fix.
    """
    import httpx

    from ..errors import TransportFailure
    from ..http.client import new_client
    from ..http.retry import RetryPolicy

    name = _digest_name(digest)
    if not urls:
        raise BadInput("no timestamp URL given; pass --timestamp-url URL")
    policy = RetryPolicy(max_retries=max(0, retries), backoff_base=0.5, backoff_max=4.0, timeout=timeout,
                         connect_timeout=timeout)
    if sleep is not None:
        policy.sleep = sleep
    statuses = frozenset(range(500, 600)) | {429}  # any 5xx from a TSA: the next attempt may work
    total = total_timeout_from_env() if total_timeout is None else total_timeout
    wait = policy.sleep
    failures: list[str] = []
    expired = False
    with new_client(timeout=timeout, connect_timeout=timeout, follow_redirects=True) as client:
        for url in urls:
            sent: list[int] = []  # nonce of the last request
            deadline = time.monotonic() + total

            def left(deadline: float = deadline) -> float:
                return deadline - time.monotonic()

            def send(url: str = url, sent: list[int] = sent, left: Callable[[], float] = left) -> httpx.Response:
                remaining = left()
                if remaining <= 0:
                    raise _Expired
                query, nonce = build_request(signature, name)
                sent.append(nonce)
                per = min(timeout, remaining)
                with client.stream("POST", url, content=query, timeout=httpx.Timeout(per, connect=per),
                                   headers={"Content-Type": "application/timestamp-query"}) as r:
                    body = _read_capped(r) if r.status_code == 200 else b""
                return httpx.Response(r.status_code, headers=r.headers, content=body, request=r.request)

            def capped(seconds: float, left: Callable[[], float] = left) -> None:  # no wait beyond the deadline
                wait(max(0.0, min(seconds, left())))

            policy.sleep = capped
            notice = threading.Timer(progress_after, log.warning, args=(
                "waiting for the timestamp server %s (no answer for %.0f s; gives up after %.0f s, %s)",
                redact_url(url), progress_after, total, TOTAL_TIMEOUT_ENV))
            notice.daemon = True
            notice.start()
            try:
                out = policy.run(send, statuses=statuses)
            except _Expired:
                reason, expired = f"no answer within {total:g} s", True
            except _TooLarge:
                reason = f"the response is larger than {MAX_RESPONSE_BYTES} bytes (not a timestamp reply)"
            except httpx.InvalidURL:
                reason = "not a valid URL"
            except TransportFailure as e:
                if e.reason == "UnsupportedProtocol":
                    reason = "not an http(s) URL"
                elif "Timeout" in e.reason and left() <= 0.05:
                    reason, expired = f"no answer within {total:g} s", True
                else:
                    reason = f"{e.reason}: {e.detail}" if e.detail else e.reason
            else:
                r = out.response
                if r.status_code != 200:
                    reason = f"HTTP {r.status_code}"
                    if out.gave_up == "retry-after":
                        reason += f" (asked to wait {out.retry_after:.0f} s)"
                else:
                    try:
                        return _parse_response(r.content, signature, sent[-1], name, min_rsa_bits)
                    except _Rejected as e:
                        reason = str(e)
            finally:
                notice.cancel()
            failures.append(f"{redact_url(url)}: {reason.replace(url, redact_url(url))}")
    if expired and len(failures) == 1:
        raise TimestampError(f"the timestamp server {redact_url(urls[0])} gave no answer within {total:g} s "
                             f"({TOTAL_TIMEOUT_ENV}); give another --timestamp-url, or a larger "
                             f"{TOTAL_TIMEOUT_ENV} (seconds)")
    fix = "check the --timestamp-url values or add a fallback URL"
    if expired:
        fix += f", or give slow servers a larger {TOTAL_TIMEOUT_ENV} (seconds)"
    raise TimestampError("timestamping failed at every server (" + "; ".join(failures) + "); " + fix)


def inspect_timestamp(
    token: acms.ContentInfo,
    signature: bytes,
    trusted_roots: list[x509.Certificate] | None,
) -> TimestampInfo:
    """Check an embedded TimeStampToken against the signature it counter-signs.

    Checks the same things as :func:`request_timestamp` except the nonce; with ``trusted_roots``
    also that the TSA certificate chains to one of them (timeStamping EKU, validity at genTime;
    intermediates taken from the token). ``trusted_roots=None`` skips the chain check.

    Returns:
        :class:`TimestampInfo`; ``problems`` is empty when everything checks out.
    """
    problems: list[Problem] = []
    gen_time = None
    tsa_cert = None
    try:
        info = _tst_info(token)
        gen_time = info["gen_time"].native
        tsa_cert = cms.find_signer_certificate(token["content"], token["content"]["signer_infos"][0])
    except Exception as e:
        problems.append(Problem("NU3029", f"timestamp: the token cannot be parsed ({e})"))
        return TimestampInfo(gen_time, tsa_cert, problems)
    try:
        _check_token(token, signature, nonce=None, digest=None, min_rsa_bits=None)
    except _Rejected as e:
        problems.append(Problem(e.code, f"timestamp: {e}"))
    if trusted_roots is not None and tsa_cert is not None and not problems:
        from .chain import TIME_STAMPING, ChainError, verify_chain

        others = [c for c in cms.certificates_of(token["content"]) if c != tsa_cert]
        try:
            verify_chain(tsa_cert, others, trusted_roots, eku=TIME_STAMPING, at=gen_time)
        except ChainError as e:
            problems.append(Problem("NU3028", f"timestamp: the TSA certificate is not trusted: {e}"))
    return TimestampInfo(gen_time, tsa_cert, problems)


def token_attribute(token: acms.ContentInfo, oid: str = RFC3161_COUNTERSIGN_OID) -> acms.CMSAttribute:
    """The unsigned attribute that carries ``token`` (Authenticode by default; pass
    :data:`SIGNATURE_TIME_STAMP_TOKEN_OID` for CMS/NuGet)."""
    return cms.attribute(oid, cms.der(token))
