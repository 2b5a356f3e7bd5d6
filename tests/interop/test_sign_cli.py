"""`ppmi-build sign` / `ppmi-build verify` command lines: output contract, every bad-input case
(exit code, one-line message naming the input and the fix, target unchanged, no temp file left),
secrets never shown or passed in argv, external back-ends, timestamp failures."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.conftest import run_tool
from tests.pki import PFX_PASSWORD

pytestmark = pytest.mark.interop

WRONG_PASSWORD = "Tr0ub4dor&3-not-the-password"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ppmi.toml from the repository
    for var in ("PPMI_CERT", "PPMI_PFX_BASE64", "PPMI_TIMESTAMP_URLS", "PPMI_PFX_PASSWORD"):
        monkeypatch.delenv(var, raising=False)


def temp_leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".ppmi-tmp-" in p.name]


def assert_secret_free(result, *secrets: str) -> None:
    for s in secrets:
        assert s not in result.stdout and s not in result.stderr


def one_line_error(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def ossl_ok(path: Path, pki) -> bool:
    res = run_tool("osslsigncode", "verify", "-in", path, "-CAfile", pki.root.pem, "-TSA-CAfile", pki.root.pem)
    return res.returncode == 0 and "Signature verification: ok" in res.stdout


# --- success paths --------------------------------------------------------------------------


def test_sign_json_contract_and_verify(cli, plain_dll, copy_of, pki, password_env, tsa):
    dll = copy_of(plain_dll)
    before = hashlib.sha256(dll.read_bytes()).hexdigest()
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--timestamp-url", tsa.url, "--json")
    assert r.exit_code == 0, r.stderr
    (doc,) = json.loads(r.stdout)
    assert {"path", "kind", "sha256_before", "sha256_after", "signer", "timestamped", "verified"} <= set(doc)
    assert doc["kind"] == "assembly" and doc["verified"] is True and doc["timestamped"] is True
    assert doc["sha256_before"] == before and doc["sha256_after"] == hashlib.sha256(dll.read_bytes()).hexdigest()
    assert doc["signer"]["subject"] == "CN=Contoso Plug-in Signing, O=ppmi-build tests"
    assert ossl_ok(dll, pki)
    assert_secret_free(r, PFX_PASSWORD)

    v = cli("verify", dll, "--trusted-root", pki.root.pem, "--json")
    assert v.exit_code == 0, v.stdout + v.stderr
    (vdoc,) = json.loads(v.stdout)
    assert vdoc["valid"] and vdoc["signed"] and vdoc["timestamp"] and vdoc["problems"] == []
    assert {"path", "kind", "signed", "valid", "signer", "timestamp", "problems"} <= set(vdoc)


def test_sign_human_output_and_resign(cli, plain_dll, copy_of, pki, password_env):
    dll = copy_of(plain_dll)
    r = cli("sign", dll, "--cert", pki.leaf.pfx)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == (f"signed {dll} (assembly) with CN=Contoso Plug-in Signing, O=ppmi-build tests, "
                                "not timestamped, verified")
    r2 = cli("sign", dll, "--cert", pki.leaf.pfx)
    assert r2.exit_code == 0 and r2.stdout.strip().endswith("; replaced an existing signature")
    assert ossl_ok(dll, pki)


def test_several_files_into_an_output_folder(cli, plain_dll, strong_named_dll, tmp_path, pki, password_env):
    out = tmp_path / "out"
    out.mkdir()
    a, b = shutil.copyfile(plain_dll, tmp_path / "a.dll"), shutil.copyfile(strong_named_dll, tmp_path / "b.dll")
    originals = {p: p.read_bytes() for p in (a, b)}
    r = cli("sign", a, b, "--cert", pki.leaf.pfx, "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    assert [Path(d["path"]) for d in json.loads(r.stdout)] == [out / "a.dll", out / "b.dll"]
    for p, data in originals.items():
        assert p.read_bytes() == data  # inputs untouched
        assert ossl_ok(out / p.name, pki)
    assert run_tool("sn", "-q", "-v", out / "b.dll").returncode == 0

    bad = cli("sign", a, b, "--cert", pki.leaf.pfx, "-o", tmp_path / "single.dll")
    assert bad.exit_code == 2 and "must be an existing folder" in one_line_error(bad)


def test_pem_key_pfx_base64_and_config_defaults(cli, plain_dll, copy_of, pki, monkeypatch, tmp_path, tsa):
    dll = copy_of(plain_dll)
    monkeypatch.setenv("PPMI_PFX_PASSWORD", PFX_PASSWORD)  # set for PFX use; must not break an unencrypted key
    r = cli("sign", dll, "--cert", pki.leaf.chain_pem, "--key", pki.leaf.keyfile)
    assert r.exit_code == 0, r.stderr
    monkeypatch.delenv("PPMI_PFX_PASSWORD")

    monkeypatch.setenv("PPMI_PFX_BASE64", base64.b64encode(pki.leaf.pfx.read_bytes()).decode())
    pw = tmp_path / "pw.txt"
    pw.write_text(PFX_PASSWORD + "\n")
    r = cli("sign", dll, "--password-file", pw, "--json")
    assert r.exit_code == 0, r.stderr
    assert_secret_free(r, PFX_PASSWORD)
    monkeypatch.delenv("PPMI_PFX_BASE64")

    shutil.copyfile(pki.leaf.pfx, tmp_path / "signing.pfx")
    (tmp_path / "ppmi.toml").write_text(
        f'[signing]\ncertificate = "signing.pfx"\npassword_env = "MY_PFX_PW"\ntimestamp_urls = ["{tsa.url}"]\n')
    monkeypatch.setenv("MY_PFX_PW", PFX_PASSWORD)
    r = cli("sign", dll, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)[0]["timestamped"] is True
    assert ossl_ok(dll, pki)


def test_no_certificate_configured(cli, plain_dll, copy_of):
    dll = copy_of(plain_dll)
    r = cli("sign", dll)
    assert r.exit_code == 2 and "no signing certificate; pass --cert PATH" in one_line_error(r)


# --- bad input: exit 2, one line, file unchanged, no temp file --------------------------------


def _pfx_without_key(pki, tmp_path) -> Path:
    p = tmp_path / "cert-only.pfx"
    p.write_bytes(pkcs12.serialize_key_and_certificates(
        b"x", None, pki.leaf.cert, None, serialization.BestAvailableEncryption(PFX_PASSWORD.encode())))
    return p


def _trailing(plain_dll, pki, tmp_path) -> Path:
    out = tmp_path / "trailing.dll"
    run_tool("osslsigncode", "sign", "-certs", pki.leaf.chain_pem, "-key", pki.leaf.keyfile,
             "-in", plain_dll, "-out", out, check=True)
    out.write_bytes(out.read_bytes() + b"appended installer payload")
    return out


CASES = {
    # name: (how to build (target, cert, extra args, env), expected message fragments)
    "wrong-password": ("wrong password for {cert}",),
    "pfx-without-key": ("has no private key; export the PFX with its private key",),
    "expired": ("the certificate expired on", "renew it"),
    "not-yet-valid": ("the certificate is not valid until", "check the machine clock"),
    "no-code-signing-eku": ("has no code-signing EKU", "use a code-signing certificate"),
    "rsa-1024": ("RSA key is 1024 bits", "at least 2048"),
    "not-pe": ("{name} is not a PE file (no MZ header); pass a .dll or .exe",),
    "truncated": ("{name} is truncated", "rebuild it"),
    "trailing-data": ("{name} has data after the certificate table (26 bytes)", "sign again"),
    "missing-file": ("{target} does not exist; check the path",),
    "read-only": ("{target} is read-only; make it writable",),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, cli, plain_dll, pki, tmp_path, monkeypatch):
    monkeypatch.setenv("PPMI_PFX_PASSWORD", PFX_PASSWORD)
    cert = pki.leaf.pfx
    target = tmp_path / "Contoso.Plugins.dll"
    shutil.copyfile(plain_dll, target)
    args: list = []
    if case == "wrong-password":
        monkeypatch.setenv("WRONG_PW", WRONG_PASSWORD)
        args = ["--password-env", "WRONG_PW"]
    elif case == "pfx-without-key":
        cert = _pfx_without_key(pki, tmp_path)
    elif case == "expired":
        cert = pki.expired.pfx
    elif case == "not-yet-valid":
        cert = pki.not_yet_valid.pfx
    elif case == "no-code-signing-eku":
        cert = pki.no_codesigning.pfx
    elif case == "rsa-1024":
        cert = pki.weak.pfx
    elif case == "not-pe":
        target.write_text("this is a text file, not an assembly\n")
    elif case == "truncated":
        target.write_bytes(plain_dll.read_bytes()[:1500])
    elif case == "trailing-data":
        target = _trailing(plain_dll, pki, tmp_path)
    elif case == "missing-file":
        target.unlink()
    elif case == "read-only":
        os.chmod(target, stat.S_IRUSR | stat.S_IRGRP)
    before = target.read_bytes() if target.exists() else None
    listing = sorted(p.name for p in tmp_path.iterdir())

    r = cli("sign", target, "--cert", cert, *args)

    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    line = one_line_error(r)
    for fragment in CASES[case]:
        assert fragment.format(cert=cert, name=target.name, target=target) in line, line
    assert (target.read_bytes() if target.exists() else None) == before
    assert temp_leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == listing
    assert_secret_free(r, PFX_PASSWORD, WRONG_PASSWORD)
    # --json: the error document on stdout, same exit code
    rj = cli("sign", target, "--cert", cert, *args, "--json")
    assert rj.exit_code == 2 and json.loads(rj.stdout)["error"]["exit_code"] == 2
    assert_secret_free(rj, PFX_PASSWORD, WRONG_PASSWORD)


# --- failures after the input checks: original untouched --------------------------------------


def test_timestamp_failure_leaves_the_file_alone(cli, plain_dll, copy_of, pki, password_env, tsa, tmp_path):
    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--timestamp-url", tsa.url + "fail", "--timestamp-url",
            tsa.url + "garbage")
    assert r.exit_code == 3
    line = one_line_error(r)
    assert f"{tsa.url}fail: HTTP 500" in line and f"{tsa.url}garbage: the answer is not" in line
    assert dll.read_bytes() == before and temp_leftovers(tmp_path) == []


def test_failed_post_sign_verification_is_not_reported_as_success(cli, plain_dll, copy_of, pki, password_env,
                                                                  tmp_path, monkeypatch):
    """A write that does not land as signed (simulated: one byte of the certificate table flipped on
    the way to disk) is caught by the post-sign check, reported with exit 1, and the original is kept."""
    from ppmi_build.signing.authenticode import pe

    real_pwrite = pe.pwrite_all

    def corrupting_pwrite(fd, data, offset):
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0x01
        real_pwrite(fd, bad, offset)

    monkeypatch.setattr(pe, "pwrite_all", corrupting_pwrite)
    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--json")
    assert r.exit_code == 1
    msg = json.loads(r.stdout)["error"]["message"]
    assert "the signed output did not verify" in msg and "differs from the signed image" in msg
    assert dll.read_bytes() == before and temp_leftovers(tmp_path) == []


def test_post_sign_check_uses_the_full_verifier_for_other_backends(cli, plain_dll, copy_of, pki, password_env,
                                                                    tmp_path, monkeypatch):
    from ppmi_build.signing.authenticode import verify as verify_mod

    real = verify_mod.verify_pe

    def broken(path, **kw):
        res = real(path, **kw)
        res.valid = False
        res.problems.append("simulated: signature does not verify")
        return res

    monkeypatch.setattr(verify_mod, "verify_pe", broken)
    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--backend", "osslsigncode")
    assert r.exit_code == 1 and "simulated: signature does not verify" in one_line_error(r)
    assert dll.read_bytes() == before and temp_leftovers(tmp_path) == []


# --- back-ends ------------------------------------------------------------------------------


def test_osslsigncode_backend_keeps_secrets_out_of_argv(cli, plain_dll, copy_of, pki, password_env, monkeypatch):
    from ppmi_build.signing.backends import _runner

    seen: list[list[str]] = []
    key_files: list[tuple[Path, int]] = []
    real_popen = subprocess.Popen

    def spy(cmd, *a, **kw):
        seen.append(list(cmd))
        for i, arg in enumerate(cmd):
            if arg in ("-key", "-readpass"):
                p = Path(cmd[i + 1])
                key_files.append((p, stat.S_IMODE(p.stat().st_mode)))
        return real_popen(cmd, *a, **kw)

    monkeypatch.setattr(_runner.subprocess, "Popen", spy)
    dll = copy_of(plain_dll)
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--backend", "osslsigncode", "--program-name", "Tool signed")
    assert r.exit_code == 0, r.stderr
    assert "[backend osslsigncode]" in r.stdout
    (cmd,) = seen
    assert cmd[0].endswith("osslsigncode") and "-readpass" in cmd and "-pass" not in cmd
    assert all(PFX_PASSWORD not in arg for arg in cmd)
    assert key_files and all(mode == 0o600 for _, mode in key_files)
    assert all(not p.exists() for p, _ in key_files)  # removed afterwards
    assert ossl_ok(dll, pki)


def test_missing_tools_exit_3(cli, plain_dll, copy_of, pki, password_env, monkeypatch):
    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--backend", "signtool")
    assert r.exit_code == 3 and "signtool is not available" in one_line_error(r)
    from ppmi_build.signing.backends import osslsigncode

    monkeypatch.setattr(osslsigncode, "find_osslsigncode", lambda: None)
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--backend", "osslsigncode")
    assert r.exit_code == 3 and "osslsigncode is not installed" in one_line_error(r)
    assert dll.read_bytes() == before
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--backend", "osslsigncode", "--timestamp-url", "http://127.0.0.1:9/")
    assert r.exit_code == 3
    # not a URL at all: bad input (exit 2), refused before signing (report #20)
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--timestamp-url", "notaurl")
    assert r.exit_code == 2 and "notaurl" in one_line_error(r) and dll.read_bytes() == before


def test_package_only_backend_refuses_assemblies(cli, plain_dll, copy_of, pki, password_env):
    dll = copy_of(plain_dll)
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--backend", "nuget")
    assert r.exit_code == 2 and "cannot sign assemblies" in one_line_error(r)


# --- verify command -------------------------------------------------------------------------


def test_verify_exit_codes(cli, plain_dll, copy_of, pki, password_env, tmp_path):
    dll = copy_of(plain_dll)
    unsigned = cli("verify", dll)
    assert unsigned.exit_code == 1 and "NOT SIGNED" in unsigned.stdout
    assert cli("sign", dll, "--cert", pki.leaf.pfx).exit_code == 0
    ok = cli("verify", dll, "--trusted-root", pki.root.pem)
    assert ok.exit_code == 0 and "valid (assembly)" in ok.stdout
    untrusted = cli("verify", dll)
    assert untrusted.exit_code == 1 and "untrusted signer" in untrusted.stdout
    data = bytearray(dll.read_bytes())
    data[0x400] ^= 0xFF
    dll.write_bytes(data)
    bad = cli("verify", dll, "--trusted-root", pki.root.pem, "--json")
    assert bad.exit_code == 1
    (doc,) = json.loads(bad.stdout)
    assert doc["signed"] and not doc["valid"]
    assert any("modified after signing" in p for p in doc["problems"])
    assert any(p.startswith("signify: INVALID_DIGEST") for p in doc["problems"])
    text = tmp_path / "notes.dll"
    text.write_text("hello")
    r = cli("verify", text)
    assert r.exit_code == 2 and "is not a PE file" in one_line_error(r)
    r = cli("verify", tmp_path / "missing.dll")
    assert r.exit_code == 2 and "does not exist" in one_line_error(r)


# --- the image copy into the temp file (kernel copy_file_range, or writes from the mapping) -------


def _no_kernel_copy(errno_value: int):
    def refuse(*args, **kwargs):
        raise OSError(errno_value, os.strerror(errno_value))
    return refuse


@pytest.mark.parametrize("how", ["exdev", "absent"])
def test_signing_without_kernel_copy_writes_the_same_verified_file(cli, plain_dll, copy_of, pki, password_env,
                                                                  monkeypatch, how):
    """Where copy_file_range cannot copy (another file system: EXDEV; not Linux: absent) the image is
    written from the mapping; osslsigncode accepts both outputs and they are byte-identical."""
    import errno

    kernel = copy_of(plain_dll, "kernel.dll")
    assert cli("sign", kernel, "--cert", pki.leaf.pfx).exit_code == 0
    if how == "exdev":
        monkeypatch.setattr(os, "copy_file_range", _no_kernel_copy(errno.EXDEV))
    else:
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    fallback = copy_of(plain_dll, "fallback.dll")
    r = cli("sign", fallback, "--cert", pki.leaf.pfx)
    assert r.exit_code == 0, r.stderr
    assert ossl_ok(kernel, pki) and ossl_ok(fallback, pki)
    # the signatures differ only if signing time or randomness enters; Authenticode PKCS#1 v1.5 has neither
    assert fallback.read_bytes() == kernel.read_bytes()


@pytest.mark.parametrize("failure", ["enospc", "enospc-other-fs", "shrunk"])
def test_a_failed_image_copy_leaves_the_original(cli, plain_dll, copy_of, pki, password_env, tmp_path, monkeypatch,
                                                 failure):
    """Disk full while copying the image (by the kernel, or by pread/pwrite across file systems), or
    the input shrinking under us (copy_file_range returns 0): one-line error naming the file and the
    folder, exit 2, original unchanged, no temp file."""
    import errno

    if failure == "enospc":
        monkeypatch.setattr(os, "copy_file_range", _no_kernel_copy(errno.ENOSPC))
    elif failure == "enospc-other-fs":
        monkeypatch.setattr(os, "copy_file_range", _no_kernel_copy(errno.EXDEV))
        monkeypatch.setattr(os, "pwrite", _no_kernel_copy(errno.ENOSPC))
    else:
        monkeypatch.setattr(os, "copy_file_range", lambda *a, **k: 0)
    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    r = cli("sign", dll, "--cert", pki.leaf.pfx)
    assert r.exit_code == 2
    line = one_line_error(r)
    if failure.startswith("enospc"):
        assert f"cannot write the signed {dll.name} in {tmp_path}: No space left on device" in line
        assert "write elsewhere with -o OUT" in line
    else:
        assert f"{dll.name} became shorter while it was being signed" in line
    assert dll.read_bytes() == before and temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("when", ["while copied", "before the rename"])
def test_input_changed_while_signing_is_refused(cli, plain_dll, copy_of, pki, password_env, tmp_path, monkeypatch,
                                                when):
    """Another process writes the input while it is being signed: refused (exit 2, one line), never a
    success with a signature over other bytes; the writer's change is kept, no temp file is left."""
    from ppmi_build.signing import api
    from ppmi_build.signing.authenticode import pe

    dll = copy_of(plain_dll)

    def touch() -> None:  # what a build writing the file does: new bytes, new mtime
        with open(dll, "r+b") as f:
            f.seek(0x200)
            f.write(b"\x5a")
        st = os.stat(dll)
        os.utime(dll, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))

    if when == "while copied":
        real_copy = pe.copy_file

        def copy_then_write(src_fd, dst_fd, length, name):
            real_copy(src_fd, dst_fd, length, name)
            touch()

        monkeypatch.setattr(pe, "copy_file", copy_then_write)
    else:
        real_finish = api._finish_check

        def finish_then_write(*args, **kwargs):
            touch()
            return real_finish(*args, **kwargs)

        monkeypatch.setattr(api, "_finish_check", finish_then_write)
    r = cli("sign", dll, "--cert", pki.leaf.pfx)
    assert r.exit_code == 2
    assert one_line_error(r) == (f"error: {dll.name} changed while it was being signed; sign it again once nothing "
                                 "else writes to it")
    assert dll.read_bytes()[0x200] == 0x5A and temp_leftovers(tmp_path) == []


