"""``ppmi-build init DIR``: scaffold a Dataverse plug-in project that uses managed identity."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import emit, handle_errors, json_option, pasted_text


@click.command(name="init")
@click.argument("directory", type=click.Path(file_okay=True, path_type=Path))
@click.option("--name", help="Project, assembly and package name (default: the folder name), e.g. Contoso.Plugins.")
@click.option("--kind", type=click.Choice(["package", "assembly"]), default="package", show_default=True,
              help="package: plug-in package (.nupkg, dependent assemblies); assembly: one strong-named .dll.")
@click.option("--scope", "scopes", multiple=True, metavar="URL",
              help="Scope the sample plug-in requests with AcquireToken (repeatable; default "
                   "https://vault.azure.net/.default).")
@click.option("--tenant-id", callback=pasted_text("guid"), help="Entra tenant ID, written to [identity] in ppmi.toml.")
@click.option("--application-id", callback=pasted_text("guid"),
              help="Client ID of the app registration / managed identity, written to ppmi.toml.")
@click.option("--force", is_flag=True, help="Write into a non-empty folder (overwrites generated files, keeps a .snk).")
@json_option
@handle_errors
def init(directory: Path, name: str | None, kind: str, scopes: tuple[str, ...], tenant_id: str | None,
         application_id: str | None, force: bool, as_json: bool) -> None:
    """Create a plug-in project in DIRECTORY: csproj (net462), PluginBase, a sample plug-in calling
    IManagedIdentityService.AcquireToken, ppmi.toml, .gitignore, README and CI pipelines."""
    from ..project.scaffold import scaffold

    result = scaffold(directory, name, kind=kind, scopes=list(scopes) or None, tenant_id=tenant_id,
                      application_id=application_id, force=force)

    steps = [f"cd {result.root}", *_certificate_step(Path(result.root), result.name), "ppmi-build build",
             "ppmi-build release --env dev --plan   # after filling in ppmi.toml"]

    def human() -> str:
        lines = [f"created {result.kind} project {result.name} (namespace {result.namespace}) in {result.root}"]
        lines += [f"  {f}" for f in result.files]
        lines += [f"  {f} (kept)" for f in result.kept]
        if result.public_key_token:
            lines.append(f"strong-name public key token: {result.public_key_token}")
        lines += ["next:", *(f"  {step}" for step in steps)]
        return "\n".join(lines)

    emit(as_json, {**result.to_json(), "next_steps": steps}, human)


def _certificate_step(root: Path, name: str) -> list[str]:
    """The ``cert new`` command that makes the development certificate the new ``ppmi.toml`` expects
    (``[signing] certificate``, relative to the project folder), or nothing when it names none or it exists."""
    import shlex
    import tomllib

    try:
        cert = tomllib.loads((root / "ppmi.toml").read_text(encoding="utf-8")).get("signing", {}).get("certificate")
    except (OSError, tomllib.TOMLDecodeError):
        return []
    if not isinstance(cert, str) or not cert.lower().endswith((".pfx", ".p12")) or (root / cert).exists():
        return []
    path = Path(cert)
    return [f"ppmi-build cert new --subject {shlex.quote(f'CN={name} Dev')} --out {shlex.quote(str(path.parent))} "
            f"--name {shlex.quote(path.stem)}   # the [signing] certificate ppmi.toml expects (development only)"]
