"""``ppmi-build verify ARTIFACT... [--trusted-root PEM]...``: check Authenticode / NuGet signatures.

Thin layer over :class:`ppmi_build.Verifier`.
Exit code 0 when every artifact is signed and valid, 1 when any is not (DESIGN.md §3). Each input
gets its own result: a file that cannot be verified at all (missing, not a PE/zip, a FIFO) is
reported with ``valid: false`` and an ``error`` record, the others keep theirs, and the exit code is
1; it is 2 only when NO input could be verified at all (every one unusable).
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
    """Verify signatures: integrity, signer certificate chain, timestamp; list each problem found.

    Exit 0: all valid; 1: any invalid, unsigned or unreadable; 2: no input could be read at all.
    """
    from ..errors import PpmiError
    from ..signing.api import Verifier
    from ..signing.results import Problem, VerifyResult, kind_of

    verifier = Verifier(trusted_roots)
    results: list[VerifyResult] = []
    errors: dict[int, PpmiError] = {}
    for a in artifacts:
        try:
            results.append(verifier.verify(a))
        except PpmiError as e:  # this file is unusable; the others keep their results
            errors[len(results)] = e
            results.append(VerifyResult(path=a, kind=kind_of(a), signed=False, valid=False,
                                        problems=[Problem(e.code or "UNUSABLE", e.message)]))
            click.echo(f"error: {e.message}", err=True)

    def record(i: int, r: VerifyResult) -> dict:
        out = r.to_json()
        if i in errors:
            e = errors[i]
            out["error"] = {"message": e.message, "code": e.code, "exit_code": e.exit_code}
        return out

    emit(as_json, [record(i, r) for i, r in enumerate(results)],
         lambda: "\n".join(_lines(r, i in errors) for i, r in enumerate(results)))
    if errors and len(errors) == len(results):
        sys.exit(max(e.exit_code for e in errors.values()))
    if not all(r.valid for r in results):
        sys.exit(1)


def _lines(r, unusable: bool = False) -> str:
    if unusable:
        return f"{r.path}: CANNOT VERIFY: {r.problems[0]}"
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