def test_interrupted_batch_stops_and_names_what_was_signed(cli, plain_dll, copy_of, pki, password_env, tmp_path,
                                                           monkeypatch):
    """Ctrl-C (SIGINT in the main thread) during a batch: files not renamed yet keep their original
    bytes, the message names exactly the files that were signed (each verifies with osslsigncode),
    exit 130, no temp file."""
    import _thread

    from ppmi_build.signing import api

    files = [copy_of(plain_dll, f"p{i}.dll") for i in range(8)]
    original = files[0].read_bytes()
    real_sign_file = api.sign_file
    calls = []

    def interrupting(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            _thread.interrupt_main()  # as the SIGINT handler would: KeyboardInterrupt in the main thread
        return real_sign_file(path, *args, **kwargs)

    monkeypatch.setattr(api, "sign_file", interrupting)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # two workers: a deterministic first few files
    r = cli("sign", *files, "--cert", pki.leaf.pfx)
    assert r.exit_code == 130
    line = one_line_error(r)
    changed = [f for f in files if f.read_bytes() != original]
    assert len(changed) < len(files)
    if changed:
        assert line == "error: interrupted; signed before the stop: " + ", ".join(str(f) for f in changed)
    else:
        assert line == "error: interrupted; no file was signed"
    assert all(ossl_ok(f, pki) for f in changed)
    assert temp_leftovers(tmp_path) == []


def test_hard_links_in_one_batch_are_refused(cli, plain_dll, copy_of, pki, password_env, tmp_path):
    a = copy_of(plain_dll, "a.dll")
    b = tmp_path / "b.dll"
    os.link(a, b)
    before = a.read_bytes()
    r = cli("sign", a, b, "--cert", pki.leaf.pfx)
    assert r.exit_code == 2
    assert one_line_error(r) == f"error: {a} and {b} are the same file (hard links); sign one of them"
    assert a.read_bytes() == before and temp_leftovers(tmp_path) == []


def test_ctrl_c_right_after_the_rename_reports_the_file_as_signed(cli, plain_dll, copy_of, pki, password_env,
                                                                  tmp_path, monkeypatch):
    from ppmi_build.signing import api

    real_replace = os.replace

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        if ".ppmi-tmp-" in str(src):
            raise KeyboardInterrupt

    monkeypatch.setattr(api.os, "replace", replace_then_interrupt)
    dll = copy_of(plain_dll)
    r = cli("sign", dll, "--cert", pki.leaf.pfx)
    assert r.exit_code == 130
    assert one_line_error(r) == f"error: interrupted; signed before the stop: {dll}"
    assert ossl_ok(dll, pki) and temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("at_call", [1, 2, 3])
def test_ctrl_c_while_the_signing_threads_start(cli, plain_dll, copy_of, pki, password_env, tmp_path, monkeypatch,
                                                at_call):
    """Interrupted while the hashing threads are being started: one line, exit 130, no traceback,
    the original unchanged, no temp file (the started threads are waited for before the mapping goes)."""
    from ppmi_build.signing import api

    real_helpers = api._helpers
    calls = []

    class InterruptedPool:  # the helper pool, with Ctrl-C arriving as the at_call-th pass is handed over
        def submit(self, fn, *args):
            calls.append(fn)
            job = real_helpers().submit(fn, *args)
            if len(calls) == at_call:
                raise KeyboardInterrupt
            return job

    monkeypatch.setattr(api, "_helpers", InterruptedPool)
    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    r = cli("sign", dll, "--cert", pki.leaf.pfx)
    assert r.exit_code == 130
    assert one_line_error(r) == "error: interrupted"
    assert dll.read_bytes() == before and temp_leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to hand a file to another user")
def test_signing_in_place_keeps_the_owner(cli, plain_dll, copy_of, pki, password_env):
    dll = copy_of(plain_dll)
    os.chown(dll, 1234, 1234)
    r = cli("sign", dll, "--cert", pki.leaf.pfx)
    assert r.exit_code == 0, r.stderr
    st = os.stat(dll)
    assert (st.st_uid, st.st_gid) == (1234, 1234) and ossl_ok(dll, pki)


def test_read_only_file_system_is_named(cli, plain_dll, copy_of, pki, password_env, tmp_path, monkeypatch):
    """A target on a file system mounted read-only (statvfs ST_RDONLY, simulated): the message names
    the cause and the fix that works (chmod would not)."""
    real_statvfs = os.statvfs

    def read_only(path):
        st = real_statvfs(path)
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files,
                                  st.f_ffree, st.f_favail, st.f_flag | os.ST_RDONLY, st.f_namemax))

    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    monkeypatch.setattr(os, "statvfs", read_only)
    r = cli("sign", dll, "--cert", pki.leaf.pfx)
    assert r.exit_code == 2
    assert one_line_error(r) == f"error: {tmp_path} is on a read-only file system; write elsewhere with -o OUT"
    assert dll.read_bytes() == before


