"""Regression tests for the break-it report (signing side): special files, signals, corrupt signatures,
batches, CVE-2013-3900 padding, secrets in child environments, --json usage errors, limits."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ppmi_build.signing import api
from ppmi_build.signing.authenticode import pe
from ppmi_build.signing.keys import PasswordSource, load_key_source

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ENV_ID = "6d0a9f5e-2c1b-4e6f-9a3d-1b2c3d4e5f60"
PPMI = Path(sys.executable).parent / "ppmi-build"


def one_line_error(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) >= 1 and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


def no_temp_left(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if api.TEMP_MARK in p.name]


@pytest.fixture(scope="module")
def signed_dll(tmp_path_factory, plain_dll, pki):
    from tests.pki import PFX_PASSWORD

    d = tmp_path_factory.mktemp("signed")
    out = d / "signed.dll"
    pw = d / "pw.txt"
    pw.write_text(PFX_PASSWORD)
    key = load_key_source(pki.leaf.pfx, PasswordSource(file=pw))
    api.sign_file(plain_dll, key, output=out)
    out.chmod(0o444)  # shared: tests copy it
    return out


# --- #1 / #18 / #19: non-regular targets and inputs ----------------------------------------------------


def test_fifo_output_refused(cli, plain_dll, copy_of, pki, password_env, tmp_path):
    dll = copy_of(plain_dll)
    fifo = tmp_path / "out.dll"
    os.mkfifo(fifo)
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "-o", fifo, "--json")
    assert r.exit_code == 2 and "FIFO" in one_line_error(r) and "-o" in one_line_error(r)
    assert json.loads(r.stdout)["error"]["exit_code"] == 2
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and no_temp_left(tmp_path)


def test_symlink_target_refused_sign_and_unsign(cli, plain_dll, pki, password_env, tmp_path, signed_dll):
    real = tmp_path / "real.dll"
    shutil.copyfile(plain_dll, real)
    link = tmp_path / "link.dll"
    link.symlink_to(real.name)
    before = real.read_bytes()
    r = cli("sign", link, "--cert", pki.leaf.pfx)
    msg = one_line_error(r)
    assert r.exit_code == 2 and "symbolic link to real.dll" in msg and f"sign {real}" in msg
    assert link.is_symlink() and real.read_bytes() == before and no_temp_left(tmp_path)
    # unsign through a link to a signed file: same refusal
    shutil.copyfile(signed_dll, real)
    before = real.read_bytes()
    r = cli("unsign", link)
    assert r.exit_code == 2 and "symbolic link" in one_line_error(r)
    assert link.is_symlink() and real.read_bytes() == before
    # -o onto a symlink
    other = tmp_path / "o.dll"
    other.symlink_to(real.name)
    r = cli("sign", plain_dll, "--cert", pki.leaf.pfx, "-o", other)
    assert r.exit_code == 2 and "symbolic link" in one_line_error(r) and other.is_symlink()


def test_fifo_input_refused_without_hanging(cli, tmp_path, pki, password_env):
    fifo = tmp_path / "x.dll"
    os.mkfifo(fifo)
    for args in (("verify", fifo), ("sign", fifo, "--cert", pki.leaf.pfx), ("unsign", fifo)):
        r = cli(*args)
        assert r.exit_code == 2 and "FIFO" in one_line_error(r), args
    assert no_temp_left(tmp_path)


def test_output_folder_with_trailing_slash_must_exist(cli, plain_dll, copy_of, pki, password_env, tmp_path):
    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "-o", str(tmp_path / "newdir") + "/")
    assert r.exit_code == 2 and "folder" in one_line_error(r) and "newdir does not exist" in one_line_error(r)
    assert not (tmp_path / "newdir").exists() and dll.read_bytes() == before
    (tmp_path / "newdir").mkdir()
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "-o", str(tmp_path / "newdir") + "/")
    assert r.exit_code == 0 and (tmp_path / "newdir" / dll.name).is_file()


def test_pe_over_4_gib_refused_before_reading(cli, tmp_path):
    big = tmp_path / "big.dll"
    with open(big, "wb") as f:
        f.write(b"MZ")
        f.truncate(4_300_000_000)  # sparse
    t = time.monotonic()
    r = cli("verify", big)
    assert r.exit_code == 2 and "4 GiB" in one_line_error(r) and time.monotonic() - t < 5


# --- #17: unsign of an unsigned or read-only DLL --------------------------------------------------------


def test_unsign_unsigned_dll_is_exit_2(cli, plain_dll, copy_of, signed_dll, tmp_path):
    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    r = cli("unsign", dll, "--json")
    assert r.exit_code == 2 and "is not signed" in one_line_error(r)
    assert json.loads(r.stdout)["error"]["exit_code"] == 2 and dll.read_bytes() == before
    ro = tmp_path / "ro.dll"
    shutil.copyfile(signed_dll, ro)
    ro.chmod(0o444)
    before = ro.read_bytes()
    r = cli("unsign", ro)
    assert r.exit_code == 2 and "read-only" in one_line_error(r) and ro.read_bytes() == before


# --- #2: SIGTERM -> cleanup, exit 143; osslsigncode gets the original PFX ------------------------------


def _fake_tool(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    p = folder / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)


def test_sigterm_cleans_up_and_exits_143(tmp_path, plain_dll, pki, pfx_password):
    if not PPMI.exists():
        pytest.skip("console script not installed")
    bin_dir, tmp_dir, work = tmp_path / "bin", tmp_path / "tmp", tmp_path / "work"
    tmp_dir.mkdir()
    work.mkdir()
    marker = tmp_path / "args.txt"
    # stand-in osslsigncode: records its arguments, environment and the -readpass content, then hangs
    _fake_tool(bin_dir, "osslsigncode", f'echo "$@" > {marker}.tmp; env > {tmp_path}/env.txt\n'
               'while [ $# -gt 0 ]; do if [ "$1" = -readpass ]; then cat "$2" > '
               f'{tmp_path}/pw.txt; fi; shift; done\nmv {marker}.tmp {marker}\nexec sleep 60\n')
    dll = work / "a.dll"
    shutil.copyfile(plain_dll, dll)
    before = dll.read_bytes()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_dir),
           "PPMI_PFX_PASSWORD": pfx_password, "PPMI_ACCESS_TOKEN": "tok-secret"}
    proc = subprocess.Popen([str(PPMI), "sign", str(dll), "--cert", str(pki.leaf.pfx), "--backend", "osslsigncode"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=5)
        args = marker.read_text()
        assert f"-pkcs12 {pki.leaf.pfx}" in args  # the original (encrypted) PFX, no decrypted copy
        assert (tmp_path / "pw.txt").read_text() == pfx_password and pfx_password not in args
        child_env = (tmp_path / "env.txt").read_text()
        assert "PPMI_PFX_PASSWORD" not in child_env and "tok-secret" not in child_env  # report #8
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "SIGTERM" in err
    assert dll.read_bytes() == before and no_temp_left(work)
    assert not list(tmp_dir.iterdir())  # the private ppmi-key-* folder is gone


def test_sigterm_stops_a_batch_kills_its_tools_and_names_what_was_signed(tmp_path, plain_dll, pki, pfx_password):
    """SIGTERM while a batch waits on external tools: the tools are killed, the process ends at once
    with 143, files not renamed keep their bytes, the line names exactly the signed file (which
    osslsigncode verifies), no temp file is left."""
    if not PPMI.exists():
        pytest.skip("console script not installed")
    real = shutil.which("osslsigncode")
    if real is None:
        pytest.skip("osslsigncode is not installed")
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    work.mkdir()
    started = tmp_path / "hanging"
    # stand-in: the real osslsigncode for a.dll, a hang (after saying so) for every other file
    _fake_tool(bin_dir, "osslsigncode", f'case "$*" in *"/a.dll "*) exec {real} "$@";; esac\n'
               f'touch {started}\nexec sleep 60\n')
    files = [work / f"{n}.dll" for n in "abc"]
    for f in files:
        shutil.copyfile(plain_dll, f)
    before = plain_dll.read_bytes()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PPMI_PFX_PASSWORD": pfx_password}
    proc = subprocess.Popen([str(PPMI), "sign", *map(str, files), "--cert", str(pki.leaf.pfx),
                             "--backend", "osslsigncode"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and not (
                started.exists() and files[0].read_bytes() != before):
            time.sleep(0.05)
        assert started.exists() and files[0].read_bytes() != before, proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)
        t = time.monotonic()
        out, err = proc.communicate(timeout=20)
        assert time.monotonic() - t < 10  # not the 60 s of the hanging tools
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.strip() == f"error: stopped by SIGTERM; temporary files removed; signed before the stop: {files[0]}"
    res = subprocess.run([real, "verify", "-in", str(files[0]), "-CAfile", str(pki.root.pem)], capture_output=True,
                         text=True)
    assert "Signature verification: ok" in res.stdout
    assert files[1].read_bytes() == before and files[2].read_bytes() == before and no_temp_left(work)


@pytest.mark.slow
@pytest.mark.parametrize("signals", [("SIGTERM",), ("SIGINT", "SIGINT")])
def test_sigterm_stops_a_batch_waiting_on_a_silent_timestamp_server(tmp_path, plain_dll, pki, pfx_password, signals):
    """A TSA that accepts and never answers holds every worker for its timeout (15 s, retried); SIGTERM,
    or Ctrl-C (pressed twice), must still end the batch within the grace period: exit 143 / 130,
    originals intact, no temp file."""
    import socket

    if not PPMI.exists():
        pytest.skip("console script not installed")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)  # read nothing, answer nothing

    threading.Thread(target=accept_forever, daemon=True).start()
    work = tmp_path / "work"
    work.mkdir()
    files = [work / f"{n}.dll" for n in "abc"]
    for f in files:
        shutil.copyfile(plain_dll, f)
    before = plain_dll.read_bytes()
    env = {**os.environ, "PPMI_PFX_PASSWORD": pfx_password}
    proc = subprocess.Popen([str(PPMI), "sign", *map(str, files), "--cert", str(pki.leaf.pfx), "--timestamp-url",
                             f"http://127.0.0.1:{port}/"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while len(accepted) < len(files) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(accepted) == len(files), proc.communicate(timeout=5)
        t = time.monotonic()
        for i, name in enumerate(signals):
            if i:
                time.sleep(1)
            proc.send_signal(getattr(signal, name))
        out, err = proc.communicate(timeout=30)
        waited = time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
        for c in accepted:
            c.close()
    assert waited < api.ABORT_GRACE + 3  # not the TSA timeout
    if signals == ("SIGTERM",):
        assert proc.returncode == 143, err
        assert err.strip() == "error: stopped by SIGTERM; temporary files removed; no file was signed"
    else:
        assert proc.returncode == 130, err
        assert err.strip() == "error: interrupted; no file was signed"
    assert all(f.read_bytes() == before for f in files) and no_temp_left(work)


# --- #3 / #6 / #7: verify never crashes, per-file results ----------------------------------------------


def _pkcs7_range(data: bytes) -> tuple[int, int]:
    layout = pe.parse(data)
    start = layout.cert_table_offset + 8
    der = pe.pkcs7_blob(data, layout)
    return start, start + len(der)


def test_fuzz_signature_bytes_never_crash_never_valid(signed_dll, pki, tmp_path):
    data = signed_dll.read_bytes()
    roots = [pki.root.cert]
    assert api.verify_file(signed_dll, trusted_roots=roots).valid
    start, end = _pkcs7_range(data)
    rng = random.Random(20240611)
    target = tmp_path / "fuzz.dll"
    from ppmi_build.signing.authenticode.verify import verify_pe

    for _ in range(200):
        buf = bytearray(data)
        i = rng.randrange(start, end)
        buf[i] = (buf[i] + rng.randrange(1, 256)) % 256
        target.write_bytes(buf)
        try:
            res = verify_pe(target, trusted_roots=roots, use_signify=False)
        except api.PpmiError as e:  # a one-line refusal is acceptable, a crash is not
            assert "\n" not in e.message
            continue
        assert not res.valid, f"byte {i - start} of the PKCS#7 changed and the file still verifies"
        assert res.problems


def test_corrupt_rsa_oid_is_invalid_not_a_crash(cli, signed_dll, pki, tmp_path):
    d = bytearray(signed_dll.read_bytes())
    j = d.find(bytes.fromhex("06092a864886f70d010101"), d.find(pki.leaf.der))
    assert j > 0
    d[j + 10] = 0x63
    bad = tmp_path / "t.dll"
    bad.write_bytes(d)
    r = cli("verify", bad, "--trusted-root", pki.root.pem, "--json")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    (res,) = json.loads(r.stdout)
    assert res["valid"] is False and res["problems"]


def test_batch_verify_keeps_each_result(cli, signed_dll, pki, tmp_path):
    appended = tmp_path / "x.dll"
    appended.write_bytes(signed_dll.read_bytes() + b"\0" * 8)
    notpe = tmp_path / "n.dll"
    notpe.write_bytes(b"hello")
    r = cli("verify", signed_dll, appended, notpe, "--trusted-root", pki.root.pem, "--json")
    assert r.exit_code == 1, r.stderr
    good, app, npe = json.loads(r.stdout)
    assert good["valid"] is True
    assert app["valid"] is False and app["signed"] is True and "data after the certificate table" in app["problems"][0]
    assert npe["valid"] is False and npe["error"]["exit_code"] == 2 and "not a PE file" in npe["problems"][0]
    # only unusable inputs: exit 2
    r = cli("verify", notpe, "--json")
    assert r.exit_code == 2 and json.loads(r.stdout)[0]["error"]


def test_cert_padding_check_cve_2013_3900(cli, signed_dll, pki, tmp_path):
    d = bytearray(signed_dll.read_bytes())
    layout = pe.parse(d)
    off = layout.cert_table_offset
    struct.pack_into("<I", d, off, struct.unpack_from("<I", d, off)[0] + 64)
    struct.pack_into("<I", d, layout.cert_dir_offset + 4, layout.cert_table_size + 64)
    d += b"\x41" * 64
    bad = tmp_path / "pad.dll"
    bad.write_bytes(d)
    r = cli("verify", bad, "--trusted-root", pki.root.pem, "--json")
    assert r.exit_code == 1
    (res,) = json.loads(r.stdout)
    assert not res["valid"] and any("CVE-2013-3900" in p for p in res["problems"])
    # the normal 0-7 zero padding is fine: the untouched file verifies
    assert cli("verify", signed_dll, "--trusted-root", pki.root.pem).exit_code == 0


def test_fic_artifact_warns_on_tampered_file(cli, signed_dll, pki, tmp_path):
    d = bytearray(signed_dll.read_bytes())
    d[0x200] ^= 0xFF  # inside the image: authentihash no longer matches
    bad = tmp_path / "tampered.dll"
    bad.write_bytes(d)
    r = cli("fic", "--artifact", bad, "--tenant-id", TENANT, "--environment-id", ENV_ID, "--json")
    assert r.exit_code == 0 and "warning:" in r.stderr and "does not verify" in r.stderr
    assert any("does not verify" in w for w in json.loads(r.stdout)["warnings"])
    r = cli("fic", "--artifact", signed_dll, "--tenant-id", TENANT, "--environment-id", ENV_ID, "--json")
    assert r.exit_code == 0 and "does not verify" not in r.stderr


# --- #5: batches ---------------------------------------------------------------------------------------


def test_batch_sign_checks_every_input_first(cli, plain_dll, pki, password_env, tmp_path):
    a, b, bad = tmp_path / "a.dll", tmp_path / "b.dll", tmp_path / "bad.dll"
    shutil.copyfile(plain_dll, a)
    shutil.copyfile(plain_dll, b)
    bad.write_bytes(b"not a PE file at all")
    before = a.read_bytes()
    r = cli("sign", a, b, bad, "--cert", pki.leaf.pfx, "--json")
    assert r.exit_code == 2 and "bad.dll" in one_line_error(r) and "nothing was signed" in one_line_error(r)
    assert json.loads(r.stdout)["error"]["exit_code"] == 2
    assert a.read_bytes() == before and b.read_bytes() == before and no_temp_left(tmp_path)


def test_batch_sign_reports_each_outcome(monkeypatch, plain_dll, pki, password_env, tmp_path):
    a, b = tmp_path / "a.dll", tmp_path / "b.dll"
    shutil.copyfile(plain_dll, a)
    shutil.copyfile(plain_dll, b)
    real = api.sign_file

    def flaky(p, *args, **kw):
        if Path(p).name == "b.dll":
            raise api.InputFileError(f"{p}: simulated failure")
        return real(p, *args, **kw)

    monkeypatch.setattr(api, "sign_file", flaky)
    key = load_key_source(pki.leaf.pfx, PasswordSource(env="PPMI_PFX_PASSWORD"))
    with pytest.raises(api.BatchSignError) as ei:
        api.sign_files([a, b], key, workers=1)
    outcomes = ei.value.outcomes
    assert [o["status"] for o in outcomes] == ["signed", "failed"] and ei.value.exit_code == 2
    assert pe.parse(a.read_bytes()).signed and not pe.parse(b.read_bytes()).signed


# --- #13: --json with usage errors ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [("sign", "--json"), ("sign", "x.dll", "--digest", "md5", "--json"),
                                  ("verify", "x.dll", "--bogus", "--json")])
def test_json_usage_errors(cli, args):
    r = cli(*args)
    assert r.exit_code == 2 and "Usage:" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["error"]["exit_code"] == 2 and doc["error"]["message"]


# --- #15 / #20: timestamp server limits and URLs -------------------------------------------------------


class _Huge(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.end_headers()
        try:
            for _ in range(64):  # 4 MiB, no content-length
                self.wfile.write(b"\0" * 65536)
        except OSError:
            pass

    def log_message(self, *a):
        pass


def test_tsa_response_is_capped_and_userinfo_redacted():
    from ppmi_build.errors import TimestampError
    from ppmi_build.signing.timestamp import request_timestamp

    srv = HTTPServer(("127.0.0.1", 0), _Huge)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://user:s3cret@127.0.0.1:{srv.server_port}/"
        with pytest.raises(TimestampError) as ei:
            request_timestamp(b"\1" * 256, [url], retries=0)
    finally:
        srv.shutdown()
    assert "larger than" in ei.value.message and "s3cret" not in ei.value.message


# --- #20: password and key messages --------------------------------------------------------------------


def test_password_file_bom_and_encoding(tmp_path, pki, pfx_password, monkeypatch):
    monkeypatch.delenv("PPMI_PFX_PASSWORD", raising=False)
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + pfx_password.encode() + b"\r\n")
    assert load_key_source(pki.leaf.pfx, PasswordSource(file=bom)).certificate == pki.leaf.cert
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9")
    from ppmi_build.errors import PasswordError

    with pytest.raises(PasswordError, match="latin.txt is not UTF-8"):
        load_key_source(pki.leaf.pfx, PasswordSource(file=latin))


def test_empty_pfx_base64_and_key_messages(cli, plain_dll, copy_of, pki, monkeypatch, tmp_path):
    dll = copy_of(plain_dll)
    monkeypatch.setenv("PPMI_PFX_BASE64", "  \n ")
    r = cli("sign", dll)
    assert r.exit_code == 2 and "PPMI_PFX_BASE64 is empty" in one_line_error(r)
    monkeypatch.delenv("PPMI_PFX_BASE64")
    r = cli("sign", dll, "--cert", pki.leaf.cer, "--key", tmp_path / "missing.key")
    assert r.exit_code == 2 and "missing.key" in one_line_error(r) and "--key" in one_line_error(r)
    r = cli("verify", dll, "--trusted-root", pki.leaf.pfx)
    msg = one_line_error(r)
    assert r.exit_code == 2 and "--trusted-root" in msg and "password" not in msg.lower()
