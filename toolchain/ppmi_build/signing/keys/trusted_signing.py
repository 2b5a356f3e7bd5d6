"""A signing key in Azure Trusted Signing (Artifact Signing), named by
``trustedsigning:https://REGION.codesigning.azure.net/ACCOUNT/PROFILE`` (production-keys §2(b)).

Protocol (production-keys §2(b); jsign ``AzureTrustedSigningService``, dotnet/sign ``Azure.CodeSigning.Sdk``):

1. ``POST {endpoint}/codesigningaccounts/{account}/certificateprofiles/{profile}/sign?api-version=2022-06-15-preview``
   with ``{"signatureAlgorithm": "RS256", "digest": "<base64 digest>"}`` -> ``202 {"operationId", "status":
   "InProgress"}``;
2. ``GET …/sign/{operationId}?api-version=…`` every :data:`POLL_INTERVAL_DEFAULT` seconds
   (``PPMI_TRUSTED_SIGNING_POLL_INTERVAL``) until ``status`` is ``Succeeded``; ``Failed``, ``TimedOut`` and
   ``NotFound`` end the operation with an error, and one still ``InProgress`` after
   :data:`TIMEOUT_DEFAULT` seconds (``PPMI_TRUSTED_SIGNING_TIMEOUT``) is given up (exit 3);
3. the result holds ``signature`` (base64 RSASSA-PKCS1-v1_5) and ``signingCertificate``: base64 of the base64
   text (CRLF lines) of a PKCS#7 certs-only ``SignedData`` holding the chain of the certificate that signed.

**The leaf changes every day** (certificates "are renewed daily and are valid for only 72 hours") and the issuing
CA can differ between two calls (``Microsoft ID Verified CS EOC CA 0n`` / ``AOC CA 0n``). So the chain to embed is
the one returned *with the signature*, and the signature is checked against that operation's leaf here.
:meth:`TrustedSigningKey.sign_digest_with_chain` gives both, and the CMS builder
(:func:`ppmi_build.signing.cms.build_signed_data`) uses it: the SignerInfo's signer and the embedded certificates
come from the operation that made the signature. It asks twice for the leaf the caller read (a service alternating
issuing CAs comes back to it), then takes the service's current leaf, building attributes that name the leaf
(NuGet's signing-certificate-v2) again for it (bounded: ``cms.LEAF_ATTEMPTS`` operations).
:meth:`TrustedSigningKey.certificate_chain` (what a caller reads before or after signing: certificate checks, the
post-sign check that the output is signed by "the key's" leaf) is the chain of the latest operation of the calling
thread, else of the latest operation of this key source, else of a probe operation over a fixed digest (as jsign
does); so after a signature, the thread that made it sees the chain it embedded. :meth:`TrustedSigningKey.sign_digest`
(the plain :class:`~ppmi_build.signing.keys.KeySource` method, for a caller that embeds the chain it read before)
makes one operation and refuses, with one line, a signature by another leaf than the one that caller saw.

A 72-hour certificate cannot verify a signature once it expires unless an RFC 3161 timestamp proves the signing
time, so :attr:`TrustedSigningKey.requires_timestamp` is True: callers refuse ``--no-timestamp`` with this source.

Authentication: a bearer token for :data:`~ppmi_build.http.tokens.TRUSTED_SIGNING_SCOPE` from
``PPMI_ACCESS_TOKEN`` or azure-identity (:func:`ppmi_build.http.tokens.default_token_getter`); 403 names the
role ``Artifact Signing Certificate Profile Signer``. 429 and 5xx are retried by the one
:class:`~ppmi_build.http.RetryPolicy` (``Retry-After`` honoured), then one line, exit 3. Tokens never appear in
messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ...errors import (
    AuthError,
    ConfigError,
    ServiceError,
    SignatureInvalid,
    SigningCertificateChanged,
    TransportFailure,
    redact,
)
from .uri import TrustedSigningUri

#: the data-plane API version every published client uses (jsign, Azure.CodeSigning.Sdk; production-keys §2(b))
API_VERSION = "2022-06-15-preview"
#: the Azure RBAC role a principal needs to sign with a certificate profile (dotnet/sign docs)
SIGNER_ROLE = "Artifact Signing Certificate Profile Signer"
#: seconds between two polls of an operation (``PPMI_TRUSTED_SIGNING_POLL_INTERVAL``)
POLL_INTERVAL_DEFAULT = 1.0
POLL_INTERVAL_ENV = "PPMI_TRUSTED_SIGNING_POLL_INTERVAL"
#: seconds an operation may stay ``InProgress`` before it is given up (``PPMI_TRUSTED_SIGNING_TIMEOUT``)
TIMEOUT_DEFAULT = 300.0
TIMEOUT_ENV = "PPMI_TRUSTED_SIGNING_TIMEOUT"
#: hash algorithm name -> ``signatureAlgorithm`` (RSASSA-PKCS1-v1_5, RFC 7518 §3.3 names)
ALGORITHMS = {"sha256": "RS256", "sha384": "RS384", "sha512": "RS512"}
#: operation states (production-keys §2(b)); anything else is treated as still running
TERMINAL_FAILURES = {"Failed", "TimedOut", "NotFound"}
#: the digest of the probe operation made when a chain is asked for before anything was signed
PROBE_DIGEST = hashlib.sha256(b"ppmi-build trusted signing certificate probe").digest()


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    from ...http.client import env_number

    value = env_number(env, name, default)
    if value <= 0:
        raise ConfigError(f"{name}={env.get(name)!r} must be a number of seconds above 0")
    return value


def decode_signing_certificate(value: str) -> list[x509.Certificate]:
    """The certificates of a ``signingCertificate`` value, leaf first.

    ``value`` is base64 of the base64 text of a DER PKCS#7 (production-keys §2(b)); a value that is base64 of the
    DER itself, or of PEM, is accepted too.

    Raises:
        ValueError: not base64, not PKCS#7, or no certificates.
    """
    from cryptography.hazmat.primitives.serialization import pkcs7

    try:
        once = base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("signingCertificate is not base64") from None
    if once.lstrip().startswith(b"-----BEGIN"):
        certs = pkcs7.load_pem_pkcs7_certificates(once)
    else:
        der = once
        if not once.startswith(b"\x30"):
            try:
                der = base64.b64decode(b"".join(once.split()), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("signingCertificate does not decode (twice) to a DER PKCS#7") from None
        certs = pkcs7.load_der_pkcs7_certificates(der)
    if not certs:
        raise ValueError("the PKCS#7 of signingCertificate holds no certificate")
    return order_chain(list(certs))


def order_chain(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """``certs`` leaf first, then each issuer (a PKCS#7 ``SET OF`` has no order). The leaf is the certificate
    that issues none of the others; certificates outside its issuer chain follow at the end."""
    subjects = {c.issuer for c in certs if c.issuer != c.subject}
    leaves = [c for c in certs if c.subject not in subjects] or certs[:1]
    chain = [leaves[0]]
    rest = [c for c in certs if c is not leaves[0]]
    while True:
        nxt = next((c for c in rest if c.subject == chain[-1].issuer and chain[-1].issuer != chain[-1].subject),
                   None)
        if nxt is None:
            return chain + rest
        chain.append(nxt)
        rest.remove(nxt)


class TrustedSigningKey:
    """A :class:`~ppmi_build.signing.keys.KeySource` backed by a Trusted Signing certificate profile.

    Use :func:`open_key`. Thread-safe: one HTTP client serves a parallel batch; each thread sees the chain of its
    own latest operation (:meth:`certificate_chain`).

    Attributes:
        requires_timestamp: True: the leaf lives 72 hours, so every signature must be timestamped.
        concurrency: signing requests a batch keeps in flight (4, as Key Vault).
        operations: ``(operationId, leaf)`` of every operation this source completed, in order.
    """

    requires_timestamp = True
    #: signing requests a batch keeps in flight (each is an HTTP round trip plus polling)
    concurrency = 4

    def __init__(self, uri: TrustedSigningUri, *, token: Callable[[], str], extra_chain: list[x509.Certificate],
                 poll_interval: float, timeout: float, transport: Any = None, retry: Any = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        from ...http.client import check_url, new_client
        from ...http.retry import RetryPolicy

        self.uri = uri
        self._endpoint = check_url(uri.endpoint, what="Trusted Signing endpoint")
        self._token = token
        self._extra = list(extra_chain)
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._retry = retry or RetryPolicy.from_env()
        self._client = new_client(timeout=self._retry.timeout, transport=transport)
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: list[x509.Certificate] | None = None  # chain of the latest operation of any thread
        self._thread = threading.local()  # .chain: chain of the latest operation of this thread
        self.operations: list[tuple[str, x509.Certificate]] = []

    # --- KeySource --------------------------------------------------------------------------------------
    @property
    def description(self) -> str:
        return self.uri.text

    @property
    def certificate(self) -> x509.Certificate:
        return self.certificate_chain()[0]

    def certificate_chain(self) -> list[x509.Certificate]:
        """The chain (leaf first) of the latest operation of the calling thread, else of the latest operation of
        this source, else of a probe operation over :data:`PROBE_DIGEST`. Raises as :meth:`sign_digest_with_chain`."""
        mine = getattr(self._thread, "chain", None)
        if mine is not None:
            return list(mine)
        with self._lock:
            latest = self._latest
        if latest is not None:
            return list(latest)
        return self.sign_digest_with_chain(PROBE_DIGEST, hashes.SHA256())[1]

    def sign_digest(self, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        """A signature of ``digest`` by the leaf :meth:`certificate_chain` gave the calling thread (one operation).

        Raises:
            SigningCertificateChanged (exit 3): the operation was answered by another certificate (the profile's
                certificate was renewed, or the service alternates issuing CAs): a caller embedding the chain it
                read before would name the wrong signer; the CMS builder uses :meth:`sign_digest_with_chain`.
            And the errors of :meth:`sign_digest_with_chain`.
        """
        expected = self.certificate_chain()[0]
        signature, chain = self.sign_digest_with_chain(digest, algorithm)
        if chain[0] != expected:
            raise SigningCertificateChanged(
                f"{self.uri.text}: the sign operation was answered by another certificate (serial "
                f"{chain[0].serial_number:x}) than the one read before (serial {expected.serial_number:x}); the "
                "profile's certificate changed meanwhile: run the command again")
        return signature

    def sign_digest_with_chain(self, digest: bytes, algorithm: hashes.HashAlgorithm
                               ) -> tuple[bytes, list[x509.Certificate]]:
        """One sign operation: ``(signature, chain of that operation, leaf first)``; the signature is checked
        against that leaf.

        Raises:
            ValueError: an algorithm other than SHA-256/384/512 or a digest of the wrong length.
            AuthError (exit 3): 401 / 403 (names :data:`SIGNER_ROLE`).
            ServiceError (exit 3; exit 2 for an unknown account or profile): 429/5xx after retries, an operation
                ``Failed``/``TimedOut``/``NotFound`` or still ``InProgress`` after :attr:`timeout`, an answer
                that cannot be read.
            SignatureInvalid (exit 1): the signature does not verify against the operation's leaf.
        """
        name = ALGORITHMS.get(algorithm.name)
        if name is None:
            raise ValueError(f"Trusted Signing signs sha256/sha384/sha512 digests, not {algorithm.name}")
        if len(digest) != algorithm.digest_size:
            raise ValueError(f"a {algorithm.name} digest is {algorithm.digest_size} bytes, not {len(digest)}")
        body = {"signatureAlgorithm": name, "digest": base64.b64encode(digest).decode("ascii")}
        base = f"{self._endpoint}/codesigningaccounts/{self.uri.account}/certificateprofiles/{self.uri.profile}/sign"
        response = self._send("POST", base, json=body)
        if response.status_code not in (200, 202):
            raise self._error(response, "POST …/sign")
        doc = self._json(response, "POST …/sign")
        operation = str(doc.get("operationId") or "")
        if not operation:
            raise ServiceError(f"{self.uri.text}: the sign answer has no operationId; check the endpoint URL")
        started = self._clock()
        while doc.get("status") != "Succeeded":
            status = str(doc.get("status") or "")
            if status in TERMINAL_FAILURES:
                detail = _error_text(doc)
                raise ServiceError(f"{self.uri.text}: sign operation {operation} ended {status}"
                                   + (f" ({redact(detail)})" if detail else "")
                                   + "; run again, and check the profile in the Azure portal if it persists")
            if self._clock() - started >= self.timeout:
                raise ServiceError(f"{self.uri.text}: sign operation {operation} still {status or 'InProgress'} "
                                   f"after {self.timeout:g} s; run again later or raise {TIMEOUT_ENV}")
            self._sleep(self.poll_interval)
            response = self._send("GET", f"{base}/{operation}")
            if response.status_code != 200:
                raise self._error(response, f"GET …/sign/{operation}")
            doc = self._json(response, f"GET …/sign/{operation}")
        try:
            signature = base64.b64decode(str(doc["signature"]), validate=True)
            chain = decode_signing_certificate(str(doc["signingCertificate"]))
        except (KeyError, ValueError, binascii.Error) as e:
            raise ServiceError(f"{self.uri.text}: sign operation {operation} succeeded without a readable "
                               f"signature and signingCertificate ({e}); report it to the service") from None
        leaf = chain[0]
        public = leaf.public_key()
        try:
            if not isinstance(public, rsa.RSAPublicKey):
                raise InvalidSignature
            public.verify(signature, digest, padding.PKCS1v15(), Prehashed(algorithm))
        except InvalidSignature:
            raise SignatureInvalid(f"{self.uri.text}: the signature of operation {operation} does not verify "
                                   f"against its own certificate (serial {leaf.serial_number:x}); nothing was "
                                   "written; report it to the service") from None
        chain = chain + [c for c in self._extra if c not in chain]
        with self._lock:
            self._latest = list(chain)
            self.operations.append((operation, leaf))
        self._thread.chain = list(chain)
        return signature, chain

    def close(self) -> None:
        self._client.close()

    # --- HTTP -------------------------------------------------------------------------------------------
    def _send(self, method: str, url: str, **kw: Any) -> Any:
        token = self._token()

        def send() -> Any:
            return self._client.request(method, url, params={"api-version": API_VERSION},
                                        headers={"Authorization": f"Bearer {token}"}, **kw)

        try:
            outcome = self._retry.run(send, idempotent=True)
        except TransportFailure as e:
            raise ServiceError(f"{self.uri.text}: cannot reach {self._endpoint} ({e.reason} after "
                               f"{e.attempts} attempt(s)); check the endpoint region and the network") from None
        response = outcome.response
        if outcome.gave_up == "retry-after":
            raise ServiceError(f"{self.uri.text}: HTTP {response.status_code}, the service asked to wait "
                               f"{outcome.retry_after:g} s (more than PPMI_HTTP_MAX_RETRY_AFTER); run again later",
                               status=response.status_code)
        return response

    def _json(self, response: Any, what: str) -> dict[str, Any]:
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ServiceError(f"{self.uri.text}: {what} answered HTTP {response.status_code} without a JSON "
                               "object; check the endpoint URL")
        return doc

    def _error(self, response: Any, what: str) -> ServiceError:
        status = response.status_code
        try:
            detail = _error_text(response.json())
        except ValueError:
            detail = ""
        detail = f" ({redact(detail)})" if detail else ""
        where = f"{self.uri.text}: {what}: HTTP {status}{detail}"
        if status == 401:
            return AuthError(f"{where}; the access token was refused: check PPMI_ACCESS_TOKEN / PPMI_AUTH (scope "
                             "https://codesigning.azure.net/.default)", status=status)
        if status == 403:
            return AuthError(f"{where}; the signing identity lacks the role '{SIGNER_ROLE}' on certificate profile "
                             f"{self.uri.profile}: assign it on the profile or the account", status=status)
        if status == 404:
            return ServiceError(f"{where}; no account {self.uri.account!r} with certificate profile "
                                f"{self.uri.profile!r} at {self._endpoint}: check the region, account and profile "
                                "in the key URI", status=status, exit_code=2)
        if status == 429:
            return ServiceError(f"{where}; throttled after the retries PPMI_HTTP_RETRIES allows: run again later",
                                status=status)
        return ServiceError(f"{where}; the service failed: run again later", status=status)


def _error_text(doc: Any) -> str:
    """``code: message`` from an Azure error body (``{"error": {...}}`` or ``{"errorDetail": {...}}``), or ""."""
    if not isinstance(doc, dict):
        return ""
    err = doc.get("error") or doc.get("errorDetail")
    if isinstance(err, dict):
        parts = [str(err.get(k)) for k in ("code", "message") if err.get(k)]
        return ": ".join(parts)
    return ""


def open_key(uri: TrustedSigningUri, *, cert_chain: list[x509.Certificate] | None = None,
             environ: Mapping[str, str] | None = None, transport: Any = None) -> TrustedSigningKey:
    """A :class:`TrustedSigningKey` for ``uri``. No request is made until a chain or a signature is asked for.

    Args:
        uri: the parsed ``trustedsigning:`` URI.
        cert_chain: certificates appended after the chain each operation returns (``--cert-chain FILE``).
        environ: the environment for tokens and ``PPMI_TRUSTED_SIGNING_*`` / ``PPMI_HTTP_*`` (default
            ``os.environ``).
        transport: an httpx transport (tests).
    Raises:
        ConfigError (exit 2): an http:// endpoint that is not loopback, a bad poll interval or timeout.
    """
    from ...http.retry import RetryPolicy
    from ...http.tokens import TRUSTED_SIGNING_SCOPE, default_token_getter

    env = os.environ if environ is None else environ
    getter = default_token_getter("trustedsigning", env)
    return TrustedSigningKey(uri, token=lambda: getter(TRUSTED_SIGNING_SCOPE), extra_chain=list(cert_chain or []),
                             poll_interval=_number(env, POLL_INTERVAL_ENV, POLL_INTERVAL_DEFAULT),
                             timeout=_number(env, TIMEOUT_ENV, TIMEOUT_DEFAULT), transport=transport,
                             retry=RetryPolicy.from_env(env))
