""".NET assembly identity and plug-in types, read from ECMA-335 metadata with dnfile.

The one reader of .NET assembly metadata in ppmi-build: ``build`` describes its artifacts with it,
``snk`` reads public key tokens with it, and registration and the Dataverse emulator fill
``pluginassembly`` / ``plugintype`` rows with it (through :mod:`ppmi_build.assembly.package`
for packages).

Registration needs an assembly's simple name, version, culture and public key token
(``pluginassembly`` columns ``name``, ``version`` ("can be obtained from the assembly through
reflection"), ``culture`` (e.g. ``neutral``), ``publickeytoken`` (16 lower-case hex characters);
domain-spec §4.1) and the full names of its ``IPlugin`` classes (one ``plugintype.typename`` per
class; domain-spec §4.2 / [BUILD]: "any assemblies that contain classes that implement the IPlugin
interface are registered in the PluginAssembly table"). They come from the metadata tables
(ECMA-335 6th ed. §II.22):

* ``Assembly`` (0x20, §II.22.2): ``MajorVersion.MinorVersion.BuildNumber.RevisionNumber``,
  ``Name``, ``Culture`` (empty = neutral), ``PublicKey`` (the full strong-name public key blob;
  the token is computed from it, §II.6.2.1.3).
* ``TypeDef`` (0x02, §II.22.37), ``TypeRef`` (0x01, §II.22.38), ``InterfaceImpl`` (0x09,
  §II.22.23) and ``NestedClass`` (0x29, §II.22.32) to find the classes that implement
  ``Microsoft.Xrm.Sdk.IPlugin`` directly, through a base class, or through an interface that
  extends ``IPlugin``. Base classes and interfaces defined in the same assembly are followed by
  row; those in other assemblies are followed by name when the caller knows them
  (``external``), e.g. from the other assemblies of a plug-in package
  (:func:`read_plugin_assemblies`).

The reader is dnfile (https://github.com/malware-kitten/dnfile), a maintained pure-Python
parser; nothing here loads or runs the assembly. dnfile logs every damaged table or stream it meets
(its ``dnfile`` loggers, and the root logger in ``dnfile.stream``); this module leaves logging to the
application (the command line drops those records: :class:`ppmi_build.cli._logging.WithoutDnfile`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PEFormatError
from ..fileio import read_input
from ..identity.snk import public_key_token

#: Full name of the Dataverse plug-in interface (https://learn.microsoft.com/dotnet/api/microsoft.xrm.sdk.iplugin).
IPLUGIN = "Microsoft.Xrm.Sdk.IPlugin"

class MetadataCorrupt(PEFormatError):
    """The file is a .NET assembly whose metadata (ECMA-335 §II.24 streams and tables) does not parse (exit 2)."""


@contextlib.contextmanager
def _guard(label: str) -> Iterator[None]:
    """Turn any failure of dnfile/pefile while reading metadata (``IndexError``, ``AttributeError`` for a row
    field a damaged table lacks, ``struct.error``, ``UnicodeDecodeError``, ``RecursionError``…) into one
    :class:`MetadataCorrupt` line naming ``label``; ppmi-build's own errors pass through."""
    from ..errors import PpmiError

    try:
        yield
    except PpmiError:
        raise
    except Exception as e:  # dnfile raises assorted errors on damaged metadata
        raise MetadataCorrupt(f"{label}: .NET metadata is corrupt ({_reason(e)}); rebuild the assembly "
                              "or pass an intact copy") from None


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__)[:120]


