"""``ppmi-build cert new`` and ``ppmi-build cert show`` (DESIGN.md §3)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import emit, handle_errors, json_option, password_options, password_source, pasted_text, progress
from ._keys import key_uri_options


@click.group("cert")
def cert() -> None:
    """Make a development code-signing certificate or inspect one."""


def _new_password(password_env: str | None, password_file: Path | None, no_password: bool, pfx_label: str):
    """The password for a new PFX: option/env/file, else an interactive prompt (twice), else refuse."""
    from ..errors import BadInput, PasswordError

    if no_password and (password_env or password_file):
        raise BadInput("--no-password conflicts with --password-env/--password-file; pass only one of them")
    if no_password:
        return None
    src = password_source(password_env, password_file)
    pw = src.resolve(pfx_label)
    if pw is None and sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"Password for {pfx_label}: ")
        second = getpass.getpass("Repeat the password: ")
        if first != second:
            raise PasswordError("the two passwords differ; run the command again")
        pw = first.encode("utf-8")
    if pw is None:
        raise PasswordError(
            f"no password for {pfx_label}: pass --password-env VAR or --password-file FILE, set "
            "PPMI_PFX_PASSWORD, or pass --no-password for an unprotected PFX"
        )
    if not pw:
        raise PasswordError(f"the password for {pfx_label} is empty; give a non-empty password or pass --no-password")
    return pw


@cert.command("new")
@click.option("--subject", required=True, metavar="DN", callback=pasted_text("dn"),
              help="Subject as .NET/PowerShell write it, e.g. \"CN=Contoso Dev, E=dev@contoso.com\".")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for NAME.pfx and NAME.cer (created if missing).")
@click.option("--days", type=int, default=None, help="Validity in days (default 365).")
@click.option("--name", default=None, help="File name stem (default: from the CN, e.g. contoso-dev).")
@click.option("--key-size", type=click.Choice(["2048", "3072", "4096"]), default=None,
              help="RSA key size in bits (default 3072).")
@click.option("--no-password", is_flag=True, help="Write an unprotected PFX (not recommended).")
@click.option("--force", is_flag=True, help="Replace an existing NAME.pfx / NAME.cer.")
@password_options
@json_option
@handle_errors
def new(subject: str, out_dir: Path, days: int | None, name: str | None, key_size: str | None, no_password: bool,
        force: bool, password_env: str | None, password_file: Path | None, as_json: bool) -> None:
    """Create a self-signed code-signing certificate for development (RSA 3072, EKU codeSigning).

    Writes NAME.pfx (password-protected) and NAME.cer. Self-signed certificates are for development
    and testing only; Dataverse uses the FIC h/ form (SHA-256 of NAME.cer) for them.
    """
    from ..errors import BadInput
    from ..identity.certificates import (
        DEFAULT_PROFILE,
        certificate_file_paths,
        check_file_name,
        default_file_name,
        describe,
        load_profile,
        new_dev_certificate,
        write_certificate_files,
    )
    from ..identity.dn import parse_dotnet_dn

    x500 = parse_dotnet_dn(subject)
    if not list(x500):
        raise BadInput("--subject is empty; pass a DN like 'CN=Contoso Dev, E=dev@contoso.com'")
    stem = check_file_name(name) if name else default_file_name(x500)
    pfx_path, _ = certificate_file_paths(out_dir, stem, force=force)  # refuse before any work
    password = _new_password(password_env, password_file, no_password, str(pfx_path))
    profile = load_profile(DEFAULT_PROFILE)
    key, certificate = new_dev_certificate(x500, days=days, key_size=int(key_size) if key_size else None,
                                           profile=profile)
    pfx_cfg = profile.get("pfx", {})
    pfx_path, cer_path = write_certificate_files(
        out_dir, stem, key, certificate, password, force=force,
        encryption=pfx_cfg.get("encryption", "3des-sha1"), kdf_rounds=int(pfx_cfg.get("kdf_rounds", 50000)),
    )
    record = describe(certificate)
    data = {**record, "pfx": str(pfx_path), "cer": str(cer_path), "password_protected": password is not None,
            "profile": DEFAULT_PROFILE}

    def human() -> str:
        lines = [
            "Created a self-signed code-signing certificate (development and testing only)",
            f"  PFX:         {pfx_path}" + ("" if password is not None else "  (UNPROTECTED)"),
            f"  CER:         {cer_path}",
            f"  Subject:     {record['subject']}",
            f"  Thumbprint:  {record['thumbprint_sha1']}",
            f"  SHA-256:     {record['sha256']}",
            f"  Valid:       {record['not_before']} to {record['not_after']}",
            f"  Key:         {record['key']}",
            f"Next: ppmi-build fic --cert {cer_path} --tenant-id TENANT --environment-id ENVIRONMENT",
        ]
        return "\n".join(lines)

    emit(as_json, data, human)


@cert.command("show")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@key_uri_options
@password_options
@json_option
@handle_errors
def show(path: Path | None, key_uri: str | None, pin_env: str | None, cert_chain: Path | None,
         password_env: str | None, password_file: Path | None, as_json: bool) -> None:
    """Inspect a certificate (.pfx/.p12/.pem/.cer/.crt, or the one of --key URI): subject and issuer exactly as
    .NET shows them, thumbprint, SHA-256, validity, self-signed, code signing, key. Without PATH or --key: the
    signing certificate the other commands use (PPMI_PFX_BASE64, then [signing] key / certificate)."""
    from ..config import load_settings
    from ..identity.certificates import describe
    from ..identity.dn import certificate_name_ders, non_string_attributes
    from ..signing.keys import PasswordSource, resolve_signing_key

    settings = load_settings() if path is None and key_uri is None else None
    password = PasswordSource(env=password_env or (settings.signing.password_env if settings else None),
                              file=password_file)
    source = resolve_signing_key(settings, key=key_uri, cert=path, password=password, pin_env=pin_env,
                                 cert_chain=cert_chain, require_private_key=False)
    chain = source.certificate_chain()
    record = describe(chain[0])
    data = {**record, "path": source.description, "chain_length": len(chain)}
    # .NET renders a non-string attribute value as '#' + hex (X500DistinguishedNameTests,
    # Format_ComponentWithNonStringContent); say so, since RFC 5280 names hold character strings.
    notes = [f"the {role} attribute {what}, not a character string; shown as .NET shows it (#hex)"
             for role, der in zip(("issuer", "subject"), certificate_name_ders(chain[0]), strict=True)
             for what in non_string_attributes(der)]
    for note in notes:
        progress(f"note: {note}")
    if notes:
        data["notes"] = notes

    def human() -> str:
        yes = {True: "yes", False: "no"}
        rows = [
            ("Subject", record["subject"]),
            ("Issuer", record["issuer"]),
            ("Thumbprint (SHA-1)", record["thumbprint_sha1"]),
            ("SHA-256", record["sha256"]),
            ("Valid from", record["not_before"]),
            ("Valid to", record["not_after"]),
            ("Self-signed", yes[record["self_signed"]]),
            ("Code signing", yes[record["code_signing"]]),
            ("Key", record["key"]),
            ("Serial number", record["serial_number"]),
        ]
        if len(chain) > 1:
            rows.append(("Chain", f"{len(chain) - 1} more certificate(s) in {'the file' if path else 'the chain'}"))
        return "\n".join(f"{k + ':':<20}{v}" for k, v in rows)

    emit(as_json, data, human)
