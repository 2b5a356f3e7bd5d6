"""``ppmi-build build``: run ``dotnet build`` / ``dotnet pack`` and report what this run produced.

* ``dotnet`` is ``$PPMI_DOTNET`` when set, else ``dotnet`` on ``PATH``; missing → :class:`ToolNotFound`
  (exit 3) with install instructions.
* Output is streamed line by line to a callback (the CLI shows it on stderr with a progress
  indicator) and parsed for MSBuild diagnostics in the canonical format
  ``origin(line,col): [subcategory] error|warning CODE: text [project]``
  (https://learn.microsoft.com/visualstudio/msbuild/msbuild-diagnostic-format-for-tasks).
* Artifacts are those of *this* run. Before building, every ``<PackageId>.<version>.nupkg`` in the
  package output folder is moved aside; whatever package is there afterwards was written by this
  run. Packages of other versions are put back (and listed as ``stale``, never returned); an old
  package with the same name as a new one is discarded. A failed or interrupted build puts
  everything back as it was. (``pac plugin init`` projects were seen to leave a stale ``.nupkg``
  after incremental builds: domain-spec §3.2.)
* Each assembly artifact is described by its .NET metadata (name, version, culture, public key
  token, ``IPlugin`` types: :mod:`ppmi_build.assembly.metadata`); each package by its ``.nuspec``
  id/version and the assemblies under ``lib/``. The result is also written to
  ``<project root>/.ppmi/last-build.json`` (:func:`last_build`), which ``register``/``release`` use
  as the default artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..assembly.metadata import AssemblyIdentity, read_plugin_assembly
from ..errors import InputFileError, PpmiError, ProjectError, ToolFailed, ToolNotFound
from ..fileio import atomic_write
from .csproj import Project

DOTNET_ENV = "PPMI_DOTNET"
INSTALL_HINT = ("install the .NET SDK 8 or later (https://learn.microsoft.com/dotnet/core/install/linux; "
                "Debian/Ubuntu: apt-get install -y dotnet-sdk-8.0) or set PPMI_DOTNET to the dotnet executable")
#: Dataverse limit on a plug-in assembly (domain-spec §4.6).
MAX_ASSEMBLY_BYTES = 16 * 1024 * 1024
LAST_BUILD = Path(".ppmi") / "last-build.json"


# --- diagnostics ---------------------------------------------------------------------------

# MSBuild canonical error format, five parts: Origin : Subcategory Category Code : Text
# (msbuild-diagnostic-format-for-tasks). Origin may be empty, a tool name, or file(location);
# a drive letter ("C:") is part of the origin; "1>" is the multi-processor node prefix.
_CANONICAL = re.compile(
    r"^\s*(?:\d+>)?"
    r"(?:(?P<origin>(?:[A-Za-z]:)?[^:]*?)\s*:\s*)?"
    r"(?P<subcategory>(?:[^:]*?\s)?)"
    r"(?P<category>error|warning)"
    r"(?:\s+(?P<code>[^:\s]+))?"
    r"\s*:(?P<text>.*)$",
    re.IGNORECASE,
)
_LOCATION = re.compile(r"^(?P<file>.*?)\s*\((?P<loc>\d+(?:\s*[-,]\s*\d+){0,3})\)$")
_PROJECT_SUFFIX = re.compile(r"\s+\[(?P<project>[^\[\]]+?)\]\s*$")


@dataclass(frozen=True)
class Diagnostic:
    """One MSBuild error or warning.

    Attributes:
        severity: ``"error"`` or ``"warning"``.
        code: e.g. ``CS1002``, ``NU1101``, ``MSB4025`` (None when the tool gave none).
        message: the text, without the trailing ``[project]``.
        file: the source file (None when the origin is a tool name or empty).
        line / column: 1-based position, or None.
        origin: the tool name when there is no file (``CSC``, ``MSBUILD``, ``cl``), else None.
        project: the project MSBuild appended in brackets, or None.
    """

    severity: str
    code: str | None
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    origin: str | None = None
    project: str | None = None

    def location(self) -> str:
        if not self.file:
            return self.origin or ""
        if self.line is None:
            return self.file
        return f"{self.file}({self.line},{self.column})" if self.column else f"{self.file}({self.line})"

    def __str__(self) -> str:
        where = self.location()
        code = f" {self.code}" if self.code else ""
        return f"{where + ': ' if where else ''}{self.severity}{code}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "message": self.message, "file": self.file,
                "line": self.line, "column": self.column, "origin": self.origin, "project": self.project}


def parse_diagnostic(line: str) -> Diagnostic | None:
    """Parse one output line in MSBuild's canonical diagnostic format; None when it is not one.

    ``Main.cs(17,20): warning CS0168: The variable 'x' is declared but never used`` →
    ``Diagnostic("warning", "CS0168", "The variable 'x' is declared but never used", "Main.cs", 17, 20)``.
    """
    m = _CANONICAL.match(line.rstrip("\r\n"))
    if not m:
        return None
    origin = (m.group("origin") or "").strip()
    text = m.group("text").strip()
    project = None
    pm = _PROJECT_SUFFIX.search(text)
    if pm:
        project, text = pm.group("project"), text[:pm.start()].rstrip()
    file = tool = None
    line_no = col = None
    if origin:
        lm = _LOCATION.match(origin)
        if lm:
            file = lm.group("file")
            nums = [int(n) for n in re.split(r"\s*[-,]\s*", lm.group("loc"))]
            line_no = nums[0]
            sep = re.findall(r"[-,]", lm.group("loc"))
            if len(nums) >= 2 and sep and sep[0] == ",":
                col = nums[1]
        elif re.search(r"[\\/]|\.\w{1,8}$", origin) and " " not in origin.strip():
            file = origin
        else:
            tool = origin
    code = m.group("code")
    return Diagnostic(severity=m.group("category").lower(), code=code, message=text, file=file, line=line_no,
                      column=col, origin=tool, project=project)


def summarize(diagnostics: list[Diagnostic], *, root: Path | None = None, limit: int = 20) -> str:
    """A readable multi-line summary: counts, then errors and warnings grouped by file.

    ``root``: paths under it are shown relative to it.
    """
    errors = [d for d in diagnostics if d.severity == "error"]
    warnings = [d for d in diagnostics if d.severity == "warning"]
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    lines = [f"{plural(len(errors), 'error')}, {plural(len(warnings), 'warning')}"]
    shown = 0
    for group in (errors, warnings):
        by_file: dict[str, list[Diagnostic]] = {}
        for d in group:
            key = d.file or d.origin or "(no file)"
            if d.file and root:
                try:
                    key = str(Path(d.file).resolve().relative_to(root.resolve()))
                except ValueError:
                    pass
            by_file.setdefault(key, []).append(d)
        for key, items in by_file.items():
            lines.append(f"  {key}")
            for d in items:
                if shown >= limit:
                    break
                pos = f"{d.line}:{d.column or 0}" if d.line else "-"
                lines.append(f"    {pos:>8}  {d.severity} {d.code or ''}  {d.message}".rstrip())
                shown += 1
    if len(errors) + len(warnings) > shown:
        lines.append(f"  … and {len(errors) + len(warnings) - shown} more")
    return "\n".join(lines)


class BuildFailed(ToolFailed):
    """``dotnet build``/``pack`` exited non-zero (exit code 3). ``diagnostics`` holds what it reported."""

    def __init__(self, message: str, *, diagnostics: list[Diagnostic], returncode: int, command: list[str]):
        super().__init__(message)
        self.diagnostics = diagnostics
        self.returncode = returncode
        self.command = command

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


# --- results -------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Artifact:
    """One file this build produced.

    Attributes:
        path: absolute path.
        kind: ``"assembly"`` (.dll) or ``"package"`` (.nupkg).
        sha256: lower-case hex SHA-256 of the file; size: bytes.
        identity: for assemblies, the :class:`AssemblyIdentity`; plugin_types: ``IPlugin`` classes.
        package: for packages, ``{"id", "version", "assemblies": [{"path", name, version, culture,
            public_key_token, full_name, "plugin_types"}]}`` (``path`` inside the zip).
    """

    path: Path
    kind: str
    sha256: str
    size: int
    identity: AssemblyIdentity | None = None
    plugin_types: list[str] = field(default_factory=list)
    package: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": str(self.path), "kind": self.kind, "sha256": self.sha256, "size": self.size}
        if self.identity is not None:
            d["assembly"] = {**self.identity.to_json(), "plugin_types": list(self.plugin_types)}
        if self.package is not None:
            d["package"] = self.package
        return d


@dataclass
class BuildResult:
    """What ``build`` did. ``artifacts[0]`` is the primary artifact (the ``.nupkg`` for packages,
    the ``.dll`` for assemblies)."""

    project: Path
    root: Path
    kind: str
    configuration: str
    dotnet: str
    commands: list[list[str]]
    artifacts: list[Artifact]
    warnings: list[Diagnostic] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def primary(self) -> Artifact:
        return self.artifacts[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "project": str(self.project),
            "root": str(self.root),
            "kind": self.kind,
            "configuration": self.configuration,
            "dotnet": self.dotnet,
            "commands": [list(c) for c in self.commands],
            "primary": str(self.primary.path),
            "artifacts": [a.to_json() for a in self.artifacts],
            "warnings": [w.to_json() for w in self.warnings],
            "stale": [str(p) for p in self.stale],
            "notes": list(self.notes),
            "duration_s": round(self.duration_s, 3),
        }


# --- locating things -------------------------------------------------------------------------

def find_dotnet(environ: dict[str, str] | None = None) -> str:
    """Path of the ``dotnet`` executable: ``$PPMI_DOTNET``, else ``dotnet`` on ``PATH``.

    Raises:
        ToolNotFound: not installed, or ``PPMI_DOTNET`` does not name an executable file.
    """
    env = os.environ if environ is None else environ
    override = env.get(DOTNET_ENV)
    if override:
        p = Path(override).expanduser()
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
        found = shutil.which(override, path=env.get("PATH"))
        if found:
            return found
        raise ToolNotFound(f"{DOTNET_ENV}={override} is not an executable file; point it at the dotnet executable "
                           f"or unset it to use dotnet from PATH")
    found = shutil.which("dotnet", path=env.get("PATH"))
    if not found:
        raise ToolNotFound(f"dotnet was not found on PATH; {INSTALL_HINT}")
    return found


def resolve_project(target: Path | str | None = None) -> tuple[Path, Path, str | None]:
    """Find the project to build.

    Args:
        target: a ``.csproj``, a project root (with ``ppmi.toml``), or a folder holding one
            ``.csproj`` directly or under ``src/``; None = the current folder.
    Returns:
        ``(csproj path, project root, kind from ppmi.toml or None)``; the root is the folder of
        ``ppmi.toml`` when there is one, else the csproj's folder.
    Raises:
        InputFileError / ProjectError / ConfigError: nothing or several projects found, bad config.
    """
    from ..config import find_config, load_settings

    target = Path(target) if target else Path.cwd()
    if not target.exists():
        raise InputFileError(f"{target} does not exist; pass the plug-in project folder or its .csproj")
    if target.is_file():
        if target.suffix.lower() != ".csproj":
            raise ProjectError(f"{target} is not a .csproj; pass the plug-in project folder or its .csproj")
        cfg = find_config(target.parent)
        kind: str | None = None
        if cfg is not None:
            settings = load_settings(cfg)
            kind = settings.plugin.kind
        return target.resolve(), (cfg.parent if cfg else target.parent).resolve(), kind
    cfg = target / "ppmi.toml"
    if cfg.is_file():
        settings = load_settings(cfg)
        if settings.plugin.project:
            csproj = settings.resolve_path(settings.plugin.project)
            if not csproj.is_file():
                raise ProjectError(f"{cfg}: [plugin] project = {settings.plugin.project!r} does not exist; "
                                   "fix the path")
            return csproj.resolve(), target.resolve(), settings.plugin.kind
        kind = settings.plugin.kind
    else:
        kind = None
    candidates = sorted(target.glob("*.csproj")) or sorted((target / "src").glob("*.csproj"))
    if not candidates:
        raise ProjectError(f"no .csproj in {target} or {target / 'src'}; pass the project file, "
                           "or create a project with `ppmi-build init`")
    if len(candidates) > 1:
        names = ", ".join(c.name for c in candidates)
        raise ProjectError(f"{target} has several projects ({names}); pass the one to build, "
                           "or set [plugin] project in ppmi.toml")
    return candidates[0].resolve(), target.resolve(), kind


# --- running ---------------------------------------------------------------------------------

OutputCallback = Callable[[str], None]


def _child_env(environ: dict[str, str] | None, settings: Any = None,
               secret_env: Iterable[str | None] = ()) -> dict[str, str]:
    """dotnet's environment: ``environ`` (default ``os.environ``) without the secrets a build never needs
    (:func:`ppmi_build.config.secret_env_names`: PFX password/base64, access tokens, azure-identity and CI
    secrets, ``[signing] password_env`` of ``settings``, ``secret_env``) — MSBuild logs the environment at
    diagnostic verbosity, and project targets and NuGet restore plug-ins can read it — plus
    English, no-logo, no-telemetry settings."""
    from ..config import scrubbed_environ

    env = scrubbed_environ(environ, settings, secret_env)
    env.update({
        "DOTNET_CLI_UI_LANGUAGE": "en",  # diagnostics are parsed: keep them in English
        "DOTNET_NOLOGO": "1",
        "DOTNET_CLI_TELEMETRY_OPTOUT": "1",
        "DOTNET_SKIP_FIRST_TIME_EXPERIENCE": "1",
        "MSBUILDTERMINALLOGGER": "off",  # plain line output (the .NET 9 terminal logger rewrites lines)
    })
    return env


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], on_output: OutputCallback | None,
         timeout_s: float | None) -> tuple[int, list[str]]:
    """Run ``cmd`` streaming merged stdout/stderr line by line; returns (exit code, lines).

    The child gets its own process group, so a timeout or Ctrl-C stops dotnet and the MSBuild
    nodes and compilers it started.
    """
    import threading

    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                bufsize=1, start_new_session=True)
    except FileNotFoundError:
        raise ToolNotFound(f"{cmd[0]} could not be started; {INSTALL_HINT}") from None
    except PermissionError:
        raise ToolNotFound(f"{cmd[0]} is not executable; {INSTALL_HINT}") from None
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        _kill(proc)

    watchdog = threading.Timer(timeout_s, on_timeout) if timeout_s else None
    if watchdog:
        watchdog.daemon = True
        watchdog.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\r\n")
            lines.append(line)
            if on_output:
                on_output(line)
        code = proc.wait()
    except BaseException:
        _kill(proc)
        raise
    finally:
        if watchdog:
            watchdog.cancel()
    if timed_out.is_set():
        raise ToolFailed(f"`dotnet {cmd[1]}` did not finish within {timeout_s:g} s and was stopped; "
                         "raise --timeout or look at the output above")
    return code, lines


def _kill(proc: subprocess.Popen) -> None:
    """Stop the whole process group of ``proc`` (TERM, then KILL after 5 s)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