@dataclass(frozen=True)
class AssemblyIdentity:
    """The identity of a .NET assembly as the CLR and Dataverse see it.

    Attributes:
        name: simple name (``Assembly.Name``), e.g. ``Contoso.Plugins``.
        version: ``major.minor.build.revision`` (four decimal parts).
        culture: ``Assembly.Culture``, or ``"neutral"`` when empty (the value Dataverse stores).
        public_key_token: 16 lower-case hex characters, or None when not strong-named.
        public_key: the strong-name public key blob (``Assembly.PublicKey``) or None.
    """

    name: str
    version: str
    culture: str
    public_key_token: str | None
    public_key: bytes | None = field(repr=False)

    @property
    def strong_named(self) -> bool:
        return self.public_key_token is not None

    @property
    def full_name(self) -> str:
        """The display name, e.g. ``Contoso.Plugins, Version=1.0.0.0, Culture=neutral, PublicKeyToken=…``."""
        return (f"{self.name}, Version={self.version}, Culture={self.culture}, "
                f"PublicKeyToken={self.public_key_token or 'null'}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "culture": self.culture,
            "public_key_token": self.public_key_token,
            "full_name": self.full_name,
        }


@dataclass(frozen=True)
class PluginAssembly(AssemblyIdentity):
    """An :class:`AssemblyIdentity` with its ``IPlugin`` classes: one ``pluginassembly`` row and its
    ``plugintype`` rows (domain-spec §4.1, §4.2).

    Attributes:
        plugin_types: sorted full names (``Namespace.Class``, nested ``Outer+Inner``) of the public,
            non-abstract classes implementing ``Microsoft.Xrm.Sdk.IPlugin`` (see :func:`plugin_types`);
            empty when the assembly has none (Dataverse then registers no row for it in a package).
    """

    plugin_types: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "plugin_types": list(self.plugin_types)}


def _s(item: Any) -> str:
    """A dnfile heap string as ``str`` ('' when missing)."""
    if item is None:
        return ""
    value = getattr(item, "value", item)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _open(source: Path | str | bytes, label: str | None = None):
    """Parse the CLR directory of ``source``; returns ``(dnfile.dnPE, label for messages)``."""
    import dnfile
    import pefile

    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), label or "the assembly"
    else:
        label = label or str(source)
        data = read_input(source, missing="build the project first or pass the right path")
    try:
        # fast_load + clr_lazy_load: parse only the CLR directory and decode table rows on demand
        # (a full eager parse of a 4 MB assembly takes ~15 s; this takes ~10 ms).
        pe = dnfile.dnPE(data=data, fast_load=True, clr_lazy_load=True)
    except pefile.PEFormatError as e:
        raise PEFormatError(f"{label} is not a PE file ({e}); pass a .NET assembly (.dll)") from None
    except Exception as e:  # pefile on a damaged PE header
        raise PEFormatError(f"{label} is not a readable PE file ({_reason(e)}); pass a .NET assembly (.dll)") from None
    try:
        with _guard(label):
            pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_COM_DESCRIPTOR"]])
            net = getattr(pe, "net", None)
            has_tables = net is not None and getattr(net, "mdtables", None) is not None
            # dnfile keeps going past a stream it cannot parse (and records why): what it then reads from the
            # tables is unreliable, so such an assembly is refused rather than half read.
            broken = [w for w in pe.get_warnings() if str(w).startswith("Unable to parse stream")]
            if broken:
                raise MetadataCorrupt(f"{label}: .NET metadata is corrupt ({'; '.join(map(str, broken))[:120]}); "
                                      "rebuild the assembly or pass an intact copy")
    except BaseException:
        _close(pe)
        raise
    if not has_tables:
        _close(pe)
        raise PEFormatError(f"{label} is a PE file without .NET metadata (native code); pass a .NET assembly")
    return pe, label


def _close(pe: Any) -> None:
    """Release a parsed image. pefile's ``close()`` only unmaps file-backed images and then runs a full
    ``gc.collect()`` (tens of milliseconds in a large process, once per assembly); every image here is parsed
    from bytes (``dnPE(data=…)``), so dropping the reference is all there is to do."""
    if getattr(pe, "_PE__from_file", False):  # pragma: no cover - not used by this module
        pe.close()


