"""``ppmi-build build [DIR]``: dotnet build/pack with streamed output and the artifacts of this run."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ._common import emit, handle_errors, json_option


class _Progress:
    """Shows dotnet's output on stderr: on a terminal one updating status line (spinner, elapsed
    seconds, last line) plus every error/warning line; otherwise every line, indented."""

    SPINNER = "|/-\\"

    def __init__(self, label: str, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = label
        self.start = time.monotonic()
        self.count = 0
        self.width = 0

    def __call__(self, line: str) -> None:
        from ..project.dotnet import parse_diagnostic

        self.count += 1
        if not self.tty:
            self.stream.write(f"  {line}\n")
            self.stream.flush()
            return
        if parse_diagnostic(line) is not None:
            self._clear()
            self.stream.write(line + "\n")
        elapsed = time.monotonic() - self.start
        status = f"{self.SPINNER[self.count % 4]} {self.label} {elapsed:5.1f}s  {line.strip()}"
        status = status[:100]
        self.stream.write("\r" + status.ljust(self.width))
        self.width = len(status)
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0

    def done(self) -> None:
        self._clear()
        self.stream.flush()


@click.command(name="build")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("-c", "--configuration", default="Release", show_default=True, help="MSBuild configuration.")
@click.option("--kind", type=click.Choice(["package", "assembly"]),
              help="Override [plugin] kind of ppmi.toml / the csproj.")
@click.option("--timeout", "timeout_s", type=float, help="Stop dotnet after this many seconds.")
@json_option
@handle_errors
def build(directory: Path | None, configuration: str, kind: str | None, timeout_s: float | None,
          as_json: bool) -> None:
    """Build the plug-in project in DIRECTORY (default: here) with dotnet and list the artifacts it produced:
    path, SHA-256, assembly name/version/culture/public key token and IPlugin types."""
    from ..project import dotnet

    progress = _Progress(f"dotnet build ({configuration})")
    try:
        result = dotnet.build(directory, configuration, kind=kind, on_output=progress, timeout_s=timeout_s)
    except dotnet.BuildFailed as err:
        progress.done()
        click.echo(f"build failed: {dotnet.summarize(err.diagnostics, root=Path.cwd())}", err=True)
        click.echo(f"error: {err.message}", err=True)
        if as_json:
            click.echo(json.dumps({"error": {"message": err.message, "code": err.code, "exit_code": err.exit_code},
                                   "diagnostics": [d.to_json() for d in err.diagnostics]}, indent=2))
        sys.exit(err.exit_code)
    finally:
        progress.done()

    from ..project.sandbox import sandbox_warnings

    sandbox: list[str] = []
    for artifact in result.artifacts:  # an unreadable artifact is reported by the build record itself
        sandbox += sandbox_warnings(artifact.path)
    for w in sandbox:
        click.echo(f"warning: {w}", err=True)

    def human() -> str:
        lines = [f"built {result.project} ({result.kind}, {result.configuration}) in {result.duration_s:.1f}s"]
        for a in result.artifacts:
            lines.append(f"  {a.kind:8} {a.path}")
            lines.append(f"           sha256 {a.sha256}")
            if a.identity:
                lines.append(f"           {a.identity.full_name}")
                for t in a.plugin_types:
                    lines.append(f"           IPlugin {t}")
            if a.package:
                lines.append(f"           package {a.package['id']} {a.package['version']}")
        if result.warnings:
            lines.append(f"{len(result.warnings)} warning(s):")
            lines += [f"  {w}" for w in result.warnings[:20]]
        for p in result.stale:
            lines.append(f"not from this build (left in place): {p}")
        lines += [f"note: {n}" for n in result.notes]
        return "\n".join(lines)

    emit(as_json, {**result.to_json(), "sandbox_warnings": sandbox} if sandbox else result.to_json(), human)
