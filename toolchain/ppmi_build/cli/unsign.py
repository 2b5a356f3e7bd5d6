"""``ppmi-build unsign ARTIFACT [-o OUT] [--json]``: remove a package's NuGet signature (or an assembly's
Authenticode signature when the Authenticode signer offers removal), atomically."""

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
    from ..errors import BadInput
    from ..signing.api import _check_source, _check_target
    from ..signing.results import kind_of

    # a regular, readable input and a replaceable regular target (not a symlink/FIFO/device,
    # not read-only) for both kinds, before anything is read or written
    _check_source(artifact)
    _check_target(output if output is not None else artifact)

    if kind_of(artifact) == "package":
        from ..signing.nuget.sign import unsign_package_file

        result = unsign_package_file(artifact, output)
    else:
        try:
            from ..signing.authenticode.sign import unsign_file
        except ImportError:
            raise BadInput(f"{artifact}: unsign handles .nupkg packages; to remove an assembly's Authenticode "
                           "signature use osslsigncode remove-signature, or re-sign it with sign --overwrite") from None
        result = unsign_file(artifact, output)
    emit(as_json, result, f"Removed the signature: {result['path']} (sha256 {result['sha256_after']})")
