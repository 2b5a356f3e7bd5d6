"""``ppmi-build release --env NAME [--plan] [ARTIFACT]``: build, sign, verify, FIC, register, bind, verify."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import BadInput, PpmiError
from ._common import emit, handle_errors, json_option, password_options, password_source, pasted_text, progress
from ._keys import key_uri_options


def run_pipeline(as_json: bool, fn: Callable[[], Any]) -> None:
    """Run a pipeline function returning a :class:`ppmi_build.pipeline.plan.Plan` and print it.

    On a :class:`PpmiError` that carries the partial plan (``err.partial``) the document still lists the actions
    done so far, plus ``"error": {message, code, exit_code}``; the exit code is the error's (DESIGN.md §3).
    """
    try:
        plan = fn()
    except PpmiError as err:
        partial = err.partial
        if partial is None:
            raise
        click.echo(f"error: {err.message}", err=True)
        if as_json:
            doc = partial.to_json()
            doc["error"] = {"message": err.message, "code": err.code, "exit_code": err.exit_code}
            click.echo(json.dumps(doc, indent=2, default=str))
        else:
            click.echo(partial.human())
        sys.exit(err.exit_code)
    emit(as_json, plan.to_json(), plan.human)


def timestamp_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--timestamp-url URL`` (repeatable) and ``--no-timestamp``, as ``ppmi-build sign`` has them."""
    f = click.option("--no-timestamp", is_flag=True,
                     help="Do not timestamp the signature, even when ppmi.toml or PPMI_TIMESTAMP_URLS lists "
                          "servers.")(f)
    f = click.option("--timestamp-url", "timestamp_urls", multiple=True, metavar="URL", callback=pasted_text("url"),
                     help="RFC 3161 timestamp server; repeat for fallbacks. Default: [signing] timestamp_urls / "
                          "PPMI_TIMESTAMP_URLS.")(f)
    return f


def timestamp_choice(timestamp_urls: tuple[str, ...], no_timestamp: bool) -> list[str] | None:
    """The servers to use: ``[]`` for ``--no-timestamp``, the ``--timestamp-url`` values, or None (configured).

    Raises:
        BadInput: both options given.
    """
    if no_timestamp and timestamp_urls:
        raise BadInput("--no-timestamp and --timestamp-url contradict each other; give one of them")
    if no_timestamp:
        return []
    return list(timestamp_urls) or None


@click.command()
@click.argument("artifact", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", "env_name", required=True, metavar="NAME", help="Target environment ([environments.NAME]).")
@click.option("--plan", "plan_only", is_flag=True, help="Print every action it would take; change nothing.")
@click.option("--project", type=click.Path(path_type=Path), help="Project folder or ppmi.toml (default: here).")
@key_uri_options
@timestamp_options
@click.option("--validate", "run_probe", is_flag=True,
              help="After the release, also run the plug-in through the validate probe (ppmi-build validate).")
@password_options
@json_option
@handle_errors
def release(artifact: Path | None, env_name: str, plan_only: bool, project: Path | None, key_uri: str | None,
            pin_env: str | None, cert_chain: Path | None,
            timestamp_urls: tuple[str, ...], no_timestamp: bool, run_probe: bool, password_env: str | None,
            password_file: Path | None, as_json: bool) -> None:
    """Build, sign, verify, ensure the FIC, register, bind and verify in one step.

    With ARTIFACT (.dll or .nupkg) the build is skipped and that file is signed (in place), registered and
    bound as it is. A failed run can be re-run: every step is idempotent, and the FIC is created before
    anything changes in Dataverse. The final step runs validate's checks (Dataverse's own FIC subject against the
    computed one and the FICs on the identity); --validate also runs the plug-in through the probe.
    """
    from ..pipeline.release import run_release
    from ..pipeline.validate import run_validate

    urls = timestamp_choice(timestamp_urls, no_timestamp)
    pw = password_source(password_env, password_file) if (password_env or password_file) else None

    def both() -> Any:
        plan = run_release(env_name, artifact, plan_only=plan_only, start=project, progress=progress, password=pw,
                           timestamp_urls=urls, key=key_uri, pin_env=pin_env, cert_chain=cert_chain)
        if plan.apply or run_probe:
            # the final step: validate's checks on what was released (the probe only with --validate)
            run_validate(env_name, artifact, invoke=run_probe, start=project, progress=progress, plan=plan)
        return plan

    run_pipeline(as_json, both)
