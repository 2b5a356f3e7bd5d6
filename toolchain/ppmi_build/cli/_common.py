"""Shared pieces of the CLI: ``--json``, password options, output and error mapping.

Contract (DESIGN.md §3): with ``--json`` exactly one JSON document goes to stdout and nothing
else; human text otherwise; progress and logs go to stderr. Errors: one line
``error: <message>`` on stderr and the exception's exit code; with ``--json`` the stdout
document is ``{"error": {"message", "code", "exit_code"}}``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import PpmiError

F = TypeVar("F", bound=Callable[..., Any])


def json_option(f: F) -> F:
    """Add ``--json`` (stored as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(f)  # type: ignore[return-value]


def password_options(f: F) -> F:
    """Add ``--password-env VAR`` and ``--password-file FILE`` (never a password value)."""
    f = click.option(
        "--password-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="File whose first line is the PFX/key password.",
    )(f)
    f = click.option(
        "--password-env",
        metavar="VAR",
        help="Environment variable holding the PFX/key password (default PPMI_PFX_PASSWORD).",
    )(f)
    return f


def password_source(password_env: str | None, password_file: Path | None):
    """Build a :class:`ppmi_build.signing.keys.PasswordSource` from the two options."""
    from ..signing.keys import PasswordSource

    return PasswordSource(env=password_env, file=password_file)


def progress(message: str) -> None:
    """One progress line on stderr."""
    click.echo(message, err=True)


def emit(as_json: bool, data: Any, human: str | Callable[[], str] | None = None) -> None:
    """Print the result: JSON document on stdout, or human text."""
    text = None if as_json else (human() if callable(human) else human)
    if as_json or text is None:
        import json  # only when printing JSON (keeps start-up short, issue #2)

        text = json.dumps(data, indent=2, sort_keys=False, default=str)
    if text:
        click.echo(text)


def fail(err: PpmiError, as_json: bool) -> None:
    """Report ``err`` and exit with its code."""
    click.echo(f"error: {err.message}", err=True)
    if as_json:
        import json

        click.echo(json.dumps({"error": {"message": err.message, "code": err.code, "exit_code": err.exit_code}}))
    sys.exit(err.exit_code)


def handle_errors(f: F) -> F:
    """Decorator for command callbacks: map PpmiError to exit codes, keep output rules."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except PpmiError as err:
            fail(err, bool(kwargs.get("as_json")))
        except KeyboardInterrupt as err:
            from . import _signed_note, exit_stopped

            click.echo(f"error: interrupted{_signed_note(err)}", err=True)
            exit_stopped(err, 130)

    return wrapper  # type: ignore[return-value]


class _LazyPattern:
    """Stands for a compiled regular expression and compiles it on first use (any attribute)."""

    __slots__ = ("_args", "_compile", "_pattern")

    def __init__(self, compile_fn: Callable[..., Any], *args: Any):
        self._compile = compile_fn
        self._args = args
        self._pattern = None

    def __getattr__(self, name: str) -> Any:
        pattern = self._pattern
        if pattern is None:
            pattern = self._pattern = self._compile(*self._args)
        return getattr(pattern, name)


def import_x509() -> None:
    """Import ``cryptography.x509`` with the regular expressions of its RFC 4514 name *parser*
    (``cryptography.x509.name._RFC4514NameParser``) compiled on first use instead of at import.

    Compiling them costs ~14 ms of every start-up (one character class spans U+0080-U+10FFFF,
    which ``re`` expands slowly), and commands such as ``sign`` never parse RFC 4514 strings
    (issue #2). Only ``re.compile`` calls made by the module ``cryptography.x509.name`` during this
    import are deferred; the stand-ins forward every attribute (``match``, ``sub``, ...) to the
    compiled pattern.

    Likewise ``email.utils`` (with ``socket``, ``random``, ``datetime`` and the ``email`` helpers,
    ~12 ms), which ``cryptography.x509.general_name`` imports for one function, ``parseaddr``, used
    only when an ``RFC822Name`` is constructed: during the import ``sys.modules["email.utils"]`` is
    a stand-in whose ``parseaddr`` imports the real module on first call and delegates to it; the
    stand-in is removed right after, so any later ``import email.utils`` gets the real module.
    Call it before other threads may import ``email.utils`` (the CLI calls it from its main thread
    before starting any): during the call such an import would get the stand-in.
    No-op when ``cryptography.x509`` is already imported.
    """
    if "cryptography.x509" in sys.modules:
        return
    import re

    real = re.compile

    def compile_deferred(pattern: Any, flags: int = 0) -> Any:
        if sys._getframe(1).f_globals.get("__name__") == "cryptography.x509.name":
            return _LazyPattern(real, pattern, flags)
        return real(pattern, flags)

    stand_in = None
    if "email.utils" not in sys.modules:
        import types

        stand_in = types.ModuleType("email.utils", "stand-in while cryptography.x509 is imported (import_x509)")
        stand_in.parseaddr = _parseaddr  # type: ignore[attr-defined]
        sys.modules["email.utils"] = stand_in
    re.compile = compile_deferred
    try:
        import cryptography.x509  # noqa: F401
    finally:
        re.compile = real
        if stand_in is not None and sys.modules.get("email.utils") is stand_in:
            del sys.modules["email.utils"]


def _parseaddr(*args: Any, **kwargs: Any) -> Any:
    """``email.utils.parseaddr``, imported on first use (see :func:`import_x509`)."""
    from email.utils import parseaddr

    return parseaddr(*args, **kwargs)
