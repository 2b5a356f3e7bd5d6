"""nox sessions: tests, lint (ruff, mypy, the import contract), bench (benchmarks/)."""

import tomllib
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

#: import contracts (ids in pyproject.toml [tool.importlinter]) not checked yet, with what they wait for:
#: each is enabled by deleting its entry once the layout it describes is in place
PENDING_CONTRACTS: dict[str, str] = {}

#: every contract id in pyproject.toml
CONTRACTS = [c["id"] for c in tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text(encoding="utf-8"))
             ["tool"]["importlinter"]["contracts"]]


@nox.session
def tests(session: nox.Session) -> None:
    """Install the wheel (not editable, so packaging is tested) and run pytest."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy (check_untyped_defs) and the import contract (import-linter)."""
    session.install(".[test]", "ruff", "mypy", "import-linter")
    session.run("ruff", "check", "toolchain", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")
    for contract, waits_for in PENDING_CONTRACTS.items():
        session.log(f"import contract {contract!r} not checked yet: {waits_for}")
    active = [c for c in CONTRACTS if c not in PENDING_CONTRACTS]
    if active:
        session.run("lint-imports", "--no-cache", *(arg for c in active for arg in ("--contract", c)))


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks; prints medians, ratios and peak memory."""
    session.install(".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)
