"""``ppmi-build init``: render a Dataverse plug-in project from the jinja2 templates in ``templates/plugin``.

The generated project (domain-spec §3.2 ``pac plugin init`` shape, §4.6 sandbox rules):

* ``src/<Name>.csproj`` — SDK-style, ``net462``, ``ProjectTypeGuids`` of a Dataverse plug-in
  project, package references ``Microsoft.CrmSdk.CoreAssemblies`` and
  ``Microsoft.NETFramework.ReferenceAssemblies`` (+ ``Microsoft.PowerApps.MSBuild.Plugin`` for
  packages), ``AssemblyVersion``/``FileVersion`` (+ ``PackageId``/``Version`` for packages), and
  for the assembly kind strong-name signing with a freshly generated ``src/<Name>.snk``;
* ``src/PluginBase.cs`` and ``src/AcquireTokenPlugin.cs`` — a base class and a sample plug-in
  that calls ``IManagedIdentityService.AcquireToken(scopes)``;
* ``ppmi.toml`` (DESIGN.md §4), ``.gitignore``, ``README.md``, ``.github/workflows/release.yml``
  and ``azure-pipelines.yml``.

Everything is rendered in memory first; files are then written one by one through temp files
and renames. A run that fails leaves no partial project behind when it created the folder.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .. import __version__
from ..errors import GuidError, ProjectError
from ..fileio import atomic_write
from ..resources import templates

#: C# reserved keywords (C# language specification §6.4.4 "Keywords"); contextual keywords are valid names.
CSHARP_KEYWORDS = frozenset("""
abstract as base bool break byte case catch char checked class const continue decimal default delegate do double
else enum event explicit extern false finally fixed float for foreach goto if implicit in int interface internal is
lock long namespace new null object operator out override params private protected public readonly ref return sbyte
sealed short sizeof stackalloc static string struct switch this throw true try typeof uint ulong unchecked unsafe
ushort using virtual void volatile while
""".split())

#: NuGet package ID rule (NuGet.Client PackageIdValidator: ``^\\w+([.-]\\w+)*$``, at most 100 characters).
_PACKAGE_ID = re.compile(r"^\w+(?:[.-]\w+)*$")
#: Names that would clash with the assemblies every plug-in references.
_RESERVED_NAMES = {"microsoft.xrm.sdk", "microsoft.crm.sdk.proxy", "mscorlib", "system", "system.core"}

DEFAULT_SCOPES = ("https://vault.azure.net/.default",)
KINDS = ("package", "assembly")

#: template (relative to templates/plugin) -> output path; ``{name}`` is the project name.
MANIFEST: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("project.csproj.j2", "src/{name}.csproj", KINDS),
    ("PluginBase.cs.j2", "src/PluginBase.cs", KINDS),
    ("AcquireTokenPlugin.cs.j2", "src/AcquireTokenPlugin.cs", KINDS),
    ("ppmi.toml.j2", "ppmi.toml", KINDS),
    ("gitignore.j2", ".gitignore", KINDS),
    ("README.md.j2", "README.md", KINDS),
    ("github-release.yml.j2", ".github/workflows/release.yml", KINDS),
    ("azure-pipelines.yml.j2", "azure-pipelines.yml", KINDS),
)

#: Dataverse plug-in project type GUIDs written by ``pac plugin init`` (domain-spec §3.2).
PROJECT_TYPE_GUIDS = "{4C25E9B5-9FA6-436c-8E19-B395D2A65FAF};{FAE04EC0-301F-11D3-BF4B-00C04F79EFBC}"


def validate_name(name: str) -> str:
    """Check a project name (it becomes the assembly name, package ID and file names).

    Rules: a valid NuGet package ID (letters, digits and ``_``, parts joined by single ``.`` or
    ``-``; at most 100 characters) and not the name of an assembly every plug-in references.

    Raises:
        ProjectError: with the reason and an example of a valid name.
    """
    if not name or not name.strip():
        raise ProjectError("--name is empty; give the plug-in project a name such as Contoso.Plugins")
    if len(name) > 100:
        raise ProjectError(f"--name {name[:20]!r}… is {len(name)} characters; NuGet package IDs allow at most 100")
    if not _PACKAGE_ID.match(name):
        raise ProjectError(
            f"--name {name!r} is not a valid project/package name: use letters, digits and _ joined by single "
            "'.' or '-' (no spaces, slashes or leading/trailing dots), e.g. Contoso.Plugins"
        )
    if name.lower() in _RESERVED_NAMES:
        raise ProjectError(f"--name {name!r} is the name of an assembly plug-ins reference; choose another, "
                           "e.g. Contoso.Plugins")
    return name


def csharp_namespace(name: str) -> str:
    """Turn a project name into a valid C# namespace.

    Each dot-separated part becomes an identifier: characters that are not letters, digits
    or ``_`` become ``_`` (``Contoso-Plugins`` → ``Contoso_Plugins``); a part that starts with
    a digit gets a leading ``_`` (``2024`` → ``_2024``); a part that is a C# keyword gets a
    leading ``_`` (``Contoso.class`` → ``Contoso._class``). C# specification §6.4.3 (identifiers).

    Raises:
        ProjectError: nothing usable is left (e.g. ``"..."``).
    """
    parts = []
    for raw in name.split("."):
        part = "".join(ch if (ch.isalnum() or ch == "_") else "_" for ch in raw)
        if not part:
            continue
        if part[0].isdigit():
            part = "_" + part
        if part in CSHARP_KEYWORDS:
            part = "_" + part
        parts.append(part)
    if not parts:
        raise ProjectError(f"cannot make a C# namespace from {name!r}; use a name such as Contoso.Plugins")
    return ".".join(parts)


def solution_name(name: str) -> str:
    """A Dataverse solution unique name from the project name: letters, digits and ``_``, starting with a letter."""
    s = re.sub(r"[^A-Za-z0-9_]", "", name)
    if not s or not s[0].isalpha():
        s = "Plugins" + s
    return s[:64]


def validate_scope(scope: str) -> str:
    """A scope for ``IManagedIdentityService.AcquireToken``: an absolute URI such as
    ``https://vault.azure.net/.default`` or ``api://<app-id>/.default``; no whitespace or quotes.

    Raises:
        ProjectError: the value is not such a URI.
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'\\<>`{}|^]+", scope or ""):
        raise ProjectError(
            f"--scope {scope!r} is not a valid scope; use an absolute URI such as "
            "https://vault.azure.net/.default or https://contoso.crm.dynamics.com/.default"
        )
    return scope


