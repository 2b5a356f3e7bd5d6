"""NuGet package signing benchmark.

Signs a 16 MiB plug-in package (a real layout plus one incompressible 16 MiB payload entry) and compares,
in the same run and on the same file:

* **floor**: reading, hashing and copying the bytes with the system tools, ``openssl dgst -sha256 PKG``
  followed by ``cp PKG COPY`` (two processes; wall time of both);
* **in-process signing**: :func:`ppmi_build.signing.nuget_sign.sign_package` with the key already loaded
  (interpreter start and imports excluded) — target: median <= 1.5 x the floor median;
* **api.sign_file** in-process: signing plus the atomic temp file, SHA-256 before/after and the post-sign
  verification (which rebuilds the package hash) — reported, no target;
* **whole process**: ``python -m ppmi_build sign PKG -o OUT --cert PFX --password-file F --json``
  (interpreter start, imports, PFX decryption, signing, the post-sign verification that re-reads the output,
  SHA-256 of input and output) — reported beside the target, no target;
* **peak memory**: maximum resident set size of a fresh process that imports ppmi-build and signs the
  package (VmHWM, ``benchmarks._rss``) — target: < 64 MiB + the package size.

Usage: ``python -m benchmarks sign_nupkg`` (or ``nox -s bench``). ``main(["--size-mib", "N",
"--repeat", "R"])`` changes the package size and the number of timed runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1 << 20


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


_PEAK_SCRIPT = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[5])
from benchmarks._rss import peak_kib
t0 = time.perf_counter()
from ppmi_build.signing.nuget import sign as nuget_sign
from ppmi_build.signing.nuget import verify as nuget_verify
from ppmi_build.signing.keys import PasswordSource, load_key_source
key = load_key_source(Path(sys.argv[1]), PasswordSource(file=Path(sys.argv[2])))
before = peak_kib()
nuget_sign.sign_package(Path(sys.argv[3]), Path(sys.argv[4]), key)
peak = peak_kib()
print(json.dumps({"peak_kib": peak, "before_sign_kib": before}))
"""


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench_sign_nupkg")
    ap.add_argument("--size-mib", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)

    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.nupkg_builder import build_nupkg
    from tests.pki import PFX_PASSWORD, make_pki

    from ppmi_build.signing.keys import PasswordSource, load_key_source
    from ppmi_build.signing.nuget import sign as nuget_sign

    openssl, cp = shutil.which("openssl"), shutil.which("cp")
    if not openssl or not cp:
        print("SKIP: openssl and cp are needed for the floor measurement")
        return

    with tempfile.TemporaryDirectory(prefix="bench-nupkg-") as tmp:
        work = Path(tmp)
        pki = make_pki(work / "pki")
        pw = work / "pw.txt"
        pw.write_text(PFX_PASSWORD)
        pkg = build_nupkg(work / "Contoso.Big.1.0.0.nupkg", payload_bytes=args.size_mib * MIB - 4096)
        size = pkg.stat().st_size
        key = load_key_source(pki.leaf.pfx, PasswordSource(file=pw))
        copy, out = work / "copy.nupkg", work / "signed.nupkg"

        def floor() -> None:
            subprocess.run([openssl, "dgst", "-sha256", str(pkg)], check=True, stdout=subprocess.DEVNULL)
            subprocess.run([cp, str(pkg), str(copy)], check=True)

        def sign() -> None:
            nuget_sign.sign_package(pkg, out, key)

        # warm the page cache and both code paths once
        floor()
        sign()
        # interleave the two measurements so that machine noise hits both alike
        floor_times, sign_times = [], []
        for _ in range(args.repeat):
            floor_times.append(_median_time(floor, 1))
            sign_times.append(_median_time(sign, 1))
        floor_med, sign_med = statistics.median(floor_times), statistics.median(sign_times)

        cli = [sys.executable, "-m", "ppmi_build", "sign", str(pkg), "-o", str(work / "cli.nupkg"),
               "--cert", str(pki.leaf.pfx), "--password-file", str(pw), "--json"]
        env = {k: v for k, v in os.environ.items() if k != "PPMI_PFX_PASSWORD"}

        def whole() -> None:
            subprocess.run(cli, check=True, stdout=subprocess.DEVNULL, env=env)

        whole_med = _median_time(whole, 3)

        from ppmi_build.signing.api import sign_file

        def sign_verified() -> None:
            sign_file(pkg, key, output=work / "api.nupkg")

        api_med = _median_time(sign_verified, 3)

        res = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(pki.leaf.pfx), str(pw), str(pkg),
                              str(work / "peak.nupkg"), str(root)], check=True, capture_output=True, text=True,
                             env=env)
        peak = json.loads(res.stdout)
        peak_mib = peak["peak_kib"] / 1024
        base_mib = peak["before_sign_kib"] / 1024
        limit_mib = 64 + size / MIB

        ratio = sign_med / floor_med
        print(f"package: {size / MIB:.1f} MiB ({size} bytes), {args.repeat} runs, medians")
        print(f"{'floor: openssl dgst -sha256 + cp':<44} {floor_med * 1e3:9.1f} ms")
        print(f"{'sign_package (in-process)':<44} {sign_med * 1e3:9.1f} ms   ratio {ratio:4.2f} "
              f"(target <= 1.50)  {'ok' if ratio <= 1.5 else 'SLOW'}")
        print(f"{'api.sign_file (in-process, temp + verify)':<44} {api_med * 1e3:9.1f} ms   (reported, no target)")
        print(f"{'ppmi-build sign (whole process, verified)':<44} {whole_med * 1e3:9.1f} ms   (reported, no target)")
        print(f"{'peak RSS of a signing process':<44} {peak_mib:9.1f} MiB  (after imports and key load "
              f"{base_mib:.1f} MiB; target < {limit_mib:.1f} MiB)  {'ok' if peak_mib < limit_mib else 'HIGH'}")
