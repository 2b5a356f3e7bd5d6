"""Read what Dataverse reads from a plug-in artifact: the .NET assembly identity and the ``IPlugin`` types.

Used by registration (``pluginassembly`` columns, the check that every plug-in assembly of a package got its
row) and by the emulator (which fills ``pluginassembly``/``plugintype`` rows from an uploaded package as
Dataverse does). Parsing uses ``dnfile`` (ECMA-335 metadata tables).

Sources:
- ECMA-335 §II.22.2 (Assembly table: Name, Version, Culture, PublicKey), §II.6.3 / §II.6.2.1.3 (the public key
  token is the last 8 bytes of the SHA-1 of the public key blob, in reverse order).
- domain-spec §4.1 (``pluginassembly`` columns: ``version`` "can be obtained from the assembly through
  reflection", ``culture`` e.g. ``neutral``, ``publickeytoken`` 16 lower-case hex characters).
- domain-spec §4.2 / [BUILD]: "any assemblies that contain classes that implement the IPlugin interface are
  registered in the PluginAssembly table and associated with the plug-in package", one ``plugintype`` per
  ``IPlugin`` class.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import BadInput, PackageFormatError

IPLUGIN = "Microsoft.Xrm.Sdk.IPlugin"


@dataclass(frozen=True)
class AssemblyIdentity:
    """The identity Dataverse stores for a ``pluginassembly`` row.

    Attributes:
        name: simple assembly name (``Contoso.Plugins``).
        version: four-part version string (``1.0.0.0``).
        culture: ``neutral`` when the assembly has no culture.
        public_key_token: 16 lower-case hex characters, or None when the assembly is not strong-named.
        plugin_types: full names (``Namespace.Class``) of non-abstract classes that implement
            ``Microsoft.Xrm.Sdk.IPlugin`` (directly or through a base class).
    """

    name: str
    version: str
    culture: str
    public_key_token: str | None
    plugin_types: tuple[str, ...] = field(default=())

    @property
    def strong_named(self) -> bool:
        return self.public_key_token is not None


def public_key_token(public_key: bytes) -> str:
    """Public key token of a strong-name public key blob: last 8 bytes of SHA-1, reversed (ECMA-335 §II.6.2.1.3)."""
    return hashlib.sha1(public_key).digest()[-8:][::-1].hex()


def _text(value: object) -> str:
    """dnfile returns heap items or str depending on the version; normalise to str."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    for attr in ("value", "__str__"):
        v = getattr(value, attr, None)
        if isinstance(v, str):
            return v
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
    return str(value)


