"""A timestamp server that accepts the connection and never answers (a dead TSA behind a load balancer): the
sign command names the server on stderr within PROGRESS_AFTER_S, gives up after PPMI_TIMESTAMP_TIMEOUT with
exit 3 and one line naming the URL and the fix, and leaves the file byte for byte as it was."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ppmi_build.signing import api

PPMI = Path(sys.executable).parent / "ppmi-build"


@pytest.fixture
def silent_tsa():
    """``http://127.0.0.1:PORT/`` of a server that accepts connections, reads nothing and answers nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept_forever, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()
    for c in accepted:
        c.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_silent_timestamp_server_progress_then_total_timeout(tmp_path, plain_dll, pki, pfx_password, silent_tsa):
    if not PPMI.exists():
        pytest.skip("console script not installed")
    dll = tmp_path / "Contoso.Plain.dll"
    dll.write_bytes(plain_dll.read_bytes())
    before = _sha256(dll)
    total = 9
    env = {**os.environ, "PPMI_PFX_PASSWORD": pfx_password, "PPMI_TIMESTAMP_TIMEOUT": str(total)}
    start = time.monotonic()
    proc = subprocess.Popen([str(PPMI), "sign", str(dll), "--cert", str(pki.leaf.pfx), "--timestamp-url", silent_tsa],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()  # the progress line comes while the command still waits
        seen_after = time.monotonic() - start
        out, rest = proc.communicate(timeout=60)
        ended_after = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    assert first.strip() == (f"waiting for the timestamp server {silent_tsa} (no answer for 5 s; gives up after "
                             f"{total} s, PPMI_TIMESTAMP_TIMEOUT)"), first + rest
    assert seen_after < 6.5  # process start (~1 s) + 5 s
    assert total <= ended_after < total + 5, ended_after  # the total timeout, not 3 x 15 s of read timeouts
    assert proc.returncode == 3, rest
    assert rest.strip() == (f"error: the timestamp server {silent_tsa} gave no answer within {total} s "
                            "(PPMI_TIMESTAMP_TIMEOUT); give another --timestamp-url, or a larger "
                            "PPMI_TIMESTAMP_TIMEOUT (seconds)")
    assert out == ""
    assert _sha256(dll) == before
    assert not [p for p in tmp_path.iterdir() if api.TEMP_MARK in p.name]


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "soon"])
def test_bad_timestamp_timeout_is_one_config_error(cli, plain_dll, copy_of, pki, password_env, value):
    dll = copy_of(plain_dll)
    before = _sha256(dll)
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--timestamp-url", "http://127.0.0.1:9/",
            env={"PPMI_TIMESTAMP_TIMEOUT": value})
    assert r.exit_code == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: PPMI_TIMESTAMP_TIMEOUT="), r.stderr
    assert repr(value) in lines[0] or value == "0"
    assert _sha256(dll) == before


def test_no_timestamp_ignores_the_timeout_variable(cli, plain_dll, copy_of, pki, password_env):
    """The variable matters only when a timestamp is requested."""
    dll = copy_of(plain_dll)
    r = cli("sign", dll, "--cert", pki.leaf.pfx, env={"PPMI_TIMESTAMP_TIMEOUT": "nan"})
    assert r.exit_code == 0, r.stderr
