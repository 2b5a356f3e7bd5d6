"""The Key Vault key source against a scripted transport (httpx.MockTransport): the key it signs with stays on the
vault of the URI, AIA fetching is best effort, the token never reaches a message, and one source serves threads.

Signatures are made in the test with the test PKI's key (RSASSA-PKCS1-v1_5, as Key Vault's RS256 does) and the
expected request bodies follow the Key Vault REST "Sign" reference (production-keys §2(a))."""

from __future__ import annotations

import base64
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ppmi_build.errors import ConfigError, ServiceError
from ppmi_build.http.retry import RetryPolicy
from ppmi_build.signing.keys.keyvault import aia_issuers, b64url, b64url_decode, open_key
from ppmi_build.signing.keys.uri import parse_key_uri

TOKEN = "unit-secret-token-Zx81"
VAULT = "https://contoso.vault.azure.net"


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _vault(pki, seen: list[httpx.Request], *, kid: str | None = None, sign_status: int = 200, body: str = ""):
    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.method == "GET":
            return httpx.Response(200, json={"cer": base64.b64encode(pki.leaf.der).decode(),
                                             "kid": kid or f"{VAULT}/keys/sig/v1",
                                             "policy": {"key_props": {"kty": "RSA-HSM"}}})
        if sign_status != 200:
            return httpx.Response(sign_status, text=body)
        req_body = json.loads(req.content)
        digest = base64.urlsafe_b64decode(req_body["value"] + "=" * (-len(req_body["value"]) % 4))
        sig = pki.leaf.key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        return httpx.Response(200, json={"kid": f"{VAULT}/keys/sig/v1", "value": _b64u(sig)})

    return httpx.Client(transport=httpx.MockTransport(handler))


def _open(pki, seen, **kw):
    client = _vault(pki, seen, **{k: kw.pop(k) for k in ("kid", "sign_status", "body") if k in kw})
    return open_key(parse_key_uri(f"keyvault:{VAULT}/certificates/sig"), client=client, token_getter=lambda: TOKEN,
                    retry=RetryPolicy(max_retries=1, sleep=lambda s: None), fetch_aia=False, **kw)


def test_b64url_round_trip_without_padding():
    for n in range(0, 70):
        data = bytes(range(n))
        text = b64url(data)
        assert "=" not in text and "+" not in text and "/" not in text
        assert b64url_decode(text) == data


def test_sign_request_follows_the_rest_reference(pki):
    seen: list[httpx.Request] = []
    key = _open(pki, seen)
    digest = hashlib.sha256(b"x").digest()
    sig = key.sign_digest(digest, hashes.SHA256())
    pki.leaf.cert.public_key().verify(sig, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    get, post = seen
    assert str(get.url) == f"{VAULT}/certificates/sig?api-version=7.4"
    assert str(post.url) == f"{VAULT}/keys/sig/v1/sign?api-version=7.4"
    assert json.loads(post.content) == {"alg": "RS256", "value": _b64u(digest)}
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_kid_on_another_host_is_signed_on_the_vault_of_the_uri(pki):
    seen: list[httpx.Request] = []
    key = _open(pki, seen, kid="https://evil.example/keys/sig/v9")
    key.sign_digest(hashlib.sha256(b"x").digest(), hashes.SHA256())
    assert seen[-1].url.host == "contoso.vault.azure.net" and seen[-1].url.path == "/keys/sig/v9/sign"


def test_token_echoed_by_the_service_is_redacted(pki):
    seen: list[httpx.Request] = []
    body = json.dumps({"error": {"code": "Weird", "message": f"bad request with Bearer {TOKEN} and {TOKEN}"}})
    key = _open(pki, seen, sign_status=400, body=body)
    with pytest.raises(ServiceError) as e:
        key.sign_digest(hashlib.sha256(b"x").digest(), hashes.SHA256())
    assert TOKEN not in str(e.value) and "400 Weird" in str(e.value)


def test_plain_http_to_a_remote_vault_is_refused():
    with pytest.raises(ConfigError, match="non-loopback"):
        open_key(_http_uri(), token_getter=lambda: TOKEN)  # a URI the parser would refuse, built directly


def _http_uri():
    from ppmi_build.signing.keys.uri import KeyVaultUri

    return KeyVaultUri(text="keyvault:http://contoso.vault.azure.net/certificates/c",
                       vault_url="http://contoso.vault.azure.net", name="c")


def test_one_source_serves_many_threads(pki):
    seen: list[httpx.Request] = []
    key = _open(pki, seen)
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        sigs = list(pool.map(lambda d: key.sign_digest(d, hashes.SHA256()), digests))
    for d, s in zip(digests, sigs, strict=True):
        pki.leaf.cert.public_key().verify(s, d, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    assert sum(r.method == "POST" for r in seen) == 24


def test_aia_is_best_effort(pki):
    def unreachable(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    # the test leaf has no AIA extension; an unreachable or useless answer ends the walk without an error
    assert aia_issuers(pki.leaf.cert, client=httpx.Client(transport=httpx.MockTransport(unreachable))) == []


def test_aia_answer_that_did_not_issue_the_certificate_is_ignored(pki, aia_cert):
    leaf, url = aia_cert
    wrong = httpx.MockTransport(lambda req: httpx.Response(200, content=pki.self_signed.der))
    assert aia_issuers(leaf, client=httpx.Client(transport=wrong)) == []
    right = httpx.MockTransport(lambda req: httpx.Response(200, content=pki.intermediate.der)
                                if str(req.url) == url else httpx.Response(404))
    assert aia_issuers(leaf, client=httpx.Client(transport=right)) == [pki.intermediate.cert]


@pytest.fixture
def aia_cert(pki):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

    url = "http://pki.contoso.example/ca.cer"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AIA unit")]))
            .issuer_name(pki.intermediate.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url))]), critical=False)
            .sign(pki.intermediate.key, hashes.SHA256()))
    return cert, url
