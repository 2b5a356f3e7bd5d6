"""NuGet's package rules in one place: the checks ``sign``, ``verify`` and ``register`` all apply to a ``.nupkg``
before anything else reads it, so that no command accepts a package another refuses.

Rules, in the order they are checked (the first one broken is reported):

1. **Zip layout** (PKWARE APPNOTE §4.3.16; what .NET's ``ZipArchive``, NuGet's ``SignedPackageArchiveIOUtility``
   and Python's ``zipfile`` all need to agree on the entries): an end-of-central-directory record; one disk; the
   central directory exactly where and as long as the end record says (``cd offset + cd size == end record
   offset``: a directory that the end record calls 1 byte long, or junk between the directory and the end record,
   is refused), every record in it a central file header, as many records as the end record counts
   (``ZipArchive``'s "Number of entries expected in End Of Central Directory does not correspond to number of
   entries in Central Directory"); the first local file header at offset 0 (**junk before the zip data** moves
   every offset and fails NuGet's integrity check, NU3008, once the package is signed). Zip64 packages skip the
   32-bit consistency checks (NU3006 refuses them when signing).
2. **Entry names** (NuGet.Packaging ``PackageReaderBase.ValidatePackageEntry``: an entry whose full path, after
   ``Uri.UnescapeDataString``, leaves the extraction folder throws ``UnsafePackageEntryException``, "contains an
   entry … which is unsafe for extraction"; NuGet defines no NU code for it): no ``..`` segment (``/`` and ``\\``
   both separate), not absolute (``/x``), not backslash-rooted (``\\x``), not drive-rooted (``C:x``), also when
   written with ``%2e``/``%2f``/``%5c`` escapes.
3. Entries NuGet cannot read or extract unambiguously: encrypted, two at one path (NU5050;
   :func:`ppmi_build.assembly.package.check_entries`).
4. **Exactly one ``.nuspec`` at the root** (``PackageReaderBase.GetNuspecFile`` / ``PackageHelper.IsManifest``:
   none is NU5037 "The package is missing the required nuspec file", more than one is ``MultipleNuspecFiles``,
   no code).
5. **nuspec size and XML safety**: at most :data:`NUSPEC_SIZE_LIMIT` bytes inflated (NuGet.Client sets no limit;
   Azure Artifacts refuses nuspecs over 384 000 bytes by default, nuget.org's gallery reads the manifest into
   memory: 1 MiB is far above any real nuspec); parsed with lxml without DTD loading, entity resolution or network
   access, and any ``<!DOCTYPE`` refused (no DTD, no entity expansion: a "billion laughs" nuspec is one line);
   well-formed XML with a ``<package>`` root and ``<metadata>`` holding ``<id>`` and ``<version>`` (nuspec
   reference: both required).

Entry contents are inflated only for the nuspec, through :func:`ppmi_build.assembly.package.read_entry` (size and
ratio limits). Errors are :class:`~ppmi_build.errors.PackageFormatError` (exit 2) with the NU code in ``code``
where NuGet defines one.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

from ..errors import PackageFormatError, PpmiError
from .package import NUSPEC_SIZE_LIMIT, check_entries, open_package, parse_nuspec, read_entry

__all__ = ["NUSPEC_SIZE_LIMIT", "PackageProblem", "check_package", "package_problem", "parse_nuspec",
           "unsafe_entry_name"]


_EOCD_SIG = b"PK\x05\x06"
_EOCD_LEN = 22
_CDH_SIG = b"PK\x01\x02"
_CDH_LEN = 46
_LFH_SIG = b"PK\x03\x04"
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_UTF8_FLAG = 0x800
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class PackageProblem:
    """One broken rule: ``message`` (one line naming the package and the fix), NuGet's ``code`` or None, and
    ``layout``: True for rule 1 (the zip structure itself)."""

    message: str
    code: str | None = None
    layout: bool = False

    def error(self) -> PackageFormatError:
        return PackageFormatError(self.message, code=self.code)

    @property
    def verify_code(self) -> str:
        """The code ``verify`` shows: the rule's; else NU3008 "the package integrity check failed" for the zip
        layout, NU5000 "Undefined Package Error" (``NuGetLogCode``) for the others."""
        return self.code or ("NU3008" if self.layout else "NU5000")

    def verify_message(self, label: str) -> str:
        """The message without its code and without the package's name (``label``) in front."""
        text = self.message.removeprefix(f"{self.code}: " if self.code else "").removeprefix(f"{label}: ")
        if text.startswith(f"{label}!"):
            text = text.removeprefix(f"{label}!")
        elif text.startswith(f"{label} "):
            text = "the package " + text.removeprefix(f"{label} ")
        return text

    def verify_problem(self, label: str) -> str:
        """The problem as ``verify`` lists it: ``"{verify_code}: {verify_message(label)}"``."""
        return f"{self.verify_code}: {self.verify_message(label)}"


