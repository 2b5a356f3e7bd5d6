""".NET assembly identity and plug-in types, read from ECMA-335 metadata with dnfile.

Registration needs an assembly's simple name, version, culture and public key token
(``pluginassembly`` columns ``name``, ``version``, ``culture``, ``publickeytoken``; domain-spec
§4.1) and the full names of its ``IPlugin`` classes (``plugintype.typename``). They come from
the metadata tables (ECMA-335 6th ed. §II.22):

* ``Assembly`` (0x20, §II.22.2): ``MajorVersion.MinorVersion.BuildNumber.RevisionNumber``,
  ``Name``, ``Culture`` (empty = neutral), ``PublicKey`` (the full strong-name public key blob;
  the token is computed from it, §II.6.2.1.3).
* ``TypeDef`` (0x02, §II.22.37), ``TypeRef`` (0x01, §II.22.38), ``InterfaceImpl`` (0x09,
  §II.22.23) and ``NestedClass`` (0x29, §II.22.32) to find the classes that implement
  ``Microsoft.Xrm.Sdk.IPlugin`` directly, through a base class defined in the same assembly,
  or through an interface that extends ``IPlugin``.

The reader is dnfile (https://github.com/malware-kitten/dnfile), a maintained pure-Python
parser; nothing here loads or runs the assembly.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputFileError, PEFormatError
from ..identity.snk import public_key_token

#: Full name of the Dataverse plug-in interface (https://learn.microsoft.com/dotnet/api/microsoft.xrm.sdk.iplugin).
IPLUGIN = "Microsoft.Xrm.Sdk.IPlugin"


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


def _open(source: Path | str | bytes):
    import dnfile
    import pefile

    path: Path | str
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, path = bytes(source), "the assembly"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputFileError(f"{path} does not exist; build the project first or pass the right path") from None
        except OSError as e:
            raise InputFileError(f"cannot read {path}: {e.strerror}") from None
    try:
        # dnfile/pefile print nothing on success, but guard stdout (``--json`` keeps stdout clean).
        # fast_load + clr_lazy_load: parse only the CLR directory and decode table rows on demand
        # (a full eager parse of a 4 MB assembly takes ~15 s; this takes ~10 ms).
        with contextlib.redirect_stdout(io.StringIO()):
            pe = dnfile.dnPE(data=data, fast_load=True, clr_lazy_load=True)
            pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_COM_DESCRIPTOR"]])
    except pefile.PEFormatError as e:
        raise PEFormatError(f"{path} is not a PE file ({e}); pass a .NET assembly (.dll)") from None
    except Exception as e:  # dnfile raises assorted errors on damaged metadata
        raise PEFormatError(f"{path}: cannot read .NET metadata ({type(e).__name__}: {e})") from None
    net = getattr(pe, "net", None)
    if net is None or getattr(net, "mdtables", None) is None:
        pe.close()
        raise PEFormatError(f"{path} is a PE file without .NET metadata (native code); pass a .NET assembly")
    return pe, str(path)


def read_assembly_identity(path: Path | str | bytes) -> AssemblyIdentity:
    """Read name, version, culture and public key token from an assembly's ``Assembly`` table.

    Args:
        path: a .NET assembly (``.dll``/``.exe``), as a path or its bytes.
    Returns:
        :class:`AssemblyIdentity`.
    Raises:
        InputFileError: the file is missing or unreadable.
        PEFormatError: not a PE file, no .NET metadata, or no ``Assembly`` row (a netmodule).
    """
    pe, label = _open(path)
    try:
        table = pe.net.mdtables.Assembly
        if table is None or not table.num_rows:
            raise PEFormatError(f"{label} has no Assembly manifest (a .netmodule?); pass the assembly itself")
        row = table[0]
        version = ".".join(str(int(x)) for x in (row.MajorVersion, row.MinorVersion, row.BuildNumber,
                                                  row.RevisionNumber))
        key = getattr(row.PublicKey, "value", row.PublicKey) if row.PublicKey is not None else None
        key = bytes(key) if key else None
        return AssemblyIdentity(
            name=_s(row.Name),
            version=version,
            culture=_s(row.Culture) or "neutral",
            public_key_token=public_key_token(key) if key else None,
            public_key=key,
        )
    finally:
        pe.close()


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


def plugin_types(path: Path | str | bytes, interface: str = IPLUGIN) -> list[str]:
    """Full names of the public, non-abstract classes in ``path`` that implement ``interface``.

    A class counts when it (or a base class defined in the same assembly) lists ``interface``
    in ``InterfaceImpl``, directly or through an interface of this assembly that extends it.
    Base classes in other assemblies cannot be followed without loading them and are not.
    Nested types are named ``Outer+Inner`` (the CLR's ``Type.FullName``); generic type
    definitions (and types nested in them) and value types are left out: Dataverse cannot
    instantiate them. The result equals reflection's ``GetExportedTypes()`` filtered by
    ``IsAssignableFrom && IsClass && !IsAbstract && !IsGenericTypeDefinition`` whenever every
    base class lives in the same assembly (checked against Mono in the tests).

    Args:
        path: a .NET assembly (path or bytes).
        interface: full name of the interface (default ``Microsoft.Xrm.Sdk.IPlugin``).
    Returns:
        Sorted list of type full names (may be empty).
    Raises:
        InputFileError, PEFormatError: as :func:`read_assembly_identity`.
    """
    pe, _label = _open(path)
    try:
        md = pe.net.mdtables

        def rows(name: str) -> list:
            table = getattr(md, name, None)
            return list(table) if table is not None and table.num_rows else []

        typedefs = rows("TypeDef")
        typerefs = rows("TypeRef")
        enclosing: dict[int, int] = {}
        for n in rows("NestedClass"):
            enclosing[_raw(n, "NestedClass_Index")] = _raw(n, "EnclosingClass_Index")
        interfaces: dict[int, list[tuple[str | None, int]]] = {}
        for ii in rows("InterfaceImpl"):
            interfaces.setdefault(_raw(ii, "Class_Index"), []).append(
                _decode(_raw(ii, "Interface_CodedIndex"), _TYPE_DEF_OR_REF))

        def def_name(i: int, depth: int = 0) -> str:
            t = typedefs[i - 1]
            name = _s(t.TypeName)
            if i in enclosing and depth < 64:
                return f"{def_name(enclosing[i], depth + 1)}+{name}"
            ns = _s(t.TypeNamespace)
            return f"{ns}.{name}" if ns else name

        def ref_name(i: int, depth: int = 0) -> str:
            r = typerefs[i - 1]
            name = _s(r.TypeName)
            scope_table, scope_idx = _decode(_raw(r, "ResolutionScope_CodedIndex"), _RESOLUTION_SCOPE)
            if scope_table == "TypeRef" and 0 < scope_idx <= len(typerefs) and depth < 64:
                return f"{ref_name(scope_idx, depth + 1)}+{name}"
            ns = _s(r.TypeNamespace)
            return f"{ns}.{name}" if ns else name

        def is_target(table: str | None, idx: int) -> bool:
            if table == "TypeRef" and 0 < idx <= len(typerefs):
                return ref_name(idx) == interface
            if table == "TypeDef" and 0 < idx <= len(typedefs):
                return def_name(idx) == interface
            return False  # TypeSpec (generic instantiations) and null

        memo: dict[int, bool] = {}

        def implements(i: int, seen: frozenset[int] = frozenset()) -> bool:
            if i in memo:
                return memo[i]
            if i in seen or not 0 < i <= len(typedefs):
                return False
            seen = seen | {i}
            result = False
            for table, idx in interfaces.get(i, []):
                if is_target(table, idx) or (table == "TypeDef" and implements(idx, seen)):
                    result = True
                    break
            if not result:
                table, idx = _decode(_raw(typedefs[i - 1], "Extends_CodedIndex"), _TYPE_DEF_OR_REF)
                if table == "TypeDef":
                    result = implements(idx, seen)
            memo[i] = result
            return result

        def visible(i: int, depth: int = 0) -> bool:
            vis = _raw(typedefs[i - 1], "Flags") & _VISIBILITY_MASK
            if i in enclosing:
                return vis == _NESTED_PUBLIC and depth < 64 and visible(enclosing[i], depth + 1)
            return vis == _PUBLIC

        def value_type(i: int) -> bool:
            table, idx = _decode(_raw(typedefs[i - 1], "Extends_CodedIndex"), _TYPE_DEF_OR_REF)
            if table == "TypeRef" and 0 < idx <= len(typerefs):
                return ref_name(idx) in ("System.ValueType", "System.Enum")
            if table == "TypeDef" and 0 < idx <= len(typedefs):
                return def_name(idx) in ("System.ValueType", "System.Enum")
            return False

        found = []
        for i, t in enumerate(typedefs, start=1):
            if _raw(t, "Flags") & (_INTERFACE | _ABSTRACT):
                continue
            name = def_name(i)
            # generic type definitions, including types nested in one, cannot be instantiated by Dataverse
            if "`" in name or not visible(i) or value_type(i):
                continue
            if implements(i):
                found.append(name)
        return sorted(found)
    finally:
        pe.close()
