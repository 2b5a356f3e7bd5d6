"""``ppmi-build snk new FILE`` and ``ppmi-build snk token FILE``: strong-name keys (signing-spec §6.3)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import emit, handle_errors, json_option


@click.group(name="snk")
def snk() -> None:
    """Strong-name keys (.snk) and public key tokens."""


@snk.command(name="new")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--bits", type=click.Choice(["1024", "2048", "3072", "4096"]), default="2048", show_default=True,
              help="RSA key size.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists (changes the public key token).")
@json_option
@handle_errors
def snk_new(file: Path, bits: str, force: bool, as_json: bool) -> None:
    """Write a new strong-name key pair to FILE (like `sn -k`), with mode 0600."""
    from ..identity.snk import token_of_key_file, write_snk

    data = write_snk(file, bits=int(bits), force=force)
    token = token_of_key_file(data)
    emit(as_json, {"path": str(file), "bits": int(bits), "public_key_token": token},
         f"wrote {file} ({bits}-bit RSA strong-name key pair)\npublic key token: {token}")


@snk.command(name="token")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@handle_errors
def snk_token(file: Path, as_json: bool) -> None:
    """Print the public key token of FILE: a .snk key pair, a public key from `sn -p`, or a strong-named assembly."""
    from ..errors import InputFileError
    from ..fileio import read_input
    from ..identity.snk import public_key_blob, public_key_token

    data = read_input(file, missing="pass a .snk, a public key file or a strong-named assembly")
    if data[:2] == b"MZ":
        from ..assembly.metadata import read_assembly_identity

        ident = read_assembly_identity(data, label=str(file))
        if ident.public_key is None:
            raise InputFileError(f"{file} is not strong-named (no public key); sign it with a .snk "
                                 "(SignAssembly/AssemblyOriginatorKeyFile) first")
        blob, source, name = ident.public_key, "assembly", ident.full_name
    else:
        blob = public_key_blob(data)
        source = "key pair" if data[0] == 0x07 else "public key"
        name = None
    token = public_key_token(blob)
    record = {"path": str(file), "source": source, "public_key_token": token, "public_key": blob.hex()}
    if name:
        record["assembly"] = name
    emit(as_json, record, token)
