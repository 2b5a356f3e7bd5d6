"""Run every benchmark module ``benchmarks/bench_*.py`` (each has ``main(argv) -> None``).

Usage: ``python -m benchmarks [NAME ...]`` (names without the ``bench_`` prefix). Targets live in
each module's docstring; results are printed as a table with medians and ratios.
"""

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = {f"bench_{a}" if not a.startswith("bench_") else a for a in argv}
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"benchmarks.{name}").main([])


if __name__ == "__main__":
    main(sys.argv[1:])
