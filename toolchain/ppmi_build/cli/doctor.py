"""``ppmi-build doctor``: tools, configuration, certificate expiry, FIC presence and record version."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import emit, handle_errors, json_option, progress


@click.command()
@click.option("--project", type=click.Path(path_type=Path), help="Project folder or ppmi.toml (default: here).")
@click.option("--offline", is_flag=True, help="Skip the Graph/ARM and Dataverse checks.")
@json_option
@handle_errors
def doctor(project: Path | None, offline: bool, as_json: bool) -> None:
    """Check what is installed and usable, the configuration, the signing certificate (warns 30 days before it
    expires), and for each environment the FIC on the identity and the managed identity record's version.

    Exit code 1 when a check failed; warnings do not fail.
    """
    from ..pipeline.doctor import run_doctor

    progress("checking tools, configuration, certificate" + ("" if offline else ", environments"))
    report = run_doctor(project, online=not offline)
    emit(as_json, report.to_json(), report.human)
    if report.failed:
        sys.exit(1)
