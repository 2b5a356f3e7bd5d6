"""The ``ppmi-build`` command line: a thin click layer over the library.

Commands are loaded lazily (one module per command under ``ppmi_build.cli``) so that
``ppmi-build --version`` and ``--help`` do not import cryptography, asn1crypto or httpx.
Every command maps :class:`ppmi_build.errors.PpmiError` to its exit code (DESIGN.md §3).
"""

from __future__ import annotations

import importlib
import sys

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
    "doctor": "doctor:doctor",
    "emulator": "emulator:emulator",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs."""

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


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--version``: what ``click.version_option`` prints, then a quick exit (:func:`skip_teardown`)."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"ppmi-build, version {__version__}")
    skip_teardown()
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and exit.")
@click.option("-v", "--verbose", count=True, help="More progress detail on stderr.")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Build, sign, register and bind Dataverse plug-ins that use managed identity."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


#: set by :func:`skip_teardown` when a command has finished its work (files written, fsynced and
#: renamed, output printed): :func:`run` then ends the process without the interpreter's teardown
_SKIP_TEARDOWN = False


def skip_teardown() -> None:
    """Let :func:`run` end the process right after this command returns successfully.

    Tearing down the interpreter (clearing ~250 modules, cryptography's and click's included) takes
    15-30 ms, a tenth of a ``ppmi-build sign`` run (issue #2). A command calls this only when nothing
    is left to do: :func:`run` still flushes stdout/stderr, runs the ``atexit`` handlers and waits for
    non-daemon threads, exactly what a normal exit does for the user, then calls ``os._exit``.
    """
    global _SKIP_TEARDOWN
    _SKIP_TEARDOWN = True


def run() -> None:  # console-script entry point
    try:
        main(prog_name="ppmi-build")
    except SystemExit as e:
        if not _SKIP_TEARDOWN or not isinstance(e.code, (int, type(None))):
            raise
        _exit_now(e.code or 0)
        raise


def _exit_now(code: int) -> None:
    """Flush, run atexit handlers, join non-daemon threads, then ``os._exit(code)``; returns (and the
    caller exits normally) when any of it fails."""
    import atexit
    import os
    import threading

    try:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        for t in threading.enumerate():
            if t is not threading.current_thread() and not t.daemon:
                t.join()
    except Exception:  # pragma: no cover - e.g. a closed pipe: let the normal exit report it
        return
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
