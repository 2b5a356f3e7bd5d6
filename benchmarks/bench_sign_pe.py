"""Authenticode signing speed and memory: a 16 MiB PE (the Dataverse assembly size limit)
signed by ppmi-build and by osslsigncode in the same run, same PFX, no timestamp.

Targets (medians over several rounds):

* whole process, one file: ``ppmi-build sign`` within 5x of ``osslsigncode sign`` (start-up comes from lazy
  imports only, no interpreter changes);
* whole process, 20 files: one ``ppmi-build sign`` call at least 1.5x faster than 20 osslsigncode calls;
* in process, per file (imports and interpreter start excluded): ``ppmi_build.signing.api.sign_file``
  within 1.5x of the floor of reading, hashing and copying the same bytes
  (``openssl dgst -sha256 FILE`` plus ``cp FILE COPY``);
* peak memory (peak RSS, VmHWM, of a ``ppmi-build sign`` process) below 64 MiB plus the file size;
* ``ppmi-build --version`` under 100 ms.

Usage: ``python -m benchmarks sign_pe`` or ``python -m benchmarks.bench_sign_pe [--rounds N] [--batch N]``.
Child processes run with ``PYTHONPYCACHEPREFIX`` set to a temp folder (and without
``PYTHONDONTWRITEBYTECODE``) so start-up is measured with compiled bytecode, as after a pip install.
The ppmi-build password comes from ``--password-file``, osslsigncode's from ``-readpass`` (same file).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZE = 16 * 1024 * 1024


def _median_time(fn, rounds: int, prepare=None) -> float:
    times = []
    for _ in range(rounds):
        if prepare:
            prepare()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _run(cmd: list, env: dict | None = None) -> None:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(map(str, cmd))}\n"
                         f"{res.stdout.decode(errors='replace')}{res.stderr.decode(errors='replace')}")


def make_big_pe(work: Path) -> Path:
    """A ~16 MiB .NET assembly: mcs with a random embedded resource; without mcs, a PE32+ image
    with a 16 MiB .text section (tests/pe32plus.py)."""
    out = work / "Big.Plugin.dll"
    mcs = shutil.which("mcs")
    if mcs:
        src = work / "Big.cs"
        src.write_text("namespace Big { public sealed class Plugin { public static int Answer() { return 42; } } }\n")
        res = work / "payload.bin"
        res.write_bytes(os.urandom(SIZE - 8192))
        _run([mcs, "-nologo", "-target:library", f"-out:{out}", f"-resource:{res}", src])
        res.unlink()
    else:
        from tests.pe32plus import make_pe32plus

        make_pe32plus(out, text_size=SIZE - 0x1000)
    return out


def _ppmi_cmd() -> list[str]:
    script = Path(sys.executable).with_name("ppmi-build")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ppmi_build"]


PEAK_RSS_CHILD = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from benchmarks._rss import peak_kib
from ppmi_build.cli import main
try:
    main(sys.argv[1:], prog_name="ppmi-build", standalone_mode=False)
finally:
    print("MAXRSS_KIB", peak_kib(), file=sys.stderr)
"""


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench_sign_pe")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    for tool in ("osslsigncode", "openssl", "cp"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install -y osslsigncode openssl coreutils)")

    from tests.pki import PFX_PASSWORD, make_pki

    work = Path(tempfile.mkdtemp(prefix="bench-sign-pe-"))
    try:
        _bench(work, args, make_pki, PFX_PASSWORD)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


#: per-round ratios ours/ref of each paired measure, printed after the table (shows the noise)
ROUND_RATIOS: dict[str, list[float]] = {}


def _paired(ours, ref, rounds: int, prepare=None, name: str = "") -> tuple[float, float, float]:
    """Run ``ours`` and ``ref`` alternately (so both see the same machine load); returns the median
    times and the median of the per-round ratios ours/ref (also kept in ``ROUND_RATIOS[name]``)."""
    t_ours, t_ref, ratios = [], [], []
    for _ in range(rounds):
        if prepare:
            prepare()
        t = time.perf_counter()
        ours()
        a = time.perf_counter() - t
        if prepare:
            prepare()
        t = time.perf_counter()
        ref()
        b = time.perf_counter() - t
        t_ours.append(a)
        t_ref.append(b)
        ratios.append(a / b)
    ROUND_RATIOS[name] = ratios
    return statistics.median(t_ours), statistics.median(t_ref), statistics.median(ratios)