def _blob(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    v = getattr(value, "value", None)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    return b""


def _full(ns: str, name: str) -> str:
    return f"{ns}.{name}" if ns else name


def read_assembly(data: bytes, *, label: str = "assembly", plugin_bases: Iterable[str] = ()) -> AssemblyIdentity:
    """Parse a .NET assembly and return its :class:`AssemblyIdentity`.

    Args:
        data: the PE file bytes.
        label: name used in error messages (usually the file name).
        plugin_bases: full names of types in *other* assemblies known to implement ``IPlugin`` (so a class
            deriving from a base class in a dependency counts).
    Raises:
        BadInput: not a PE file, or not a .NET assembly (no CLI header or no Assembly table row).
    """
    return _parse(data, label).identity(set(plugin_bases))


@dataclass
class _Parsed:
    """What one dnfile pass extracts; plug-in resolution runs on this without re-parsing."""

    name: str
    version: str
    culture: str
    token: str | None
    defs: list[tuple[str, bool, bool]]  # (full name, abstract, interface) per TypeDef
    bases: dict[str, str | None]  # full name -> base type full name (TypeDef.Extends)
    direct: dict[str, set[str]]  # full name -> interfaces listed in InterfaceImpl

    def implementers(self, known: set[str]) -> set[str]:
        """Types of this assembly implementing IPlugin: directly (InterfaceImpl, ECMA-335 §II.22.23), through a
        base class of this assembly (TypeDef.Extends), or through a base class listed in ``known``."""
        found: set[str] = {IPLUGIN, *known}
        changed = True
        while changed:  # fixpoint: a base class may come later in the table
            changed = False
            for full, _abstract, interface in self.defs:
                if interface or full in found:
                    continue
                base = self.bases.get(full)
                if self.direct.get(full, set()) & found or (base and base in found):
                    found.add(full)
                    changed = True
        return {full for full, _a, _i in self.defs if full in found}

    def identity(self, known: set[str]) -> AssemblyIdentity:
        impl = self.implementers(known)
        concrete = tuple(sorted(full for full, abstract, interface in self.defs
                                if full in impl and not abstract and not interface))
        return AssemblyIdentity(name=self.name, version=self.version, culture=self.culture,
                                public_key_token=self.token, plugin_types=concrete)


def _parse(data: bytes, label: str) -> _Parsed:
    import dnfile

    try:
        pe = dnfile.dnPE(data=data)
    except Exception as e:  # pefile raises PEFormatError, struct errors, ...
        raise BadInput(f"{label} is not a PE file ({type(e).__name__}); "
                       "give a .NET assembly built for net462") from None
    try:
        net = pe.net
        tables = net.mdtables if net is not None else None
        if tables is None or tables.Assembly is None or len(tables.Assembly) == 0:
            raise BadInput(f"{label} is not a .NET assembly (no CLI metadata / Assembly table); "
                           "give the plug-in library built for net462")
        row = tables.Assembly[0]
        key = _blob(row.PublicKey)
        parsed = _Parsed(
            name=_text(row.Name),
            version=f"{row.MajorVersion}.{row.MinorVersion}.{row.BuildNumber}.{row.RevisionNumber}",
            culture=_text(row.Culture) or "neutral",
            token=public_key_token(key) if key else None,
            defs=[], bases={}, direct={})
        for td in tables.TypeDef or []:
            full = _full(_text(td.TypeNamespace), _text(td.TypeName))
            base = None
            ext = getattr(td, "Extends", None)
            # a null coded index (row_index 0) means "no base type" (ECMA-335 §II.24.2.6)
            if ext is not None and getattr(ext, "row_index", 0) and getattr(ext, "row", None) is not None:
                base = _full(_text(getattr(ext.row, "TypeNamespace", "")), _text(getattr(ext.row, "TypeName", "")))
            flags = td.Flags
            parsed.defs.append((full, bool(getattr(flags, "tdAbstract", False)),
                                bool(getattr(flags, "tdInterface", False))))
            parsed.bases[full] = base
        for ii in tables.InterfaceImpl or []:
            cls = getattr(ii.Class, "row", None)
            itf = getattr(ii.Interface, "row", None)
            if cls is None or itf is None:
                continue
            cname = _full(_text(cls.TypeNamespace), _text(cls.TypeName))
            iname = _full(_text(getattr(itf, "TypeNamespace", "")), _text(getattr(itf, "TypeName", "")))
            parsed.direct.setdefault(cname, set()).add(iname)
    finally:
        pe.close()
    return parsed


@dataclass(frozen=True)
class PackageInfo:
    """What matters in a ``.nupkg`` for ``pluginpackage`` registration.

    Attributes:
        id: nuspec ``<id>`` (used as ``uniquename`` unless configured otherwise).
        version: nuspec ``<version>``.
        assemblies: identities of every ``lib/**/*.dll`` in the package (zip entry name -> identity).
        signed: the package has a ``.signature.p7s`` entry (NuGet package signature, signing-spec).
    """

    id: str
    version: str
    assemblies: dict[str, AssemblyIdentity]
    signed: bool

    @property
    def plugin_assemblies(self) -> list[AssemblyIdentity]:
        """Assemblies that contain at least one ``IPlugin`` class: Dataverse registers exactly these ([BUILD])."""
        return [a for a in self.assemblies.values() if a.plugin_types]


def read_package(data: bytes, *, label: str = "package") -> PackageInfo:
    """Parse a ``.nupkg``: nuspec id/version and the identities of ``lib/**/*.dll``.

    Raises:
        PackageFormatError: not a zip, no ``.nuspec`` at the root, or a DLL that is not a .NET assembly.
    """
    from lxml import etree

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise PackageFormatError(f"{label} is not a NuGet package (not a zip file); "
                                 "give the .nupkg from dotnet pack") from None
    with zf:
        names = zf.namelist()
        nuspecs = [n for n in names if n.endswith(".nuspec") and "/" not in n]
        if not nuspecs:
            raise PackageFormatError(f"{label} has no .nuspec at the root; give the .nupkg from dotnet pack")
        try:
            parser = etree.XMLParser(resolve_entities=False, no_network=True)
            root = etree.fromstring(zf.read(nuspecs[0]), parser=parser)
        except etree.XMLSyntaxError as e:
            raise PackageFormatError(f"{label}: {nuspecs[0]} is not valid XML ({e})") from None
        meta = {etree.QName(el).localname: (el.text or "").strip()
                for md in root if etree.QName(md).localname == "metadata" for el in md}
        pkg_id, version = meta.get("id"), meta.get("version")
        if not pkg_id or not version:
            raise PackageFormatError(f"{label}: {nuspecs[0]} lacks <id> or <version>")
        dll_names = [n for n in names if n.lower().startswith("lib/") and n.lower().endswith(".dll")]
        blobs = {n: zf.read(n) for n in dll_names}
        signed = ".signature.p7s" in names
    parsed: dict[str, _Parsed] = {}
    for n, b in blobs.items():
        try:
            parsed[n] = _parse(b, f"{label}!{n}")
        except BadInput as e:
            raise PackageFormatError(e.message) from None
    # plug-in base classes may live in another assembly of the package: iterate to a fixpoint
    known: set[str] = set()
    while True:
        grown = set(known)
        for p in parsed.values():
            grown |= p.implementers(known)
        if grown == known:
            break
        known = grown
    assemblies = {n: p.identity(known) for n, p in parsed.items()}
    return PackageInfo(id=pkg_id, version=version, assemblies=assemblies, signed=signed)


def assembly_file_name(entry: str) -> str:
    """``lib/net462/Contoso.Plugins.dll`` -> ``Contoso.Plugins.dll``."""
    return posixpath.basename(entry)
