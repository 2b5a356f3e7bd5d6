"""Authenticode signing with a key on a PKCS#11 token: a 16 MiB PE (the Dataverse assembly size limit) signed by
``ppmi-build sign --key pkcs11:…`` and by ``osslsigncode`` through OpenSSL's PKCS#11 engine, same SoftHSM2 token,
same key, no timestamp, run alternately in the same rounds.

Target (median of the per-round ratios): the whole ``ppmi-build sign`` process within 3x of osslsigncode with the
engine.

The token is made in a temp folder (``softhsm2-util --init-token``, ``pkcs11-tool --write-object``: the test PKI's
leaf key and certificate, id 01, label K). The PIN reaches ppmi-build through ``PPMI_PKCS11_PIN``; osslsigncode
only takes it in the key URI (``pin-value``), which is why ppmi-build refuses that form.

Usage: ``python -m benchmarks pkcs11`` or ``python -m benchmarks.bench_pkcs11 [--rounds N]``. Needs softhsm2,
opensc (pkcs11-tool), libengine-pkcs11-openssl, osslsigncode and mcs (.ci/run installs them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_sign_pe import _ppmi_cmd, _run, make_big_pe  # noqa: E402

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
ENGINE_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so", "/usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so")
PIN = "bench-pin-4711"


def _make_token(work: Path, pki) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization

    (work / "tokens").mkdir()
    conf = work / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {work / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    _run(["softhsm2-util", "--init-token", "--free", "--label", "B", "--pin", PIN, "--so-pin", "bench-so-0815"],
         env=env)
    key_der = work / "key.der"
    key_der.write_bytes(pki.leaf.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    (work / "leaf.der").write_bytes(pki.leaf.der)
    tool = ["pkcs11-tool", "--module", MODULE, "--token-label", "B", "--login", "--pin", PIN]
    _run([*tool, "--write-object", key_der, "--type", "privkey", "--id", "01", "--label", "K"], env=env)
    _run([*tool, "--write-object", work / "leaf.der", "--type", "cert", "--id", "01", "--label", "K"], env=env)
    key_der.unlink()
    return env


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench_pkcs11")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    engine = next((e for e in ENGINE_CANDIDATES if Path(e).is_file()), None)
    missing = [t for t in ("osslsigncode", "softhsm2-util", "pkcs11-tool") if not shutil.which(t)]
    if missing or engine is None or not Path(MODULE).is_file():
        raise SystemExit(f"missing: {', '.join(missing) or 'the PKCS#11 engine or module'} "
                         "(apt-get install -y osslsigncode softhsm2 opensc libengine-pkcs11-openssl)")

    from tests.pki import make_pki

    work = Path(tempfile.mkdtemp(prefix="bench-pkcs11-"))
    try:
        pki = make_pki(work / "pki")
        env = _make_token(work, pki)
        env.update(PPMI_PKCS11_PIN=PIN, PYTHONPYCACHEPREFIX=str(work / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        src = make_big_pe(work)
        ours_out, theirs_out = work / "ours.dll", work / "theirs.dll"
        uri = f"pkcs11:token=B;object=K?module-path={MODULE}"
        ours_cmd = [*_ppmi_cmd(), "sign", src, "-o", ours_out, "--key", uri, "--no-timestamp"]
        theirs_cmd = ["osslsigncode", "sign", "-pkcs11engine", engine, "-pkcs11module", MODULE,
                      "-key", f"pkcs11:token=B;object=K;type=private;pin-value={PIN}", "-certs", pki.leaf.chain_pem,
                      "-h", "sha256", "-in", src, "-out", theirs_out]
        _run(ours_cmd, env=env)  # warm-up: bytecode compiled, page cache filled
        ratios, ours_t, theirs_t = [], [], []
        for _ in range(args.rounds):
            for p in (ours_out, theirs_out):
                p.unlink(missing_ok=True)
            t = time.perf_counter()
            _run(ours_cmd, env=env)
            ours_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            _run(theirs_cmd, env=env)
            theirs_t.append(time.perf_counter() - t)
            ratios.append(ours_t[-1] / theirs_t[-1])
        ratio = statistics.median(ratios)
        print(f"{'measure':58} {'ppmi-build':>11} {'osslsigncode':>13} {'ratio':>7}  target")
        print(f"{'PKCS#11 sign, 16 MiB DLL, whole process (median ms)':58} "
              f"{statistics.median(ours_t) * 1000:11.0f} {statistics.median(theirs_t) * 1000:13.0f} "
              f"{ratio:7.2f}  <= 3x {'met' if ratio <= 3 else 'MISSED'}")
        print("per-round ratios: " + " ".join(f"{r:.2f}" for r in ratios))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