_BUILT = re.compile(r"^\s*(?P<name>\S.*?) -> (?P<path>.+\.(?:dll|exe))\s*$", re.IGNORECASE)
_PACKED = re.compile(r"Successfully created package '(?P<path>[^']+\.nupkg)'", re.IGNORECASE)


def _nupkg_matches(name: str, package_id: str) -> bool:
    """``<PackageId>.<version>.nupkg`` (version starts with a digit), case-insensitive like NuGet IDs."""
    lower, prefix = name.lower(), package_id.lower() + "."
    return lower.endswith(".nupkg") and lower.startswith(prefix) and lower[len(prefix):len(prefix) + 1].isdigit()


class _PackageStash:
    """Moves existing packages of ``package_id`` out of ``folder`` for the build, and back afterwards."""

    def __init__(self, folder: Path, package_id: str):
        self.folder = folder
        self.package_id = package_id
        self.moved: list[Path] = []
        self.dir: Path | None = None

    def __enter__(self) -> _PackageStash:
        if not self.folder.is_dir():
            return self
        olds = [p for p in self.folder.iterdir() if p.is_file() and _nupkg_matches(p.name, self.package_id)]
        if olds:
            self.dir = Path(tempfile.mkdtemp(prefix=".ppmi-stale-", dir=self.folder))
            for p in olds:
                os.replace(p, self.dir / p.name)
                self.moved.append(p)
        return self

    def restore(self, *, keep_new: bool) -> list[Path]:
        """Put the moved packages back; with ``keep_new`` a package rebuilt under the same name wins.
        Returns the restored paths."""
        restored = []
        for p in self.moved:
            src = (self.dir or self.folder) / p.name
            if keep_new and p.exists():
                src.unlink(missing_ok=True)
                continue
            os.replace(src, p)
            restored.append(p)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.moved = []
        return restored

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.moved:  # not restored by the caller: an error or interrupt; put everything back
            self.restore(keep_new=False)