def _identity(pe: Any, label: str) -> AssemblyIdentity:
    """The ``Assembly`` row (ECMA-335 §II.22.2) of an opened assembly."""
    table = pe.net.mdtables.Assembly
    if table is None or not table.num_rows:
        raise PEFormatError(f"{label} has no Assembly manifest (a .netmodule?); pass the assembly itself")
    row = table[0]
    if not _s(row.Name):  # ECMA-335 §II.22.2: Name shall index a non-empty string in the String heap
        raise MetadataCorrupt(f"{label}: .NET metadata is corrupt (the Assembly row has no name); "
                              "rebuild the assembly or pass an intact copy")
    version = ".".join(str(int(x)) for x in (row.MajorVersion, row.MinorVersion, row.BuildNumber,
                                              row.RevisionNumber))
    key = getattr(row.PublicKey, "value", row.PublicKey) if row.PublicKey is not None else None
    key = bytes(key) if key else None
    return AssemblyIdentity(
        name=_s(row.Name),
        version=version,
        culture=_s(row.Culture) or "neutral",
        # token = last 8 bytes of SHA-1(PublicKey), reversed (ECMA-335 §II.6.2.1.3)
        public_key_token=public_key_token(key) if key else None,
        public_key=key,
    )


def read_assembly_identity(path: Path | str | bytes, *, label: str | None = None) -> AssemblyIdentity:
    """Read name, version, culture and public key token from an assembly's ``Assembly`` table.

    Args:
        path: a .NET assembly (``.dll``/``.exe``), as a path or its bytes.
        label: how errors name the input (default: the path, or "the assembly" for bytes).
    Returns:
        :class:`AssemblyIdentity`.
    Raises:
        InputFileError: the file is missing or unreadable.
        PEFormatError: not a PE file, no .NET metadata, or no ``Assembly`` row (a netmodule);
            :class:`MetadataCorrupt` ("X.dll: .NET metadata is corrupt (…)") when the metadata does not parse.
    """
    pe, label = _open(path, label)
    try:
        with _guard(label):
            return _identity(pe, label)
    finally:
        _close(pe)


# Coded indexes (ECMA-335 §II.24.2.6): the low ``tag bits`` select the table, the rest is the 1-based row.
# Decoded from the raw row structs so dnfile's lazy loader does not parse every table (which takes
# seconds for large assemblies).
_TYPE_DEF_OR_REF = (2, ("TypeDef", "TypeRef", "TypeSpec"))
_RESOLUTION_SCOPE = (2, ("Module", "ModuleRef", "AssemblyRef", "TypeRef"))
# TypeAttributes (ECMA-335 §II.23.1.15)
_VISIBILITY_MASK, _PUBLIC, _NESTED_PUBLIC = 0x7, 0x1, 0x2
_INTERFACE, _ABSTRACT = 0x20, 0x80


def _decode(value: int, kind: tuple[int, tuple[str, ...]]) -> tuple[str | None, int]:
    """(table name, 1-based row) of a raw coded index; (None, 0) for a null index."""
    bits, tables = kind
    tag, row = value & ((1 << bits) - 1), value >> bits
    if row == 0 or tag >= len(tables):
        return None, 0
    return tables[tag], row


def _raw(row: Any, field_name: str) -> int:
    return int(getattr(row.struct, field_name))


