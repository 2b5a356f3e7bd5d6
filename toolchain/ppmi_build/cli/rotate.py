"""``ppmi-build rotate --env NAME (--new-cert PATH | --new-key URI) [--plan] [--retire-old] [ARTIFACT]``."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import handle_errors, json_option, password_options, password_source, progress
from ._keys import key_uri_options_no_key
from .release import run_pipeline, timestamp_choice, timestamp_options


@click.command()
@click.argument("artifact", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", "env_name", required=True, metavar="NAME", help="Target environment ([environments.NAME]).")
@click.option("--new-cert", type=click.Path(dir_okay=False, path_type=Path),
              help="The new code-signing certificate (.pfx, or PEM with its key).")
@click.option("--new-key", "--key", "new_key", metavar="URI",
              help="The new signing key as a key URI (pkcs11:..., keyvault:..., trustedsigning:...), instead of "
                   "--new-cert.")
@key_uri_options_no_key
@click.option("--plan", "plan_only", is_flag=True, help="Print every action it would take; change nothing.")
@click.option("--retire-old", is_flag=True, help="Delete the old certificate's FIC once the new state verified.")
@click.option("--old-fic", "old_fic", metavar="NAME",
              help="Name of the FIC to retire (what the printed retire command passes after a rotation).")
@click.option("--project", type=click.Path(path_type=Path), help="Project folder or ppmi.toml (default: here).")
@timestamp_options
@password_options
@json_option
@handle_errors
def rotate(artifact: Path | None, env_name: str, new_cert: Path | None, new_key: str | None, pin_env: str | None,
           cert_chain: Path | None, plan_only: bool, retire_old: bool,
           old_fic: str | None, project: Path | None, timestamp_urls: tuple[str, ...], no_timestamp: bool,
           password_env: str | None, password_file: Path | None, as_json: bool) -> None:
    """Rotate the signing certificate without ever leaving the plug-in without a matching FIC.

    Adds the new certificate's FIC first (refusing when Entra's cap of 20 would be exceeded), re-signs,
    re-registers, binds and verifies, and only then retires the old FIC (--retire-old) or prints the command
    to do it later. A failure after the new FIC was added rolls back to the old artifact (and removes the new FIC).
    The password options apply to --new-cert. Afterwards, point [signing] certificate at the new certificate (the
    command prints the line).
    """
    from ..errors import BadInput
    from ..pipeline.rotate import run_rotate

    if (new_cert is None) == (new_key is None):
        raise BadInput("give the new signing key with one of --new-cert PATH or --new-key URI")
    if new_key is not None:
        from ..signing.keys import parse_key_uri

        parse_key_uri(new_key)  # a malformed URI is one line before anything runs
    new: Path | str = new_cert if new_cert is not None else str(new_key)
    urls = timestamp_choice(timestamp_urls, no_timestamp)
    pw = password_source(password_env, password_file) if (password_env or password_file) else None
    run_pipeline(as_json, lambda: run_rotate(env_name, new, artifact, plan_only=plan_only, retire_old=retire_old,
                                             old_fic_name=old_fic, start=project, progress=progress, password=pw,
                                             timestamp_urls=urls, pin_env=pin_env, cert_chain=cert_chain))
