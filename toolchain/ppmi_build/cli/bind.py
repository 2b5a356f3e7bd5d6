"""``ppmi-build bind --env NAME [ARTIFACT] [--unbind]``: upsert the managedidentities row and bind it."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from ..errors import PpmiError
from ._common import handle_errors, json_option, progress
from .register import artifact_options, finish, open_client, resolve_artifact


@click.command()
@artifact_options
@click.option("--unbind", is_flag=True, help="Remove the binding (the managedidentities row is kept).")
@click.option("--plan", is_flag=True, help="Only read Dataverse and print what would change.")
@json_option
@handle_errors
def bind(env_name: str, artifact: Path | None, kind: str | None, unique_name: str | None, unbind: bool, plan: bool,
         as_json: bool) -> None:
    """Bind a managedidentities row to the registered plug-in (package row for a .nupkg,
    assembly row for a standalone .dll).

    The row holds [identity] application_id, tenant_id and version (always sent),
    credentialsource 2 and subjectscope 1; [identity] managed_identity_id fixes its id.
    A second run changes nothing. Afterwards the binding is read back from Dataverse.
    """
    from ..config import load_settings
    from ..dataverse.actions import ActionLog
    from ..dataverse.managed_identity import IdentitySpec, find_target
    from ..dataverse.managed_identity import bind as do_bind
    from ..dataverse.managed_identity import unbind as do_unbind

    settings = load_settings()
    art = resolve_artifact(settings, artifact, kind, unique_name)
    spec = None
    if not unbind:
        from ..identity.guids import normalize_guid

        ident = settings.identity
        # malformed or all-zero (Guid.Empty) IDs are refused here, naming the setting (identity/guids.py)
        ids = {key: normalize_guid(value, label) if value else ""
               for key, value, label in (("application_id", ident.application_id, "application ID"),
                                         ("tenant_id", ident.tenant_id, "tenant ID"),
                                         ("managed_identity_id", ident.managed_identity_id, "managed identity ID"))}
        spec = IdentitySpec(application_id=ids["application_id"], tenant_id=ids["tenant_id"],
                            version=ident.version, managed_identity_id=ids["managed_identity_id"] or None)
    env, client = open_client(settings, env_name)
    log = ActionLog()
    with client:
        try:
            target = find_target(client, art)
            if unbind:
                progress(f"unbinding {target.label} in {client.url}")
                result = do_unbind(client, target, plan=plan, log=log)
            else:
                progress(f"binding {target.label} in {client.url}")
                result = do_bind(client, target, cast(IdentitySpec, spec), plan=plan, log=log, env_name=env_name,
                                 config_file=settings.config_file)  # spec is set when not unbind
        except PpmiError as e:
            if not log.actions:
                raise
            finish(as_json, log, error=e)
    # "dataverse" is what Dataverse answered to the writes / reads of this run (return=representation)
    finish(as_json, log, {"environment": env_name, "requests": client.requests_sent, "dataverse": result.to_json()})
