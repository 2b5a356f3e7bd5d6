"""Read what Dataverse reads from a plug-in package (``.nupkg``): its nuspec id/version and the identity and
``IPlugin`` types of every assembly under ``lib/``.

Used by ``build`` (the package record of an artifact), registration (``pluginpackage`` rows, the check that every
plug-in assembly of a package got its ``pluginassembly`` row) and the emulator (which fills ``pluginassembly`` /
``plugintype`` rows from an uploaded package as Dataverse does). The assemblies themselves are read by
:mod:`ppmi_build.assembly.metadata` (ECMA-335 metadata), with base classes followed across the assemblies of the
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
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..assembly.metadata import PluginAssembly, read_plugin_assemblies
from ..errors import BadInput, PackageFormatError, PpmiError

# --- reading package entries safely ------------------------------------------------------------------------
# A package is untrusted input: an entry may be encrypted, stored twice under one name, damaged (CRC, deflate
# stream) or a "zip bomb" (a few KB that inflate to GBs). Nothing here inflates more than the limits below, and
# every problem is one PackageFormatError line naming ``package!entry``.

#: Dataverse's plug-in assembly size limit (domain-spec §4.6, [BUILD]: "Assembly size limit 16 MB"): no
#: ``.dll``/``.exe`` entry is inflated beyond it.
ASSEMBLY_SIZE_LIMIT = 16 * 1024 * 1024
#: Any other entry (content files, XML): far above what a plug-in package carries (nuget.org takes packages up to
#: 250 MB compressed).
ENTRY_SIZE_LIMIT = 256 * 1024 * 1024
#: Inflated bytes one package read may produce in all (assemblies kept in memory by :func:`read_package`).
PACKAGE_ASSEMBLIES_LIMIT = 256 * 1024 * 1024
#: Zip-bomb guard: an entry may not inflate to more than this many times its compressed size once it is past
#: :data:`RATIO_FLOOR` (deflate reaches ~1032:1 on constant data; code and XML stay under ~10:1).
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR = 1024 * 1024
#: Compression methods NuGet packages use (APPNOTE §4.4.5: 0 stored, 8 deflated); .NET's ZipArchive, which NuGet
#: and Dataverse read packages with, supports no others that Python can read.
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_ENCRYPTED = 0x1  # general purpose bit flag bit 0 (APPNOTE §4.4.4)
_MiB = 1024 * 1024


#: inflated bytes a nuspec may have (:mod:`ppmi_build.assembly.nupkg_rules`, rule 5)
NUSPEC_SIZE_LIMIT = 1024 * 1024


def parse_nuspec(data: bytes, where: str) -> Any:
    """The nuspec's root element, parsed safely (rule 5).

    Raises:
        PackageFormatError: a DOCTYPE (DTD, entities), not well-formed XML.
    """
    from lxml import etree

    doctype = "<!DOCTYPE"
    if any(doctype.encode(enc) in data for enc in ("utf-8", "utf-16-le", "utf-16-be")):
        raise PackageFormatError(f"{where} has a <!DOCTYPE> (a DTD, which can declare entities that expand: "
                                 "'billion laughs'); a nuspec has none: rebuild the package")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                             huge_tree=False)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as e:
        raise PackageFormatError(f"{where} is not valid XML ({' '.join(str(e).split())}); rebuild the package") \
            from None
    doc = root.getroottree().docinfo
    if doc.doctype or doc.internalDTD is not None or doc.externalDTD is not None:  # another encoding
        raise PackageFormatError(f"{where} has a <!DOCTYPE> (a DTD, which can declare entities that expand: "
                                 "'billion laughs'); a nuspec has none: rebuild the package")
    return root


def entry_key(name: str) -> str:
    """The form in which two entry paths count as the same file: NuGet.org's duplicate-entry check
    (NuGetGallery ``PackageValidationHelper.HasDuplicatedEntries``: ``FileNameHelper.GetZipEntryPath`` turns
    ``\\`` into ``/`` and drops a leading ``./`` or ``/``; names compared ``OrdinalIgnoreCase``)."""
    key = name.replace("\\", "/")
    while True:
        if key.startswith("/"):
            key = key[1:]
        elif key.startswith("./"):
            key = key[2:]
        else:
            return key.upper()


def check_entries(entries: Iterable[tuple[str, int]], label: str) -> None:
    """Refuse a package with an encrypted entry or two entries at one path.

    Args:
        entries: ``(entry name, general purpose bit flag)`` of every central-directory record, in order.
        label: how errors name the package (its file name).
    Raises:
        PackageFormatError: ``{label}!{entry} is encrypted`` (flag bit 0, APPNOTE §4.4.4: NuGet and .NET's
            ZipArchive cannot read it), or NU5050 for a second entry at the same path (NuGet's "Attempted to pack
            multiple files into the same location(s)", https://learn.microsoft.com/nuget/reference/errors-and-warnings/nu5050;
            nuget.org refuses such packages on upload, NuGet/NuGetGallery#7922).
    """
    seen: dict[str, str] = {}
    for name, flags in entries:
        if flags & _ENCRYPTED:
            raise PackageFormatError(f"{label}!{name} is encrypted (zip flag bit 0); NuGet cannot read "
                                     "password-protected entries: repack the package without a password")
        key = entry_key(name)
        if key in seen:
            same = name if seen[key] == name else f"{name} (and {seen[key]})"
            raise PackageFormatError(f"NU5050: {label} has more than one entry at {same}; NuGet and nuget.org "
                                     "refuse packages with duplicate paths: repack it with one file per path",
                                     code="NU5050")
        seen[key] = name


def entry_limit(name: str) -> int:
    """Inflated size limit of an entry: :data:`ASSEMBLY_SIZE_LIMIT` for ``.dll``/``.exe``, else
    :data:`ENTRY_SIZE_LIMIT`."""
    return ASSEMBLY_SIZE_LIMIT if name.lower().endswith((".dll", ".exe")) else ENTRY_SIZE_LIMIT


def iter_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, *, limit: int | None = None,
               chunk: int = _MiB) -> Iterator[bytes]:
    """Yield the inflated bytes of one entry, ``chunk`` bytes at a time, never inflating past the limits.

    ``ZipExtFile.read(n)`` inflates with ``zlib.decompressobj().decompress(data, max_length)``, so at most about
    ``chunk`` bytes exist at once; it stops at the declared uncompressed size and checks the CRC-32 at the end.

    Args:
        zf: the open package. info: the entry. label: how errors name the package.
        limit: inflated size limit (default :func:`entry_limit`).
    Raises:
        PackageFormatError (naming ``{label}!{entry}``): encrypted; a compression method other than stored or
            deflated; larger than the limit (declared or actual); more than :data:`MAX_COMPRESSION_RATIO` times
            its compressed size past :data:`RATIO_FLOOR` (a zip bomb); a bad CRC-32, deflate stream or local header.
    """
    where = f"{label}!{info.filename}"
    limit = entry_limit(info.filename) if limit is None else limit
    if info.flag_bits & _ENCRYPTED:
        check_entries([(info.filename, info.flag_bits)], label)
    if info.compress_type not in _METHODS:
        raise PackageFormatError(f"{where} uses zip compression method {info.compress_type}; NuGet packages use "
                                 "stored or deflated entries: repack it with nuget pack or dotnet pack")
    if info.file_size > limit:
        raise PackageFormatError(f"{where} is {info.file_size} bytes uncompressed, over the {limit // _MiB} MiB "
                                 f"limit{_why(info.filename)}: remove it or repack the package")
    cap = min(limit, max(RATIO_FLOOR, MAX_COMPRESSION_RATIO * info.compress_size))
    total = 0
    try:
        with zf.open(info) as src:
            while True:
                block = src.read(min(chunk, cap + 1 - total))
                if not block:
                    return
                total += len(block)
                if total > cap:
                    if cap == limit:
                        raise PackageFormatError(f"{where} inflates to more than {limit // _MiB} MiB"
                                                 f"{_why(info.filename)}: remove it or repack the package")
                    raise PackageFormatError(
                        f"{where} inflates to more than {MAX_COMPRESSION_RATIO} times its compressed size "
                        f"({info.compress_size} bytes): it looks like a zip bomb; repack the package")
                yield block
    except PpmiError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError,
            struct.error, OverflowError) as e:
        raise PackageFormatError(f"{where} cannot be read ({_reason(e)}); the package is damaged: "
                                 "rebuild it with nuget pack or dotnet pack") from None


def read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, *, limit: int | None = None) -> bytes:
    """The inflated bytes of one entry (:func:`iter_entry`, same limits and errors)."""
    return b"".join(iter_entry(zf, info, label, limit=limit))


def open_package(source: Any, label: str) -> zipfile.ZipFile:
    """``zipfile.ZipFile(source)`` with every refusal as one line: not a zip, a damaged central directory,
    an encrypted entry or duplicate paths (:func:`check_entries`).

    Raises:
        PackageFormatError.
    """
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error, OverflowError, NotImplementedError) as e:
        raise PackageFormatError(f"{label} is not a NuGet package (not a readable zip file: {_reason(e)}); "
                                 "give the .nupkg from dotnet pack") from None
    try:
        check_entries(((i.filename, i.flag_bits) for i in zf.infolist()), label)
    except BaseException:
        zf.close()
        raise
    return zf


def _why(name: str) -> str:
    return " (Dataverse's plug-in assembly size limit is 16 MB)" if entry_limit(name) == ASSEMBLY_SIZE_LIMIT else ""


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:160] if text else type(e).__name__


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
    (:func:`ppmi_build.assembly.metadata.read_plugin_assemblies`).

    Args:
        data: the package bytes.
        label: how errors name the package (usually the file name).
        skip_non_assemblies: leave out ``lib/`` DLLs that are not .NET assemblies (native helpers) instead of
            refusing the package.
    Raises:
        PackageFormatError: not a zip, not exactly one ``.nuspec`` at the root, nuspec not XML or without
            ``<id>``/``<version>``, or (unless ``skip_non_assemblies``) a DLL that is not a .NET assembly;
            an encrypted entry, duplicate entry paths (NU5050), a damaged entry or one over the inflate limits
            (:func:`check_entries`, :func:`iter_entry`; messages name ``{label}!{entry}``).
    """
    with open_package(io.BytesIO(data), label) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        nuspecs = [n for n in names if "/" not in n and n.lower().endswith(".nuspec")]
        if not nuspecs:
            raise PackageFormatError(f"{label} has no .nuspec at the root; give the .nupkg from dotnet pack")
        if len(nuspecs) > 1:
            raise PackageFormatError(f"{label} has {len(nuspecs)} .nuspec files at its root ({', '.join(nuspecs)}); "
                                     "NuGet expects exactly one: repack the package")
        root = parse_nuspec(read_entry(zf, zf.getinfo(nuspecs[0]), label, limit=NUSPEC_SIZE_LIMIT),
                            f"{label}!{nuspecs[0]}")  # no DTD, no entity expansion
        meta = {_local(el.tag): (el.text or "").strip()
                for md in root if _local(md.tag) == "metadata" for el in md if _local(el.tag)}
        pkg_id, version = meta.get("id"), meta.get("version")
        if not pkg_id or not version:
            raise PackageFormatError(f"{label}: {nuspecs[0]} lacks <id> or <version>")
        blobs: dict[str, bytes] = {}
        total = 0
        for info in infos:
            n = info.filename
            if n.lower().startswith("lib/") and n.lower().endswith(".dll") and not info.is_dir():
                blobs[n] = read_entry(zf, info, label)
                total += len(blobs[n])
                if total > PACKAGE_ASSEMBLIES_LIMIT:
                    raise PackageFormatError(f"{label}: the assemblies under lib/ inflate to more than "
                                             f"{PACKAGE_ASSEMBLIES_LIMIT // _MiB} MiB in all; Dataverse takes "
                                             "plug-in packages of at most 16 MB: remove unneeded files")
        signed = ".signature.p7s" in names
    try:
        assemblies = read_plugin_assemblies(blobs, labels={n: f"{label}!{n}" for n in blobs},
                                            skip_invalid=skip_non_assemblies)
    except BadInput as e:
        raise PackageFormatError(e.message) from None
    return PackageInfo(id=pkg_id, version=version, assemblies=assemblies, signed=signed)
