"""RFC 3161 client (ppmi_build.signing.timestamp) against the loopback `openssl ts -reply` TSA and a
misbehaving TSA built around it: bad nonce, wrong imprint, a token signed by a certificate without
the timeStamping EKU (signed by `openssl cms`, not by us), HTTP 500 then a fallback URL, garbage,
a rejection status. Good tokens are checked with `openssl ts -verify`."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess

import pytest
from asn1crypto import cms as acms
from asn1crypto import tsp

from ppmi_build.errors import TimestampError
from ppmi_build.signing.timestamp import inspect_timestamp, request_timestamp
from tests.conftest import require_tool, run_tool
from tests.tsa import ReplyServer

pytestmark = pytest.mark.interop

SIGNATURE = os.urandom(256)  # stands in for a SignerInfo signature value


class EvilTsa(ReplyServer):
    """Loopback TSA that corrupts answers from the real one (``tsa`` fixture) per path."""

    def __init__(self, tsa, pki, workdir):
        self.tsa, self.pki, self.dir = tsa, pki, workdir
        super().__init__(self.answer)

    def answer(self, path: str, body: bytes) -> bytes:
        req = tsp.TimeStampReq.load(body)
        if path == "/badnonce":
            req = tsp.TimeStampReq({**_fields(req), "nonce": req["nonce"].native + 1})
            return self.tsa.reply(req.dump())
        if path == "/badimprint":
            mi = req["message_imprint"]
            wrong = bytes(b ^ 0xFF for b in mi["hashed_message"].native)
            req = tsp.TimeStampReq({**_fields(req), "message_imprint": {
                "hash_algorithm": mi["hash_algorithm"], "hashed_message": wrong}})
            return self.tsa.reply(req.dump())
        if path == "/noeku":
            return self.token_signed_by(req, self.pki.leaf)  # code-signing cert, no timeStamping EKU
        if path == "/rejection":
            status = tsp.PKIStatusInfo({"status": "rejection", "status_string": ["policy not accepted"],
                                        "fail_info": {"unaccepted_policy"}}).dump()
            return bytes([0x30, len(status)]) + status  # TimeStampResp without a token (RFC 3161 §2.4.2)
        return self.tsa.reply(body)

    def token_signed_by(self, req, cert) -> bytes:
        """A TimeStampResp whose token is a SignedData made by `openssl cms -sign` over our TSTInfo."""
        info = tsp.TSTInfo({
            "version": "v1", "policy": "1.2.3.4.1", "message_imprint": req["message_imprint"],
            "serial_number": 7, "gen_time": dt.datetime.now(dt.UTC).replace(microsecond=0),
            "nonce": req["nonce"].native,
        })
        src, out = self.dir / "tst.der", self.dir / "token.der"
        src.write_bytes(info.dump())
        subprocess.run(["openssl", "cms", "-sign", "-binary", "-nodetach", "-nosmimecap", "-md", "sha256",
                        "-econtent_type", "1.2.840.113549.1.9.16.1.4", "-in", str(src), "-signer", str(cert.pem),
                        "-inkey", str(cert.keyfile), "-outform", "DER", "-out", str(out)],
                       check=True, capture_output=True)
        token = acms.ContentInfo.load(out.read_bytes())
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()


def _fields(req) -> dict:
    return {"version": req["version"], "message_imprint": req["message_imprint"], "nonce": req["nonce"],
            "cert_req": req["cert_req"]}


@pytest.fixture(scope="module")
def evil(tsa, pki, tmp_path_factory):
    require_tool("openssl")
    server = EvilTsa(tsa, pki, tmp_path_factory.mktemp("evil"))
    yield server
    server.close()


def test_good_token_verifies_with_openssl(tsa, pki, tmp_path):
    token = request_timestamp(SIGNATURE, [tsa.url], retries=0)
    path, body = tsa.requests[-1]
    req = tsp.TimeStampReq.load(body)
    assert req["cert_req"].native is True
    assert req["message_imprint"]["hashed_message"].native == hashlib.sha256(SIGNATURE).digest()
    assert 0 < req["nonce"].native < 2**64
    tok = tmp_path / "token.der"
    tok.write_bytes(token.dump())
    res = run_tool("openssl", "ts", "-verify", "-digest", hashlib.sha256(SIGNATURE).hexdigest(), "-token_in",
                   "-in", tok, "-CAfile", pki.root.pem, "-untrusted", pki.tsa.pem)
    assert "Verification: OK" in res.stdout, res.stdout + res.stderr
    info = inspect_timestamp(token, SIGNATURE, [pki.root.cert])
    assert info.problems == [] and info.tsa_certificate == pki.tsa.cert
    assert abs((info.gen_time - dt.datetime.now(dt.UTC)).total_seconds()) < 300


def test_sha384_imprint(tsa):
    token = request_timestamp(SIGNATURE, [tsa.url], digest="sha384", retries=0)
    assert inspect_timestamp(token, SIGNATURE, None).problems == []


def test_inspect_reports_wrong_signature_and_untrusted_tsa(tsa, pki):
    token = request_timestamp(SIGNATURE, [tsa.url], retries=0)
    other = inspect_timestamp(token, b"another signature", None)
    assert any("imprint does not match" in p for p in other.problems)
    untrusted = inspect_timestamp(token, SIGNATURE, [pki.self_signed.cert])
    assert any("TSA certificate is not trusted" in p for p in untrusted.problems)


def test_bad_nonce_is_refused(evil):
    with pytest.raises(TimestampError, match=rf"{evil.url}badnonce: the nonce in the response does not match"):
        request_timestamp(SIGNATURE, [evil.url + "badnonce"], retries=0)


def test_wrong_imprint_is_refused(evil):
    with pytest.raises(TimestampError, match="message imprint does not match the signature"):
        request_timestamp(SIGNATURE, [evil.url + "badimprint"], retries=0)


def test_tsa_certificate_without_timestamping_eku_is_refused(evil):
    with pytest.raises(TimestampError, match=r"no id-kp-timeStamping EKU \(RFC 3161 §2.3\)"):
        request_timestamp(SIGNATURE, [evil.url + "noeku"], retries=0)


def test_rejection_status_is_reported(evil):
    with pytest.raises(TimestampError, match="refused the request: status rejection"):
        request_timestamp(SIGNATURE, [evil.url + "rejection"], retries=0)


def test_http_500_then_fallback_url(tsa):
    before = len(tsa.requests)
    waits: list[float] = []
    token = request_timestamp(SIGNATURE, [tsa.url + "fail", tsa.url], retries=1, sleep=waits.append)
    paths = [p for p, _ in tsa.requests[before:]]
    assert paths == ["/fail", "/fail", "/"]  # one retry on the dead server, then the fallback
    assert len(waits) == 1 and waits[0] > 0  # one back-off wait, through the injected sleep
    assert inspect_timestamp(token, SIGNATURE, None).problems == []


def test_garbage_and_all_failing(tsa):
    with pytest.raises(TimestampError) as err:
        request_timestamp(SIGNATURE, [tsa.url + "garbage", tsa.url + "fail", "http://127.0.0.1:9/"],
                          retries=0, timeout=2)
    msg = str(err.value)
    assert f"{tsa.url}garbage: the answer is not an RFC 3161 TimeStampResp" in msg
    assert f"{tsa.url}fail: HTTP 500" in msg
    assert "http://127.0.0.1:9/: ConnectError" in msg
    assert "\n" not in msg and err.value.exit_code == 3


def test_tsa_key_size_floor(tsa):
    with pytest.raises(TimestampError, match=r"NU3023: the TSA certificate key \(RSA-2048\) is shorter than RSA-4096"):
        request_timestamp(SIGNATURE, [tsa.url], retries=0, min_rsa_bits=4096)