def _problem(label: str, text: str, code: str | None = None, *, layout: bool = False) -> PackageProblem:
    sep = " " if text.startswith(("is ", "has ")) else ": "  # "pkg has …" / "pkg: the …"
    return PackageProblem(f"{code + ': ' if code else ''}{label}{sep}{text}", code, layout)


def unsafe_entry_name(name: str) -> str | None:
    """Why an entry name is unsafe for extraction (rule 2), or None."""
    for text in (name, unquote(name)):
        if text.startswith("/"):
            return "is an absolute path"
        if text.startswith("\\"):
            return "is rooted with a backslash"
        if _DRIVE.match(text):
            return "is rooted at a drive letter"
        if ".." in re.split(r"[/\\]", text):
            return "has a '..' segment that leaves the extraction folder"
    return None


def _layout(f: IO[bytes], label: str) -> tuple[PackageProblem | None, bool]:
    """Rule 1. Returns (problem or None, zip64)."""

    def bad(text: str, code: str | None = None) -> tuple[PackageProblem, bool]:
        return _problem(label, text, code, layout=True), False

    size = f.seek(0, os.SEEK_END)
    tail_len = min(size, _EOCD_LEN + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(_EOCD_SIG)
    if at < 0 or at + _EOCD_LEN > len(tail):
        return bad("is not a zip archive (no end of central directory record); give the .nupkg made by dotnet pack")
    eocd_pos = size - tail_len + at
    disk, cd_disk, count_disk, count, cd_size, cd_offset = struct.unpack_from("<HHHHII", tail, at + 4)
    zip64 = 0xFFFF in (count, count_disk) or 0xFFFFFFFF in (cd_size, cd_offset)
    if eocd_pos >= 20:
        f.seek(eocd_pos - 20)
        zip64 = zip64 or f.read(4) == _ZIP64_LOCATOR_SIG
    if zip64:
        return None, True
    rebuild = "; the package is corrupt or was altered: rebuild it with dotnet pack"
    if disk or cd_disk:
        return bad(f"is a multi-disk (spanned) zip archive (disk {disk}, directory on disk {cd_disk}); NuGet reads "
                   "single-file packages only: rebuild it with dotnet pack")
    shift = eocd_pos - (cd_offset + cd_size)
    if 0 < shift <= eocd_pos:  # every offset is short by the same amount: bytes were put in front of the zip
        f.seek(shift)
        if f.read(4) == _LFH_SIG:
            return bad(f"has {shift} bytes before its zip data (junk before the first entry, e.g. a web page "
                       "saved in front; NuGet's integrity check, NU3008, fails on it): rebuild it with dotnet pack")
    if shift:
        return bad(f"the end of central directory record says the central directory is {cd_size} byte(s) long at "
                   f"offset {cd_offset}, but the record itself is at offset {eocd_pos}{rebuild}")
    if count != count_disk:
        return bad(f"the end record counts {count} entries in all but {count_disk} on this disk{rebuild}")
    f.seek(cd_offset)
    cd = f.read(cd_size)
    pos, records, first_local = 0, 0, -1
    while pos < len(cd):
        if cd[pos:pos + 4] != _CDH_SIG or pos + _CDH_LEN > len(cd):
            return bad(f"the central directory holds something other than file headers at offset {cd_offset + pos}"
                       f"{rebuild}")
        nlen, elen, clen = struct.unpack_from("<HHH", cd, pos + 28)
        local = struct.unpack_from("<I", cd, pos + 42)[0]
        first_local = local if first_local < 0 else min(first_local, local)
        pos += _CDH_LEN + nlen + elen + clen
        records += 1
        if pos > len(cd):
            return bad(f"central directory record {records} runs past the directory{rebuild}")
    if records != count:
        return bad(f"the end record counts {count} entries but the central directory holds {records}{rebuild}")
    if records == 0:
        return bad("has no entries, so no nuspec; give the .nupkg made by dotnet pack", "NU5037")
    f.seek(0)
    if first_local or f.read(4) != _LFH_SIG:
        what = f"{first_local} bytes" if first_local else "data that is not a zip entry"
        return bad(f"has {what} before its first zip entry (junk before the zip data; NuGet's integrity check, "
                   "NU3008, fails on it once signed): rebuild it with dotnet pack")
    return None, False


def package_problem(source: Path | str | IO[bytes], label: str | None = None) -> PackageProblem | None:
    """The first rule (module docstring) ``source`` breaks, or None when it is a package NuGet accepts.

    Args:
        source: the package file (path or binary file object; read, never written).
        label: how messages name the package (default: the path).
    Raises:
        InputFileError: the file cannot be read.
    """
    from ..errors import InputFileError

    if isinstance(source, (str, Path)):
        label = label or str(source)
        try:
            with open(source, "rb") as f:
                return _problems_of(f, label)
        except OSError as e:
            raise InputFileError(f"cannot read package {source}: {e.strerror or e}") from None
    return _problems_of(source, label or "package")


def check_package(source: Path | str | IO[bytes], label: str | None = None) -> None:
    """Raise the first broken rule of :func:`package_problem` as :class:`~ppmi_build.errors.PackageFormatError`
    (exit 2; ``code`` is the NU code where NuGet defines one)."""
    problem = package_problem(source, label)
    if problem is not None:
        raise problem.error()


def _problems_of(f: IO[bytes], label: str) -> PackageProblem | None:
    problem, _ = _layout(f, label)
    if problem is not None:
        return problem
    f.seek(0)
    try:
        with open_package(f, label) as zf:  # encrypted entries, NU5050 duplicates (rule 3) come first there
            infos = zf.infolist()
            for info in infos:
                why = unsafe_entry_name(info.filename)
                if why is not None:
                    return _problem(label, f"entry {info.filename!r} {why}; NuGet refuses it as unsafe for "
                                           "extraction: rebuild the package with dotnet pack")
            check_entries(((i.filename, i.flag_bits) for i in infos), label)
            return _nuspec_problem(zf, infos, label)
    except PackageFormatError as e:
        return PackageProblem(e.message, e.code)


def is_manifest(name: str) -> bool:
    """``PackageHelper.IsManifest``: an entry at the root whose name ends in ``.nuspec`` (ignoring case)."""
    return "/" not in name and "\\" not in name and name.lower().endswith(".nuspec")


def _nuspec_problem(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], label: str) -> PackageProblem | None:
    nuspecs = [i for i in infos if is_manifest(i.filename)]
    if not nuspecs:
        return _problem(label, "the package is missing the required nuspec file (no .nuspec at the root); give "
                               "the .nupkg made by dotnet pack", "NU5037")
    if len(nuspecs) > 1:
        return _problem(label, f"has {len(nuspecs)} .nuspec files at its root "
                               f"({', '.join(i.filename for i in nuspecs)}); NuGet expects exactly one: repack it")
    info = nuspecs[0]
    where = f"{label}!{info.filename}"
    if info.file_size > NUSPEC_SIZE_LIMIT:
        return PackageProblem(f"{where} is {info.file_size} bytes, over the {NUSPEC_SIZE_LIMIT} byte nuspec limit; "
                              "a nuspec holds metadata only: rebuild the package")
    try:
        data = read_entry(zf, info, label, limit=NUSPEC_SIZE_LIMIT)
    except PpmiError as e:
        return PackageProblem(e.message, e.code)
    problem = nuspec_xml_problem(data, where)
    return PackageProblem(problem) if problem else None


def _local(tag: Any) -> str | None:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else None


def nuspec_xml_problem(data: bytes, where: str) -> str | None:
    """Rule 5 on the nuspec bytes: a one-line problem or None."""
    try:
        root = parse_nuspec(data, where)
    except PackageFormatError as e:
        return e.message
    if _local(root.tag) != "package":
        return f"{where}: the root element is <{_local(root.tag)}>, not <package>; rebuild the package"
    meta = {_local(el.tag): (el.text or "").strip()
            for md in root if _local(md.tag) == "metadata" for el in md if _local(el.tag)}
    missing = [k for k in ("id", "version") if not meta.get(k)]
    if missing:
        return f"{where} lacks <{'> and <'.join(missing)}> in <metadata>; rebuild the package"
    return None
