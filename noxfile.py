"""nox sessions: tests, lint (ruff, mypy, the import contract), bench (benchmarks/)."""

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

#: signify's oscrypto with the OpenSSL 3.0.10+ version fix (pyproject.toml says why), installed last so that it is
#: the copy of the ``oscrypto`` module that stays whatever order pip installed the two distributions in
OSCRYPTO_FIX = ("--no-deps", "--force-reinstall", "elements-oscrypto>=1.4.0b1")


@nox.session
def tests(session: nox.Session) -> None:
    """Install the wheel (not editable, so packaging is tested) and run pytest."""
    session.install(".[test]")
    session.install(*OSCRYPTO_FIX)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy (check_untyped_defs) and the import contract (import-linter)."""
    session.install(".[test]", "ruff", "mypy", "import-linter")
    session.run("ruff", "check", "toolchain", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")
    session.run("lint-imports", "--no-cache")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks; prints medians, ratios and peak memory."""
    session.install(".[test]")
    session.install(*OSCRYPTO_FIX)
    session.run("python", "-m", "benchmarks", *session.posargs)