class _TypeGraph:
    """The type tables of one assembly, read while it is open, to answer "does this class implement X".

    Names follow the CLR's ``Type.FullName``: ``Namespace.Name``, nested types ``Outer+Inner``
    (``NestedClass``, §II.22.32; a ``TypeRef`` whose ResolutionScope is a ``TypeRef``, §II.22.38).
    """

    def __init__(self, pe: Any):
        md = pe.net.mdtables

        def rows(name: str) -> list:
            table = getattr(md, name, None)
            return list(table) if table is not None and table.num_rows else []

        self.typedefs = rows("TypeDef")
        self.typerefs = rows("TypeRef")
        self.enclosing: dict[int, int] = {}
        for n in rows("NestedClass"):
            self.enclosing[_raw(n, "NestedClass_Index")] = _raw(n, "EnclosingClass_Index")
        self.interfaces: dict[int, list[tuple[str | None, int]]] = {}
        for ii in rows("InterfaceImpl"):
            self.interfaces.setdefault(_raw(ii, "Class_Index"), []).append(
                _decode(_raw(ii, "Interface_CodedIndex"), _TYPE_DEF_OR_REF))
        self._def_names: dict[int, str] = {}
        self._ref_names: dict[int, str] = {}

    def def_name(self, i: int, depth: int = 0) -> str:
        return self._name(self._def_names, self.typedefs, i, self.enclosing.get(i), self.def_name, depth)

    def ref_name(self, i: int, depth: int = 0) -> str:
        scope_table, scope_idx = _decode(_raw(self.typerefs[i - 1], "ResolutionScope_CodedIndex"), _RESOLUTION_SCOPE)
        outer = scope_idx if scope_table == "TypeRef" and 0 < scope_idx <= len(self.typerefs) else None
        return self._name(self._ref_names, self.typerefs, i, outer, self.ref_name, depth)

    @staticmethod
    def _name(cache: dict[int, str], rows: list, i: int, outer: int | None, outer_name, depth: int) -> str:
        """``Namespace.Name``, or ``<outer full name>+Name`` for a nested type (row ``outer`` of the same table)."""
        if i not in cache:
            row = rows[i - 1]
            name = _s(row.TypeName)
            if outer is not None and depth < 64:
                cache[i] = f"{outer_name(outer, depth + 1)}+{name}"
            else:
                ns = _s(row.TypeNamespace)
                cache[i] = f"{ns}.{name}" if ns else name
        return cache[i]

    def name_of(self, table: str | None, idx: int) -> str | None:
        """Full name of a TypeDef/TypeRef row; None for TypeSpec (generic instantiations) and null."""
        if table == "TypeRef" and 0 < idx <= len(self.typerefs):
            return self.ref_name(idx)
        if table == "TypeDef" and 0 < idx <= len(self.typedefs):
            return self.def_name(idx)
        return None

    def implementers(self, interface: str, external: frozenset[str] = frozenset()) -> set[int]:
        """TypeDef rows (1-based, any kind: classes, abstract classes, interfaces) that implement ``interface``.

        A type counts when ``InterfaceImpl`` lists ``interface`` (or an interface of this assembly that
        counts, or a ``TypeRef`` named in ``external``), or when its ``Extends`` base class counts: a
        ``TypeDef`` of this assembly followed by row, a ``TypeRef`` named in ``external``.
        """
        memo: dict[int, bool] = {}

        def implements(i: int, seen: frozenset[int] = frozenset()) -> bool:
            if i in memo:
                return memo[i]
            if i in seen or not 0 < i <= len(self.typedefs):
                return False
            seen = seen | {i}
            result = False
            for table, idx in self.interfaces.get(i, []):
                name = self.name_of(table, idx)
                if name == interface or (table == "TypeRef" and name in external) or \
                        (table == "TypeDef" and implements(idx, seen)):
                    result = True
                    break
            if not result:
                table, idx = _decode(_raw(self.typedefs[i - 1], "Extends_CodedIndex"), _TYPE_DEF_OR_REF)
                if table == "TypeDef":
                    result = implements(idx, seen)
                elif table == "TypeRef" and external:
                    result = self.name_of(table, idx) in external
            memo[i] = result
            return result

        return {i for i in range(1, len(self.typedefs) + 1) if implements(i)}

    def _visible(self, i: int, depth: int = 0) -> bool:
        vis = _raw(self.typedefs[i - 1], "Flags") & _VISIBILITY_MASK
        if i in self.enclosing:
            return vis == _NESTED_PUBLIC and depth < 64 and self._visible(self.enclosing[i], depth + 1)
        return vis == _PUBLIC

    def _value_type(self, i: int) -> bool:
        table, idx = _decode(_raw(self.typedefs[i - 1], "Extends_CodedIndex"), _TYPE_DEF_OR_REF)
        return self.name_of(table, idx) in ("System.ValueType", "System.Enum")

    def plugin_types(self, implementers: Iterable[int]) -> list[str]:
        """Sorted full names of the instantiable public classes among ``implementers``."""
        found = []
        for i in implementers:
            if _raw(self.typedefs[i - 1], "Flags") & (_INTERFACE | _ABSTRACT):
                continue
            name = self.def_name(i)
            # generic type definitions, including types nested in one, cannot be instantiated by Dataverse
            if "`" in name or not self._visible(i) or self._value_type(i):
                continue
            found.append(name)
        return sorted(found)


