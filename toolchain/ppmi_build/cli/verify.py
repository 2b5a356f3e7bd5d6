"""``ppmi-build verify ARTIFACT... [--trusted-root PEM]...``: check Authenticode / NuGet signatures.

Exit code 0 when every artifact is signed and valid, 1 when any is not (DESIGN.md §3); bad input
(missing file, not a PE/zip) is exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import emit, handle_errors, json_option


@click.command("verify")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--trusted-root", "trusted_roots", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="PEM", help="Extra trusted root (PEM/DER) for private or self-signed certificates; repeatable.")
@json_option
@handle_errors
def verify(artifacts: tuple[Path, ...], trusted_roots: tuple[Path, ...], as_json: bool) -> None:
    """Verify signatures: integrity, signer certificate chain, timestamp; list each problem found."""
    from ..signing.api import verify_file
    from ..signing.verify import load_trusted_roots

    roots = load_trusted_roots(trusted_roots)
    results = [verify_file(a, trusted_roots=roots) for a in artifacts]
    emit(as_json, [r.to_json() for r in results], lambda: "\n".join(_lines(r) for r in results))
    if not all(r.valid for r in results):
        sys.exit(1)


def _lines(r) -> str:
    if not r.signed:
        head = f"{r.path}: NOT SIGNED"
    elif r.valid:
        head = f"{r.path}: valid ({r.kind}), signed by {r.signer['subject'] if r.signer else '?'}"
    else:
        head = f"{r.path}: INVALID ({r.kind})" + (f", signed by {r.signer['subject']}" if r.signer else "")
    if r.signed:
        head += f", timestamp {r.timestamp}" if r.timestamp else ", no valid timestamp"
    lines = [head] + [f"  - {p}" for p in r.problems if r.signed or not p.startswith("not signed")]
    return "\n".join(lines)