def validate_guid(value: str | None, option: str) -> str | None:
    """Normalise a GUID option to lower-case hyphenated form (None passes through)."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise GuidError(f"{option} {value!r} is not a GUID; copy it from the Entra admin center "
                        "(e.g. 5f8a1a9f-2e1a-415f-b10c-84c3736a21b9)") from None


# --- jinja2 --------------------------------------------------------------------------------

def _cs_string(value: str) -> str:
    """A C# regular string literal (quotes included) for ``value`` (C# spec §6.4.5.6)."""
    out = []
    for ch in str(value):
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029\u0085":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _xml(value: str) -> str:
    from xml.sax.saxutils import escape

    return escape(str(value), {'"': "&quot;"})


def _quoted(value: str) -> str:
    """A TOML basic string / YAML double-quoted scalar (JSON string syntax is valid in both)."""
    return json.dumps(str(value), ensure_ascii=False)


def environment() -> jinja2.Environment:
    """The jinja2 environment for ``templates/plugin`` (StrictUndefined; filters ``cs``, ``xml``, ``q``)."""
    root = templates() / "plugin"

    def load(name: str) -> str:
        item = root
        for part in name.split("/"):
            item = item / part
        if not item.is_file():
            raise jinja2.TemplateNotFound(name)
        return item.read_text(encoding="utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cs"] = _cs_string
    env.filters["xml"] = _xml
    env.filters["q"] = _quoted
    return env


# --- the scaffold ---------------------------------------------------------------------------

@dataclass
class ScaffoldResult:
    """What ``init`` wrote.

    Attributes:
        root: the project folder.
        files: paths written, relative to ``root`` (POSIX separators), in write order.
        kept: existing files deliberately not overwritten (an existing ``.snk`` under ``--force``).
        namespace: the C# root namespace.
        kind: ``package`` or ``assembly``.
        public_key_token: token of the ``.snk`` (assembly kind) or None.
    """

    root: Path
    name: str
    kind: str
    namespace: str
    files: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    public_key_token: str | None = None
    scopes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "name": self.name,
            "kind": self.kind,
            "namespace": self.namespace,
            "project": f"src/{self.name}.csproj",
            "files": list(self.files),
            "kept": list(self.kept),
            "public_key_token": self.public_key_token,
            "scopes": list(self.scopes),
        }