def plugin_types(path: Path | str | bytes, interface: str = IPLUGIN, *, external: Iterable[str] = (),
                 label: str | None = None) -> list[str]:
    """Full names of the public, non-abstract classes in ``path`` that implement ``interface``.

    A class counts when it (or a base class defined in the same assembly) lists ``interface``
    in ``InterfaceImpl``, directly or through an interface of this assembly that extends it.
    Base classes and interfaces in other assemblies cannot be followed without loading them; they
    count when their full name is in ``external`` (types known to implement ``interface``, e.g. from
    the other assemblies of a package: :func:`read_plugin_assemblies`), and not otherwise.
    Nested types are named ``Outer+Inner`` (the CLR's ``Type.FullName``); generic type
    definitions (and types nested in them) and value types are left out: Dataverse cannot
    instantiate them. The result equals reflection's ``GetExportedTypes()`` filtered by
    ``IsAssignableFrom && IsClass && !IsAbstract && !IsGenericTypeDefinition`` whenever every
    base class lives in the same assembly (checked against Mono in the tests).

    Args:
        path: a .NET assembly (path or bytes).
        interface: full name of the interface (default ``Microsoft.Xrm.Sdk.IPlugin``).
        external: full names of types in other assemblies known to implement ``interface``.
        label: how errors name the input.
    Returns:
        Sorted list of type full names (may be empty).
    Raises:
        InputFileError, PEFormatError: as :func:`read_assembly_identity`.
    """
    pe, label = _open(path, label)
    try:
        with _guard(label):
            graph = _TypeGraph(pe)
            return graph.plugin_types(graph.implementers(interface, frozenset(external)))
    finally:
        _close(pe)


def read_plugin_assembly(path: Path | str | bytes, *, interface: str = IPLUGIN, external: Iterable[str] = (),
                         label: str | None = None) -> PluginAssembly:
    """:func:`read_assembly_identity` and :func:`plugin_types` in one parse.

    Returns:
        :class:`PluginAssembly`.
    Raises:
        InputFileError, PEFormatError: as :func:`read_assembly_identity`.
    """
    return read_plugin_assemblies({"": path}, interface=interface, external=external,
                                  labels={"": label} if label else None)[""]


