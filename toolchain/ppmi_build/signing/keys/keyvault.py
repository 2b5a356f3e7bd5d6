"""A signing key in Azure Key Vault, named by ``keyvault:https://VAULT.vault.azure.net/certificates/NAME[/VERSION]``.

The key never leaves the vault (production-keys §2(a)):

* **certificate**: ``GET {vault}/certificates/NAME[/VERSION]?api-version=7.4`` returns ``cer`` (standard base64 of
  the DER leaf certificate, *leaf only*), ``kid`` (the key that signs, ``{vault}/keys/NAME/VERSION``) and
  ``policy.key_props.kty``;
* **intermediates**: the certificates of ``--cert-chain FILE``; without that file, best effort, the leaf's AIA
  ``caIssuers`` URL (RFC 5280 §4.2.2.1) and the issuers' own AIA URLs, each fetched once with a short timeout
  (:data:`AIA_TIMEOUT_S`), never required: when none is reachable the signature carries the leaf alone, which
  verifiers that have the intermediate (or fetch it themselves, as Windows does) accept;
* **signature**: ``POST {vault}/keys/NAME/VERSION/sign?api-version=7.4`` with ``{"alg": "RS256"|"RS384"|"RS512",
  "value": base64url(digest)}`` -> ``{"kid", "value": base64url(signature)}``: RSASSA-PKCS1-v1_5 over the
  digest, the vault adding the DigestInfo (Key Vault REST "Sign"). Each signature is verified against the leaf's
  public key before it is used, so a certificate whose key is not the one that signed is one clear error, never
  an invalid file.

The key is the one the certificate's ``kid`` names, always on the vault of the URI: only the key name and version
are taken from ``kid``, so the token is never sent to another host. Authenticode and NuGet signing here need RSA
(production-keys §1 "RSA only"); an EC key is refused before anything is signed.

HTTP goes through :mod:`ppmi_build.http`: https, or http to a loopback host (the emulator:
``keyvault:http://127.0.0.1:PORT/certificates/NAME``); each request has the connect timeout and
``PPMI_HTTP_TIMEOUT``; 429, 5xx and transport errors are retried by :class:`~ppmi_build.http.RetryPolicy`
(``Retry-After`` honoured up to ``PPMI_HTTP_MAX_RETRY_AFTER``). Tokens come from
:mod:`ppmi_build.http.tokens` for scope :data:`~ppmi_build.http.tokens.KEY_VAULT_SCOPE`: ``PPMI_ACCESS_TOKEN``
when set (tests, the emulator), else azure-identity (``PPMI_AUTH``). A token never appears in a message.

Errors (one line each; the file being signed is untouched because nothing is written before the signature):

* 401 -> :class:`~ppmi_build.errors.AuthError` (exit 3): the token was refused;
* 403 -> :class:`~ppmi_build.errors.AuthError` (exit 3) naming the missing role: ``Key Vault Certificate User``
  for ``certificates/get``, ``Key Vault Crypto User`` for ``keys/sign`` (production-keys §2(a) "Auth");
* 404 -> :class:`~ppmi_build.errors.KeyUriError` (exit 2) naming the certificate (and version) or key;
* 429 still refused after the retries, or a ``Retry-After`` beyond the cap, 5xx after the retries, connection
  failures -> :class:`~ppmi_build.errors.ServiceError` (exit 3);
* a non-RSA key or certificate, a signature that does not verify with the certificate ->
  :class:`~ppmi_build.errors.CertificateError` (exit 2).

One :class:`KeyVaultKey` serves a batch signed from several threads: the httpx client is thread-safe and the
token is fetched once under a lock. :attr:`KeyVaultKey.concurrency` is the number of signing requests a batch
should keep in flight against the vault.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ...errors import AuthError, CertificateError, KeyUriError, ServiceError, TransportFailure, redact
from ...http.client import check_url, new_client, redact_url
from ...http.retry import RetryEvent, RetryPolicy, attempts_text
from ...http.tokens import KEY_VAULT_SCOPE, static_token, token_provider
from .uri import KeyVaultUri

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("ppmi_build.signing.keyvault")

#: Key Vault data-plane REST API version used for every call (Key Vault REST reference, 7.4 GA).
API_VERSION = "7.4"
#: digest algorithm -> Key Vault ``JsonWebKeySignatureAlgorithm`` (RSASSA-PKCS1-v1_5, RFC 7518 §3.3)
SIGN_ALGORITHMS = {"sha256": "RS256", "sha384": "RS384", "sha512": "RS512"}
#: Azure built-in role for ``keys/sign`` (Key Vault RBAC guide; production-keys §2(a) "Auth")
CRYPTO_ROLE = "Key Vault Crypto User"
#: Azure built-in role for ``certificates/get``
CERTIFICATE_ROLE = "Key Vault Certificate User"
#: seconds one AIA ``caIssuers`` fetch may take (connect and read); the fetch is best effort
AIA_TIMEOUT_S = 5.0
#: at most this many issuers are followed through AIA URLs
AIA_MAX_DEPTH = 4
#: signing requests a batch keeps in flight against one vault (the default the batch signer is asked to use)
DEFAULT_CONCURRENCY = 4

TokenGetter = Callable[[], str]


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2 ``Base64url Encoding``, as Key Vault's JSON Web Key fields use)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url` (padding optional). Raises ValueError on characters outside the alphabet."""
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _error_text(resp: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from a Key Vault error body ``{"error": {"code", "message", "innererror"}}``."""
    try:
        body = resp.json()
    except (ValueError, json.JSONDecodeError):
        return None, " ".join(resp.text.split())[:200]
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None, ""
    code = err.get("code")
    inner = err.get("innererror")
    if isinstance(inner, dict) and inner.get("code"):
        code = f"{code}/{inner['code']}" if code else inner["code"]
    return (str(code) if code else None), " ".join(str(err.get("message") or "").split())[:300]


class _Token:
    """The bearer token for :data:`KEY_VAULT_SCOPE`, fetched once (thread-safe)."""

    def __init__(self, environ: Mapping[str, str] | None, getter: TokenGetter | None):
        self._environ = environ
        self._getter = getter
        self._provider: Any = None
        self._static: str | None = None
        self._lock = threading.Lock()
        self.value: str | None = None  # the last token handed out, for redaction

    def __call__(self) -> str:
        with self._lock:
            if self._getter is not None:
                self.value = self._getter()
                return self.value
            if self._static is None and self._provider is None:
                self._static = static_token("keyvault", self._environ)
                if not self._static:
                    base = KEY_VAULT_SCOPE[: -len("/.default")]
                    self._provider = token_provider(base, environ=self._environ)
            self.value = self._static or self._provider.token()
            return self.value


class KeyVaultKey:
    """A :class:`~ppmi_build.signing.keys.KeySource` whose private key is a Key Vault key. Use :func:`open_key`.

    Attributes:
        uri: the parsed URI.
        key_url: ``{vault}/keys/NAME/VERSION``, the key that signs.
        concurrency: signing requests a batch should keep in flight (:data:`DEFAULT_CONCURRENCY`).
    """

    concurrency = DEFAULT_CONCURRENCY

    def __init__(self, uri: KeyVaultUri, *, chain: list[x509.Certificate], key_url: str, session: _Session):
        self.uri = uri
        self.key_url = key_url
        self._chain = chain
        self._session = session

    @property
    def description(self) -> str:
        return self.uri.text

    @property
    def certificate(self) -> x509.Certificate:
        return self._chain[0]

    def certificate_chain(self) -> list[x509.Certificate]:
        return list(self._chain)

    def sign_digest(self, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        """RSASSA-PKCS1-v1_5 signature (key size / 8 bytes) of ``digest`` made by the vault, verified here against
        the certificate's public key.

        Raises:
            ValueError: an algorithm other than SHA-256/384/512 or a digest of the wrong length.
            AuthError / ServiceError (exit 3): the vault refused or failed (see the module docstring).
            KeyUriError (exit 2): the key does not exist. CertificateError (exit 2): the signature does not
                verify with the certificate (the certificate and the key do not belong together).
        """
        alg = SIGN_ALGORITHMS.get(algorithm.name)
        if alg is None:
            raise ValueError(f"Key Vault signing here takes sha256, sha384 or sha512, not {algorithm.name}")
        if len(digest) != algorithm.digest_size:
            raise ValueError(f"a {algorithm.name} digest is {algorithm.digest_size} bytes, not {len(digest)}")
        url = f"{self.key_url}/sign"
        resp = self._session.send("POST", url, "keys/sign", json_body={"alg": alg, "value": b64url(digest)})
        if resp.status_code != 200:
            raise self._session.fail("POST", url, resp, "keys/sign", self._what_key())
        try:
            signature = b64url_decode(str(resp.json()["value"]))
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            raise ServiceError(f"Key Vault POST {self._session.safe(url)} answered 200 without a base64url "
                               "'value'; check that the vault URL points at Key Vault", status=200) from None
        public = self.certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey):  # checked when opened; kept for the type checker
            raise CertificateError(f"the certificate of {self.uri.text} has no RSA key")
        try:
            public.verify(signature, digest, padding.PKCS1v15(), Prehashed(algorithm))
        except InvalidSignature:
            raise CertificateError(
                f"the signature Key Vault made with {self.key_url} does not verify with the public key of "
                f"certificate {self.uri.name} ({self.certificate.subject.rfc4514_string()}): the key and the "
                f"certificate do not belong together; point {self.uri.text} at the certificate whose kid is this key"
            ) from None
        return signature

    def _what_key(self) -> str:
        path = urlsplit(self.key_url).path
        return f"key {path.split('/keys/', 1)[-1]} (the kid of certificate {self.uri.name})"

    def close(self) -> None:
        """Close the HTTP connections (idempotent)."""
        self._session.close()

    def __repr__(self) -> str:
        return f"<KeyVaultKey {self.uri.text}>"


class _Session:
    """The httpx client, retry policy and token of one vault, with Key Vault's error messages."""

    def __init__(self, vault_url: str, token: _Token, client: httpx.Client | None, retry: RetryPolicy):
        self.vault_url = vault_url
        self.token = token
        self.retry = retry
        self._client = client or new_client(timeout=retry.timeout, connect_timeout=retry.connect_timeout)
        self._own = client is None

    def close(self) -> None:
        if self._own:
            self._client.close()

    def safe(self, url: str) -> str:
        return redact(redact_url(url.split("?", 1)[0]), self.token.value)

    def send(self, method: str, url: str, action: str, *, json_body: Any = None) -> httpx.Response:
        """Send with retries (429/5xx/transport); return the final response of any status.

        Raises:
            ServiceError (exit 3): connection failures after the retries; a 429/503 whose ``Retry-After`` is
                longer than the policy's cap; 429 or 5xx after the retries.
        """

        def request() -> httpx.Response:
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            return self._client.request(method, url, params={"api-version": API_VERSION}, json=json_body,
                                        headers=headers)

        def note(event: RetryEvent) -> None:
            log.info("%s", event.describe(f"Key Vault {action}"))

        try:
            out = self.retry.run(request, on_retry=note)
        except TransportFailure as e:
            raise ServiceError(f"Key Vault {method} {self.safe(url)} failed after {attempts_text(e.attempts)}: "
                               f"{e.reason}; check that {self.vault_url} is reachable (PPMI_HTTP_TIMEOUT bounds each "
                               "request)", status=None) from None
        resp = out.response
        if out.gave_up == "retry-after":
            raise ServiceError(
                f"Key Vault {action} ({method} {self.safe(url)}) answered {resp.status_code} and asked to wait "
                f"{out.retry_after:.0f} s, more than {self.retry.max_retry_after:.0f} s (PPMI_HTTP_MAX_RETRY_AFTER); "
                "run again later or sign fewer files at once", status=resp.status_code)
        if out.gave_up == "retries":
            code, message = _error_text(resp)
            detail = f" {code}" if code else ""
            if resp.status_code == 429:
                raise ServiceError(
                    f"Key Vault {action} ({method} {self.safe(url)}) was throttled (429{detail}) on all "
                    f"{attempts_text(out.attempts)}; Key Vault limits requests per vault: run again later or sign "
                    "fewer files at once", status=429, code=code)
            raise ServiceError(
                f"Key Vault {action} ({method} {self.safe(url)}) answered {resp.status_code}{detail} on all "
                f"{attempts_text(out.attempts)}: {redact(message, self.token.value) or 'no error message'}; the "
                "service failed, run again later", status=resp.status_code, code=code)
        return resp

    def fail(self, method: str, url: str, resp: httpx.Response, action: str, what: str) -> Exception:
        """The error for a final non-success answer of ``action`` (``certificates/get`` or ``keys/sign``)."""
        code, message = _error_text(resp)
        message = redact(message, self.token.value)
        status = resp.status_code
        head = f"Key Vault {action} ({method} {self.safe(url)}) answered {status}" + (f" {code}" if code else "")
        if status == 401:
            return AuthError(f"{head}: the access token was refused; check PPMI_ACCESS_TOKEN or the PPMI_AUTH "
                             f"credentials and that the token is for {KEY_VAULT_SCOPE}", status=401, code=code)
        if status == 403:
            role = CERTIFICATE_ROLE if action.startswith("certificates") else CRYPTO_ROLE
            permission = "certificates get" if action.startswith("certificates") else "keys sign"
            return AuthError(f"{head}: the identity is not allowed {action} on {self.vault_url}; "
                             f"assign it the '{role}' role on the vault (or the '{permission}' permission in an "
                             "access-policy vault)", status=403, code=code)
        if status == 404:
            return KeyUriError(f"{head}: {what} was not found in {self.vault_url}; check the certificate name "
                               "and version in the keyvault: URI (az keyvault certificate list --vault-name VAULT)",
                               code=code)
        tail = f": {message}" if message else ""
        if 400 <= status < 500:
            return ServiceError(f"{head}{tail} ({what})", status=status, code=code, exit_code=3)
        return ServiceError(f"{head}{tail} ({what}); the service failed, run again later", status=status, code=code)


def _key_url(vault_url: str, kid: Any, uri: KeyVaultUri) -> str:
    """``{vault}/keys/NAME/VERSION`` from the certificate's ``kid``, on the vault of the URI (never another host)."""
    path = urlsplit(str(kid or "")).path
    parts = [p for p in path.split("/") if p]
    if len(parts) == 3 and parts[0] == "keys":
        return f"{vault_url}/keys/{quote(parts[1], safe='')}/{quote(parts[2], safe='')}"
    if uri.version:
        return f"{vault_url}/keys/{uri.name}/{uri.version}"
    raise ServiceError(f"Key Vault certificate {uri.name} has no key id (kid) with a version; check that "
                       f"{uri.text} names a Key Vault certificate", status=200)


def _check_rsa(uri: KeyVaultUri, cert: x509.Certificate, kty: Any) -> None:
    if kty is not None and not str(kty).upper().startswith("RSA"):
        raise CertificateError(f"the key of {uri.text} is {kty}; Authenticode/NuGet signing here needs an RSA key "
                               "(RSA or RSA-HSM, >= 2048 bits): create the certificate with an RSA key policy")
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise CertificateError(f"the certificate of {uri.text} has a {type(cert.public_key()).__name__} key; "
                               "Authenticode/NuGet signing here needs RSA (>= 2048 bits)")


def _load_issuer(data: bytes) -> list[x509.Certificate]:
    """Certificates in an AIA ``caIssuers`` answer: DER, PEM or a certs-only PKCS#7 (``.p7c``, RFC 5280 §4.2.2.1)."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    for load in (lambda d: [x509.load_der_x509_certificate(d)], x509.load_pem_x509_certificates,
                 pkcs7.load_der_pkcs7_certificates, pkcs7.load_pem_pkcs7_certificates):
        try:
            return list(load(data))
        except (ValueError, TypeError):
            continue
    return []


def aia_issuers(leaf: x509.Certificate, *, client: httpx.Client | None = None,
                timeout: float = AIA_TIMEOUT_S) -> list[x509.Certificate]:
    """The issuers of ``leaf`` fetched through ``caIssuers`` URLs of the Authority Information Access extension
    (RFC 5280 §4.2.2.1), nearest first, self-signed roots left out. Best effort: an unreachable URL, an answer that
    is not a certificate or one that did not issue the certificate ends the walk; nothing is raised.

    Args:
        client: an httpx client (tests); default a new one with ``timeout``. No token is sent.
        timeout: seconds per fetch (connect and read).
    """
    import httpx

    own = client is None
    http = client or new_client(timeout=timeout, connect_timeout=timeout, follow_redirects=True)
    chain: list[x509.Certificate] = []
    current = leaf
    try:
        for _ in range(AIA_MAX_DEPTH):
            try:
                aia = current.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            except x509.ExtensionNotFound:
                break
            urls = [d.access_location.value for d in aia
                    if d.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS
                    and isinstance(d.access_location, x509.UniformResourceIdentifier)
                    and str(d.access_location.value).lower().startswith(("http://", "https://"))]
            issuer = None
            for url in urls:
                try:
                    resp = http.get(url, timeout=timeout)
                except (httpx.HTTPError, ValueError) as e:
                    log.info("AIA %s: %s", redact_url(url), type(e).__name__)
                    continue
                if resp.status_code != 200:
                    continue
                for cand in _load_issuer(resp.content):
                    try:
                        current.verify_directly_issued_by(cand)
                    except (ValueError, TypeError, InvalidSignature):
                        continue
                    issuer = cand
                    break
                if issuer is not None:
                    break
            if issuer is None or issuer.subject == issuer.issuer:
                break
            chain.append(issuer)
            current = issuer
    finally:
        if own:
            http.close()
    return chain


def open_key(uri: KeyVaultUri, *, cert_chain: list[x509.Certificate] | None = None,
             environ: Mapping[str, str] | None = None, client: httpx.Client | None = None,
             retry: RetryPolicy | None = None, token_getter: TokenGetter | None = None,
             fetch_aia: bool = True) -> KeyVaultKey:
    """Read the certificate (and its key id) from the vault, and the chain.

    Args:
        uri: the parsed ``keyvault:`` URI (https, or http to a loopback emulator).
        cert_chain: intermediates (``--cert-chain FILE``); when given, no AIA URL is fetched.
        environ: the environment for tokens and ``PPMI_HTTP_*`` (default ``os.environ``).
        client: an httpx client (tests); default :func:`ppmi_build.http.new_client`.
        retry: default :meth:`RetryPolicy.from_env`.
        token_getter: ``() -> token`` (tests); default ``PPMI_ACCESS_TOKEN``, else azure-identity.
        fetch_aia: try the AIA ``caIssuers`` URLs when ``cert_chain`` is not given.
    Returns:
        :class:`KeyVaultKey`, chain leaf first.
    Raises:
        ConfigError (exit 2): a vault URL that is plain http to a non-loopback host; no credentials.
        AuthError / ServiceError (exit 3), KeyUriError / CertificateError (exit 2): see the module docstring.
    """
    env = os.environ if environ is None else environ
    vault_url = check_url(uri.vault_url, what="Key Vault URL")
    retry = retry or RetryPolicy.from_env(env)
    session = _Session(vault_url, _Token(env, token_getter), client, retry)
    try:
        path = f"certificates/{uri.name}" + (f"/{uri.version}" if uri.version else "")
        url = f"{vault_url}/{path}"
        what = f"certificate {uri.name}" + (f" version {uri.version}" if uri.version else "")
        resp = session.send("GET", url, "certificates/get")
        if resp.status_code != 200:
            raise session.fail("GET", url, resp, "certificates/get", what)
        try:
            body = resp.json()
            leaf = x509.load_der_x509_certificate(base64.b64decode(body["cer"], validate=True))
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            raise ServiceError(f"Key Vault GET {session.safe(url)} answered 200 without a DER certificate in 'cer'; "
                               f"check that {uri.text} names a Key Vault certificate (not a key or secret)",
                               status=200) from None
        kty = ((body.get("policy") or {}).get("key_props") or {}).get("kty") if isinstance(body, dict) else None
        _check_rsa(uri, leaf, kty)
        key_url = _key_url(vault_url, body.get("kid"), uri)
        if cert_chain:
            rest = [c for c in cert_chain if c != leaf]
        elif fetch_aia:
            rest = aia_issuers(leaf)
        else:
            rest = []
        return KeyVaultKey(uri, chain=[leaf, *rest], key_url=key_url, session=session)
    except BaseException:
        session.close()
        raise