def render(name: str, *, kind: str = "package", scopes: list[str] | tuple[str, ...] | None = None,
           tenant_id: str | None = None, application_id: str | None = None) -> dict[str, str]:
    """Render every template for a project; returns ``{relative output path: text}``.

    Raises:
        ProjectError / GuidError: invalid name, kind, scope or GUID.
    """
    validate_name(name)
    if kind not in KINDS:
        raise ProjectError(f"--kind {kind!r} is not supported; use package or assembly")
    scopes = [validate_scope(s) for s in (scopes or DEFAULT_SCOPES)]
    ctx = {
        "name": name,
        "namespace": csharp_namespace(name),
        "kind": kind,
        "scopes": scopes,
        "tenant_id": validate_guid(tenant_id, "--tenant-id"),
        "application_id": validate_guid(application_id, "--application-id"),
        "solution": solution_name(name),
        "snk": f"{name}.snk",
        "project_type_guids": PROJECT_TYPE_GUIDS,
        "author": name.split(".")[0].split("-")[0] or name,
        "ppmi_version": __version__,
    }
    env = environment()
    ctx["release_step"] = env.get_template("release-step.sh.j2").render(**ctx).rstrip("\n")
    out: dict[str, str] = {}
    for template, target, kinds in MANIFEST:
        if kind in kinds:
            out[target.format(name=name)] = env.get_template(template).render(**ctx)
    return out


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def scaffold(root: Path | str, name: str | None = None, *, kind: str = "package",
             scopes: list[str] | tuple[str, ...] | None = None, tenant_id: str | None = None,
             application_id: str | None = None, force: bool = False, snk_bits: int = 2048) -> ScaffoldResult:
    """Create a plug-in project in ``root``.

    Args:
        root: target folder; created when missing. An existing non-empty folder is refused
            unless ``force`` (then generated files are overwritten, other files are left alone,
            and an existing ``.snk`` is kept so the public key token does not change).
        name: project name (default: the folder name); see :func:`validate_name`.
        kind: ``package`` (plug-in package, .nupkg) or ``assembly`` (standalone strong-named DLL).
        scopes: scopes the sample plug-in passes to ``AcquireToken`` (default
            ``https://vault.azure.net/.default``).
        tenant_id / application_id: written to ``[identity]`` of ``ppmi.toml`` when given.
        force: allow a non-empty folder.
        snk_bits: strong-name key size for the assembly kind.
    Returns:
        :class:`ScaffoldResult`.
    Raises:
        ProjectError: bad name/kind/scope, ``root`` is a file, or non-empty without ``force``.
        GuidError: a tenant/application ID is not a GUID.
    """
    from ..identity.snk import generate_snk, token_of_key_file

    root = Path(root)
    name = name if name is not None else root.resolve().name
    if root.exists() and not root.is_dir():
        raise ProjectError(f"{root} is a file; pass a folder for the new project")
    if root.is_dir() and not _is_empty_dir(root) and not force:
        raise ProjectError(f"{root} is not empty; choose a new folder or pass --force to write the project "
                           "files into it (other files are kept)")
    rendered = render(name, kind=kind, scopes=scopes, tenant_id=tenant_id, application_id=application_id)
    result = ScaffoldResult(root=root, name=name, kind=kind, namespace=csharp_namespace(name),
                            scopes=list(scopes or DEFAULT_SCOPES))
    snk_rel = f"src/{name}.snk"
    snk_data: bytes | None = None
    if kind == "assembly":
        existing = root / snk_rel
        if existing.is_file():
            snk_data = existing.read_bytes()
            result.kept.append(snk_rel)
            try:
                result.public_key_token = token_of_key_file(snk_data)
            except Exception as e:  # an unreadable key is the user's to fix; don't replace it silently
                raise ProjectError(f"{existing} exists but is not a strong-name key ({e}); "
                                   "move it away or fix it") from None
        else:
            snk_data = generate_snk(snk_bits)
            result.public_key_token = token_of_key_file(snk_data)
    created_root = not root.exists()
    was_empty = created_root or _is_empty_dir(root)
    try:
        for rel, text in rendered.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise ProjectError(f"{target} is a folder; move it away or choose another project folder")
            atomic_write(target, text.encode("utf-8"))
            result.files.append(rel)
        if kind == "assembly" and snk_rel not in result.kept:
            assert snk_data is not None
            atomic_write(root / snk_rel, snk_data, mode=0o600)
            result.files.append(snk_rel)
    except BaseException:
        if created_root:
            shutil.rmtree(root, ignore_errors=True)
        elif was_empty:  # leave the folder as empty as we found it
            for child in root.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        raise
    return result
