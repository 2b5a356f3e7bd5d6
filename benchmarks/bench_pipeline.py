"""Pipeline speed against the in-process emulator (Dataverse + Entra over loopback HTTP).

Targets (a release is "one safe, repeatable pipeline step", so the converged re-run that CI does on every
push must be cheap):

* ``ensure_fic`` on an app registration that already holds 19 FICs (list + exact match, no write): median < 20 ms;
* a converged ``release`` re-run (artifact already signed and registered, FIC present, record bound): median < 1.5 s
  in-process (excluding interpreter start), and it sends no write request;
* the first ``release`` (sign, FIC, register, bind, read back), for reference.

Method: the shipped demo assembly (strong-named) is signed with a fresh self-signed development certificate;
5 runs each; medians.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

TENANT = "738016bf-2f59-46ca-9660-357d1de3b865"
APP = "9f3d07ca-381e-43fc-8bef-76dd03b460d6"
OBJECT = "bcd7c908-1c4d-4d48-93ee-ff38349a75c8"
ENV = "7efcc31a-c410-e20e-9b95-dd448cedf653"


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main(argv: list[str]) -> None:
    from ppmi_build import entra, resources
    from ppmi_build.emulator import start
    from ppmi_build.identity.certificates import new_dev_certificate, write_pfx
    from ppmi_build.pipeline.release import run_release

    work = Path(tempfile.mkdtemp(prefix="ppmi-bench-pipeline-"))
    emu = start()
    try:
        key, cert = new_dev_certificate("CN=ppmi-build Bench", days=30)
        write_pfx(work / "bench.pfx", key, cert, b"bench-password")
        dll = work / "Contoso.Demo.Plugins.dll"
        with resources.data().joinpath("Contoso.Demo.Plugins.dll").open("rb") as src, open(dll, "wb") as dst:
            shutil.copyfileobj(src, dst)
        (work / "ppmi.toml").write_text(
            f'[plugin]\nkind = "assembly"\nname = "Contoso.Demo.Plugins"\n'
            f'[identity]\ntenant_id = "{TENANT}"\napplication_id = "{APP}"\nversion = 2\nfic_target = "app"\n'
            f'application_object_id = "{OBJECT}"\ngraph_url = "{emu.url}"\n'
            f'[signing]\ncertificate = "bench.pfx"\ntimestamp_urls = []\n'
            f'[environments.bench]\nurl = "{emu.url}"\nenvironment_id = "{ENV}"\n', encoding="utf-8")
        env = {"PPMI_ACCESS_TOKEN": emu.token, "PPMI_PFX_PASSWORD": "bench-password"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            t = time.perf_counter()
            run_release("bench", dll, start=work)
            first = time.perf_counter() - t
            reruns = []
            for _ in range(5):
                mark = len(emu.requests())
                t = time.perf_counter()
                plan = run_release("bench", dll, start=work)
                reruns.append(time.perf_counter() - t)
                writes = [r for r in emu.requests()[mark:] if r["method"] != "GET"]
                assert not plan.changed and not writes, writes
            client = entra.GraphFicClient(emu.url, OBJECT, lambda s: emu.token)
            for i in range(18):
                client.create(entra.Fic(f"bench-{i}", f"https://issuer.example/{i}", f"subject-{i}",
                                        ("api://AzureADTokenExchange",)))
            want = client.list()[0]
            ensures = []
            for _ in range(20):
                t = time.perf_counter()
                res = entra.ensure_fic(client, entra.Fic(want.name, want.issuer, want.subject, want.audiences))
                ensures.append(time.perf_counter() - t)
                assert res.status == "unchanged"
            client.close()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        emu.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("ensure_fic, 19 FICs present (unchanged)", _median_ms(ensures), 20.0),
        ("release re-run, converged (no writes)", _median_ms(reruns), 1500.0),
        ("release, first run", first * 1000, None),
    ]
    print(f"{'measure':45} {'median ms':>10} {'target ms':>10}  ok")
    for name, ms, target in rows:
        ok = "" if target is None else ("yes" if ms < target else "NO")
        print(f"{name:45} {ms:10.1f} {'' if target is None else f'{target:10.0f}'}  {ok}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
