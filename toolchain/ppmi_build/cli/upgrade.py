"""``ppmi-build upgrade --env NAME --to 2 [--plan] [--retire-old] [ARTIFACT]``."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import handle_errors, json_option, progress
from .release import run_pipeline


@click.command()
@click.argument("artifact", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", "env_name", required=True, metavar="NAME", help="Target environment ([environments.NAME]).")
@click.option("--to", "to", required=True, type=click.Choice(["0", "1", "2"]),
              help="Target record version: 2; 0 or 1 only with --force.")
@click.option("--plan", "plan_only", is_flag=True, help="Print every action it would take; change nothing.")
@click.option("--retire-old", is_flag=True,
              help="Once the record is at version 2 (a later run), delete the version 0/1 FICs of the certificate.")
@click.option("--force", is_flag=True,
              help="Allow lowering the record's version (--to 0/1): the FIC of that version is restored first.")
@click.option("--project", type=click.Path(path_type=Path), help="Project folder or ppmi.toml (default: here).")
@json_option
@handle_errors
def upgrade(artifact: Path | None, env_name: str, to: str, plan_only: bool, retire_old: bool, force: bool,
            project: Path | None, as_json: bool) -> None:
    """Move the managed identity record from version 0 or 1 to 2 (Microsoft's manual upgrade, any OS, app
    registrations and user-assigned identities).

    Adds the version 2 FIC next to the old one, PATCHes the record's version, verifies, and keeps the old FIC
    until you confirm the plug-in works; then run it again with --retire-old. ARTIFACT (or [plugin] name) says
    which registered component's record to upgrade.
    """
    from ..pipeline.upgrade import run_upgrade

    run_pipeline(as_json, lambda: run_upgrade(env_name, int(to), artifact, plan_only=plan_only, retire_old=retire_old,
                                              force=force, start=project, progress=progress))
