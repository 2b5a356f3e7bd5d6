"""``ppmi-build sign ARTIFACT... --cert PATH``: Authenticode (.dll/.exe) or NuGet (.nupkg) signing.

Thin layer over :class:`ppmi_build.Signer` and :class:`ppmi_build.SignOptions` (DESIGN.md §3). The key: ``--key URI`` or
``--cert PATH``, else the base64 PFX in ``PPMI_PFX_BASE64``, else ``[signing] key`` / ``certificate``
(``PPMI_CERT``) - :func:`ppmi_build.signing.keys.resolve_signing_key`. Other defaults come from ``ppmi.toml``
``[signing]`` and ``PPMI_*`` variables: ``password_env``, ``timestamp_urls`` / ``PPMI_TIMESTAMP_URLS``,
``digest``, ``backend``.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import BatchSignError
from . import Terminated, report_stopped
from ._common import emit, handle_errors, json_option, password_options, pasted_text
from ._keys import key_uri_options_no_key

BACKEND_CHOICES = ["auto", "python", "signtool", "osslsigncode", "nuget", "dotnet"]


@click.command("sign")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--cert", "cert_path", metavar="PATH",
              help="Signing certificate: .pfx/.p12, or a PEM with the key, or a PEM/DER chain with --key KEY.pem. "
                   "Default: PPMI_PFX_BASE64, then [signing] key or certificate in ppmi.toml (PPMI_CERT).")
@click.option("--key", "key_path", metavar="URI|KEY.pem",
              help="Signing key URI (pkcs11:token=T;object=K[?module-path=LIB], keyvault:https://..., "
                   "trustedsigning:https://...), or the PEM private key of a --cert chain file.")
@key_uri_options_no_key
@click.option("-o", "--output", "output_arg", type=click.Path(),
              help="Write the signed file here (one artifact) or into this folder (several); default: in place.")
@click.option("--timestamp-url", "timestamp_urls", multiple=True, metavar="URL", callback=pasted_text("url"),
              help="RFC 3161 timestamp server; repeat for fallbacks. Default: [signing] timestamp_urls.")
@click.option("--no-timestamp", is_flag=True, help="Do not timestamp, even when ppmi.toml lists servers.")
@click.option("--digest", type=click.Choice(["sha256", "sha384", "sha512"]), default=None,
              help="Digest algorithm (default sha256).")
@click.option("--program-name", help="Description shown by Windows (SpcSpOpusInfo programName, signtool /d).")
@click.option("--program-url", callback=pasted_text("url"),
              help="More-info URL (SpcSpOpusInfo moreInfo, signtool /du).")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default=None,
              help="Signer: the built-in one (auto/python, every OS) or an installed tool.")
@click.option("--overwrite", is_flag=True, help="Packages: replace an existing signature (assemblies always are).")
@click.option("--sign-contents", is_flag=True,
              help="Packages: Authenticode-sign the assemblies inside first (a vendor's intact signature is kept).")
@click.option("--resign-third-party", is_flag=True,
              help="With --sign-contents: also replace the vendors' Authenticode signatures on assemblies inside.")
@password_options
@json_option
@handle_errors
def sign(artifacts: tuple[Path, ...], cert_path: str | None, key_path: str | None, pin_env: str | None,
         cert_chain: Path | None, output_arg: str | None,
         timestamp_urls: tuple[str, ...], no_timestamp: bool, digest: str | None, program_name: str | None,
         program_url: str | None, backend: str | None, overwrite: bool, sign_contents: bool,
         resign_third_party: bool, password_env: str | None, password_file: Path | None, as_json: bool) -> None:
    """Sign assemblies (Authenticode) and plug-in packages (NuGet author signature), then verify them.

    Each file is written to a temporary file beside it, verified, and renamed over the original;
    on any error the original is left unchanged.
    """
    from ..config import load_settings
    from ..errors import BadInput

    settings = load_settings()
    output = _output_path(output_arg)
    digest = digest or settings.signing.digest
    backend = backend or settings.signing.backend
    from ..errors import BatchSignError
    from ..signing.api import Signer, SignOptions, SignProgress
    from ..signing.keys import PasswordSource, resolve_signing_key

    if resign_third_party and not sign_contents:
        raise BadInput("--resign-third-party applies to the assemblies inside a package; add --sign-contents")
    if len(artifacts) > 1 and output is not None and not output.is_dir():
        raise BadInput(f"-o {output} must be an existing folder when signing {len(artifacts)} artifacts")
    urls: list[str] = [] if no_timestamp else list(timestamp_urls or settings.signing.timestamp_urls)
    password = PasswordSource(env=password_env or settings.signing.password_env, file=password_file)
    from ..config import scrubbed_environ

    tool_env = scrubbed_environ(settings=settings, extra=[password_env, pin_env])  # external tools inherit no secret
    key = resolve_signing_key(settings, key=key_path, cert=cert_path, password=password, pin_env=pin_env,
                              cert_chain=cert_chain)

    options = SignOptions(timestamp_urls=tuple(urls), digest=digest, backend=backend, overwrite=overwrite,
                          sign_contents=sign_contents, resign_third_party=resign_third_party,
                          program_name=program_name, program_url=program_url, tool_env=tool_env, file_hashes=as_json)
    progress = SignProgress()
    try:
        results = Signer(key).sign(list(artifacts), output, options, progress=progress)
    except BatchSignError as err:  # some files signed, some not: report each one (exit = worst code)
        _report_batch(err, as_json)
    except (KeyboardInterrupt, Terminated) as stop:  # the message names the files signed before the stop
        signed = [str(p) for p in progress.signed_files()]
        report_stopped(stop, signed if signed or len(artifacts) > 1 else None)  # one file: "interrupted" says it
    for r in results:
        for k in r.kept_vendor_signatures:
            click.echo(f"note: {r.path}: kept the vendor's Authenticode signature on {k['entry']} (signed by "
                       f"{k['signer']}); pass --resign-third-party to sign it with your certificate", err=True)
    emit(as_json, [r.to_json() for r in results], lambda: "\n".join(_line(r) for r in results))


def _output_path(raw: str | None) -> Path | None:
    """``-o`` as a Path; a value ending with a path separator names a folder, which must exist
    (``-o newdir/`` must not write a file called ``newdir``)."""
    if raw is None:
        return None
    from ..errors import InputFileError

    seps = ("/", os.sep) + ((os.altsep,) if os.altsep else ())
    if raw.endswith(seps) and not Path(raw).is_dir():
        raise InputFileError(f"folder {raw.rstrip(''.join(seps)) or raw} does not exist; create it first "
                             "(mkdir) or give a file path to -o")
    return Path(raw)


def _report_batch(err: BatchSignError, as_json: bool) -> None:
    """Print each file's outcome of a partly failed batch, then exit with the worst code."""
    import sys

    import click

    for o in err.outcomes:
        if o["status"] != "signed":
            click.echo(f"error: {o['path']}: {o['error']['message']}", err=True)
    emit(as_json, err.outcomes, lambda: "\n".join(
        f"signed {o['path']}" if o["status"] == "signed" else f"NOT signed {o['path']}: {o['error']['message']}"
        for o in err.outcomes))
    sys.exit(err.exit_code)


def _line(r) -> str:
    parts = [f"signed {r.path} ({r.kind}) with {r.signer.get('subject')}"]
    parts.append("timestamped" if r.timestamped else "not timestamped")
    parts.append("verified")
    text = ", ".join(parts)
    if r.replaced_signature:
        text += "; replaced an existing signature"
    if r.backend != "python":
        text += f" [backend {r.backend}]"
    return text