def read_plugin_assemblies(assemblies: Mapping[str, Path | str | bytes], *, interface: str = IPLUGIN,
                           external: Iterable[str] = (), labels: Mapping[str, str] | None = None,
                           skip_invalid: bool = False) -> dict[str, PluginAssembly]:
    """Read several assemblies that ship together (a plug-in package's ``lib/`` folder), following base
    classes and interfaces across them.

    A plug-in class may derive from an abstract ``IPlugin`` base class defined in another assembly of the
    package; the ``TypeRef`` (§II.22.38) names it, and the other assembly's ``TypeDef`` has that full name.
    Matching is by full name only (the ``TypeRef``'s ResolutionScope ``AssemblyRef`` is not compared).
    Each assembly is parsed once; the types known to implement ``interface`` are grown to a fixpoint
    (a chain of base classes across assemblies resolves in as many rounds as it is long).

    Args:
        assemblies: key (e.g. the zip entry name) -> assembly path or bytes.
        interface: full name of the interface (default ``Microsoft.Xrm.Sdk.IPlugin``).
        external: full names of types known to implement ``interface`` outside these assemblies.
        labels: key -> how errors name that input (default: the key, or the path).
        skip_invalid: leave out inputs that are not .NET assemblies (native DLLs, netmodules) instead of
            raising.
    Returns:
        key -> :class:`PluginAssembly`, in the order of ``assemblies``.
    Raises:
        InputFileError: a path is missing or unreadable.
        PEFormatError: an input is not a .NET assembly (unless ``skip_invalid``); :class:`MetadataCorrupt`
            (a PEFormatError) when its metadata does not parse (skipped too with ``skip_invalid``).
    """
    labels = labels or {}
    opened: list[Any] = []  # dnfile decodes rows lazily: every assembly stays open until its types are named
    read: dict[str, tuple[AssemblyIdentity, _TypeGraph]] = {}
    names: dict[str, str] = {}  # key -> label for messages
    try:
        known = frozenset(external)
        found: dict[str, set[int]] = {}
        for key, source in assemblies.items():
            try:
                pe, label = _open(source, labels.get(key) or key or None)
            except PEFormatError:
                if skip_invalid:
                    continue
                raise
            opened.append(pe)
            try:
                with _guard(label):
                    ident, graph = _identity(pe, label), _TypeGraph(pe)
                    # decode every row the answer needs now, so a damaged table is refused (or skipped) here
                    rows = graph.implementers(interface, known)
                    graph.plugin_types(rows)
            except PEFormatError:  # no Assembly row (a netmodule), or damaged metadata
                if not skip_invalid:
                    raise
                continue
            read[key], names[key], found[key] = (ident, graph), label, rows

        def implementers(known: frozenset[str]) -> dict[str, set[int]]:
            out = {}
            for key, (_ident, graph) in read.items():
                with _guard(names[key]):
                    out[key] = graph.implementers(interface, known)
            return out

        while len(read) > 1:  # one assembly's own names only matter to the others
            grown = set(known)
            for key, (_ident, graph) in read.items():
                with _guard(names[key]):
                    grown.update(graph.def_name(i) for i in found[key])
            if grown == known:
                break
            known = frozenset(grown)
            found = implementers(known)
        result = {}
        for key, (ident, graph) in read.items():
            with _guard(names[key]):
                result[key] = PluginAssembly(name=ident.name, version=ident.version, culture=ident.culture,
                                             public_key_token=ident.public_key_token, public_key=ident.public_key,
                                             plugin_types=tuple(graph.plugin_types(found[key])))
        return result
    finally:
        for pe in opened:
            _close(pe)


def read_assembly_references(path: Path | str | bytes, *, label: str | None = None) -> list[AssemblyIdentity]:
    """The ``AssemblyRef`` rows (ECMA-335 §II.22.5) of an assembly: the assemblies it was compiled against.

    ``public_key_token`` is the row's token (or the token of its full public key, flag 0x0001), None when
    the reference is to an assembly that is not strong-named; ``public_key`` is not kept (None).

    Raises:
        InputFileError, PEFormatError, MetadataCorrupt: as :func:`read_assembly_identity`.
    """
    pe, label = _open(path, label)
    try:
        with _guard(label):
            table = pe.net.mdtables.AssemblyRef
            out = []
            for row in (table or []):
                blob = getattr(row.PublicKey, "value", row.PublicKey)  # dnfile's name for PublicKeyOrToken
                blob = bytes(blob) if blob else b""
                full_key = bool(getattr(row.Flags, "afPublicKey", False))
                token = (public_key_token(blob) if full_key else blob.hex()) if blob else None
                version = ".".join(str(int(x)) for x in (row.MajorVersion, row.MinorVersion, row.BuildNumber,
                                                          row.RevisionNumber))
                out.append(AssemblyIdentity(name=_s(row.Name), version=version, culture=_s(row.Culture) or "neutral",
                                            public_key_token=token, public_key=None))
            return out
    finally:
        _close(pe)
