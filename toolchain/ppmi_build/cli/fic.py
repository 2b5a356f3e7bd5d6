"""``ppmi-build fic``: the federated identity credential values to paste into Entra (DESIGN.md §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._common import emit, handle_errors, json_option, password_options, pasted_text, progress
from ._keys import key_uri_options


def _artifact_integrity_problems(path: Path, certificate) -> list[str]:
    """Problems of the artifact's signature other than trust (the signer may be a private CA): a
    tampered or corrupt file gives at least one. Never raises."""
    try:
        from ..signing.api import verify_file

        result = verify_file(path, trusted_roots=[certificate])
    except Exception as e:  # noqa: BLE001 - reported as a warning
        return [str(e) or type(e).__name__]
    return [p for p in result.problems
            if not p.startswith(("untrusted signer", "signify: ", "no trusted roots"))] or (
        [] if result.signed else ["not signed"])


def _signer_of_artifact(path: Path):
    """The signer certificate of a signed .dll (Authenticode) or .nupkg (NuGet author signature)."""
    from ..errors import InputFileError, ToolNotFound

    if not path.is_file():
        raise InputFileError(f"artifact {path} does not exist; pass a signed .dll or .nupkg to --artifact")
    try:
        from ..signing.api import signer_certificate
    except ImportError:
        raise ToolNotFound("reading the signer of an artifact needs ppmi_build.signing.api, which this "
                           "installation lacks; reinstall ppmi-build or pass --cert") from None
    found: Any = signer_certificate(path)  # a certificate (a list from older signing APIs)
    if isinstance(found, (list, tuple)):
        found = found[0] if found else None
    if found is None:
        from ..errors import BadInput

        raise BadInput(f"{path} is not signed; sign it first (ppmi-build sign) or pass --cert")
    from ..identity.certificates import check_certificate

    return check_certificate(found, f"{path}: the embedded signer certificate")


def _print_thumbprint_fic(thumbprint: str, environment_id: str, cloud: str | None, as_json: bool) -> None:
    """``fic --thumbprint HEX``: the version 0 FIC from the thumbprint alone (public cloud only)."""
    from ..errors import BadInput
    from ..identity.fic import cloud_for, v0_fic_from_thumbprint

    if cloud_for(cloud).name != "public":
        raise BadInput(f"managed identity version 0 is only documented for the public cloud, not {cloud}; use "
                       "version 2 with --cert PATH")
    data = v0_fic_from_thumbprint(thumbprint, environment_id)
    data["source"] = "--thumbprint"
    for note in data["notes"]:
        progress(f"note: {note}")
    for warning in data["warnings"]:
        progress(f"warning: {warning}")
    emit(as_json, data, "\n".join([
        f"Issuer: {data['issuer']}",
        f"Subject identifier: {data['subject']}",
        f"Audience: {data['audience']}",
        f"(managed identity version 0, public cloud, certificate thumbprint {data['thumbprint_sha1']})",
    ]))


@click.command("fic")
@click.option("--cert", "cert_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Signing certificate (.pfx/.p12/.pem/.cer/.crt). Default: PPMI_PFX_BASE64, then [signing] key "
                   "or certificate in ppmi.toml.")
@key_uri_options
@click.option("--artifact", type=click.Path(dir_okay=False, path_type=Path),
              help="Signed .dll or .nupkg: use its signer certificate.")
@click.option("--thumbprint", metavar="HEX",
              help="SHA-1 thumbprint of the signing certificate, for the version 0 FIC only (as copied from the "
                   "Windows certificate dialog: spaces, lower case and invisible marks are removed).")
@click.option("--tenant-id", callback=pasted_text("guid"),
              help="Entra tenant ID (default: PPMI_TENANT_ID or [identity] tenant_id).")
@click.option("--environment-id", callback=pasted_text("guid"),
              help="Power Platform environment ID.")
@click.option("--env", "env_name", metavar="NAME", help="Take the environment ID from [environments.NAME].")
@click.option("--mi-version", type=click.Choice(["0", "1", "2"]), default=None,
              help="managedidentities.version (default 2, or [identity] version).")
@click.option("--cloud", default=None, help="public | usgov | china | usnat | ussec (default public).")
@click.option("--from-dataverse", is_flag=True,
              help="With --env: print the subject Dataverse gives (GetComponentManagedIdentityFIC) for the registered "
                   "component, next to the one computed from the content it holds; exit 1 when they differ.")
@click.option("--project", type=click.Path(path_type=Path), help="Project folder or ppmi.toml (default: here).")
@password_options
@json_option
@handle_errors
def fic(cert_path: Path | None, key_uri: str | None, pin_env: str | None, cert_chain: Path | None,
        artifact: Path | None, thumbprint: str | None, tenant_id: str | None, environment_id: str | None,
        env_name: str | None, mi_version: str | None, cloud: str | None, from_dataverse: bool,
        project: Path | None, password_env: str | None, password_file: Path | None, as_json: bool) -> None:
    """Print the FIC issuer, subject identifier and audience for a signing certificate.

    Add these three values as a federated identity credential ("Other issuer", explicit subject
    identifier) on the app registration or user-assigned managed identity.
    """
    from ..config import load_settings
    from ..errors import BadInput, ConfigError
    from ..identity.certificates import describe
    from ..identity.fic import compute_fic
    from ..signing.keys import PasswordSource, resolve_signing_key

    if from_dataverse:
        _from_dataverse(env_name, artifact, project, as_json)
        return
    given = [o for o, v in (("--cert", cert_path), ("--key", key_uri), ("--artifact", artifact),
                            ("--thumbprint", thumbprint)) if v]
    if len(given) > 1:
        raise BadInput(f"pass one of {' / '.join(given)}, not several")
    if thumbprint is not None:
        if mi_version not in (None, "0"):
            raise BadInput(f"--thumbprint gives only the version 0 FIC (its subject is the SHA-1 thumbprint); "
                           f"version {mi_version} needs the certificate: pass --cert PATH or --artifact PATH")
        mi_version = "0"
    settings = load_settings(project, overrides={
        "identity.tenant_id": tenant_id,
        "identity.version": int(mi_version) if mi_version is not None else None,
        "identity.cloud": cloud,
    })
    if environment_id is None and env_name:
        env = settings.environment(env_name)
        if not env.environment_id:
            where = settings.config_file or "ppmi.toml"
            raise ConfigError(f"environment {env_name!r} has no environment_id; add environment_id to "
                              f"[environments.{env_name}] in {where} or pass --environment-id")
        environment_id = env.environment_id
    if environment_id is None:
        raise BadInput("the environment ID is missing; pass --environment-id GUID or --env NAME "
                       "(with [environments.NAME] environment_id in ppmi.toml)")

    if thumbprint is not None:
        _print_thumbprint_fic(thumbprint, environment_id, settings.identity.cloud, as_json)
        return
    key = None
    if artifact:
        source = str(artifact)
        certificate = _signer_of_artifact(artifact)
    else:
        password = PasswordSource(env=password_env or settings.signing.password_env, file=password_file)
        key = resolve_signing_key(settings, key=key_uri, cert=cert_path, password=password, pin_env=pin_env,
                                  cert_chain=cert_chain, require_private_key=False)
        source = key.description
        certificate = key.certificate_chain()[0]

    values = compute_fic(
        certificate,
        tenant_id=settings.identity.tenant_id,
        environment_id=environment_id,
        version=settings.identity.version,
        cloud=settings.identity.cloud,
    )
    for note in values.notes:
        progress(f"note: {note}")
    for warning in values.warnings:
        progress(f"warning: {warning}")
    record = describe(certificate)
    data = {**values.as_dict(), "certificate": record, "source": source}
    issuers = _issuer_set(key if not artifact else None, certificate, settings, environment_id)
    if issuers is not None:
        data["issuer_set"] = [f.as_dict() for f in issuers]
        data["fic_slots"] = {"used": len(issuers), "cap": _fic_cap()}
    if artifact:
        bad = _artifact_integrity_problems(artifact, certificate)
        if bad:
            warning = (f"the signature of {artifact} does not verify ({bad[0]}); these values are those of its "
                       "embedded signer certificate: check the file before trusting them")
            progress(f"warning: {warning}")
            data["warnings"] = [*data.get("warnings", []), warning]

    def human() -> str:
        kind = "self-signed" if values.self_signed else "CA-issued"
        extra: list[str] = []
        if issuers is not None:
            extra = [f"Issuer set: {len(issuers)} FICs (of Entra's {_fic_cap()} per identity), one per issuing CA "
                     "this certificate profile may use:"]
            extra += [f"  {'*' if f.current else ' '} {f.issuer_dn} ({f.source})\n      subject {f.subject}"
                      for f in issuers]
        return "\n".join([
            f"Issuer: {values.issuer}",
            f"Subject identifier: {values.subject}",
            f"Audience: {values.audience}",
            f"Name: {values.name}",
            f"(managed identity version {values.version}, {values.cloud} cloud, {kind} certificate "
            f"{record['subject']}, SHA-1 {record['thumbprint_sha1']})",
            *extra,
        ])

    emit(as_json, data, human)


def _fic_cap() -> int:
    from ..identity.issuers import FIC_CAP

    return FIC_CAP


def _issuer_set(key: Any, certificate: Any, settings: Any, environment_id: str) -> Any:
    """For a Trusted Signing key and managed identity version 2: the FICs of the certificate's subject for its
    current issuer (the leaf of a probe sign operation: the one a signature made now would carry), every known
    issuing CA and ``[signing] extra_issuers`` (:func:`ppmi_build.identity.issuers.issuer_set`); else None."""
    if getattr(getattr(key, "uri", None), "scheme", None) != "trustedsigning" or settings.identity.version != 2:
        return None
    from ..identity.dn import certificate_name_ders, dotnet_name
    from ..identity.issuers import issuer_set

    issuer_der, subject_der = certificate_name_ders(certificate)
    return issuer_set(dotnet_name(issuer_der, strict=True), dotnet_name(subject_der, strict=True),
                      tenant_id=settings.identity.tenant_id, environment_id=environment_id,
                      cloud=settings.identity.cloud, extra=settings.signing.extra_issuers)


def _from_dataverse(env_name: str | None, artifact: Path | None, project: Path | None, as_json: bool) -> None:
    """``fic --env NAME --from-dataverse``: Dataverse's FIC subject vs the computed one (exit 1 when they differ)."""
    from ..errors import BadInput, CheckFailed
    from ..pipeline.validate import dataverse_fic

    if not env_name:
        raise BadInput("--from-dataverse needs --env NAME (the environment whose Dataverse to ask)")
    data = dataverse_fic(env_name, artifact, start=project)
    if data.get("note"):
        progress(f"note: {data['note']}")

    def human() -> str:
        lines = [f"Component: {data['component']} ({data['component_id']}), record version {data['record_version']}",
                 f"Dataverse subject: {data['dataverse_subject'] or '(not offered)'}",
                 f"Computed subject:  {data.get('computed_subject')}"]
        if data.get("issuer"):
            lines += [f"Issuer: {data['issuer']}", f"Audience: {data['audience']}"]
        return "\n".join(lines)

    emit(as_json, data, human)
    if data.get("same") is False:  # the document is printed; then the one error line and exit 1
        import sys

        click.echo(f"error: {data['difference']}", err=True)
        sys.exit(CheckFailed.exit_code)
