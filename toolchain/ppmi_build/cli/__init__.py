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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ppmi-build")
@click.option("-v", "--verbose", count=True, help="More progress detail on stderr.")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Build, sign, register and bind Dataverse plug-ins that use managed identity."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def run() -> None:  # console-script entry point
    main(prog_name="ppmi-build")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