def test_unsign_removes_a_corrupt_certificate_table_that_sign_refuses(cli, plain_dll, copy_of, pki, password_env):
    """A WIN_CERTIFICATE whose dwLength is wrong: sign refuses and points at unsign; unsign cuts the
    table (checksum recomputed, pefile agrees) and the file then signs and verifies (osslsigncode)."""
    import struct as _struct

    import pefile

    dll = copy_of(plain_dll)
    assert cli("sign", dll, "--cert", pki.leaf.pfx).exit_code == 0
    data = bytearray(dll.read_bytes())
    table_offset = pefile.PE(data=bytes(data)).OPTIONAL_HEADER.DATA_DIRECTORY[4].VirtualAddress  # independent reader
    _struct.pack_into("<I", data, table_offset, 999_999)
    dll.write_bytes(bytes(data))
    r = cli("sign", dll, "--cert", pki.leaf.pfx)
    assert r.exit_code == 2 and "ppmi-build unsign" in one_line_error(r)
    r = cli("unsign", dll)
    assert r.exit_code == 0, r.stderr
    unsigned = pefile.PE(str(dll))
    assert unsigned.OPTIONAL_HEADER.DATA_DIRECTORY[4].Size == 0
    assert unsigned.OPTIONAL_HEADER.CheckSum == unsigned.generate_checksum()
    unsigned.close()
    assert dll.stat().st_size == table_offset
    assert cli("sign", dll, "--cert", pki.leaf.pfx).exit_code == 0 and ossl_ok(dll, pki)


