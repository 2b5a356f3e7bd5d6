"""Register a 16 MiB plug-in package against the emulator: wall time and peak memory vs a plain httpx POST.

Target: ``ppmi-build register`` of a 16 MiB ``.nupkg`` within 1.2x of a plain ``httpx.post`` of the same
JSON body, in wall time and in peak memory; and the number of requests a register + bind makes (fewer is better).

Method: the emulator runs in a separate process (``python -m ppmi_build.emulator``) so its memory is not
counted; both sides create the same ``pluginpackages`` row (the emulator is reset between runs), so the server work
is identical. Peak memory is Python's ``tracemalloc`` peak of the measured call. Runs alternate, 5 of each; medians.

* ``register``: :func:`ppmi_build.dataverse.registration.load_artifact` + :func:`register` (lookup GET, POST with
  ``return=representation``, check GET of the package's assemblies).
* ``baseline``: read the file, ``base64.b64encode`` it, join it into the same JSON body, one ``httpx.post``
  (``baseline-naive`` builds the body with ``json.dumps`` of a dict holding the base64 str).

ppmi-build streams the body: the base64 text is produced in 3 MiB steps while httpx sends it (``Content-Length``
known in advance), so the 22 MB JSON body never exists in memory at once.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
import zipfile
from pathlib import Path

import httpx

SIZE = 16 * 1024 * 1024 - 64 * 1024  # just under the 16 MB limit
NUSPEC = ('<?xml version="1.0" encoding="utf-8"?><package xmlns="http://schemas.microsoft.com/packaging/2013/05/'
          'nuspec.xsd"><metadata><id>Contoso.Bench</id><version>1.0.0</version><authors>Contoso</authors>'
          '<description>bench</description></metadata></package>')


def make_package(path: Path) -> Path:
    """A .nupkg of exactly ``SIZE`` bytes: nuspec, an incompressible payload, a (placeholder) signature entry."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("Contoso.Bench.nuspec", NUSPEC)
        z.writestr(zipfile.ZipInfo("content/payload.bin"), os.urandom(SIZE - 4096))
        z.writestr(zipfile.ZipInfo(".signature.p7s"), b"0" * 16)
    # pad the payload so the file is exactly SIZE bytes
    extra = SIZE - path.stat().st_size
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("Contoso.Bench.nuspec", NUSPEC)
        z.writestr(zipfile.ZipInfo("content/payload.bin"), os.urandom(SIZE - 4096 + extra))
        z.writestr(zipfile.ZipInfo(".signature.p7s"), b"0" * 16)
    assert path.stat().st_size == SIZE, path.stat().st_size
    return path


def start_emulator(token: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "ppmi_build.emulator", "--port", "0", "--token", token],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    return proc, line.split(" on ")[1].split()[0]


def measure(fn) -> tuple[float, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return wall, peak


def main(argv: list[str]) -> None:
    from ppmi_build.dataverse.client import DataverseClient, RetryPolicy
    from ppmi_build.dataverse.managed_identity import IdentitySpec, bind, find_target
    from ppmi_build.dataverse.registration import load_artifact, register
    from ppmi_build.http.tokens import StaticToken

    token = "bench-" + uuid.uuid4().hex
    runs = int(argv[0]) if argv else 5
    with tempfile.TemporaryDirectory() as tmp:
        pkg = make_package(Path(tmp) / "Contoso.Bench.1.0.0.nupkg")
        proc, url = start_emulator(token)
        try:
            api = f"{url}/api/data/v9.2"
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "OData-Version": "4.0",
                       "OData-MaxVersion": "4.0", "Content-Type": "application/json; charset=utf-8",
                       "Prefer": "return=representation"}

            def reset() -> None:
                httpx.post(f"{url}/_emulator/reset").raise_for_status()

            def ours() -> None:
                with DataverseClient(url, StaticToken(token), retry=RetryPolicy(max_retries=0)) as c:
                    reg = register(c, load_artifact(pkg))
                    assert reg.log.actions[0].status == "created", reg.log.lines()

            def baseline() -> None:
                fields = {"pluginpackageid": str(uuid.uuid4()), "name": "Contoso.Bench",
                          "uniquename": "Contoso.Bench", "version": "1.0.0"}
                b64 = base64.b64encode(pkg.read_bytes())
                body = b"".join((json.dumps(fields).encode()[:-1], b', "content": "', b64, b'"}'))
                del b64
                r = httpx.post(f"{api}/pluginpackages", params={"$select": "pluginpackageid"}, content=body,
                               headers=headers, timeout=120)
                assert r.status_code == 201, r.text

            def baseline_naive() -> None:
                fields = {"name": "Contoso.Bench", "uniquename": "Contoso.Bench", "version": "1.0.0",
                          "content": base64.b64encode(pkg.read_bytes()).decode()}
                r = httpx.post(f"{api}/pluginpackages", params={"$select": "pluginpackageid"},
                               content=json.dumps(fields).encode(), headers=headers, timeout=120)
                assert r.status_code == 201, r.text

            results: dict[str, list[tuple[float, int]]] = {"register": [], "baseline": [], "baseline-naive": []}
            for _ in range(runs):
                for name, fn in (("baseline", baseline), ("register", ours), ("baseline-naive", baseline_naive)):
                    reset()
                    results[name].append(measure(fn))

            # requests of one register + bind (fresh environment)
            reset()
            with DataverseClient(url, StaticToken(token)) as c:
                art = load_artifact(pkg)
                register(c, art)
                n_register = c.requests_sent
                bind(c, find_target(c, art), IdentitySpec(application_id=str(uuid.uuid4()),
                                                          tenant_id=str(uuid.uuid4())))
                n_total = c.requests_sent
                # second run: nothing changes
                register(c, art)
                bind(c, find_target(c, art), IdentitySpec(application_id=str(uuid.uuid4()),
                                                          tenant_id=str(uuid.uuid4())))
            log = httpx.get(f"{url}/_emulator/requests").json()
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    med = {k: (statistics.median(w for w, _ in v), statistics.median(p for _, p in v)) for k, v in results.items()}
    base_w, base_p = med["baseline"]
    print(f"package size: {SIZE} bytes ({SIZE / 2**20:.2f} MiB); base64 body {4 * ((SIZE + 2) // 3)} bytes; "
          f"{runs} runs each, medians")
    print(f"{'case':<16}{'wall s':>9}{'peak MiB':>11}{'wall x':>9}{'peak x':>9}")
    for k, (w, p) in med.items():
        print(f"{k:<16}{w:>9.3f}{p / 2**20:>11.1f}{w / base_w:>9.2f}{p / base_p:>9.2f}")
    print(f"requests: register {n_register} + bind {n_total - n_register} = {n_total} (first run); "
          f"emulator log total {len(log)} incl. the second, unchanged run")


if __name__ == "__main__":
    main(sys.argv[1:])
