"""``ppmi-build validate --env NAME [ARTIFACT] [--json] [--plan] [--keep]``: prove the managed identity works by
running the plug-in in the environment (DESIGN.md §3; :mod:`ppmi_build.pipeline.validate`)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import handle_errors, json_option, progress
from .release import run_pipeline


@click.command()
@click.argument("artifact", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", "env_name", required=True, metavar="NAME", help="Target environment ([environments.NAME]).")
@click.option("--plan", "plan_only", is_flag=True, help="Say what the probe would create; change nothing.")
@click.option("--keep", is_flag=True, help="Leave the probe Custom API in place after the run.")
@click.option("--no-invoke", is_flag=True, help="Run the checks only; do not run the plug-in.")
@click.option("--probe-type", metavar="TYPENAME",
              help="Plug-in type that answers the probe (default: the one named *.AcquireTokenPlugin).")
@click.option("--project", type=click.Path(path_type=Path), help="Project folder or ppmi.toml (default: here).")
@json_option
@handle_errors
def validate(artifact: Path | None, env_name: str, plan_only: bool, keep: bool, no_invoke: bool,
             probe_type: str | None, project: Path | None, as_json: bool) -> None:
    """Prove that the bound plug-in gets a token in the environment, or say which string is wrong.

    Checks the held signature and signer, the record version, the bound identity, Dataverse's own FIC subject
    and the FICs on the identity; then runs the plug-in through a temporary probe Custom API with plug-in trace
    logging on, and reads the trace. Exit 0 valid, 1 invalid, 3 a service failed.
    """
    from ..pipeline.validate import run_validate

    run_pipeline(as_json, lambda: run_validate(env_name, artifact, plan_only=plan_only, keep=keep,
                                               invoke=not no_invoke, probe_type=probe_type, start=project,
                                               progress=progress))
