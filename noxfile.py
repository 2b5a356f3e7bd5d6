"""nox sessions: tests, lint (ruff + mypy), bench (benchmarks/)."""

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """Install the wheel (not editable, so packaging is tested) and run pytest."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install(".[test]", "ruff", "mypy")
    session.run("ruff", "check", "toolchain", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks; prints medians, ratios and peak memory."""
    session.install(".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)
