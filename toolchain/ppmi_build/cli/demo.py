"""``ppmi-build demo``: sign a real assembly with a fresh development certificate and print its FIC."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import emit, handle_errors, json_option, progress


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the demo files (default: a new temporary folder, kept).")
@click.option("--timestamp-url", "timestamp_urls", multiple=True, metavar="URL",
              help="RFC 3161 server to timestamp the signature (repeatable; default: no timestamp, works offline).")
@click.option("--no-dataverse", is_flag=True, help="Skip the register/bind step against the local emulator.")
@json_option
@handle_errors
def demo(workdir: Path | None, timestamp_urls: tuple[str, ...], no_dataverse: bool, as_json: bool) -> None:
    """Run the main job on an embedded example, offline.

    Makes a development code-signing certificate, Authenticode-signs the shipped
    Contoso.Demo.Plugins.dll, verifies it, prints the federated identity credential (FIC)
    for a documented example tenant and environment, and registers and binds the assembly in a
    local Dataverse emulator.
    """
    from ..pipeline.demo import run_demo

    result = run_demo(workdir, timestamp_urls=timestamp_urls, with_dataverse=not no_dataverse, progress=progress)
    emit(as_json, result.to_json(), lambda: _human(result))


def _human(r) -> str:
    s, v, f = r.sign, r.verify, r.fic
    lines = [
        f"Certificate   {r.certificate['subject']}  (SHA-1 {r.certificate['thumbprint_sha1']})",
        f"Signed        {s['path']}  sha256 {s['sha256_after']}"
        f"{'  timestamped' if s['timestamped'] else ''}",
        f"Verified      {'valid' if v['valid'] else 'INVALID'}"
        + ("" if not v["problems"] else f" ({'; '.join(v['problems'])})"),
        "",
        f"Federated identity credential (managed identity version {f['version']}), for tenant {f['tenant_id']}"
        f" and environment {f['environment_id']}:",
        f"  Issuer              {f['issuer']}",
        f"  Subject identifier  {f['subject']}",
        f"  Audience            {f['audience']}",
        f"  Name (suggested)    {f['name']}",
    ]
    if r.dataverse is not None:
        lines.append("")
        lines.append("Dataverse emulator:")
        for a in r.dataverse.get("actions", []):
            lines.append(f"  {a['status']:<9} {a['kind']} {a['target']}")
    lines += [
        "",
        "Next steps:",
        "  The tenant and environment above are published documentation examples. In Entra ID, add a federated",
        "  credential (scenario \"Other issuer\", explicit subject identifier) to your app registration or",
        "  user-assigned managed identity, with the three values computed for your own IDs and certificate:",
        "    ppmi-build fic --cert YOUR.pfx --tenant-id <Entra tenant ID> "
        "--environment-id <Power Platform environment ID>",
        "  A self-signed certificate (the h/ subject) is for development only; production needs a CA-issued one.",
        "",
        f"Files kept in {r.workdir} (the demo PFX password is in demo-signing.password)",
    ]
    return "\n".join(lines)
