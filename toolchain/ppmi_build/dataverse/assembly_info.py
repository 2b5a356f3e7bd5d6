"""Read what Dataverse reads from a plug-in package (``.nupkg``): its nuspec id/version and the identity and
``IPlugin`` types of every assembly under ``lib/``.

Used by ``build`` (the package record of an artifact), registration (``pluginpackage`` rows, the check that every
plug-in assembly of a package got its ``pluginassembly`` row) and the emulator (which fills ``pluginassembly`` /
``plugintype`` rows from an uploaded package as Dataverse does). The assemblies themselves are read by
:mod:`ppmi_build.project.metadata` (ECMA-335 metadata), with base classes followed across the assemblies of the
package.

Sources:
- NuGet ``PackageArchiveReader.GetNuspec`` (NuGet.Client, NuGet.Packaging): the manifest is the one entry at the
  root of the zip whose name ends in ``.nuspec`` (ordinal, ignoring case); none is ``MissingNuspec``, more than one
  is ``MultipleNuspecFiles``. nuspec reference (https://learn.microsoft.com/nuget/reference/nuspec): ``<id>`` and
  ``<version>`` are required ``<metadata>`` elements.
- domain-spec §4.2 / [BUILD]: "any assemblies that contain classes that implement the IPlugin interface are
  registered in the PluginAssembly table and associated with the plug-in package", one ``plugintype`` per
  ``IPlugin`` class.
- signing-spec: a signed package carries a ``.signature.p7s`` entry.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

from ..errors import BadInput, PackageFormatError
from ..project.metadata import PluginAssembly, read_plugin_assemblies


@dataclass(frozen=True)
class PackageInfo:
    """What matters in a ``.nupkg`` for ``pluginpackage`` registration.

    Attributes:
        id: nuspec ``<id>`` (used as ``uniquename`` unless configured otherwise).
        version: nuspec ``<version>``.
        assemblies: every .NET assembly ``lib/**/*.dll`` of the package (zip entry name -> identity and
            ``IPlugin`` types), in zip order.
        signed: the package has a ``.signature.p7s`` entry (NuGet package signature, signing-spec).
    """

    id: str
    version: str
    assemblies: dict[str, PluginAssembly]
    signed: bool

    @property
    def plugin_assemblies(self) -> list[PluginAssembly]:
        """Assemblies that contain at least one ``IPlugin`` class: Dataverse registers exactly these ([BUILD])."""
        return [a for a in self.assemblies.values() if a.plugin_types]

    def to_json(self) -> dict[str, Any]:
        """``{"id", "version", "assemblies": [{"path", name, version, culture, public_key_token, full_name,
        plugin_types}]}`` (``path`` inside the zip): the package record of ``build --json``."""
        return {"id": self.id, "version": self.version,
                "assemblies": [{"path": n, **a.to_json()} for n, a in self.assemblies.items()]}


def _local(tag: Any) -> str | None:
    """Local name of an element tag (``{namespace}id`` -> ``id``); None for comments and processing instructions."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else None


def read_package(data: bytes, *, label: str = "package", skip_non_assemblies: bool = False) -> PackageInfo:
    """Parse a ``.nupkg``: nuspec id/version and the identities and ``IPlugin`` types of ``lib/**/*.dll``.

    A plug-in class whose base class lives in another assembly of the package counts
    (:func:`ppmi_build.project.metadata.read_plugin_assemblies`).

    Args:
        data: the package bytes.
        label: how errors name the package (usually the file name).
        skip_non_assemblies: leave out ``lib/`` DLLs that are not .NET assemblies (native helpers) instead of
            refusing the package.
    Raises:
        PackageFormatError: not a zip, not exactly one ``.nuspec`` at the root, nuspec not XML or without
            ``<id>``/``<version>``, or (unless ``skip_non_assemblies``) a DLL that is not a .NET assembly.
    """
    from lxml import etree

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise PackageFormatError(f"{label} is not a NuGet package (not a zip file); "
                                 "give the .nupkg from dotnet pack") from None
    with zf:
        names = zf.namelist()
        nuspecs = [n for n in names if "/" not in n and n.lower().endswith(".nuspec")]
        if not nuspecs:
            raise PackageFormatError(f"{label} has no .nuspec at the root; give the .nupkg from dotnet pack")
        if len(nuspecs) > 1:
            raise PackageFormatError(f"{label} has {len(nuspecs)} .nuspec files at its root ({', '.join(nuspecs)}); "
                                     "NuGet expects exactly one: repack the package")
        try:
            parser = etree.XMLParser(resolve_entities=False, no_network=True)
            root = etree.fromstring(zf.read(nuspecs[0]), parser=parser)
        except etree.XMLSyntaxError as e:
            raise PackageFormatError(f"{label}: {nuspecs[0]} is not valid XML ({e})") from None
        meta = {_local(el.tag): (el.text or "").strip()
                for md in root if _local(md.tag) == "metadata" for el in md if _local(el.tag)}
        pkg_id, version = meta.get("id"), meta.get("version")
        if not pkg_id or not version:
            raise PackageFormatError(f"{label}: {nuspecs[0]} lacks <id> or <version>")
        blobs = {n: zf.read(n) for n in names if n.lower().startswith("lib/") and n.lower().endswith(".dll")}
        signed = ".signature.p7s" in names
    try:
        assemblies = read_plugin_assemblies(blobs, labels={n: f"{label}!{n}" for n in blobs},
                                            skip_invalid=skip_non_assemblies)
    except BadInput as e:
        raise PackageFormatError(e.message) from None
    return PackageInfo(id=pkg_id, version=version, assemblies=assemblies, signed=signed)