def test_unsign_refuses_a_table_entry_past_the_end(cli, plain_dll, copy_of, pki, password_env):
    import struct as _struct

    from ppmi_build.signing.authenticode import pe

    dll = copy_of(plain_dll)
    assert cli("sign", dll, "--cert", pki.leaf.pfx).exit_code == 0
    data = bytearray(dll.read_bytes())
    layout = pe.parse(data)
    _struct.pack_into("<II", data, layout.cert_dir_offset, len(data) + 64, 16)
    dll.write_bytes(bytes(data))
    r = cli("unsign", dll)
    assert r.exit_code == 2
    assert "points past the end of the file" in one_line_error(r) and "rebuild the file" in one_line_error(r)
    assert dll.read_bytes() == bytes(data)


@pytest.mark.parametrize("wrapped", [False, True])
def test_ctrl_c_while_a_command_module_is_imported_is_one_line(cli, monkeypatch, wrapped):
    """Ctrl-C while ``ppmi-build sign`` imports its module (Python may wrap the KeyboardInterrupt in a
    RuntimeError when it lands in a class body): one line, exit 130, not click's "Aborted!"."""
    import ppmi_build.cli as cli_mod

    real_import = cli_mod.importlib.import_module

    def interrupted(name, *args, **kwargs):
        if name.endswith(".sign"):
            if not wrapped:
                raise KeyboardInterrupt
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as inner:
                raise RuntimeError("Error calling __set_name__") from inner
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(cli_mod.importlib, "import_module", interrupted)
    r = cli("sign", "x.dll")
    assert r.exit_code == 130
    assert one_line_error(r) == "error: interrupted"


