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
        import json  # only when printing JSON (keeps start-up short)

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
            from . import report_stopped

            report_stopped(err)

    return wrapper  # type: ignore[return-value]


def pasted_text(kind: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback for GUID, URL and DN options (``kind``: ``guid``, ``url``, ``dn``): a value holding
    typographic quotes, non-breaking spaces or zero-width characters is a usage error (exit 2) naming the option
    and the characters (:mod:`ppmi_build.inputs`). Multiple values (``multiple=True``) are checked one by one. What
    makes a value wrong otherwise (not a GUID, not an http(s) URL) is for the command to say, in its own words."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        from ..inputs import lookalike_problem

        for item in value if isinstance(value, (tuple, list)) else [value]:
            if isinstance(item, str):
                problem = lookalike_problem(item, f"the {kind.upper()} value" if kind != "url" else "the URL")
                if problem:
                    raise click.BadParameter(problem, ctx=ctx, param=param)
        return value

    return callback
