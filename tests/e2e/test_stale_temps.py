"""Temp files an interrupted ``sign`` leaves (``.NAME.ppmi-tmp-XXXXXXXX``: SIGKILL before the rename) are removed by
the next run over the same target when they are stale: last written over a minute ago and open in no process.
A fresh one, and an old one a live process still holds open, stay; the run says what it removed on stderr."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time


def _temp(folder, name: str, suffix: str, age: float):
    p = folder / f".{name}.ppmi-tmp-{suffix}"
    p.write_bytes(b"MZ partial")
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_next_run_removes_its_stale_temp_files(cli, plain_dll, pki, password_env, tmp_path):
    dll = tmp_path / "Contoso.Plugins.dll"
    shutil.copyfile(plain_dll, dll)
    stale = _temp(tmp_path, dll.name, "0badf00d", age=600)
    fresh = _temp(tmp_path, dll.name, "00c0ffee", age=0)
    held = _temp(tmp_path, dll.name, "0000beef", age=600)
    other = _temp(tmp_path, "Other.dll", "0badf00d", age=600)  # another target's: not this run's to remove
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'rb'); "
                               "print('open', flush=True); time.sleep(60)", str(held)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"open"
        r = cli("sign", dll, "--cert", pki.leaf.pfx)
    finally:
        os.kill(holder.pid, signal.SIGTERM)
        holder.wait()
    assert r.exit_code == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("note: removed")]
    assert len(notes) == 1 and stale.name in notes[0] and held.name not in notes[0], r.stderr
    assert not stale.exists()
    assert fresh.exists() and held.exists() and other.exists()
    r = subprocess.run(["osslsigncode", "verify", "-in", str(dll), "-CAfile", str(pki.root_pem)],
                       capture_output=True, text=True)
    assert "Signature verification: ok" in r.stdout, r.stdout + r.stderr
