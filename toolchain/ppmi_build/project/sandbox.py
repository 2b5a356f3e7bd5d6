"""Sandbox lint: plug-ins that build fine but cannot run in the Dataverse sandbox (.NET Framework 4.6.2).

Rules (each a warning naming the assembly or package and the fix; sources in ``sandbox_rules.toml``):

* a strong-named standalone assembly that references an assembly that is not strong-named (the reference
  has no public key token, or the copy of it beside the assembly has none): the CLR
  refuses to load it from a strong-named caller ("A strongly-named assembly is required", 0x80131044),
  and a standalone assembly carries no dependencies anyway (``build-and-package`` "Sign assemblies");
* an assembly known to fail in the sandbox (data: ``[[assembly]]``, e.g. ``Azure.Identity`` above 1.9);
* a standalone assembly over 16 MB (``[limits] assembly_bytes``);
* a package whose plug-in assemblies reference an assembly that is neither in the package nor provided by
  the sandbox (``[provided]``): Dataverse loads only what the package holds.

Functions return warning strings and never raise for lint findings; unreadable inputs raise the readers'
errors (:mod:`ppmi_build.assembly`).
"""

from __future__ import annotations

import functools
import io
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ..assembly.metadata import AssemblyIdentity, read_assembly_identity, read_assembly_references

RULES_FILE = "sandbox_rules.toml"


@functools.cache
def rules() -> dict[str, Any]:
    """The parsed ``sandbox_rules.toml`` beside this module."""
    return tomllib.loads((resources.files(__package__) / RULES_FILE).read_text(encoding="utf-8"))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in (text.split(".") + ["0"] * 4)[:4])


def _known_bad(identity: AssemblyIdentity, where: str) -> list[str]:
    out = []
    for rule in rules().get("assembly", []):
        if identity.name.lower() != rule["name"].lower():
            continue
        above = rule.get("above")
        if above and _version(identity.version) <= _version(above):
            continue
        out.append(f"{where}: {identity.name} {identity.version}: {rule['problem']}; {rule['fix']}")
    return out


def _provided(name: str) -> bool:
    p = rules().get("provided", {})
    low = name.lower()
    return low in {n.lower() for n in p.get("names", [])} or any(
        low == x.lower() or low.startswith(x.lower() + ".") for x in p.get("prefixes", []))


def lint_assembly(path: Path | str) -> list[str]:
    """Warnings for a standalone plug-in assembly (``pluginassembly``, no package).

    Raises:
        InputFileError, PEFormatError, MetadataCorrupt: the file is not a readable .NET assembly.
    """
    path = Path(path)
    identity = read_assembly_identity(path)
    refs = read_assembly_references(path)
    warnings: list[str] = []
    limit = int(rules().get("limits", {}).get("assembly_bytes", 16 * 1024 * 1024))
    size = path.stat().st_size
    if size > limit:
        warnings.append(f"{path}: {size:,} bytes is over Dataverse's {limit // (1024 * 1024)} MB limit for a plug-in "
                        "assembly; remove unused code or resources, or deploy it as a plug-in package")
    if identity.strong_named:
        for ref in refs:
            if _provided(ref.name):
                continue
            sibling = path.with_name(ref.name + ".dll")  # the copy the build put beside it, if any
            weak_copy = sibling.is_file() and not read_assembly_identity(sibling).strong_named
            if not ref.strong_named or weak_copy:
                warnings.append(
                    f"{path}: the strong-named assembly {identity.name} references {ref.name} {ref.version}, which is "
                    "not strong-named: .NET Framework cannot load it in the sandbox; strong-name it and merge it in, "
                    "or deploy as a plug-in package (dependent assemblies)")
    for ref in refs:
        warnings += _known_bad(ref, f"{path} references")
    return warnings


def lint_package(path: Path | str) -> list[str]:
    """Warnings for a plug-in package (``pluginpackage``): known-bad assemblies it holds or its assemblies
    reference, and references that are neither in the package nor provided by the sandbox.

    Raises:
        InputFileError, PackageFormatError: the package cannot be read.
    """
    from ..assembly.package import open_package, read_entry, read_package
    from ..fileio import read_input

    path = Path(path)
    data = read_input(path, missing="build the project first or pass the right path")
    info = read_package(data, label=path.name, skip_non_assemblies=True)
    held = {a.name.lower() for a in info.assemblies.values()}
    warnings: list[str] = []
    for entry, identity in info.assemblies.items():
        warnings += _known_bad(identity, f"{path.name}!{entry}")
    with open_package(io.BytesIO(data), path.name) as zf:
        for entry, identity in info.assemblies.items():
            if not identity.plugin_types:
                continue
            refs = read_assembly_references(read_entry(zf, zf.getinfo(entry), path.name), label=f"{path.name}!{entry}")
            for ref in refs:
                if ref.name.lower() not in held and not _provided(ref.name):
                    warnings.append(
                        f"{path.name}!{entry} references {ref.name} {ref.version}, which is not in the package and "
                        "not provided by the sandbox; add it to the package (a PackageReference that is copied to "
                        "lib/) or remove the reference")
                warnings += _known_bad(ref, f"{path.name}!{entry} references")
    return list(dict.fromkeys(warnings))


def lint_artifact(path: Path | str) -> list[str]:
    """:func:`lint_package` for a ``.nupkg``, else :func:`lint_assembly`."""
    return lint_package(path) if str(path).lower().endswith(".nupkg") else lint_assembly(path)


def sandbox_warnings(path: Path | str) -> list[str]:
    """:func:`lint_artifact`, for commands that only warn (``build``, ``register``, ``doctor``): an artifact the
    lint cannot read gives the one warning ``"{path}: sandbox lint skipped ({why})"`` instead of raising (the
    command's own reading of the artifact reports it)."""
    from ..errors import PpmiError

    try:
        return lint_artifact(path)
    except PpmiError as e:
        return [f"{path}: sandbox lint skipped ({e.message})"]