def _describe_assembly(path: Path) -> Artifact:
    identity = read_plugin_assembly(path)
    return Artifact(path=path, kind="assembly", sha256=_sha256(path), size=path.stat().st_size,
                    identity=identity, plugin_types=list(identity.plugin_types))


def describe_package(path: Path) -> dict[str, Any]:
    """``{"id", "version", "assemblies": [...]}`` from a ``.nupkg``'s ``.nuspec`` and ``lib/**.dll``
    (:meth:`ppmi_build.assembly.package.PackageInfo.to_json`). DLLs that are not .NET assemblies
    (native helpers) are left out: Dataverse ignores them too.

    Raises:
        InputFileError: the package cannot be read.
        PackageFormatError: not a zip, not exactly one ``.nuspec`` at the root, or a nuspec without id/version.
    """
    from ..assembly.package import read_package

    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror}") from None
    return read_package(data, label=str(path), skip_non_assemblies=True).to_json()


def build(target: Path | str | None = None, configuration: str = "Release", *, kind: str | None = None,
          on_output: OutputCallback | None = None, environ: dict[str, str] | None = None,
          timeout_s: float | None = None, record: bool = True,
          secret_env: Iterable[str | None] = ()) -> BuildResult:
    """Build the plug-in project and describe the artifacts this run produced.

    Args:
        target: see :func:`resolve_project`.
        configuration: MSBuild configuration (``-c``), default ``Release``.
        kind: ``assembly`` or ``package``; default from ``ppmi.toml``, else from the csproj
            (a ``Microsoft.PowerApps.MSBuild.Plugin`` reference means package).
        on_output: called with every output line of dotnet (no trailing newline).
        environ: environment for locating and running dotnet (default ``os.environ``).
        timeout_s: stop dotnet after this many seconds.
        record: write ``<root>/.ppmi/last-build.json``.
        secret_env: more environment variables to keep from dotnet (e.g. the ``--password-env`` of the
            command line); the secrets of :func:`ppmi_build.config.secret_env_names` (with the project's
            ``[signing] password_env``) are always kept from it.
    Returns:
        :class:`BuildResult`; ``artifacts[0]`` is the ``.nupkg`` (package) or ``.dll`` (assembly).
    Raises:
        ToolNotFound: dotnet is missing (exit 3).
        BuildFailed: dotnet exited non-zero; carries the parsed diagnostics (exit 3).
        ToolFailed: the build "succeeded" but the expected artifact is missing.
        ProjectError / InputFileError / ConfigError: no project, csproj not XML, bad kind (exit 2).
    """
    started = time.monotonic()
    csproj, root, cfg_kind = resolve_project(target)
    proj = Project.load(csproj)  # ProjectError when not XML: a clear message before dotnet runs
    kind = kind or cfg_kind or proj.kind
    if kind not in ("assembly", "package"):
        raise ProjectError(f"kind {kind!r} is not supported; use assembly or package")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", configuration or ""):
        raise ProjectError(f"--configuration {configuration!r} is not a valid configuration name (e.g. Release)")
    dotnet = find_dotnet(environ)
    props = proj.evaluated(configuration)
    pkg_dir_raw = props.get("PackageOutputPath") or f"bin/{configuration}/"
    pkg_dir = (csproj.parent / pkg_dir_raw.replace("\\", "/")).resolve()
    package_id = props["PackageId"]
    from ..config import CONFIG_NAME, load_settings

    settings = load_settings(root / CONFIG_NAME) if (root / CONFIG_NAME).is_file() else None
    env = _child_env(environ, settings, secret_env)
    commands: list[list[str]] = []
    diagnostics: list[Diagnostic] = []
    seen: set[tuple] = set()
    built_paths: list[Path] = []
    packed_paths: list[Path] = []

    def consume(line: str) -> None:
        d = parse_diagnostic(line)
        if d is not None:
            key = (d.severity, d.code, d.file, d.line, d.column, d.message)
            if key not in seen:
                seen.add(key)
                diagnostics.append(d)
        m = _BUILT.match(line)
        if m:
            built_paths.append(Path(m.group("path").strip()))
        m = _PACKED.search(line)
        if m:
            packed_paths.append(Path(m.group("path")))
        if on_output:
            on_output(line)

    def run(verb: str, *extra: str) -> None:
        cmd = [dotnet, verb, str(csproj), "-c", configuration, "-nologo", *extra]
        commands.append(cmd)
        code, _lines = _run(cmd, cwd=csproj.parent, env=env, on_output=consume, timeout_s=timeout_s)
        if code != 0:
            errors = [d for d in diagnostics if d.severity == "error"]
            if errors:
                first = "; ".join(str(e) for e in errors[:3])
                more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
                msg = f"dotnet {verb} failed with {len(errors)} error(s): {first}{more}; fix them and build again"
            else:
                msg = (f"dotnet {verb} exited with code {code} without an error line; "
                       f"run `dotnet {verb} {csproj}` to see why")
            raise BuildFailed(msg, diagnostics=list(diagnostics), returncode=code, command=cmd)

    notes: list[str] = []
    stale: list[Path] = []

    def packages_in_output() -> list[Path]:
        if not pkg_dir.is_dir():
            return []
        return [p for p in pkg_dir.glob("*.nupkg") if _nupkg_matches(p.name, package_id)]

    with _PackageStash(pkg_dir, package_id) as stash:
        run("build")
        fresh_pkgs = packages_in_output()  # every older one was moved aside: these are from this run
        if kind == "package" and not fresh_pkgs and not packed_paths:
            run("pack", "--no-build")
            fresh_pkgs = packages_in_output()
        stale = stash.restore(keep_new=True)
    packages = sorted({p.resolve() for p in fresh_pkgs} | {p.resolve() for p in packed_paths if p.exists()})

    dll_candidates = [p if p.is_absolute() else (csproj.parent / p) for p in built_paths]
    if not dll_candidates:
        out_dir = props.get("OutputPath") or f"bin/{configuration}/"
        base = csproj.parent / out_dir.replace("\\", "/")
        if props.get("AppendTargetFrameworkToOutputPath", "true").lower() != "false" and props["TargetFramework"]:
            base = base / props["TargetFramework"]
        dll_candidates = [base / f"{props['AssemblyName']}.dll"]
    dlls = [p.resolve() for p in dll_candidates if p.is_file()]
    if not dlls:
        raise ToolFailed(f"dotnet build succeeded but no assembly was found at {dll_candidates[0]}; "
                         "check OutputPath/AssemblyName in the project")
    own = f"{props['AssemblyName']}.dll".lower()
    dlls = sorted(dict.fromkeys(dlls), key=lambda p: p.name.lower() != own)  # the project's own assembly first
    assemblies = [_describe_assembly(p) for p in dlls]
    package_artifacts = []
    for p in packages:
        art = Artifact(path=p, kind="package", sha256=_sha256(p), size=p.stat().st_size, package=describe_package(p))
        package_artifacts.append(art)
    if kind == "package":
        if not package_artifacts:
            raise ToolFailed(f"dotnet build/pack succeeded but wrote no {package_id}.*.nupkg to {pkg_dir}; "
                             "check PackageId/PackageOutputPath or build with --kind assembly")
        artifacts = package_artifacts + assemblies
    else:
        artifacts = assemblies + package_artifacts
    for a in assemblies:
        if a.size > MAX_ASSEMBLY_BYTES:
            notes.append(f"{a.path.name} is {a.size / 2**20:.1f} MB; Dataverse accepts plug-in assemblies up to 16 MB")
        if kind == "assembly" and a.identity and not a.identity.strong_named:
            notes.append(f"{a.path.name} is not strong-named; a standalone plug-in assembly must be "
                         "(set SignAssembly/AssemblyOriginatorKeyFile, e.g. `ppmi-build snk new`)")
        if not a.plugin_types:
            notes.append(f"{a.path.name} has no public class implementing Microsoft.Xrm.Sdk.IPlugin")
    result = BuildResult(
        project=csproj, root=root, kind=kind, configuration=configuration, dotnet=dotnet, commands=commands,
        artifacts=artifacts, warnings=[d for d in diagnostics if d.severity == "warning"], stale=stale, notes=notes,
        duration_s=time.monotonic() - started,
    )
    if record:
        _record(result)
    return result


def _record(result: BuildResult) -> None:
    path = result.root / LAST_BUILD
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (json.dumps(result.to_json(), indent=2) + "\n").encode("utf-8"))
    except (OSError, PpmiError):
        result.notes.append(f"could not write {path}")


def last_build(root: Path | str) -> dict[str, Any] | None:
    """The JSON of the last successful ``build`` in project ``root`` (``.ppmi/last-build.json``), or None.

    Only returned while its primary artifact still exists. Signing in place changes the file's
    SHA-256, so the recorded ``sha256`` is that of the unsigned build output.
    """
    path = Path(root) / LAST_BUILD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    primary = Path(data.get("primary", ""))
    if not primary.is_file():
        return None
    return data
