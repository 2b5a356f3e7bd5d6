"""Build real-layout NuGet packages (``.nupkg``) for the package-signing tests and benchmark.

The layout is what ``nuget pack`` / ``dotnet pack`` write (NuGet ``PackageBuilder``): ``_rels/.rels``,
``<id>.nuspec``, the payload (``lib/net462/<id>.dll``), ``package/services/metadata/core-properties/<hex>.psmdcor``
and ``[Content_Types].xml``, every entry deflated. It is written with Python's ``zipfile`` (independent of
ppmi-build's zip code). Options add many entries, a large incompressible payload, or Zip64 records
(``force_zip64``) for the refusal tests.
"""

from __future__ import annotations

import os
import random
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

NUSPEC = """<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>{id}</id>
    <version>{version}</version>
    <authors>Contoso</authors>
    <description>Dataverse plug-in package for tests.</description>
    <dependencies>
      <group targetFramework=".NETFramework4.6.2" />
    </dependencies>
  </metadata>
</package>
"""

RELS = """<?xml version="1.0" encoding="utf-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
  <Relationship Type="http://schemas.microsoft.com/packaging/2010/07/manifest" Target="/{id}.nuspec" Id="R{r1}" />
  <Relationship Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties"
    Target="/package/services/metadata/core-properties/{core}.psmdcor" Id="R{r2}" />
</Relationships>
"""

CONTENT_TYPES = """<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml" />
  <Default Extension="nuspec" ContentType="application/octet" />
  <Default Extension="dll" ContentType="application/octet" />
  <Default Extension="txt" ContentType="application/octet" />
  <Default Extension="bin" ContentType="application/octet" />
  <Default Extension="psmdcor" ContentType="application/vnd.openxmlformats-package.core-properties+xml" />
</Types>
"""

PSMDCOR = """<?xml version="1.0" encoding="utf-8"?>
<coreProperties xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xmlns="http://schemas.openxmlformats.org/package/2006/metadata/core-properties">
  <dc:creator>Contoso</dc:creator>
  <dc:description>Dataverse plug-in package for tests.</dc:description>
  <dc:identifier>{id}</dc:identifier>
  <version>{version}</version>
  <keywords></keywords>
  <lastModifiedBy>NuGet, Version=6.12.0</lastModifiedBy>
</coreProperties>
"""

DATE = (2026, 1, 2, 3, 4, 6)


def build_nupkg(
    out: Path,
    *,
    package_id: str = "Contoso.Plugins",
    version: str = "1.0.0",
    dlls: Sequence[Path] = (),
    many: int = 0,
    payload_bytes: int = 0,
    zip64: bool = False,
    compression: int = zipfile.ZIP_DEFLATED,
    seed: int = 1,
) -> Path:
    """Write a package at ``out`` and return ``out``.

    Args:
        dlls: assemblies to put under ``lib/net462/`` (compiled with mcs by the caller).
        many: extra small text entries ``content/file<i>.txt`` (stored, so thousands stay fast).
        payload_bytes: size of one incompressible (random) ``content/payload.bin`` entry, to reach a given
            package size for the benchmark.
        zip64: write Zip64 extended-information extra fields (``ZipInfo`` ``force_zip64``), which NuGet
            refuses to sign (NU3006).
        compression: method for the layout entries (NuGet pack deflates every entry).
    """
    rnd = random.Random(seed)
    core = uuid.UUID(int=rnd.getrandbits(128)).hex
    fields = {"id": package_id, "version": version, "core": core,
              "r1": format(rnd.getrandbits(64), "016X"), "r2": format(rnd.getrandbits(64), "016X")}

    def info(name: str, method: int = compression) -> zipfile.ZipInfo:
        zi = zipfile.ZipInfo(name, date_time=DATE)
        zi.compress_type = method
        zi.external_attr = 0o644 << 16 if name.endswith(".dll") else 0
        return zi

    with zipfile.ZipFile(out, "w", allowZip64=True) as z:
        def put(name: str, data: bytes, method: int = compression) -> None:
            zi = info(name, method)
            with z.open(zi, "w", force_zip64=zip64) as f:
                f.write(data)

        put("_rels/.rels", RELS.format(**fields).encode())
        put(f"{package_id}.nuspec", NUSPEC.format(**fields).encode())
        for dll in dlls:
            put(f"lib/net462/{Path(dll).name}", Path(dll).read_bytes())
        for i in range(many):
            put(f"content/file{i}.txt", b"x", zipfile.ZIP_STORED)
        if payload_bytes:
            zi = info("content/payload.bin", zipfile.ZIP_STORED)
            with z.open(zi, "w", force_zip64=zip64) as f:
                left = payload_bytes
                while left:
                    n = min(left, 1 << 20)
                    f.write(os.urandom(n))
                    left -= n
        put(f"package/services/metadata/core-properties/{core}.psmdcor", PSMDCOR.format(**fields).encode())
        put("[Content_Types].xml", CONTENT_TYPES.encode())
    return out


def build_many_entries(out: Path, count: int) -> Path:
    """A package with exactly ``count`` entries (for the NU3039 boundary): a nuspec plus empty stored files,
    written directly from PKWARE APPNOTE §4.3 (``zipfile`` needs seconds for 65,000 entries)."""
    import struct
    import zlib

    nuspec = NUSPEC.format(id="Contoso.Many", version="1.0.0").encode()
    files = [(b"Contoso.Many.nuspec", nuspec)] + [(f"c/{i:x}".encode(), b"") for i in range(count - 1)]
    local, central = bytearray(), bytearray()
    dos_time, dos_date = (DATE[3] << 11 | DATE[4] << 5 | DATE[5] // 2), ((DATE[0] - 1980) << 9 | DATE[1] << 5 | DATE[2])
    for name, data in files:
        crc = zlib.crc32(data)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, dos_time, dos_date, crc, len(data),
                               len(data), len(name), 0, 0, 0, 0, 0, len(local)) + name
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, dos_time, dos_date, crc, len(data), len(data),
                             len(name), 0) + name + data
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(local), 0)
    out.write_bytes(bytes(local) + bytes(central) + eocd)
    return out