@pytest.mark.parametrize("case", ["table at the end, size 8", "data appended after the table"])
def test_unsign_repairs_what_sign_refuses_and_keeps_appended_data(cli, plain_dll, copy_of, pki, password_env, case):
    """unsign of a table entry (offset = end of file, size 8) zeroes the entry; with data appended after a
    valid table, only the table goes (the appended bytes stay). Either way the result signs and verifies."""
    import struct as _struct

    import pefile

    dll = copy_of(plain_dll)
    unsigned_image = plain_dll.read_bytes()
    assert cli("sign", dll, "--cert", pki.leaf.pfx).exit_code == 0
    data = bytearray(dll.read_bytes())
    ref = pefile.PE(data=bytes(data))  # offsets from an independent reader
    table_offset = ref.OPTIONAL_HEADER.DATA_DIRECTORY[4].VirtualAddress
    dir_offset = ref.OPTIONAL_HEADER.DATA_DIRECTORY[4].get_file_offset()
    checksum_offset = ref.OPTIONAL_HEADER.get_field_absolute_offset("CheckSum")
    extra = b""
    if case.startswith("table at the end"):
        data = data[:table_offset]
        _struct.pack_into("<II", data, dir_offset, len(data), 8)
    else:
        extra = b"overlay data appended by some other tool"
        data += extra
    dll.write_bytes(bytes(data))
    assert cli("sign", dll, "--cert", pki.leaf.pfx).exit_code == 2
    r = cli("unsign", dll)
    assert r.exit_code == 0, r.stderr
    out = dll.read_bytes()
    parsed = pefile.PE(data=out)
    assert parsed.OPTIONAL_HEADER.DATA_DIRECTORY[4].Size == 0
    assert parsed.OPTIONAL_HEADER.CheckSum == parsed.generate_checksum()
    assert out.endswith(extra) and len(out) == table_offset + len(extra)
    # the image before the (padded) table is the signed file's, the appended data is kept as it was
    assert out[:checksum_offset] == unsigned_image[:checksum_offset]
    if not extra:
        assert cli("sign", dll, "--cert", pki.leaf.pfx).exit_code == 0 and ossl_ok(dll, pki)


def test_external_tools_never_get_timestamp_credentials_in_argv(cli, plain_dll, copy_of, pki, password_env):
    dll = copy_of(plain_dll)
    before = dll.read_bytes()
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--backend", "osslsigncode", "--timestamp-url",
            "http://user:s3cr3t-pw@127.0.0.1:9/tsa")
    assert r.exit_code == 2
    line = one_line_error(r)
    assert "s3cr3t-pw" not in line and "would show on its command line" in line and "--backend python" in line
    assert dll.read_bytes() == before


def test_redacted_urls_hide_userinfo_and_query():
    from ppmi_build.http.client import redact_url

    assert redact_url("https://u:p@tsa.example/ts?code=abc") == "https://***@tsa.example/ts?***"
    assert redact_url("http://timestamp.digicert.com") == "http://timestamp.digicert.com"
