"""Signing against a remote key: the emulator's Key Vault key with 200 ms of injected latency on every call.

Target (production-keys work): a batch of 20 files signed against the remote key within 3x the time of one file,
which only parallel signing reaches (20 sequential signatures would take 20x the latency of one).

Measured (medians over several rounds):

* whole process: ``ppmi-build sign --key keyvault:http://127.0.0.1:PORT/certificates/bench`` of 1 file and of 20
  files (interpreter start, certificate fetch and every signature included);
* in process: :func:`ppmi_build.signing.api.sign_files` over 20 files with the key already opened, for several
  worker counts (the batch default, and 4 = the concurrency the Key Vault source asks for), against one file.

Every call (``GET /certificates``, ``POST /keys/…/sign``) waits ``--latency`` seconds in the emulator (fault
injection ``delay_s``), the round trip of a far-away vault. The test PKI signs; no timestamp.

Usage: ``python -m benchmarks remote_key`` or ``python -m benchmarks.bench_remote_key [--rounds N] [--latency S]``.
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

BATCH = 20
TARGET_RATIO = 3.0


def _ppmi_cmd() -> list[str]:
    script = Path(sys.executable).with_name("ppmi-build")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ppmi_build"]


def _dll(work: Path) -> Path:
    out = work / "Bench.Plugin.dll"
    if shutil.which("mcs"):
        from tests.conftest import compile_assembly

        return compile_assembly(out, ns="Bench.Plugin")
    from tests.pe32plus import make_pe32plus

    return make_pe32plus(out)


def _copies(src: Path, folder: Path, n: int) -> list[Path]:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    out = []
    for i in range(n):
        out.append(folder / f"f{i:02d}.dll")
        shutil.copyfile(src, out[-1])
    return out


def _median(fn, rounds: int, prepare) -> float:
    times = []
    for _ in range(rounds):
        arg = prepare()
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench_remote_key")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds added to every Key Vault call")
    args = ap.parse_args(argv)

    from tests.pki import PFX_PASSWORD, make_pki

    from ppmi_build.emulator import start
    from ppmi_build.signing.api import sign_files
    from ppmi_build.signing.keys import open_key_uri

    with tempfile.TemporaryDirectory(prefix="ppmi-bench-kv-") as tmp:
        work = Path(tmp)
        pki = make_pki(work / "pki")
        src = _dll(work)
        emu = start(options={"vault_certificates": {"bench": pki.leaf.pfx}, "vault_pfx_password": PFX_PASSWORD})
        try:
            emu.add_fault(method="*", path_contains="", delay_s=args.latency, times=1_000_000)
            uri = f"keyvault:{emu.url}/certificates/bench"
            env = {**os.environ, "PPMI_ACCESS_TOKEN": emu.token, "PYTHONPYCACHEPREFIX": str(work / "pycache")}
            for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS"):
                env.pop(var, None)
            chain = ["--cert-chain", str(pki.intermediate.pem)]

            def cli(paths: list[Path]) -> None:
                res = subprocess.run([*_ppmi_cmd(), "sign", *map(str, paths), "--key", uri, *chain,
                                      "--no-timestamp"], capture_output=True, env=env)
                if res.returncode != 0:
                    raise SystemExit(res.stderr.decode(errors="replace"))

            cli(_copies(src, work / "warm", 1))  # compile bytecode once
            one = _median(cli, args.rounds, lambda: _copies(src, work / "one", 1))
            many = _median(cli, args.rounds, lambda: _copies(src, work / "many", BATCH))
            rows = [("process: 1 file", one, None), (f"process: {BATCH} files", many, many / one)]

            key = open_key_uri(uri, cert_chain=[pki.intermediate.cert],
                               environ={"PPMI_ACCESS_TOKEN": emu.token})
            in_one = _median(lambda p: sign_files(p, key), args.rounds, lambda: _copies(src, work / "ione", 1))
            rows.append(("in process: 1 file", in_one, None))
            for workers in (None, 4, 8):
                label = "default" if workers is None else str(workers)
                t = _median(lambda p, w=workers: sign_files(p, key, workers=w), args.rounds,
                            lambda: _copies(src, work / "imany", BATCH))
                rows.append((f"in process: {BATCH} files, workers {label}", t, t / in_one))
        finally:
            emu.stop()

    print(f"latency per Key Vault call: {args.latency * 1000:.0f} ms; target: {BATCH} files within "
          f"{TARGET_RATIO:.0f}x one file")
    for label, t, ratio in rows:
        extra = "" if ratio is None else (f"  {ratio:.2f}x one file "
                                          f"({'meets' if ratio <= TARGET_RATIO else 'misses'} {TARGET_RATIO:.0f}x)")
        print(f"  {label:<40} {t * 1000:8.0f} ms{extra}")


if __name__ == "__main__":
    main(sys.argv[1:])
