"""Project tooling speed: .NET metadata reading, csproj edits, scaffold rendering, .snk generation.

Targets (medians on one core of the CI machine):

* ``read_assembly_identity`` + ``plugin_types`` on a 4 MB assembly (Mono's mscorlib, ~3,000 types): < 1 s
  (dnfile's eager parse took ~15 s; the reader parses only the CLR directory and decodes rows lazily);
* one csproj property edit + save: < 20 ms;
* rendering every template of a project (no key generation): < 200 ms;
* a 2048-bit ``.snk``: reported only (RSA key generation time varies widely).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def _median(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str]) -> None:
    from ppmi_build.assembly.metadata import plugin_types, read_assembly_identity
    from ppmi_build.identity.snk import generate_snk
    from ppmi_build.project import csproj
    from ppmi_build.project.scaffold import render, scaffold

    rows: list[tuple[str, float, float | None]] = []
    big = next(iter(sorted(Path("/usr/lib/mono").glob("4.5/mscorlib.dll"))), None)
    if big is not None:
        rows.append((f"metadata identity+types {big.stat().st_size / 2**20:.1f} MB",
                     _median(lambda: (read_assembly_identity(big), plugin_types(big))), 1.0))
    else:
        print("(Mono's mscorlib.dll not found: metadata benchmark skipped)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        scaffold(root, "Contoso.Plugins", kind="package")
        proj = root / "src" / "Contoso.Plugins.csproj"
        counter = iter(range(1, 10**6))

        def edit() -> None:
            p = csproj.Project.load(proj)
            p.set_property("FileVersion", f"1.0.{next(counter)}.0")
            p.save()

        rows.append(("csproj set_property + save", _median(edit, 20), 0.020))
    rows.append(("render all templates", _median(lambda: render("Contoso.Plugins", kind="assembly"), 10), 0.200))
    rows.append((".snk 2048-bit generation", _median(lambda: generate_snk(2048), 3), None))
    print(f"{'benchmark':45} {'median':>10} {'target':>10}  ok")
    for name, value, target in rows:
        ok = "" if target is None else ("yes" if value <= target else "NO")
        tgt = "-" if target is None else f"{target * 1000:.0f} ms"
        print(f"{name:45} {value * 1000:8.1f} ms {tgt:>10}  {ok}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
