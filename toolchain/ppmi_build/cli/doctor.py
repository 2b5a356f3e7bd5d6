"""``ppmi-build doctor``: tools, configuration, certificate expiry, FIC presence and record version."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import emit, handle_errors, json_option, progress


@click.command()
@click.option("--project", type=click.Path(path_type=Path), help="Project folder or ppmi.toml (default: here).")
@click.option("--offline", is_flag=True, help="Skip the Graph/ARM and Dataverse checks.")
@click.option("--artifact", "artifacts", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A .dll/.nupkg to run the sandbox lint on (besides the last build's output); repeatable.")
@json_option
@handle_errors
def doctor(project: Path | None, offline: bool, artifacts: tuple[Path, ...], as_json: bool) -> None:
    """Check what is installed and usable, the configuration, the signing certificate (warns 30 days before it
    expires), for each environment the FIC on the identity and the managed identity record's version, and the
    sandbox lint of the last build's output and of each --artifact (warnings naming the assembly and the fix).

    Exit code 1 when a check failed; warnings do not fail.
    """
    from ..pipeline.doctor import run_doctor

    progress("checking tools, configuration, certificate" + ("" if offline else ", environments"))
    report = run_doctor(project, online=not offline, artifacts=list(artifacts))
    emit(as_json, report.to_json(), report.human)
    if report.failed:
        sys.exit(1)
