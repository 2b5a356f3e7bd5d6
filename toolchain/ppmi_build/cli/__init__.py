"""The ``ppmi-build`` command line: a thin click layer over the library.

Commands are loaded lazily (one module per command under ``ppmi_build.cli``) so that
``ppmi-build --version`` and ``--help`` do not import cryptography, asn1crypto or httpx.
Every command maps :class:`ppmi_build.errors.PpmiError` to its exit code (DESIGN.md §3).
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

import click

from .. import __version__

#: command name -> "module:attribute" (module relative to ppmi_build.cli)
COMMANDS: dict[str, str] = {
    "demo": "demo:demo",
    "cert": "cert:cert",
    "fic": "fic:fic",
    "sign": "sign:sign",
    "verify": "verify:verify",
    "unsign": "unsign:unsign",
    "snk": "snk:snk",
    "init": "init:init",
    "build": "build:build",
    "register": "register:register",
    "bind": "bind:bind",
    "release": "release:release",
    "rotate": "rotate:rotate",
    "upgrade": "upgrade:upgrade",
    "validate": "validate:validate",
    "doctor": "doctor:doctor",
    "emulator": "emulator:emulator",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs.

    With ``--json`` anywhere on the command line, a usage error (missing argument, bad choice,
    unknown option; exit 2) also prints one JSON document on stdout,
    ``{"error": {"message", "code": "usage", "exit_code": 2}}``, besides click's usage text on stderr.
    """

    _json_requested = False

    def main(self, args=None, *a, **kw):  # type: ignore[override]
        argv = list(args) if args is not None else sys.argv[1:]
        self._json_requested = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
        return super().main(args, *a, **kw)

    def _usage_json(self, err: click.UsageError) -> None:
        if self._json_requested:
            import json

            click.echo(json.dumps({"error": {"message": " ".join(err.format_message().split()), "code": "usage",
                                             "exit_code": err.exit_code}}, indent=2))

    def make_context(self, *a, **kw):  # type: ignore[override]
        try:
            return super().make_context(*a, **kw)
        except click.UsageError as err:
            self._usage_json(err)
            raise

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            self._usage_json(err)
            raise
        except (KeyboardInterrupt, RuntimeError) as err:  # Ctrl-C while a command module is imported
            if not _by_ctrl_c(err):
                raise
            click.echo("error: interrupted", err=True)
            sys.exit(130)


    def list_commands(self, ctx: click.Context) -> list[str]:
        import importlib.util  # only for --help

        return [n for n in COMMANDS if importlib.util.find_spec(f"{__name__}.{COMMANDS[n].split(':')[0]}")]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        mod_name, attr = target.split(":")
        try:
            mod = importlib.import_module(f"{__name__}.{mod_name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{mod_name}":
                return None
            raise
        return getattr(mod, attr)


def _by_ctrl_c(err: BaseException | None) -> bool:
    """True for a KeyboardInterrupt, also when Python wrapped it (e.g. ``RuntimeError: Error calling
    __set_name__`` when it arrives while a class body is being set up during an import)."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--version``: what ``click.version_option`` prints, without importing ``importlib.metadata``."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"ppmi-build, version {__version__}")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and exit.")
@click.option("-v", "--verbose", count=True,
              help="More detail on stderr: each Dataverse Web API request (method, path, status, time) and "
                   "azure-identity's own log.")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Build, sign, register and bind Dataverse plug-ins that use managed identity."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    from ._logging import configure_logging

    ctx.call_on_close(configure_logging(verbose))


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM/SIGHUP handler (:func:`_install_signal_handlers`) so
    that ``finally`` blocks run as on an error: temp files beside targets and private key folders
    are removed, child tools are killed. A BaseException so that ``except Exception`` does not
    swallow it. The process then exits with 128 + the signal number (143 for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _install_signal_handlers() -> None:
    """SIGTERM / SIGHUP (CI cancellation, ``timeout``, a closed terminal) -> :class:`Terminated`.

    Python's default for these signals ends the process at once, without cleanup. Later signals
    of either kind are ignored so that the cleanup itself is not interrupted."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:  # e.g. nohup: keep ignoring
                continue
            signal.signal(sig, handler)
        except (ValueError, OSError):  # pragma: no cover - not the main thread / not supported
            pass


def run() -> None:  # console-script entry point
    _install_signal_handlers()
    try:
        main(prog_name="ppmi-build")
    except Terminated as t:
        report_stopped(t)


def report_stopped(stop: BaseException, signed: list[str] | None = None) -> NoReturn:
    """End a run stopped by SIGTERM/SIGHUP (:class:`Terminated`) or Ctrl-C (KeyboardInterrupt) with one line on
    stderr and 128 + the signal number (130 for Ctrl-C). ``signed``: the files a ``sign`` call had signed before
    the stop (``ppmi_build.signing.api.SignProgress``), named in the line; None for other commands."""
    if isinstance(stop, Terminated):
        import signal

        try:
            what = signal.Signals(stop.signum).name
        except ValueError:  # pragma: no cover
            what = str(stop.signum)
        line, code = f"error: stopped by {what}; temporary files removed{_signed_note(signed)}", 128 + stop.signum
    else:
        line, code = f"error: interrupted{_signed_note(signed)}", 130
    try:
        click.echo(line, err=True)
    except Exception:  # pragma: no cover - a closed stderr
        pass
    exit_stopped(code)


def exit_stopped(code: int) -> NoReturn:
    """End a run stopped by SIGTERM/Ctrl-C with ``code`` (128 + the signal number; 130 for Ctrl-C).

    Workers of a stopped ``sign`` batch still waiting on the network are daemon threads
    (:func:`ppmi_build.signing.api.sign_files`), so the exit does not wait for them."""
    try:
        sys.stderr.flush()
    except Exception:  # pragma: no cover - a closed stderr
        pass
    sys.exit(code)


def _signed_note(signed: list[str] | None) -> str:
    """``"; signed before the stop: a.dll, b.dll"`` for an interrupted ``sign`` (``signed``: what it signed), ``""``
    for other commands (None)."""
    if signed is None:
        return ""
    return f"; signed before the stop: {', '.join(signed)}" if signed else "; no file was signed"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())  # type: ignore[func-returns-value]  # run() exits itself; None means exit 0
