"""``ppmi-build register --env NAME [ARTIFACT]``: create or update the pluginassembly / pluginpackage row.

Shared helpers for ``register`` and ``bind`` (environment, artifact, client, output) live here too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

import click

from ..errors import EXIT_CHECK_FAILED, BadInput, PpmiError
from ._common import emit, handle_errors, json_option, progress


def artifact_options(command):
    """``--env NAME``, ``[ARTIFACT]``, ``--kind`` and ``--unique-name``: how ``register`` and ``bind`` name the
    environment and the plug-in artifact (resolved by :func:`resolve_artifact`)."""
    for option in reversed((
        click.option("--env", "env_name", required=True, metavar="NAME", help="Environment from [environments.NAME]."),
        click.argument("artifact", required=False, type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--kind", type=click.Choice(["assembly", "package"]),
                     help="Artifact kind when the extension does not tell."),
        click.option("--unique-name", help="pluginpackage uniquename (default [plugin] name, else the nuspec id)."),
    )):
        command = option(command)
    return command


def resolve_artifact(settings, artifact: Path | None, kind: str | None, unique_name: str | None = None):
    """Load ARTIFACT (or the project's last build output) -> :class:`~ppmi_build.dataverse.registration.Artifact`.

    The kind comes from the extension; ``--kind`` or ``[plugin] kind`` (when ppmi.toml sets it) must agree.
    """
    from ..dataverse.registration import load_artifact

    if artifact is None:
        artifact = _last_build_output(settings)
    configured = kind or (settings.plugin.kind if settings.config_file else None)
    return load_artifact(artifact, kind=configured, unique_name=unique_name or _package_name(settings, artifact))


def _package_name(settings, artifact: Path) -> str | None:
    """``[plugin] name`` is the pluginpackage uniquename when the artifact is a package."""
    if artifact.suffix.lower() == ".nupkg" and settings.plugin.name:
        return settings.plugin.name
    return None


def _last_build_output(settings) -> Path:
    """The primary artifact of the project's last ``ppmi-build build`` (``project.dotnet.last_build``)."""
    last_build: Callable[[Path | str], dict[str, Any] | None] | None
    try:
        from ..project.dotnet import last_build
    except ImportError:  # pragma: no cover - the project module ships with ppmi-build
        last_build = None
    data = last_build(settings.root) if last_build else None
    if data and data.get("primary"):
        return Path(data["primary"])
    raise BadInput("no ARTIFACT given and no build output found; run `ppmi-build build` or pass the signed "
                   ".dll/.nupkg path")


def open_client(settings, env_name: str, *, verbose: bool = True):
    """(environment settings, DataverseClient) for ``--env NAME``; retry notices go to stderr."""
    from ..dataverse.client import connect

    env = settings.environment(env_name)
    return env, connect(env, on_retry=progress if verbose else None)


def finish(as_json: bool, log, extra: dict[str, Any] | None = None, error: PpmiError | None = None) -> None:
    """Print the actions (JSON document or lines) and exit: the error's code, 1 when an action failed, else 0."""
    doc = log.to_json()
    if extra:
        doc.update(extra)
    failed = log.failed
    n_failed = f"{len(failed)} action{'' if len(failed) == 1 else 's'} failed"
    if error is not None:
        doc["error"] = {"message": error.message, "code": error.code, "exit_code": error.exit_code}
    elif failed:
        doc["error"] = {"message": n_failed, "code": None, "exit_code": EXIT_CHECK_FAILED}
    emit(as_json, doc, log.lines)
    if error is not None:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(error.exit_code)
    if failed:
        click.echo(f"error: {n_failed}: " + "; ".join(f"{a.kind} {a.target}: {a.detail}" for a in failed),
                   err=True)
        sys.exit(EXIT_CHECK_FAILED)


def _refuse_or_warn(client, art, problem: str, env_name: str) -> None:
    """An artifact without an intact signature: refused over a component bound to a managed identity (CheckFailed,
    exit 1, before any write), else a warning on stderr. Dataverse refuses to bind unsigned content
    (``0x80040216``, domain-spec §2.4) and a bound plug-in needs the FIC of its signer."""
    from ..dataverse.registration import find_component
    from ..errors import CheckFailed

    row = find_component(client, art)
    bound = (row or {}).get("_managedidentityid_value")
    fix = (f"sign it first (ppmi-build sign {art.path} --cert PATH) or run `ppmi-build release --env {env_name} "
           f"{art.path}`, which signs, registers and binds")
    if bound:
        raise CheckFailed(f"{problem}; {art.table} {art.unique_name} is bound to "
                          f"managedidentities({bound}) in {client.url}, and its managed identity cannot work with "
                          f"that content; nothing was uploaded; {fix}")
    progress(f"warning: {problem}; binding it to a managed identity will fail (Dataverse error "
             f"0x80040216); {fix}")


@click.command()
@artifact_options
@click.option("--solution", help="Solution unique name for created rows (default [environments.NAME] solution).")
@click.option("--plan", is_flag=True, help="Only read Dataverse and print what would change.")
@click.option("--force", is_flag=True, help="Upload the content even when Dataverse already holds the same bytes.")
@click.option("--prune", is_flag=True,
              help="Delete the steps ppmi-build created that ppmi.toml [[steps]] no longer declares.")
@json_option
@handle_errors
def register(env_name: str, artifact: Path | None, kind: str | None, solution: str | None, unique_name: str | None,
             plan: bool, force: bool, prune: bool, as_json: bool) -> None:
    """Create or update the pluginassembly (.dll) or pluginpackage (.nupkg) row in Dataverse,
    its plugintype rows and the sdkmessageprocessingstep rows of ppmi.toml [[steps]].

    Standalone assemblies must be strong-named; artifacts are limited to 16 MB. A package's
    version is never changed on update, and every plug-in assembly inside the package is checked
    to have its pluginassembly row afterwards. A new build that drops a plug-in class still used
    by a step or custom API is refused before the upload.


    The sandbox lint runs first (the build's checks: a strong-named assembly referencing one that is not, Azure
    SDK versions known to fail in the sandbox, over 16 MB, a package missing a referenced assembly); its findings
    are warnings on stderr and ``sandbox_warnings`` in --json, never a refusal.

    The signature of the artifact is checked next: over a component bound to a managed identity, an
    unsigned artifact or one whose signature does not verify is refused (exit 1); otherwise it is a
    warning (binding it later fails with Dataverse's 0x80040216).
    """
    from ..config import load_settings
    from ..dataverse.actions import ActionLog
    from ..dataverse.registration import register as do_register
    from ..pipeline.signatures import signature_check
    from ..project.sandbox import sandbox_warnings

    settings = load_settings()
    art = resolve_artifact(settings, artifact, kind, unique_name)
    sandbox = sandbox_warnings(art.path)
    for w in sandbox:  # run-time problems in the sandbox: reported, never a refusal
        progress(f"warning: {w}")
    signature = signature_check(art.path)
    env, client = open_client(settings, env_name)
    log = ActionLog()
    with client:
        if not signature.intact:
            _refuse_or_warn(client, art, signature.summary(art.path.name), env_name)
        progress(f"registering {art.path.name} ({art.kind}) in {client.url}")
        try:
            do_register(client, art, solution=solution, plan=plan, force=force, log=log, steps=settings.steps,
                        prune=prune)
        except PpmiError as e:
            if not log.actions:
                raise
            finish(as_json, log, {"sandbox_warnings": sandbox}, error=e)
    finish(as_json, log, {"environment": env_name, "requests": client.requests_sent, "sandbox_warnings": sandbox})