def _bench(work: Path, args, make_pki, password: str) -> None:
    pki = make_pki(work / "pki")
    pfx = pki.leaf.pfx
    pw = work / "password.txt"
    pw.write_text(password)
    os.chmod(pw, 0o600)
    big = make_big_pe(work)
    size = big.stat().st_size
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    ppmi = _ppmi_cmd()
    rounds, batch = args.rounds, args.batch
    print(f"input: {big.name}, {size / 2**20:.2f} MiB; key RSA-2048 PFX; rounds={rounds}; batch={batch}")
    print(f"cpu count: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f} "
          "(ratios are medians of per-round ratios; each round runs both sides back to back)")

    one = work / "one.dll"
    out = work / "ossl-out.dll"

    def ours_one():
        _run([*ppmi, "sign", one, "--cert", pfx, "--password-file", pw], env)

    def ossl_one(src=big, dst=out):
        if dst.exists():
            dst.unlink()
        _run(["osslsigncode", "sign", "-pkcs12", pfx, "-readpass", pw, "-h", "sha256", "-in", src, "-out", dst])

    shutil.copyfile(big, one)
    ours_one()  # warm-up: bytecode cache, page cache
    ossl_one()
    one_ours, one_ossl, one_ratio = _paired(ours_one, ossl_one, rounds, lambda: shutil.copyfile(big, one),
                                         "whole process, 1 file")

    files = [work / f"batch-{i:02d}.dll" for i in range(batch)]
    outs = [work / f"batch-{i:02d}.ossl.dll" for i in range(batch)]

    def prep_batch():
        for f in files:
            shutil.copyfile(big, f)

    def ours_batch():
        _run([*ppmi, "sign", *files, "--cert", pfx, "--password-file", pw], env)

    def ossl_batch():
        for f, o in zip(files, outs, strict=True):
            ossl_one(f, o)

    b_ours, b_ossl, b_ratio = _paired(ours_batch, ossl_batch, max(3, rounds // 2), prep_batch,
                                   f"whole process, {batch} files")

    # in process: imports and key loading done once; then per file
    from ppmi_build.signing.api import sign_file
    from ppmi_build.signing.keys import PasswordSource, load_key_source

    key = load_key_source(pfx, PasswordSource(file=pw))
    inproc = work / "inproc.dll"
    shutil.copyfile(big, inproc)
    sign_file(inproc, key)  # warm-up
    copy = work / "floor-copy.dll"

    def floor():
        _run(["openssl", "dgst", "-sha256", big])
        _run(["cp", big, copy])

    def prep_inproc():
        shutil.copyfile(big, inproc)

    ip_ours, ip_floor, ip_ratio = _paired(lambda: sign_file(inproc, key, file_hashes=False), floor, rounds,
                                          prep_inproc, "in process, per file")
    ipj_ours, ipj_floor, ipj_ratio = _paired(lambda: sign_file(inproc, key), floor, rounds, prep_inproc,
                                             "  same, + sha256 before/after")

    # peak memory of one ppmi-build sign process
    shutil.copyfile(big, one)
    res = subprocess.run([sys.executable, "-c", PEAK_RSS_CHILD, "sign", str(one), "--cert", str(pfx),
                          "--password-file", str(pw)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(res.stdout + res.stderr)
    kib = int(res.stderr.split("MAXRSS_KIB")[1].split()[0])
    peak_mib = kib / 1024

    t_version = _median_time(lambda: _run([*ppmi, "--version"], env), max(9, rounds))

    size_mib = size / 2**20
    rows = [
        ("whole process, 1 file", one_ours, one_ossl, "osslsigncode", one_ratio, "<= 5.0x", one_ratio <= 5.0),
        (f"whole process, {batch} files", b_ours, b_ossl, f"{batch}x osslsigncode", 1 / b_ratio,
         ">= 1.5x faster", 1 / b_ratio >= 1.5),
        ("in process, per file", ip_ours, ip_floor, "openssl dgst + cp", ip_ratio, "<= 1.5x", ip_ratio <= 1.5),
        ("  same, + sha256 before/after", ipj_ours, ipj_floor, "openssl dgst + cp", ipj_ratio, "(--json output)",
         None),
    ]
    print()
    print(f"{'measure':30} {'ppmi-build':>12} {'reference':>12}  {'reference is':22} {'ratio':>7}  {'target':16} ok")
    for name, ours, ref, what, ratio, target, ok in rows:
        verdict = "" if ok is None else ("yes" if ok else "NO")
        print(f"{name:30} {ours * 1000:10.1f}ms {ref * 1000:10.1f}ms  {what:22} {ratio:6.2f}x  {target:16} {verdict}")
    limit = 64 + size_mib
    print(f"{'peak RSS, ppmi-build sign':30} {peak_mib:10.1f}MiB {'':12}  {'limit 64 MiB + file':22} {'':7}  "
          f"{'< ' + format(limit, '.1f') + ' MiB':16} {'yes' if peak_mib < limit else 'NO'}")
    print(f"{'ppmi-build --version':30} {t_version * 1000:10.1f}ms {'':12}  {'':22} {'':7}  {'< 100 ms':16} "
          f"{'yes' if t_version < 0.1 else 'NO'}")
    print()
    print("per-round ratios ppmi-build/reference (the medians above come from these; a busy machine spreads them):")
    for name, ratios in ROUND_RATIOS.items():
        print(f"  {name.strip():30} " + " ".join(f"{r:.2f}" for r in ratios))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
