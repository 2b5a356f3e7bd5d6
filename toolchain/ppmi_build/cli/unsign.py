"""``ppmi-build unsign ARTIFACT [-o OUT] [--json]``: remove a package's NuGet signature (or an assembly's
Authenticode signature), atomically. Thin layer over :func:`ppmi_build.signing.api.remove_signature`."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import emit, handle_errors, json_option


@click.command()
@click.argument("artifact", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the unsigned artifact here instead of replacing ARTIFACT.")
@json_option
@handle_errors
def unsign(artifact: Path, output: Path | None, as_json: bool) -> None:
    """Remove the signature of ARTIFACT (.nupkg: the .signature.p7s entry, giving back the package as it was
    before signing, byte for byte)."""
    from ..signing.api import remove_signature

    result = remove_signature(artifact, output)
    emit(as_json, result, f"Removed the signature: {result['path']} (sha256 {result['sha256_after']})")
