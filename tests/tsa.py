"""A loopback RFC 3161 time-stamping authority for the tests: OpenSSL's own `openssl ts -reply`
(an implementation independent of ppmi-build) behind a small HTTP handler on 127.0.0.1.

Paths:
    /            a normal reply (sha256 ESS cert id, the TSA chain included)
    /fail        HTTP 500 (a dead server, for fallback tests)
    /garbage     HTTP 200 with a body that is not a TimeStampResp
Every request is recorded in ``TsaServer.requests`` (path, body bytes).
"""

from __future__ import annotations

import http.server
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from .pki import Pki

TSA_CONF = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = {dir}/serial
crypto_device = builtin
signer_cert = {signer}
certs = {chain}
signer_key = {key}
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha1, sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


class ReplyServer:
    """A loopback HTTP server (daemon thread) that answers every POST with ``answer(path, body)``: bytes -> 200
    ``application/timestamp-reply``, None -> 500 without a body. ``url`` ends with ``/``."""

    def __init__(self, answer: Callable[[str, bytes], bytes | None]):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):  # noqa: N802
                payload = answer(self.path, self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if payload is None:
                    self.send_response(500)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class TsaServer(ReplyServer):
    def __init__(self, pki: Pki, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "serial").write_text("01\n")
        self.conf = self.dir / "tsa.cnf"
        chain = self.dir / "tsa-chain.pem"
        chain.write_bytes(pki.tsa.pem.read_bytes() + pki.root.pem.read_bytes())
        self.conf.write_text(TSA_CONF.format(dir=self.dir, signer=pki.tsa.pem, chain=chain, key=pki.tsa.keyfile))
        self.requests: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        super().__init__(self._answer)

    def _answer(self, path: str, body: bytes) -> bytes | None:
        self.requests.append((path, body))
        if path.startswith("/fail"):
            return None
        if path.startswith("/garbage"):
            return b"not a timestamp response"
        return self.reply(body)

    def reply(self, query: bytes) -> bytes:
        with self._lock, tempfile.TemporaryDirectory(dir=self.dir) as tmp:
            q = Path(tmp, "q.tsq")
            r = Path(tmp, "r.tsr")
            q.write_bytes(query)
            subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(self.conf), "-queryfile", str(q), "-out", str(r)],
                check=True, capture_output=True,
            )
            return r.read_bytes()
