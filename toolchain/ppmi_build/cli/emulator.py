"""``ppmi-build emulator --port N [--db FILE] [--token T] [--vault-certificate NAME=PFX ...]``: run the local
Dataverse Web API + Entra FIC (+ Key Vault) emulator."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import BadInput
from ._common import handle_errors, progress


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="TCP port on 127.0.0.1 (0 = any free port).")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help="SQLite file for the state "
                                                                             "(default: in memory).")
@click.option("--token", default="emulator-token", show_default=True, help="Bearer token the emulator accepts.")
@click.option("--vault-certificate", "vault_certificates", multiple=True, metavar="NAME=PFX",
              help="Serve this PFX as Key Vault certificate NAME (password from PPMI_PFX_PASSWORD; repeatable, the "
                   "same NAME again adds a version). Sign with --key keyvault:http://127.0.0.1:PORT/certificates/NAME.")
@click.option("--signing-profile", "signing_profiles", multiple=True, metavar='ACCOUNT/PROFILE="SUBJECT DN"',
              help="Serve a Trusted Signing certificate profile whose leaves carry this subject (repeatable).")
@click.option("--rotate-issuers", is_flag=True,
              help="Trusted Signing: alternate the two issuing CAs between sign operations.")
@click.option("--environment-id", metavar="GUID",
              help="The emulated environment's Power Platform environment ID: with it the emulator offers "
                   "GetComponentManagedIdentityFIC and runs validate's probe (it computes the FIC subject the "
                   "platform presents).")
@click.option("--application", "applications", multiple=True, metavar="APPID=OBJECTID",
              help="Where an application's FICs live: the app registration's object ID in the Graph store "
                   "(what [identity] application_object_id names; repeatable).")
@handle_errors
def emulator(port: int, db: Path | None, token: str, vault_certificates: tuple[str, ...],
             signing_profiles: tuple[str, ...], rotate_issuers: bool, environment_id: str | None,
             applications: tuple[str, ...]) -> None:
    """Serve the Dataverse Web API (/api/data/v9.2/), Graph and ARM FIC endpoints on loopback until Ctrl-C.

    Point ppmi-build at it with [environments.NAME] url = http://127.0.0.1:PORT and
    PPMI_ACCESS_TOKEN = the token. Control surface: POST/DELETE /_emulator/faults,
    GET /_emulator/requests, POST /_emulator/reset. With --vault-certificate it also serves Key Vault's
    GET /certificates/NAME[/VERSION] and POST /keys/NAME/VERSION/sign; the private key never leaves it.
    Trusted Signing (with --signing-profile):
    /codesigningaccounts/ACCOUNT/certificateprofiles/PROFILE/sign; its root at GET /_emulator/trusted-signing/root.
    """
    import os
    import sqlite3

    from ..emulator import make_server, serve_until_interrupted
    from ..emulator.keyvault.models import PASSWORD_ENV, seed_options

    profiles = _signing_profiles(signing_profiles)
    options: dict = {"trusted_signing": {"profiles": profiles, "rotate_issuers": rotate_issuers}}
    options.update(_platform(environment_id, applications))
    try:
        options.update(seed_options(vault_certificates, os.environ.get(PASSWORD_ENV)))
    except ValueError as e:
        raise BadInput(str(e)) from None
    try:
        server = make_server(port=port, db=str(db) if db else None, token=token, options=options)
    except sqlite3.DatabaseError as e:  # includes OperationalError (cannot open) and "file is not a database"
        raise BadInput(f"cannot use {db} as the emulator state: {e}; give --db a new or emulator-made SQLite file "
                       "in an existing, writable folder") from None
    except OSError as e:
        raise BadInput(f"cannot listen on 127.0.0.1:{port}: {e.strerror}; pick another --port") from None
    url = server.state.base_url
    click.echo(f"Dataverse emulator listening on {url}")
    click.echo(f"  Web API  {url}/api/data/v9.2/")
    for ref, dn in profiles.items():
        click.echo(f"  signing  trustedsigning:{url}/{ref} ({dn}{', rotating issuers' if rotate_issuers else ''})")
    click.echo(f"  state    {db or 'in memory'}")
    for name in options.get("vault_certificates", {}):
        click.echo(f"  Key Vault --key keyvault:{url}/certificates/{name}")
    click.echo("  token    " + ("emulator-token (default)" if token == "emulator-token" else "as given by --token"))
    progress("press Ctrl-C to stop")
    serve_until_interrupted(server)


def _signing_profiles(values: tuple[str, ...]) -> dict[str, str]:
    """``ACCOUNT/PROFILE=SUBJECT DN`` values -> ``{"ACCOUNT/PROFILE": "SUBJECT DN"}``; raises BadInput."""
    import re

    from ..emulator.trustedsigning.models import parse_dn

    out: dict[str, str] = {}
    for value in values:
        ref, sep, dn = value.partition("=")
        if not sep or not re.fullmatch(r"[0-9A-Za-z-]+/[0-9A-Za-z-]+", ref.strip()) or not dn.strip():
            raise BadInput(f"--signing-profile {value!r} is not ACCOUNT/PROFILE=\"SUBJECT DN\"; write e.g. "
                           '--signing-profile acct/prof="CN=Contoso Ltd, O=Contoso Ltd, C=US"')
        try:
            parse_dn(dn.strip().strip('"'))
        except ValueError as e:
            raise BadInput(f"--signing-profile {ref.strip()}: subject {dn.strip()!r} is not a DN ({e}); write e.g. "
                           '"CN=Contoso Ltd, O=Contoso Ltd, L=Redmond, S=WA, C=US"') from None
        out[ref.strip()] = dn.strip().strip('"')
    return out


def _platform(environment_id: str | None, applications: tuple[str, ...]) -> dict:
    """``--environment-id`` / ``--application APPID=OBJECTID`` -> the Dataverse platform options of the emulator
    (:mod:`ppmi_build.emulator.dataverse.probe`); raises BadInput naming the value."""
    from ..identity.guids import parse_guid

    out: dict = {}
    if environment_id:
        out["environment_id"] = parse_guid(environment_id, "--environment-id").value
    apps: dict[str, dict[str, str]] = {}
    for value in applications:
        app, sep, obj = value.partition("=")
        if not sep:
            raise BadInput(f"--application {value!r}: write it as APPID=OBJECTID (the application (client) ID, then "
                           "its app registration's object ID)")
        object_id = parse_guid(obj, "--application OBJECTID").value
        apps[parse_guid(app, "--application APPID").value] = {"object_id": object_id}
    if apps:
        out["applications"] = apps
    return out
